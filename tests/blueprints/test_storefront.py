"""The storefront's depth: stock truth at add time and checkout, search that finds, the catalog's pages."""

import pytest

from sipup import searchtext
from sipup.extensions import db
from sipup.models import Category
from sipup.services import cart as carts
from sipup.services import catalog

# --- search normalisation ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, expected",
    [
        ("Hofbräu Pils", "hofbrau pils"),
        ("Hauptstraße 5", "hauptstrasse 5"),
        ("ÉLAN Crème brûlée", "elan creme brulee"),
        ("keg of 30 l", "keg of 30 l"),
        ("crate of 20 x 0.5 l", "crate of 20 x 0 5 l"),
        ("BEE-00005", "bee 00005"),
        ("Øl & Æble", "ol aeble"),
        ("", ""),
    ],
)
def test_folded_text_has_no_case_accents_or_punctuation(text, expected):
    assert searchtext.folded(text) == expected


def test_query_words_are_distinct_and_longest_first():
    assert searchtext.words("  Lager 30 LAGER l ") == ["lager", "30", "l"]


def test_terms_hold_every_suffix_behind_the_marker():
    assert searchtext.terms("brau 30") == "xbrau xrau xau xu x30 x0"


# --- search through the index, on each database --------------------------------------------------


@pytest.fixture
def shelf(app, make_product):
    beer = Category(name="Beer", slug="beer")
    water = Category(name="Wasser", slug="water")
    db.session.add_all([beer, water])
    db.session.flush()
    products = {
        "hofbrau": make_product(
            sku="BEE-101", name="Hofbräu Pils", sell_unit="crate of 20 x 0.5 l", category_id=beer.id
        ),
        "lager": make_product(sku="BEE-202", name="Helles Lager", sell_unit="keg of 30 l", category_id=beer.id),
        "brauhaus": make_product(sku="BEE-303", name="Brauhaus Dunkel", sell_unit="keg of 50 l", category_id=beer.id),
        "strasse": make_product(
            sku="WAS-404", name="Straßen-Wasser still", sell_unit="crate of 12 x 0.7 l", category_id=water.id
        ),
    }
    return products


def names(query, sort="best"):
    return [p.name for p in catalog.search(query, sort=sort).items]


def test_search_ignores_case_and_accents(shelf):
    assert names("brau") == ["Brauhaus Dunkel", "Hofbräu Pils"]  # a name that starts with it first
    assert names("BRÄU") == ["Brauhaus Dunkel", "Hofbräu Pils"]
    assert names("strasse") == ["Straßen-Wasser still"]
    assert names("straße") == ["Straßen-Wasser still"]


def test_every_word_must_match_across_name_sku_category_and_pack(shelf):
    assert names("lager 30") == ["Helles Lager"]
    assert names("keg beer") == ["Brauhaus Dunkel", "Helles Lager"]
    assert names("bee-202") == ["Helles Lager"]
    assert names("wasser 0.7") == ["Straßen-Wasser still"]
    assert names("lager 50") == []
    assert names("x") == ["Brauhaus Dunkel", "Helles Lager", "Hofbräu Pils", "Straßen-Wasser still"]  # narrows nothing


def test_search_follows_renamed_products(shelf):
    shelf["lager"].name = "Märzen"
    db.session.commit()

    assert names("marzen") == ["Märzen"]
    assert names("lager") == []


def test_word_terms_are_the_suffixes_with_where_they_start():
    assert searchtext.word_terms("brau hofbrau 30 x") == {
        "brau": searchtext.AT_TEXT_START,
        "rau": searchtext.INSIDE_WORD,
        "au": searchtext.INSIDE_WORD,
        "hofbrau": searchtext.AT_WORD_START,
        "ofbrau": searchtext.INSIDE_WORD,
        "fbrau": searchtext.INSIDE_WORD,
        "30": searchtext.AT_WORD_START,
    }


@pytest.mark.parametrize("walk_ratio", [0, 10**9])  # every page by the matches sorted, every page along the names
def test_pages_of_a_search_rank_count_and_leave_out_inactive_products(app, make_product, monkeypatch, walk_ratio):
    monkeypatch.setattr(catalog, "WALK_RATIO", walk_ratio)
    names_made = [f"Brau {n:02d}" for n in range(7)] + [f"Alt Brau {n:02d}" for n in range(9)]
    names_made += [f"Hofbräu {n:02d}" for n in range(8)] + [f"Wasser {n:02d}" for n in range(5)] + ["Brauerei Hofbrau"]
    made = {name: make_product(name=name, sell_unit="keg of 30 l" if "0" in name else "crate") for name in names_made}
    made["Brau 03"].active = False
    made["Hofbräu 05"].active = False
    made["Alt Brau 04"].name = "Alt Brau 04 extra"
    db.session.delete(made["Hofbräu 06"])
    db.session.commit()
    active = [made[name] for name in names_made if name not in ("Brau 03", "Hofbräu 05", "Hofbräu 06")]

    def expected(query, best):
        """What the index must give, worked out from the products' folded text."""
        words = searchtext.words(query)
        found = [p for p in active if all(any(w in word for word in p.search_text.split()) for w in words)]
        text = {p.id: p.search_text for p in found}

        def place(p):
            return 0 if text[p.id].startswith(words[0]) else 1 if f" {words[0]}" in text[p.id] else 2

        return [p.name for p in sorted(found, key=lambda p: (place(p) if best else 0, p.name, p.id))]

    for query in ("brau", "rau", "brau 30", "30 ofbr", "keg brau 30"):
        for sort in ("best", "name"):
            want = expected(query, sort == "best")
            got, totals = [], set()
            for page in range(1, 9):
                found = catalog.search(query, sort=sort, page=page, per_page=4)
                got += [p.name for p in found.items]
                totals.add(found.total)
            assert totals == {len(want)} and got == want, (query, sort)
    assert catalog.search("extra").total == 1 and catalog.search("wasser 30").total == 5


# --- the catalog pages -------------------------------------------------------------------------


def test_catalog_search_as_you_type_answers_the_partial(client, buyer, login_as, shelf):
    login_as(buyer)

    page = client.get("/products?q=brau")
    partial = client.get("/products?q=brau", headers={"HX-Request": "true"})

    assert page.status_code == partial.status_code == 200
    assert "<html" in page.get_data(as_text=True)
    body = partial.get_data(as_text=True)
    assert "<html" not in body and 'id="results"' in body
    assert "2 products for “brau”" in body and "Hofbräu Pils" in body
    assert 'hx-trigger="input changed delay:300ms' in page.get_data(as_text=True)
    assert "HX-Request" in partial.headers["Vary"]


def test_a_page_past_the_last_says_so(client, buyer, login_as, shelf):
    login_as(buyer)

    body = client.get("/products?page=999").get_data(as_text=True)

    assert "There is no page 999: these 4 products fill 1." in body


def test_out_of_stock_cannot_be_added_from_the_catalog(client, buyer, login_as, make_product):
    product = make_product(sku="GONE-1", name="Bock", stock_on_hand=0)
    login_as(buyer)

    page = client.get("/products").get_data(as_text=True)
    assert "Out of stock</button>" in page
    response = client.post("/cart/add", data={"sku": "GONE-1", "quantity": "1"}, follow_redirects=True)

    assert response.status_code == 200
    assert "Bock (GONE-1) is out of stock; it cannot be ordered until it is back." in response.get_data(as_text=True)
    assert carts.items(buyer.id) == []
    assert product.stock_reserved == 0


def test_a_sku_is_added_in_any_case_and_again_onto_its_line(client, buyer, login_as, make_product):
    # One stored in upper case (as the back office stores them) and one stored otherwise, typed in another case.
    upper, lower = make_product(sku="CASE-1", name="Pils"), make_product(sku="case-2", name="Helles")
    login_as(buyer)
    for sku in ("case-1", "CASE-2", "Case-1"):
        assert client.post("/cart/add", data={"sku": sku, "quantity": "2"}).status_code == 302
    assert {item.product_id: item.quantity for item in carts.items(buyer.id)} == {upper.id: 4, lower.id: 2}
    shown = client.post("/cart/add", data={"sku": " case-1 ", "quantity": "1"}, follow_redirects=True)
    assert "Pils (" in shown.get_data(as_text=True) and "5 in your cart" in shown.get_data(as_text=True)


def test_backorder_is_said_at_add_time_and_in_the_cart(client, buyer, login_as, make_product):
    make_product(sku="BO-1", name="Kegs", stock_on_hand=0, backorder_allowed=True)
    login_as(buyer)

    added = client.post("/cart/add", data={"sku": "BO-1", "quantity": "2"}, follow_redirects=True)

    assert "BO-1 is on backorder, ships when in stock." in added.get_data(as_text=True)
    assert "BO-1 is on backorder, ships when in stock." in client.get("/cart").get_data(as_text=True)


def test_each_cart_line_shows_its_products_first_picture_or_its_placeholder(client, buyer, login_as, make_product):
    from sipup.models import ProductImage

    pictured, plain = make_product(sku="PIC-1", name="Pils"), make_product(sku="PIC-2", name="Helles")
    db.session.add_all(
        ProductImage(product_id=pictured.id, digest=letter * 64, width=800, height=600, position=position)
        for letter, position in (("a", 2), ("b", 0), ("c", 0))
    )
    db.session.commit()
    carts.add(buyer.id, pictured, 1)
    carts.add(buyer.id, plain, 1)
    login_as(buyer)

    html = client.get("/cart").get_data(as_text=True)

    assert html.count('class="line-thumb"') == 2  # one line per product, however many pictures it has
    assert f"/images/{'b' * 64}-thumb.webp" in html and "aaaa" not in html and "cccc" not in html
    assert 'width="96" height="72" alt="Pils"' in html
    assert 'placeholder placeholder-beer" role="img" aria-label="No picture of Helles yet"' in html


def test_checkout_marks_the_line_another_buyer_emptied(client, make_company, make_user, login_as, make_product):
    from decimal import Decimal

    from sipup.services import orders

    product = make_product(sku="KEG-9", name="Keg", stock_on_hand=3)
    company = make_company()
    first, second = make_user("buyer", make_company()), make_user("buyer", company)
    carts.add(second.id, product, 2)
    carts.add(first.id, product, 3)
    first_address = first.company.addresses[0].id
    orders.checkout(first, Decimal("0.20"), address_id=first_address)
    login_as(second)

    response = client.post("/checkout", data={"address_id": str(company.addresses[0].id)})

    body = response.get_data(as_text=True)
    assert response.status_code == 422
    assert '<tr class="has-error"><td>2 × Keg' in body
    assert "Keg (KEG-9) went out of stock after you added it" in body


def test_demo_data_has_pictures_shopping_lists_that_can_be_ordered_and_no_dates_in_the_future(app):
    """One seeding checked for all of it: the demo pictures take seconds to draw."""
    from sipup.models import Invoice, Order, OrderEvent, Product, ProductImage, ShoppingList, User, utcnow
    from sipup.services import seed
    from sipup.services import shopping_lists as lists

    seed.seed_demo()

    now = utcnow()
    products = db.session.scalar(db.select(db.func.count(Product.id)))
    pictured = db.session.scalar(db.select(db.func.count(db.distinct(ProductImage.product_id))))
    assert products and pictured == products
    for column in (Order.created_at, OrderEvent.created_at, Invoice.issued_at, Invoice.paid_at):
        assert db.session.scalar(db.select(db.func.max(column))) <= now, column

    buyer = db.session.scalar(db.select(User).where(User.email == "buyer@barcentrale.example"))
    seen = {shopping_list.name: count for shopping_list, count in lists.lists_for(buyer)}
    assert seen == {"Samples to try": 2, "Weekend party": 4, "Weekly bar order": 6}
    weekly = db.session.scalar(
        db.select(ShoppingList).where(
            ShoppingList.company_id == buyer.company_id, ShoppingList.name == "Weekly bar order"
        )
    )
    assert lists.may_edit(buyer, weekly) and not lists.may_manage(buyer, weekly)
    for item in weekly.items:  # every seeded quantity is one the product is sold in
        assert item.quantity >= item.product.min_qty and item.quantity % item.product.qty_step == 0


# --- search that forgives typos ------------------------------------------------------------------


def test_a_typo_finds_the_closest_catalog_word_and_names_it(shelf):
    for typed, meant in [("hofbreu", "Hofbräu"), ("pilz", "Pils"), ("HOFBREU pils", "Hofbräu pils")]:
        found = catalog.search(typed, sort="best")
        assert [p.name for p in found.items] == ["Hofbräu Pils"] and found.meant == meant, typed
    assert names("brauhaus dunkl") == ["Brauhaus Dunkel"]
    nothing = catalog.search("zzz qqq")
    assert nothing.total == 0 and nothing.meant is None  # nothing alike: no guess
    assert catalog.search("brau").meant is None  # found as typed: no correction
    assert catalog.search("hofbreu dunkel").meant is None  # Hofbräu Dunkel is no product: not offered


def test_the_words_forgiven_follow_the_catalog_across_processes(shelf, make_app):
    """Another process renames a product: this one's words follow, through the shared cache's generation."""
    assert names("marzen") == []
    other = make_app()
    with other.app_context():
        db.session.get(type(shelf["lager"]), shelf["lager"].id).name = "Märzen"
        db.session.commit()
    db.session.expire_all()
    assert names("marzn") == ["Märzen"]
    shelf["hofbrau"].active = False  # what a buyer may not see is not suggested either
    db.session.commit()
    assert catalog.search("hofbreu").meant is None


def test_the_catalog_page_asks_did_you_mean_and_sorts_typing_best_first(client, buyer, login_as, shelf):
    login_as(buyer)

    body = client.get("/products?q=hofbreu", headers={"HX-Request": "true"}).get_data(as_text=True)

    link = '<a href="/products?q=Hofbr%C3%A4u"><strong>Hofbräu</strong></a>'
    assert f"Nothing matches “hofbreu”. Did you mean {link}? Showing what matches that." in body
    assert "Hofbräu Pils" in body
    page = client.get("/products").get_data(as_text=True)
    assert '<option value="" selected>Best match</option>' in page  # typing sends no sort: best match first


def test_the_words_forgiven_are_renewed_by_renames_not_by_stock(shelf):
    from sqlalchemy import update

    from sipup.models import Product
    from sipup.services import spelling

    before = spelling.vocabulary()
    db.session.execute(update(Product).values(stock_reserved=Product.stock_reserved + 1))  # as each order does
    db.session.commit()
    assert spelling.vocabulary() is before
    db.session.execute(update(Product).where(Product.sku == "BEE-202").values(name="Märzen"))  # a bulk rename
    db.session.commit()
    assert "marzen" in spelling.vocabulary().counts
