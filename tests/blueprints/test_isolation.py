"""One company never sees another's data, and tampered input gets a clear message, never a 500."""

from decimal import Decimal
from types import SimpleNamespace

import pytest
from sqlalchemy import func, select

from sipup.extensions import db
from sipup.models import CartItem, Order
from sipup.services import cart as carts
from sipup.services import orders


@pytest.fixture
def two_companies(app, make_company, make_user, make_product, make_price_list):
    """Alpha has an invoiced order and a cart; Beta has neither; each has its own price list."""
    pils = make_product(name="Hofbräu Pils", base_price=Decimal("10.00"))
    cola = make_product(name="Cola", base_price=Decimal("14.90"))
    alpha = make_company(name="Bar Alpha", price_list=make_price_list("Alpha prices", [(pils, 1, "8.10")]))
    beta = make_company(name="Café Beta", price_list=make_price_list("Beta prices", [(pils, 1, "9.20")]))
    alice, bob, staff = make_user("buyer", alpha), make_user("buyer", beta), make_user("staff")
    carts.add(alice.id, pils, 3)
    order = orders.checkout(alice, app.config["VAT_RATE"], po_reference="ALPHA-PO-7", address_id=alpha.addresses[0].id)
    for action in ("confirm", "ship", "invoice"):
        orders.transition(order.number, action, staff.id)
    carts.add(alice.id, pils, 4)
    carts.add(alice.id, cola, 2)
    return SimpleNamespace(
        pils=pils,
        cola=cola,
        alpha=alpha,
        beta=beta,
        alice=alice,
        bob=bob,
        order=order,
        invoice=orders.company_invoices(alpha.id).items[0],
    )


def cart_of(user):
    return {item.product.sku: item.quantity for item in carts.items(user.id)}


def order_count():
    return db.session.scalar(select(func.count(Order.id)))


# --- what another company sees ------------------------------------------------------------------


def test_order_list_and_dashboard_show_only_own_orders(client, two_companies, login_as):
    world = two_companies
    login_as(world.bob)
    for page in ("/orders", "/"):
        text = client.get(page).get_data(as_text=True)
        assert world.order.number not in text
        assert "ALPHA-PO-7" not in text


def test_own_order_detail_opens(client, two_companies, login_as):
    login_as(two_companies.alice)
    response = client.get(f"/orders/{two_companies.order.number}")
    assert response.status_code == 200
    assert "ALPHA-PO-7" in response.get_data(as_text=True)


def test_another_companys_order_is_not_found_not_forbidden(client, two_companies, login_as):
    login_as(two_companies.bob)
    response = client.get(f"/orders/{two_companies.order.number}")
    assert response.status_code == 404
    assert "ALPHA-PO-7" not in response.get_data(as_text=True)


def test_reordering_another_companys_order_is_not_found(client, two_companies, login_as):
    login_as(two_companies.bob)
    assert client.post(f"/orders/{two_companies.order.number}/reorder").status_code == 404
    assert cart_of(two_companies.bob) == {}


def test_invoices_show_only_own(client, two_companies, login_as):
    world = two_companies
    login_as(world.bob)
    text = client.get("/invoices").get_data(as_text=True)
    assert world.invoice.number not in text
    assert "No invoices yet" in text


def test_invoices_show_own(client, two_companies, login_as):
    login_as(two_companies.alice)
    assert two_companies.invoice.number in client.get("/invoices").get_data(as_text=True)


def test_many_invoices_come_in_pages_open_ones_first(client, two_companies, login_as):
    from datetime import date, timedelta

    from sipup.models import Invoice, utcnow

    alpha, today = two_companies.alpha, utcnow().date()
    for n in range(1, 56):  # 55 paid invoices, then one open one overdue since yesterday
        db.session.add(
            Invoice(
                number=f"TST-{n:06d}",
                order_id=900_000 + n,
                company_id=alpha.id,
                amount=Decimal("10.00"),
                paid_amount=Decimal("10.00"),
                due_date=date(2025, 3, 1),
                issued_at=utcnow() - timedelta(days=400 - n),
                paid_at=utcnow() - timedelta(days=300),
            )
        )
    db.session.add(
        Invoice(
            number="TST-000099",
            order_id=999_999,
            company_id=alpha.id,
            amount=Decimal("5.00"),
            due_date=today - timedelta(days=1),
            issued_at=utcnow() - timedelta(days=40),
        )
    )
    db.session.commit()
    login_as(two_companies.alice)
    first = client.get("/invoices").get_data(as_text=True)
    # 50 a page: the two open ones (the fixture's, issued today, then the overdue one), then 48 paid, newest first
    assert first.count(">TST-") == 49 and "Overdue" in first  # one link text per invoice listed
    assert first.index(two_companies.invoice.number) < first.index("TST-000099") < first.index("TST-000055")
    assert "Page 1 of 2" in first and "page=2" in first
    second = client.get("/invoices?page=2").get_data(as_text=True)
    assert second.count(">TST-") == 7 and "TST-000001" in second and "TST-000099" not in second
    response = client.get("/invoices?page=x")
    assert response.status_code == 200 and "is not a page number" in response.get_data(as_text=True)
    beyond = client.get("/invoices?page=9").get_data(as_text=True)  # past the last page: the last one
    assert beyond.count(">TST-") == 7 and "Page 2 of 2" in beyond and "No invoices yet" not in beyond


def test_cart_is_the_users_own(client, two_companies, login_as):
    login_as(two_companies.bob)
    text = client.get("/cart").get_data(as_text=True)
    assert "Your cart is empty" in text
    assert "Hofbräu Pils" not in text


@pytest.mark.parametrize("who, price, not_price", [("alice", "€8.10", "€9.20"), ("bob", "€9.20", "€8.10")])
def test_buyers_see_their_own_price_list(client, two_companies, login_as, who, price, not_price):
    login_as(getattr(two_companies, who))
    for page in ("/products", f"/products/{two_companies.pils.sku}"):
        text = client.get(page).get_data(as_text=True)
        assert price in text
        assert not_price not in text


def test_company_without_price_list_sees_base_price(client, two_companies, make_company, make_user, login_as):
    login_as(make_user("buyer", make_company()))
    for page in ("/products", f"/products/{two_companies.pils.sku}"):
        text = client.get(page).get_data(as_text=True)
        assert "€10.00" in text
        assert "€8.10" not in text and "€9.20" not in text


def test_cart_is_priced_at_the_buyers_own_list(client, two_companies, login_as):
    login_as(two_companies.bob)
    client.post("/cart/add", data={"sku": two_companies.pils.sku, "quantity": "2"})
    text = client.get("/cart").get_data(as_text=True)
    assert "€9.20" in text and "€8.10" not in text


# --- tampering ----------------------------------------------------------------------------------


def test_checkout_refuses_another_companys_address_and_keeps_the_form(client, two_companies, login_as):
    world = two_companies
    login_as(world.alice)
    before = order_count()
    response = client.post(
        "/checkout",
        data={
            "address_id": str(world.beta.addresses[0].id),
            "po_reference": "KEEP-ME",
            "note": "back door",
        },
    )
    text = response.get_data(as_text=True)
    assert response.status_code == 422
    assert "Choose one of your delivery addresses." in text
    assert 'value="KEEP-ME"' in text and "back door" in text
    assert world.beta.addresses[0].street not in text
    assert order_count() == before
    assert cart_of(world.alice) == {world.pils.sku: 4, world.cola.sku: 2}


@pytest.mark.parametrize("address_id", ["", "abc", "-1", "99999999"])
def test_checkout_refuses_a_missing_or_made_up_address(client, two_companies, login_as, address_id):
    login_as(two_companies.alice)
    response = client.post("/checkout", data={"address_id": address_id, "po_reference": "KEEP-ME"})
    assert response.status_code == 422
    assert "Choose one of your delivery addresses." in response.get_data(as_text=True)


def test_adding_an_unknown_sku_says_so(client, two_companies, login_as):
    login_as(two_companies.alice)
    response = client.post("/cart/add", data={"sku": "NOPE-123", "quantity": "2"}, follow_redirects=True)
    assert response.status_code == 200
    assert "There is no product with SKU “NOPE-123”" in response.get_data(as_text=True)
    assert cart_of(two_companies.alice) == {two_companies.pils.sku: 4, two_companies.cola.sku: 2}


def test_adding_an_inactive_sku_says_so(client, two_companies, make_product, login_as):
    retired = make_product(name="Old Cola", active=False)
    login_as(two_companies.alice)
    response = client.post("/cart/add", data={"sku": retired.sku, "quantity": "2"}, follow_redirects=True)
    assert response.status_code == 200
    assert f"There is no product with SKU “{retired.sku}”" in response.get_data(as_text=True)
    assert retired.sku not in cart_of(two_companies.alice)


def test_removing_another_users_cart_line_changes_nothing(client, two_companies, login_as):
    world = two_companies
    login_as(world.bob)
    assert client.post("/cart", data={"remove": str(world.pils.id)}).status_code == 302
    assert cart_of(world.alice) == {world.pils.sku: 4, world.cola.sku: 2}


@pytest.mark.parametrize("remove", ["", "abc", "-1", "1.5"])
def test_removing_a_malformed_line_changes_nothing(client, two_companies, login_as, remove):
    login_as(two_companies.alice)
    assert client.post("/cart", data={"remove": remove}).status_code == 302
    assert cart_of(two_companies.alice) == {two_companies.pils.sku: 4, two_companies.cola.sku: 2}


BAD_QUANTITIES = [
    ("0", "must be at least 1"),
    ("-2", "must be at least 1"),
    ("1.5", "not a whole number"),
    ("2,5", "not a whole number"),
    ("100001", "more than 100,000 packs"),
    ("99999999999999999999999", "more than 100,000 packs"),
    ("lots", "is not a number"),
    ("", "Enter a quantity"),
    ("--1", "is not a number"),
    ("²", "is not a number"),
]


@pytest.mark.parametrize("quantity, message", BAD_QUANTITIES)
def test_cart_add_explains_a_bad_quantity_and_keeps_it(client, two_companies, login_as, quantity, message):
    world = two_companies
    login_as(world.alice)
    response = client.post("/cart/add", data={"sku": world.pils.sku, "quantity": quantity})
    assert response.status_code == 302
    page = client.get(response.headers["Location"])
    text = page.get_data(as_text=True)
    assert page.status_code == 200
    assert message in text
    assert f'name="quantity" value="{quantity[:12]}"' in text
    assert cart_of(world.alice) == {world.pils.sku: 4, world.cola.sku: 2}


@pytest.mark.parametrize("quantity, message", BAD_QUANTITIES)
def test_cart_update_explains_a_bad_quantity_and_keeps_the_rest(client, two_companies, login_as, quantity, message):
    world = two_companies
    login_as(world.alice)
    response = client.post("/cart", data={f"qty-{world.pils.id}": quantity, f"qty-{world.cola.id}": "6"})
    text = response.get_data(as_text=True)
    assert response.status_code == 422
    assert message in text
    assert f'name="qty-{world.pils.id}" value="{quantity[:12]}"' in text
    assert f'name="qty-{world.cola.id}" value="6"' in text
    assert cart_of(world.alice) == {world.pils.sku: 4, world.cola.sku: 6}


def test_cart_update_ignores_fields_for_products_not_in_the_cart(client, two_companies, make_product, login_as):
    other = make_product()
    login_as(two_companies.alice)
    response = client.post("/cart", data={f"qty-{other.id}": "5", "qty-abc": "1"})
    assert response.status_code == 302
    assert other.sku not in cart_of(two_companies.alice)
    assert db.session.scalar(select(func.count(CartItem.id)).where(CartItem.product_id == other.id)) == 0


# --- mangled numbers in URLs and forms --------------------------------------------------------------

HUGE = "9" * 25  # past what SQLite can bind


@pytest.mark.parametrize(
    "path, status",
    [
        ("/products?page=²", 200),
        (f"/products?page={HUGE}", 200),
        ("/products?page=-1", 200),
        ("/orders?page=²", 200),
        (f"/orders?page={HUGE}", 200),
        ("/orders/2611-²", 404),
        (f"/orders/2611-{HUGE}", 404),
        (f"/products/{HUGE}", 404),
    ],
)
def test_mangled_numbers_in_shop_urls_are_no_error(client, two_companies, login_as, path, status):
    login_as(two_companies.alice)
    response = client.get(path)
    assert response.status_code == status
    if status == 200 and "page=" in path:
        assert "is not a page number; showing page 1." in response.get_data(as_text=True)


@pytest.mark.parametrize("mangled", ["²", HUGE, "0"])
def test_mangled_ids_in_shop_forms_are_no_error(client, two_companies, login_as, mangled):
    login_as(two_companies.alice)
    assert client.post("/cart", data={"remove": mangled}).status_code == 302
    response = client.post("/checkout", data={"address_id": mangled})
    assert response.status_code == 422
    assert "Choose one of your delivery addresses." in response.get_data(as_text=True)
    assert cart_of(two_companies.alice) == {two_companies.pils.sku: 4, two_companies.cola.sku: 2}


@pytest.mark.parametrize(
    "path, status",
    [
        ("/admin/orders?page=²", 200),
        (f"/admin/orders?page={HUGE}", 200),
        ("/admin/orders?company=²", 200),
        (f"/admin/orders?company={HUGE}", 200),
        ("/admin/products?page=²", 200),
        (f"/admin/products?page={HUGE}", 200),
        (f"/admin/companies/{HUGE}", 404),
        ("/admin/companies/0", 404),
        (f"/admin/price-lists/{HUGE}", 404),
        ("/admin/orders/2611-²", 404),
        (f"/admin/orders/2611-{HUGE}", 404),
    ],
)
def test_mangled_numbers_in_back_office_urls_are_no_error(client, two_companies, make_user, login_as, path, status):
    login_as(make_user("staff"))
    assert client.get(path).status_code == status


@pytest.mark.parametrize("mangled", ["²", HUGE, "abc"])
def test_mangled_tier_id_is_no_error(client, two_companies, make_user, login_as, mangled):
    price_list = two_companies.alpha.price_list
    login_as(make_user("staff"))
    response = client.post(f"/admin/price-lists/{price_list.id}", data={"delete": mangled}, follow_redirects=True)
    assert response.status_code == 200
    assert "That tier no longer exists." in response.get_data(as_text=True)
    assert len(price_list.tiers) == 1


def test_mangled_user_id_is_not_found(client, two_companies, make_user, login_as):
    login_as(make_user("staff"))
    assert (
        client.post(f"/admin/companies/{two_companies.alpha.id}/users/{HUGE}", data={"active": "1"}).status_code == 404
    )
