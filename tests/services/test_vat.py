"""VAT per class and country of delivery: the rate per line and the summary per rate on cart, order and
invoice, the deposit's own rate, reverse charge, and orders placed before rates per line."""

from decimal import Decimal

import pytest

from sipup.extensions import db
from sipup.models import OrderLine
from sipup.services import cart as carts
from sipup.services import orders, vat

D = Decimal


@pytest.fixture
def drinks(make_product):
    """A crate of beer (standard rate, 3.42 deposit) and a case of milk (reduced rate, 1.50 deposit)."""
    beer = make_product(sku="BEER-1", base_price=D("10.00"), deposit=D("3.42"))
    milk = make_product(sku="MILK-1", base_price=D("2.00"), deposit=D("0.15"), vat_class="reduced")
    return beer, milk


def fill(buyer, drinks):
    beer, milk = drinks
    carts.add(buyer.id, beer, 2)
    carts.add(buyer.id, milk, 10)


def test_rates_per_class_for_germany_and_the_deposit_at_the_rate_of_what_it_holds(app, buyer, drinks):
    fill(buyer, drinks)
    cart = carts.priced(buyer, vat.rules())
    assert [(line.vat_rate, line.deposit_vat_rate) for line in cart.lines] == [(D("0.19"),) * 2, (D("0.07"),) * 2]
    # 19 % on 20.00 + 6.84 = 5.0996; 7 % on 20.00 + 1.50 = 1.505, half up
    assert [(row.percent, row.base, row.vat) for row in cart.vat_summary] == [
        ("19 %", D("26.84"), D("5.10")),
        ("7 %", D("21.50"), D("1.51")),
    ]
    assert (cart.goods_total, cart.deposit_total, cart.vat_total, cart.total) == (
        D("40.00"),
        D("8.34"),
        D("6.61"),
        D("54.95"),
    )


def test_cart_order_and_invoice_show_the_rate_per_line_and_vat_per_rate(
    app, client, login_as, buyer, drinks, make_user
):
    fill(buyer, drinks)
    login_as(buyer)
    page = client.get("/cart").get_data(as_text=True)
    assert "VAT 19 % on €26.84" in page and "€5.10" in page and "VAT 7 % on €21.50" in page and "€1.51" in page

    order = orders.checkout(buyer, vat.rules(), address_id=buyer.company.addresses[0].id)
    assert [line.vat_rate for line in order.lines] == [D("0.19"), D("0.07")]
    assert (order.vat_total, order.total) == (D("6.61"), D("54.95"))
    staff = make_user("staff")
    for action in ("confirm", "ship", "invoice"):
        orders.transition(order.number, action, staff.id)
    invoice = orders.company_invoices(buyer.company_id).items[0]
    for url in (f"/orders/{order.number}", f"/invoices/{invoice.number}"):
        page = client.get(url).get_data(as_text=True)
        assert "VAT 19 % on €26.84" in page and "VAT 7 % on €21.50" in page, url
        assert '<td class="num" data-label="VAT">7 %</td>' in page, url


def test_a_deposit_at_one_configured_class(app, make_app, buyer, drinks):
    _beer, milk = drinks
    with make_app(VAT_DEPOSIT="standard").app_context():
        (line,) = carts.price_lines(None, [(milk, 10)], vat.rules(), "DE").lines
    assert (line.vat_rate, line.deposit_vat_rate) == (D("0.07"), D("0.19"))


def test_rates_follow_the_country_of_delivery(app, make_app, drinks):
    beer, milk = drinks
    app = make_app(
        VAT_RATES='{"DE": {"standard": "0.19", "reduced": "0.07", "zero": "0"}, '
        '"AT": {"standard": "0.20", "reduced": "0.10", "zero": "0"}}'
    )
    with app.app_context():
        rules = vat.rules()
        at = carts.price_lines(None, [(beer, 1), (milk, 1)], rules, "AT")
        fr = carts.price_lines(None, [(milk, 1)], rules, "FR")  # not listed: SIPUP_VAT_RATE on every class
    assert [line.vat_rate for line in at.lines] == [D("0.20"), D("0.10")]
    assert fr.lines[0].vat_rate == D("0.20")


def test_reverse_charge_for_an_eu_business_abroad_with_a_valid_vat_id_when_on(
    app, make_app, make_company, make_user, drinks
):
    beer, _milk = drinks
    company = make_company(vat_id="ATU13585627")
    company.addresses[0].country = "AT"
    db.session.commit()
    buyer = make_user("buyer", company)
    carts.add(buyer.id, beer, 1)
    assert not vat.rules().reverse_charged("AT", "ATU13585627")  # off by default
    app = make_app(VAT_REVERSE_CHARGE=True)
    with app.app_context():
        rules = vat.rules()
        assert not rules.reverse_charged("AT", "ATU13585628")  # wrong check digit
        assert not rules.reverse_charged("DE", "DE136695976")  # the shop's own country
        order = orders.checkout(buyer, rules, address_id=company.addresses[0].id)
        assert (order.reverse_charge, order.vat_total, order.total) == (True, D("0.00"), D("13.42"))
        staff = make_user("staff")
        for action in ("confirm", "ship", "invoice"):
            orders.transition(order.number, action, staff.id)
        client = app.test_client()
        client.post("/login", data={"email": buyer.email, "password": "correct horse battery"})
        invoice = orders.company_invoices(company.id).items[0]
        page = client.get(f"/invoices/{invoice.number}").get_data(as_text=True)
    assert "Reverse charge" in page and "ATU13585627" in page


def test_orders_placed_before_rates_per_line_keep_their_totals(app, client, login_as, buyer, drinks):
    fill(buyer, drinks)
    order = orders.checkout(buyer, D("0.20"), address_id=buyer.company.addresses[0].id)
    db.session.execute(db.update(OrderLine).values(vat_rate=None, deposit_vat_rate=None))
    db.session.commit()
    db.session.expire_all()
    order = orders.get_order(order.number)
    (row,) = vat.order_summary(order)
    assert (row.rate, row.vat) == (None, order.vat_total)
    login_as(buyer)
    page = client.get(f"/orders/{order.number}").get_data(as_text=True)
    assert f"<dt>VAT</dt><dd>€{order.vat_total}</dd>" in page.replace("\n", "")


def test_staff_set_a_products_vat_class_and_a_wrong_one_is_named(app, client, login_as, make_user, drinks):
    beer, _milk = drinks
    login_as(make_user("staff"))
    form = {
        "sku": beer.sku,
        "name": beer.name,
        "category_id": beer.category_id,
        "sell_unit": beer.sell_unit,
        "base_price": "10.00",
        "deposit": "3.42",
        "min_qty": "1",
        "qty_step": "1",
        "stock_on_hand": "100",
        "low_stock_threshold": "5",
        "active": "on",
    }
    wrong = client.post(f"/admin/products/{beer.sku}", data={**form, "vat_class": "luxury"})
    assert wrong.status_code == 422 and "Choose the VAT class" in wrong.get_data(as_text=True)
    assert client.post(f"/admin/products/{beer.sku}", data={**form, "vat_class": "zero"}).status_code == 302
    db.session.refresh(beer)
    assert beer.vat_class == "zero"
