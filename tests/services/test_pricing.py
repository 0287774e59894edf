"""Buyer prices: price list tiers, base prices, the steps a product page shows, and cents rounding."""

from decimal import Decimal

from sipup.services import cart as carts
from sipup.services.pricing import company_price_list_id, load_tiers, money, price_steps, unit_price

D = Decimal


def test_highest_tier_met_wins(app, make_product, make_price_list):
    product = make_product(base_price=D("10.00"))
    # Stored out of order on purpose: load_tiers sorts them by minimum quantity.
    price_list = make_price_list("Gastro", [(product, 50, "8.00"), (product, 1, "9.50"), (product, 10, "9.00")])
    tiers = load_tiers(price_list.id, [product.id])[product.id]

    assert tiers == [(1, D("9.50")), (10, D("9.00")), (50, D("8.00"))]
    assert unit_price(product.base_price, tiers, 1) == D("9.50")
    assert unit_price(product.base_price, tiers, 9) == D("9.50")
    assert unit_price(product.base_price, tiers, 10) == D("9.00")
    assert unit_price(product.base_price, tiers, 49) == D("9.00")
    assert unit_price(product.base_price, tiers, 50) == D("8.00")
    assert unit_price(product.base_price, tiers, 5000) == D("8.00")


def test_no_tier_met_falls_back_to_base_price(app, make_product, make_price_list):
    product = make_product(base_price=D("10.00"))
    price_list = make_price_list("Volume only", [(product, 10, "9.00")])
    tiers = load_tiers(price_list.id, [product.id])[product.id]

    assert unit_price(product.base_price, tiers, 9) == D("10.00")
    assert unit_price(product.base_price, [], 9) == D("10.00")


def test_tiers_of_another_price_list_do_not_apply(app, make_product, make_price_list):
    product = make_product()
    make_price_list("Other", [(product, 1, "1.00")])
    mine = make_price_list("Mine", [(product, 1, "9.00")])

    assert load_tiers(mine.id, [product.id])[product.id] == [(1, D("9.00"))]


def test_company_without_price_list_pays_base_prices(app, make_company, make_user, make_product, make_price_list):
    product = make_product(base_price=D("12.40"))
    make_price_list("Someone else's", [(product, 1, "5.00")])
    user = make_user("buyer", make_company(price_list=None))
    carts.add(user.id, product, 3)

    assert company_price_list_id(user) is None
    assert load_tiers(None, [product.id]) == {}
    cart = carts.priced(user, D("0.20"))
    assert cart.lines[0].unit_price == D("12.40")
    assert cart.goods_total == D("37.20")


def test_company_with_price_list_pays_its_tier_price(app, make_company, make_user, make_product, make_price_list):
    product = make_product(base_price=D("10.00"))
    price_list = make_price_list("Gastro", [(product, 10, "9.00")])
    user = make_user("buyer", make_company(price_list=price_list))
    carts.add(user.id, product, 10)

    assert company_price_list_id(user) == price_list.id
    assert carts.priced(user, D("0.20")).lines[0].unit_price == D("9.00")


def test_staff_without_company_has_no_price_list(app, make_user):
    assert company_price_list_id(make_user("staff")) is None


def test_price_steps_start_at_the_minimum_and_list_each_cheaper_tier(app, make_product):
    product = make_product(base_price=D("10.00"), min_qty=1)
    tiers = [(10, D("9.00")), (50, D("8.00"))]

    assert price_steps(product, tiers) == [(1, D("10.00")), (10, D("9.00")), (50, D("8.00"))]


def test_price_steps_fold_tiers_below_the_minimum_into_the_first_step(app, make_product):
    product = make_product(base_price=D("10.00"), min_qty=5)
    tiers = [(1, D("9.50")), (5, D("9.20")), (20, D("9.20")), (30, D("8.80"))]

    # The tier at 20 repeats the price already shown, so it is left out.
    assert price_steps(product, tiers) == [(5, D("9.20")), (30, D("8.80"))]


def test_price_steps_without_tiers_show_the_base_price(app, make_product):
    product = make_product(base_price=D("10.00"), min_qty=2)

    assert price_steps(product, []) == [(2, D("10.00"))]


def test_price_steps_name_quantities_that_can_be_ordered(app, make_product):
    # Sold in sixes: a tier from 10 first applies to an order of 12.
    product = make_product(base_price=D("10.00"), min_qty=6, qty_step=6)
    tiers = [(10, D("9.00")), (11, D("8.50")), (40, D("8.00"))]

    assert price_steps(product, tiers) == [(6, D("10.00")), (12, D("8.50")), (42, D("8.00"))]


def test_money_rounds_half_up_to_cents():
    assert money(D("2.675")) == D("2.68")
    assert money(D("2.665")) == D("2.67")  # half-even would give 2.66
    assert money(D("0.105")) == D("0.11")
    assert money(D("0.104")) == D("0.10")
    assert money(D("-0.005")) == D("-0.01")
    assert money(7) == D("7.00")
    assert str(money("3.5")) == "3.50"


def test_money_filter_puts_the_sign_before_the_symbol(app):
    money = app.jinja_env.filters["money"]
    assert money(Decimal("1234.5")) == "€1,234.50"
    assert money(Decimal("-163.18")) == "−€163.18"
    assert money(None) == "–"
