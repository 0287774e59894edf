"""Who may open which page: anonymous visitors sign in, customers shop, staff run the back office."""

from urllib.parse import quote

import pytest

from sipup.extensions import db
from sipup.models import PriceList
from sipup.services import cart as carts
from sipup.services import orders
from tests.conftest import signed_in_id

SHOP_PAGES = [
    "/",
    "/products",
    "/products/{sku}",
    "/cart",
    "/quick-order",
    "/checkout",
    "/orders",
    "/orders/{number}",
    "/invoices",
]
ADMIN_PAGES = [
    "/admin/",
    "/admin/orders",
    "/admin/orders/{number}",
    "/admin/products",
    "/admin/products/{sku}",
    "/admin/products/new",
    "/admin/companies",
    "/admin/companies/{company_id}",
    "/admin/companies/new",
    "/admin/price-lists",
    "/admin/price-lists/{list_id}",
    "/admin/price-lists/new",
]


@pytest.fixture
def shop(app, make_company, make_user, make_product, make_price_list):
    """A company with an owner, a buyer with an order and a full cart, staff, an admin; returns page values."""
    product = make_product()
    price_list = make_price_list("Gastro", [(product, 1, "9.00")])
    company = make_company(price_list=price_list)
    users = {
        role: make_user(role, company if role in ("owner", "buyer") else None)
        for role in ("owner", "buyer", "staff", "admin")
    }
    buyer = users["buyer"]
    carts.add(buyer.id, product, 2)
    order = orders.checkout(buyer, app.config["VAT_RATE"], address_id=company.addresses[0].id)
    for user in (users["owner"], buyer):
        carts.add(user.id, product, 1)  # so /checkout shows the form instead of sending them away
    values = dict(sku=product.sku, number=order.number, company_id=company.id, list_id=price_list.id)
    return users, values


@pytest.fixture
def login_as(client):
    """Sign in by writing the login cookie's value, as the sign-in form would (test_security covers the form)."""

    def do(user):
        with client.session_transaction() as session:
            session["_user_id"] = signed_in_id(user)
            session["_fresh"] = True
        return client

    return do


@pytest.mark.parametrize("page", SHOP_PAGES + ADMIN_PAGES)
def test_anonymous_visitor_is_sent_to_sign_in_and_back(client, shop, page):
    path = page.format(**shop[1])
    response = client.get(path)
    assert response.status_code == 302
    assert response.headers["Location"] == f"/login?next={quote(path, safe='/')}"


@pytest.mark.parametrize("page", SHOP_PAGES + ADMIN_PAGES)
def test_anonymous_htmx_request_gets_401_with_hx_redirect(client, shop, page):
    path = page.format(**shop[1])
    response = client.get(path, headers={"HX-Request": "true"})
    assert response.status_code == 401
    assert response.headers["HX-Redirect"] == f"/login?next={quote(path, safe='/')}"
    assert b"<html" not in response.data


def test_next_keeps_the_query_string(client, shop):
    response = client.get("/products?q=pils&page=2")
    assert response.headers["Location"] == "/login?next=/products?q%3Dpils%26page%3D2"


@pytest.mark.parametrize("role", ["owner", "buyer"])
@pytest.mark.parametrize("page", SHOP_PAGES)
def test_customers_open_shop_pages(client, shop, login_as, role, page):
    users, values = shop
    login_as(users[role])
    assert client.get(page.format(**values)).status_code == 200


@pytest.mark.parametrize("role", ["owner", "buyer"])
@pytest.mark.parametrize("page", ADMIN_PAGES)
def test_customers_are_refused_the_back_office(client, shop, login_as, role, page):
    users, values = shop
    login_as(users[role])
    response = client.get(page.format(**values))
    assert response.status_code == 403
    assert "Not for this account" in response.get_data(as_text=True)


@pytest.mark.parametrize("role", ["staff", "admin"])
@pytest.mark.parametrize("page", ADMIN_PAGES)
def test_staff_open_back_office_pages(client, shop, login_as, role, page):
    users, values = shop
    login_as(users[role])
    assert client.get(page.format(**values)).status_code == 200


@pytest.mark.parametrize("role", ["staff", "admin"])
@pytest.mark.parametrize("page", [p for p in SHOP_PAGES if p != "/"])
def test_staff_are_refused_shop_pages(client, shop, login_as, role, page):
    users, values = shop
    login_as(users[role])
    assert client.get(page.format(**values)).status_code == 403


@pytest.mark.parametrize("role", ["staff", "admin"])
def test_start_page_sends_staff_to_the_back_office(client, shop, login_as, role):
    login_as(shop[0][role])
    response = client.get("/")
    assert response.status_code == 302
    assert response.headers["Location"] == "/admin/"


@pytest.mark.parametrize("role", ["staff", "admin"])
def test_staff_cannot_post_to_shop_actions(client, shop, login_as, role):
    users, values = shop
    login_as(users[role])
    assert client.post("/cart/add", data={"sku": values["sku"], "quantity": "1"}).status_code == 403
    assert client.post(f"/orders/{values['number']}/reorder").status_code == 403


def test_customers_cannot_post_back_office_actions(client, shop, login_as):
    users, values = shop
    login_as(users["buyer"])
    assert client.post(f"/admin/orders/{values['number']}/confirm").status_code == 403
    assert orders.get_order(values["number"]).status == "placed"
    assert client.post(f"/admin/price-lists/{values['list_id']}", data={"delete": "1"}).status_code == 403
    assert db.session.get(PriceList, values["list_id"]).tiers


@pytest.mark.parametrize(
    "page",
    [
        "/admin/orders/2601-999999",
        "/admin/products/NOPE",
        "/admin/companies/999999",
        "/admin/price-lists/999999",
        "/orders/2601-999999",
        "/products/NOPE",
    ],
)
def test_unknown_records_are_404_for_those_allowed_to_look(client, shop, login_as, page):
    users, _ = shop
    login_as(users["admin" if page.startswith("/admin") else "buyer"])
    assert client.get(page).status_code == 404


@pytest.mark.parametrize(
    "role, pages",
    [
        ("buyer", {"/account/": 200, "/account/users": 403, "/admin/users": 403}),
        ("owner", {"/account/": 200, "/account/users": 200, "/admin/users": 403}),
        ("staff", {"/account/": 200, "/account/users": 403, "/admin/users": 403}),
        ("admin", {"/account/": 200, "/account/users": 403, "/admin/users": 200}),
    ],
)
def test_account_pages_are_for_their_roles(client, shop, login_as, role, pages):
    login_as(shop[0][role])
    assert {page: client.get(page).status_code for page in pages} == pages


@pytest.mark.parametrize("page", ["/account/", "/account/users", "/admin/users"])
def test_anonymous_visitor_signs_in_before_account_pages(client, shop, page):
    response = client.get(page)
    assert response.status_code == 302 and response.headers["Location"].startswith("/login")
