"""The factory builds, the schema exists, a buyer can sign in and see the catalog."""


def test_buyer_signs_in_and_browses(client, buyer, make_product, login_as):
    product = make_product(name="Hofbräu Pils")
    login_as(buyer)
    page = client.get("/products").get_data(as_text=True)
    assert "Hofbräu Pils" in page
    assert client.get(f"/products/{product.sku}").status_code == 200
