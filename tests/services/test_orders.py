"""Orders on account: checkout, credit, the order's life from placed to paid, and reorder."""

import re
from datetime import timedelta
from decimal import Decimal

import pytest
from flask_babel import force_locale
from sqlalchemy import event

from sipup.exceptions import AlreadyPlaced, EmptyCart, InvalidInput, InvalidTransition, NotFound, OutOfStock
from sipup.extensions import db
from sipup.i18n import money, shown
from sipup.models import Invoice, Order, OrderStatus, Payment, Product, utcnow
from sipup.services import cart as carts
from sipup.services import orders, payments

D = Decimal
S = OrderStatus


@pytest.fixture
def place(app):
    """Put (product, quantity) pairs in the user's cart and check out to the company's first address."""

    def place(user, *items, **fields):
        for product, quantity in items:
            carts.add(user.id, product, quantity)
        fields.setdefault("address_id", user.company.addresses[0].id)
        return orders.checkout(user, app.config["VAT_RATE"], **fields)

    return place


@pytest.fixture
def staff(make_user):
    return make_user("staff")


@pytest.fixture
def advance(staff):
    """Apply transitions in turn, as staff would."""

    def advance(order, *actions, **fields):
        for action in actions:
            order = orders.transition(order.number, action, staff.id, **fields)
        return order

    return advance


def stock(product):
    db.session.refresh(product)
    return product.stock_on_hand, product.stock_reserved


# --- checkout ----------------------------------------------------------------------------------


def test_vat_rate_defaults_to_20_percent(app):
    assert app.config["VAT_RATE"] == D("0.20")


def test_checkout_reserves_stock_and_copies_prices_and_deposit(
    app, make_company, make_user, make_product, make_price_list, place
):
    product = make_product(base_price=D("10.00"), deposit=D("3.42"), stock_on_hand=100)
    buyer = make_user("buyer", make_company(price_list=make_price_list("Gastro", [(product, 10, "9.00")])))

    order = place(buyer, (product, 12))

    [line] = order.lines
    assert (line.sku, line.name, line.sell_unit) == (product.sku, product.name, product.sell_unit)
    assert (line.quantity, line.unit_price, line.unit_deposit, line.line_total) == (
        12,
        D("9.00"),
        D("3.42"),
        D("108.00"),
    )
    assert stock(product) == (100, 12)
    assert product.available == 88


def test_order_lines_keep_their_prices_when_the_catalog_changes(app, buyer, make_product, place):
    product = make_product(base_price=D("10.00"), deposit=D("1.50"))
    order = place(buyer, (product, 2))

    product.base_price, product.deposit = D("99.00"), D("9.00")
    db.session.commit()

    line = orders.get_order(order.number).lines[0]
    assert (line.unit_price, line.unit_deposit, line.line_total) == (D("10.00"), D("1.50"), D("20.00"))


def test_checkout_computes_goods_deposit_vat_and_total(app, buyer, make_product, place):
    beer = make_product(base_price=D("10.00"), deposit=D("3.42"))
    water = make_product(base_price=D("4.99"), deposit=D("0.00"))

    order = place(buyer, (beer, 3), (water, 5))

    # goods 30.00 + 24.95; deposit 3 x 3.42; VAT 20 % of 65.21 = 13.042
    assert order.goods_total == D("54.95")
    assert order.deposit_total == D("10.26")
    assert order.vat_total == D("13.04")
    assert order.total == D("78.25")


def test_vat_is_rounded_half_up(app, buyer, make_product):
    product = make_product(base_price=D("1.50"), deposit=D("0.00"))
    carts.add(buyer.id, product, 1)

    order = orders.checkout(buyer, D("0.07"), address_id=buyer.company.addresses[0].id)

    assert order.vat_total == D("0.11")  # 0.105, which half-even would round to 0.10
    assert order.total == D("1.61")


def test_checkout_clears_the_cart_and_records_the_placed_event(app, buyer, make_product, place):
    order = place(buyer, (make_product(), 1), po_reference="  PO-4711 ", note=" ring twice ")

    assert carts.items(buyer.id) == []
    assert [(e.status, e.user_id) for e in order.events] == [(S.PLACED, buyer.id)]
    assert (order.status, order.company_id, order.buyer_id) == (S.PLACED, buyer.company_id, buyer.id)
    assert (order.po_reference, order.note) == ("PO-4711", "ring twice")
    assert order.delivery_address == "Main: " + buyer.company.addresses[0].street + ", 10115 Berlin, DE"


def test_order_number_is_year_month_and_id(app, buyer, make_product, place):
    order = place(buyer, (make_product(), 1))

    assert re.fullmatch(r"\d{4}-\d{6}", order.number)
    assert order.number == f"{order.created_at:%y%m}-{order.id:06d}"
    assert orders.get_order(order.number).id == order.id
    assert orders.get_order(order.number, company_id=buyer.company_id).id == order.id


def test_another_companys_order_is_not_found(app, buyer, make_company, make_product, place):
    order = place(buyer, (make_product(), 1))
    other = make_company()

    with pytest.raises(NotFound, match=f"There is no order “{order.number}”."):
        orders.get_order(order.number, company_id=other.id)


@pytest.mark.parametrize("number", ["", "garbage", "2401-", "24-000001", "2401-00000x", "9912-999999"])
def test_malformed_or_unknown_order_numbers_are_not_found(app, number):
    with pytest.raises(NotFound, match="There is no order"):
        orders.get_order(number)


def test_empty_cart_is_refused(app, buyer):
    with pytest.raises(EmptyCart, match="Your cart is empty."):
        orders.checkout(buyer, D("0.20"), address_id=buyer.company.addresses[0].id)
    assert db.session.scalar(db.select(db.func.count(Order.id))) == 0


def test_an_address_of_another_company_is_refused(app, buyer, make_company, make_product):
    product = make_product()
    carts.add(buyer.id, product, 1)
    foreign_address = make_company().addresses[0]

    for address_id in (foreign_address.id, None, 999_999):
        with pytest.raises(InvalidInput, match="Choose one of your delivery addresses."):
            orders.checkout(buyer, D("0.20"), address_id=address_id)
    assert stock(product) == (100, 0)
    assert len(carts.items(buyer.id)) == 1


def test_a_checkout_key_that_placed_an_order_names_it_and_places_no_other(
    app, buyer, make_company, make_user, make_product, place
):
    product = make_product()
    order = place(buyer, (product, 1), checkout_key="k" * 22)
    carts.add(buyer.id, product, 2)

    with pytest.raises(AlreadyPlaced) as placed:
        orders.checkout(buyer, D("0.20"), address_id=buyer.company.addresses[0].id, checkout_key="k" * 22)

    assert placed.value.number == order.number
    assert stock(product) == (100, 1)
    assert len(carts.items(buyer.id)) == 1
    other = make_user("buyer", make_company())  # the same key of another company places its own order
    assert place(other, (product, 1), checkout_key="k" * 22).number != order.number


@pytest.mark.parametrize("days", [-1, 0])
def test_a_requested_date_before_tomorrow_is_refused(app, buyer, make_product, place, days):
    with pytest.raises(InvalidInput, match="The requested delivery date must be tomorrow or later."):
        place(buyer, (make_product(), 1), requested_date=utcnow().date() + timedelta(days=days))


def test_a_requested_date_from_tomorrow_is_kept(app, buyer, make_product, place):
    tomorrow = utcnow().date() + timedelta(days=1)

    assert place(buyer, (make_product(), 1), requested_date=tomorrow).requested_date == tomorrow


def test_a_line_that_cannot_be_ordered_stops_checkout(app, buyer, make_product, place):
    product = make_product(sku="OLD-1")
    carts.add(buyer.id, product, 1)
    product.active = False
    db.session.commit()

    with pytest.raises(InvalidInput, match="OLD-1 is no longer sold; remove it."):
        place(buyer)
    assert stock(product) == (100, 0)


def test_out_of_stock_when_another_checkout_took_it(app, make_company, make_user, make_product, place):
    product = make_product(sku="KEG-1", stock_on_hand=5)
    first, second = make_user("buyer", make_company()), make_user("buyer", make_company())
    carts.add(second.id, product, 3)  # in the cart while there were still 5

    place(first, (product, 4))
    with pytest.raises(OutOfStock) as error:
        place(second)

    assert str(error.value) == (
        "Only 1 of Product 1 (KEG-1) left: another buyer ordered meanwhile. Change the quantity to 1 or fewer "
        "and try again."
    )
    assert error.value.product_id == product.id
    assert stock(product) == (5, 4)
    assert len(carts.items(second.id)) == 1  # the cart stays, so the buyer can change it


def test_out_of_stock_since_it_was_added_says_so(app, make_company, make_user, make_product, place):
    product = make_product(sku="KEG-2", name="Helles", stock_on_hand=4)
    first, second = make_user("buyer", make_company()), make_user("buyer", make_company())
    carts.add(second.id, product, 2)

    place(first, (product, 4))
    with pytest.raises(OutOfStock, match=r"Helles \(KEG-2\) went out of stock after you added it"):
        place(second)


def test_an_out_of_stock_product_cannot_be_added(app, buyer, make_product):
    product = make_product(sku="GONE-1", name="Bock", stock_on_hand=0)

    with pytest.raises(OutOfStock, match=r"Bock \(GONE-1\) is out of stock"):
        carts.add(buyer.id, product, 1)
    assert carts.items(buyer.id) == []


def test_a_backorderable_product_is_added_with_a_note(app, buyer, make_product):
    product = make_product(sku="BO-1", stock_on_hand=2, backorder_allowed=True)

    carts.add(buyer.id, product, 5)

    line = carts.priced(buyer, D("0.20")).lines[0]
    assert line.backorder_note == "2 of BO-1 in stock; the rest is on backorder, ships when in stock."
    assert line.stock_note is None


def test_out_of_stock_on_one_line_reserves_nothing(app, buyer, make_product, place):
    plenty = make_product(stock_on_hand=100)
    scarce = make_product(stock_on_hand=5)
    carts.add(buyer.id, plenty, 10)
    carts.add(buyer.id, scarce, 5)
    scarce.stock_reserved = 3  # another order reserved some since
    db.session.commit()

    with pytest.raises(OutOfStock):
        place(buyer)

    assert stock(plenty) == (100, 0)
    assert stock(scarce) == (5, 3)
    assert db.session.scalar(db.select(db.func.count(Order.id))) == 0


def test_the_short_line_among_several_is_named_with_what_is_left(app, buyer, make_product, place):
    """Reserved in one statement, refused lines are named as one at a time: here the second by id, with a first
    line whose stock after its own reservation would look short too."""
    first = make_product(sku="FIRST-1", stock_on_hand=10)
    short = make_product(sku="SHORT-1", name="Dunkel", stock_on_hand=5)
    last = make_product(sku="LAST-1", stock_on_hand=100)
    carts.add(buyer.id, last, 1)
    carts.add(buyer.id, short, 4)
    carts.add(buyer.id, first, 6)
    short.stock_reserved = 3  # another order reserved some since
    db.session.commit()

    with pytest.raises(OutOfStock) as error:
        place(buyer)

    assert str(error.value) == (
        "Only 2 of Dunkel (SHORT-1) left: another buyer ordered meanwhile. Change the quantity to 2 or fewer and "
        "try again."
    )
    assert error.value.product_id == short.id
    assert [stock(p) for p in (first, short, last)] == [(10, 0), (5, 3), (100, 0)]
    assert len(carts.items(buyer.id)) == 3


def test_a_checkout_reserves_all_its_lines_in_one_statement(app, buyer, make_product):
    """The statements of a checkout, as many for four lines as for one: the company lock, one read under it
    (credit included), the cart, one reservation, the rows written (the lines in one), the cart emptied, the
    mail job."""
    products = [make_product(stock_on_hand=50) for _ in range(4)]
    for product in reversed(products):
        carts.add(buyer.id, product, 2)
    address_id = buyer.company.addresses[0].id
    db.session.commit()
    db.session.refresh(buyer)  # what the signed-in request has loaded already
    statements = []

    def note(_conn, _cursor, statement, *_args):
        statements.append(" ".join(statement.split()[:3]))

    event.listen(db.engine, "before_cursor_execute", note)
    try:
        orders.checkout(buyer, D("0.20"), address_id=address_id, checkout_key="k" * 22)
    finally:
        event.remove(db.engine, "before_cursor_execute", note)

    assert [stock(product) for product in products] == [(50, 2)] * 4
    assert sum(s.startswith("UPDATE products") for s in statements) == 1
    assert not any(s.startswith(("SAVEPOINT", "RELEASE")) for s in statements)
    assert len(statements) == 11, statements


def test_backorder_products_reserve_beyond_stock(app, buyer, make_product, place):
    product = make_product(stock_on_hand=2, backorder_allowed=True)

    place(buyer, (product, 5))

    assert stock(product) == (2, 5)


# --- credit ------------------------------------------------------------------------------------


def test_over_the_credit_left_the_order_waits_on_credit_hold(app, make_company, make_user, make_product, place):
    buyer = make_user("buyer", make_company(credit_limit="100.00"))
    product = make_product(base_price=D("50.00"), deposit=D("0.00"))

    order = place(buyer, (product, 2))  # 100.00 + 20 % VAT = 120.00

    assert order.status == S.CREDIT_HOLD
    [event] = order.events
    assert event.status == S.CREDIT_HOLD
    assert shown(event.note) == "Order total €120.00 exceeds the credit left (€100.00); awaiting credit review."
    with force_locale("de"):  # kept as the message and its values: each reader gets it in their language
        assert shown(event.note) == (
            "Der Auftragswert von 120,00\xa0€ übersteigt den verfügbaren Kreditrahmen (100,00\xa0€); "
            "wartet auf Kreditprüfung."
        )
    assert stock(product) == (100, 2)  # reserved while credit is reviewed


def test_exactly_the_credit_left_is_placed(app, make_company, make_user, make_product, place):
    buyer = make_user("buyer", make_company(credit_limit="120.00"))

    assert place(buyer, (make_product(base_price=D("50.00"), deposit=D("0.00")), 2)).status == S.PLACED


def test_credit_position_counts_open_invoices_and_uninvoiced_orders(
    app, make_company, make_user, make_product, place, advance
):
    company = make_company(credit_limit="1000.00")
    buyer = make_user("buyer", company)
    product = make_product(base_price=D("10.00"), deposit=D("0.00"))
    placed = place(buyer, (product, 1))  # 12.00
    confirmed = advance(place(buyer, (product, 2)), "confirm")  # 24.00
    shipped = advance(place(buyer, (product, 3)), "confirm", "ship")  # 36.00
    invoiced = advance(place(buyer, (product, 4)), "confirm", "ship", "invoice")  # 48.00
    advance(place(buyer, (product, 5)), "confirm", "ship", "invoice", "pay")  # 60.00, paid
    advance(place(buyer, (product, 6)), "cancel")  # 72.00, cancelled
    assert [o.total for o in (placed, confirmed, shipped, invoiced)] == [D("12.00"), D("24.00"), D("36.00"), D("48.00")]

    credit = orders.credit_position(company)

    assert credit == {
        "limit": D("1000.00"),
        "open_balance": D("48.00"),
        "uninvoiced": D("72.00"),
        "used": D("120.00"),
        "left": D("880.00"),
    }


def test_a_partly_paid_invoice_counts_what_is_still_open(app, buyer, make_product, place, advance):
    order = advance(
        place(buyer, (make_product(base_price=D("100.00"), deposit=D("0.00")), 1)), "confirm", "ship", "invoice"
    )
    invoice = db.session.scalar(db.select(Invoice).where(Invoice.order_id == order.id))
    invoice.paid_amount = D("20.00")
    db.session.commit()

    assert orders.credit_position(buyer.company)["open_balance"] == D("100.00")


def test_credit_used_by_earlier_orders_puts_the_next_on_hold(app, make_company, make_user, make_product, place):
    buyer = make_user("buyer", make_company(credit_limit="200.00"))
    product = make_product(base_price=D("50.00"), deposit=D("0.00"))

    assert place(buyer, (product, 2)).status == S.PLACED  # 120.00
    assert place(buyer, (product, 2)).status == S.CREDIT_HOLD  # 120.00 more, 80.00 left


def test_release_from_credit_hold_places_the_order(app, make_company, make_user, make_product, place, advance, staff):
    buyer = make_user("buyer", make_company(credit_limit="0.00"))
    order = place(buyer, (make_product(), 1))

    order = advance(order, "release")

    assert order.status == S.PLACED
    assert [(e.status, e.user_id) for e in order.events] == [(S.CREDIT_HOLD, buyer.id), (S.PLACED, staff.id)]


# --- the order's life --------------------------------------------------------------------------


def test_cancel_releases_the_reserved_stock(app, buyer, make_product, place, advance):
    product = make_product(stock_on_hand=10)
    order = place(buyer, (product, 4))

    order = advance(order, "confirm", "cancel")

    assert order.status == S.CANCELLED
    assert stock(product) == (10, 0)


def test_cancel_from_credit_hold_releases_the_reserved_stock(
    app, make_company, make_user, make_product, place, advance
):
    product = make_product(stock_on_hand=10)
    order = place(make_user("buyer", make_company(credit_limit="0.00")), (product, 4))

    advance(order, "cancel")

    assert stock(product) == (10, 0)


def test_ship_deducts_on_hand_and_reserved(app, buyer, make_product, place, advance):
    product = make_product(stock_on_hand=10)
    other = make_product(stock_on_hand=7)
    order = place(buyer, (product, 4), (other, 7))

    order = advance(order, "confirm", "ship")

    assert order.status == S.SHIPPED
    assert stock(product) == (6, 0)
    assert stock(other) == (0, 0)


def test_shipping_more_than_on_hand_is_refused(app, buyer, make_product, place, advance):
    product = make_product(sku="PRE-1", stock_on_hand=2, backorder_allowed=True)
    order = advance(place(buyer, (product, 5)), "confirm")

    with pytest.raises(InvalidTransition, match="Not enough PRE-1 on hand to ship 5; correct the stock first."):
        advance(order, "ship")

    assert orders.get_order(order.number).status == S.CONFIRMED
    assert stock(product) == (2, 5)


def test_invoice_numbers_are_gap_free_per_year(app, buyer, make_product, place, advance):
    year = utcnow().year
    first = advance(place(buyer, (make_product(), 1)), "confirm", "ship", "invoice")
    second = advance(place(buyer, (make_product(), 1)), "confirm", "ship", "invoice")

    invoices = db.session.scalars(db.select(Invoice).order_by(Invoice.id)).all()
    assert [i.number for i in invoices] == [f"INV-{year}-000001", f"INV-{year}-000002"]
    assert [i.order_id for i in invoices] == [first.id, second.id]
    assert invoices[0].amount == first.total
    assert invoices[0].due_date == utcnow().date() + timedelta(days=30)
    with force_locale("de"):
        assert shown(first.events[-1].note) == f"Rechnung INV-{year}-000001, fällig am {invoices[0].due_date:%d.%m.%Y}."


def test_a_rolled_back_transaction_does_not_use_up_an_invoice_number(app, buyer, make_product, place, advance):
    year = utcnow().year
    assert orders.next_number(f"invoice-{year}") == 1
    db.session.rollback()
    advance(place(buyer, (make_product(), 1)), "confirm", "ship", "invoice")
    assert orders.next_number(f"invoice-{year}") == 2
    db.session.rollback()

    advance(place(buyer, (make_product(), 1)), "confirm", "ship", "invoice")

    numbers = db.session.scalars(db.select(Invoice.number).order_by(Invoice.id)).all()
    assert numbers == [f"INV-{year}-000001", f"INV-{year}-000002"]


def test_pay_records_the_payment_and_marks_the_invoice_paid(app, buyer, make_product, place, advance):
    order = advance(place(buyer, (make_product(), 2)), "confirm", "ship", "invoice")

    order = advance(order, "pay", payment_reference=" SEPA-2024-0001 ")

    invoice = db.session.scalar(db.select(Invoice).where(Invoice.order_id == order.id))
    [payment] = db.session.scalars(db.select(Payment)).all()
    assert order.status == S.PAID
    assert (payment.reference, payment.amount, payment.invoice_id) == ("SEPA-2024-0001", order.total, invoice.id)
    assert payment.company_id == buyer.company_id
    assert invoice.paid_amount == invoice.amount and invoice.open_amount == D("0.00")
    assert invoice.paid_at is not None
    paid = f"Payment SEPA-2024-0001 of {money(invoice.amount)} applied to {invoice.number}."
    assert shown(order.events[-1].note) == paid
    assert orders.credit_position(buyer.company)["used"] == D("0.00")


def test_a_payment_reference_that_looks_like_a_stored_message_is_kept_as_typed(
    app, buyer, make_product, place, advance
):
    crafted = 'i18n:["%(a)999999999s",{"a":"b"}]'
    for reference in ("i18n:x", crafted):
        order = advance(place(buyer, (make_product(), 1)), "confirm", "ship", "invoice")
        order = advance(order, "pay", payment_reference=reference)
        invoice = db.session.scalar(db.select(Invoice).where(Invoice.order_id == order.id))
        assert order.status == S.PAID
        assert (
            shown(order.events[-1].note)
            == f"Payment {reference} of {money(invoice.amount)} applied to {invoice.number}."
        )
    # From the bank's file too: the job's result names the reference as it came.
    result = payments.apply_payment("i18n:y", buyer.company.name, "1.00")
    assert shown(result).startswith("i18n:y") and "1.00" in shown(result)


def test_pay_without_a_reference_makes_one(app, buyer, make_product, place, advance):
    order = advance(place(buyer, (make_product(), 1)), "confirm", "ship", "invoice", "pay")

    reference = db.session.scalar(db.select(Payment.reference))
    assert re.fullmatch(rf"MANUAL-INV-{utcnow().year}-000001-[0-9a-f]{{6}}", reference)
    assert order.status == S.PAID


def test_a_reused_payment_reference_is_refused(app, buyer, make_product, place, advance):
    first = advance(place(buyer, (make_product(), 1)), "confirm", "ship", "invoice")
    second = advance(place(buyer, (make_product(), 1)), "confirm", "ship", "invoice")
    advance(first, "pay", payment_reference="SEPA-1")

    with pytest.raises(InvalidInput, match="Payment reference “SEPA-1” was already used."):
        advance(second, "pay", payment_reference="SEPA-1")

    assert orders.get_order(second.number).status == S.INVOICED
    assert db.session.scalar(db.select(db.func.count(Payment.id))) == 1


@pytest.mark.parametrize(
    "done, action, message",
    [
        ((), "ship", "is placed; “Mark shipped” is not possible now."),
        ((), "pay", "is placed; “Mark paid” is not possible now."),
        ((), "release", "is placed; “Release from credit hold” is not possible now."),
        (("confirm",), "confirm", "is confirmed; “Confirm” is not possible now."),
        (("confirm", "ship"), "cancel", "is shipped; “Cancel” is not possible now."),
        (("cancel",), "confirm", "is cancelled; “Confirm” is not possible now."),
    ],
)
def test_invalid_transitions_are_refused(app, buyer, make_product, place, advance, done, action, message):
    product = make_product(stock_on_hand=10)
    order = advance(place(buyer, (product, 2)), *done)
    number, status, before = order.number, order.status, stock(product)

    with pytest.raises(InvalidTransition) as error:
        advance(order, action)

    assert str(error.value) == f"Order {number} {message}"
    db.session.expire_all()
    assert orders.get_order(number).status == status
    assert stock(product) == before


def test_an_unknown_action_is_refused(app, buyer, make_product, place, staff):
    order = place(buyer, (make_product(), 1))

    with pytest.raises(InvalidTransition, match="“explode” is not something an order can do."):
        orders.transition(order.number, "explode", staff.id)


def test_available_transitions_follow_the_status(app, buyer, make_product, place):
    order = place(buyer, (make_product(), 1))

    assert orders.available_transitions(order) == [("confirm", "Confirm"), ("cancel", "Cancel")]


# --- reorder -----------------------------------------------------------------------------------


def test_reorder_uses_todays_prices_and_says_what_changed(app, buyer, make_product, place):
    dearer = make_product(sku="BEER-1", name="Pils", base_price=D("10.00"))
    same = make_product(sku="WATER-1", base_price=D("5.00"))
    gone = make_product(sku="OLD-1", name="Radler")
    order = place(buyer, (dearer, 2), (same, 3), (gone, 1))
    dearer.base_price = D("11.50")
    gone.active = False
    db.session.commit()

    added, changes = orders.reorder(buyer, orders.get_order(order.number))

    assert added == 2
    assert changes == [
        "BEER-1 Pils: price up from €10.00 to €11.50.",
        "OLD-1 Radler is no longer sold and was left out.",
    ]
    assert {(i.product.sku, i.quantity) for i in carts.items(buyer.id)} == {("BEER-1", 2), ("WATER-1", 3)}
    assert carts.priced(buyer, D("0.20")).lines[0].unit_price == D("11.50")
    with force_locale("de"):  # what the buyer reads is in their language, amounts as they write them
        assert orders.reorder(buyer, orders.get_order(order.number))[1] == [
            "BEER-1 Pils: Preis gestiegen von 10,00\xa0€ auf 11,50\xa0€.",
            "OLD-1 Radler wird nicht mehr verkauft und wurde ausgelassen.",
        ]


def test_reorder_reports_a_lower_price_and_short_stock(app, buyer, make_product, place, advance):
    product = make_product(sku="COLA-1", name="Cola", base_price=D("8.00"), stock_on_hand=10)
    order = advance(place(buyer, (product, 6)), "confirm", "ship")  # 4 left
    product = db.session.get(Product, product.id)
    product.base_price = D("7.50")
    db.session.commit()

    added, changes = orders.reorder(buyer, order)

    assert added == 1
    assert changes == ["COLA-1 Cola: price down from €8.00 to €7.50.", "Only 4 of COLA-1 in stock."]


def test_reorder_leaves_out_a_quantity_that_no_longer_fits(app, buyer, make_product, place):
    product = make_product(sku="COLA-6", name="Cola")
    order = place(buyer, (product, 4))
    product.min_qty = product.qty_step = 6
    db.session.commit()

    added, changes = orders.reorder(buyer, order)

    assert added == 0
    assert changes == ["The minimum for COLA-6 is 6. COLA-6 was left out."]
    assert carts.items(buyer.id) == []


# --- one buyer's requests at once (two tabs, a double click) ----------------------------------------


@pytest.mark.parametrize("meanwhile, expected", [("changed to 10", 13), ("removed", 3)])
def test_a_cart_line_changed_by_another_request_meanwhile_is_read_again(
    app, buyer, make_product, monkeypatch, meanwhile, expected
):
    from sqlalchemy import delete, update

    from sipup.models import CartItem

    product = make_product()
    carts.add(buyer.id, product, 2)
    real_check, checked = carts.quantity_problem, []

    def check_while_another_request_commits(item, quantity):
        if not checked:  # between this request's read and its write, another one commits
            with db.engine.begin() as other:
                line = CartItem.user_id == buyer.id
                other.execute(
                    update(CartItem).where(line).values(quantity=10)
                    if meanwhile.startswith("changed")
                    else delete(CartItem).where(line)
                )
        checked.append(quantity)
        return real_check(item, quantity)

    monkeypatch.setattr(carts, "quantity_problem", check_while_another_request_commits)
    assert carts.add(buyer.id, product, 3) == expected
    assert checked == [5, expected]  # computed from the stale line, refused by the database, read again
    assert {i.product_id: i.quantity for i in carts.items(buyer.id)} == {product.id: expected}
    assert carts.count(buyer.id) == 1


def test_a_cart_line_that_keeps_changing_gives_up_with_a_message(app, buyer, make_product, monkeypatch):
    from sqlalchemy import update

    from sipup.models import CartItem

    product = make_product()
    carts.add(buyer.id, product, 2)
    real_check = carts.quantity_problem

    def check_while_another_request_commits(item, quantity):
        with db.engine.begin() as other:
            other.execute(update(CartItem).where(CartItem.user_id == buyer.id).values(quantity=CartItem.quantity + 1))
        return real_check(item, quantity)

    monkeypatch.setattr(carts, "quantity_problem", check_while_another_request_commits)
    with pytest.raises(carts.LineChanged, match="changed in another window while .* was being added"):
        carts.add(buyer.id, product, 3)
    assert carts.items(buyer.id)[0].quantity == 2 + carts.PUT_ATTEMPTS  # only the other requests' changes


def test_skus_are_found_in_any_case_whether_stored_in_upper_case_or_not(app, make_product):
    from sipup.services import catalog

    upper, lower = make_product(sku="BEER-UP"), make_product(sku="cola-low")  # the latter from before upper case
    assert catalog.product_by_sku(" beer-up ") is upper and catalog.product_by_sku("COLA-LOW") is lower
    assert catalog.products_by_skus(["Beer-Up", "Cola-Low", "NONE-1"]) == {"BEER-UP": upper, "COLA-LOW": lower}
    with pytest.raises(NotFound):
        catalog.product_by_sku("none-1")
