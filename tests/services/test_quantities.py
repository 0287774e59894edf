"""Quantity rules: what a typed quantity means, minimums, steps, and stock."""

import pytest

from sipup.exceptions import InvalidQuantity
from sipup.services.parsing import parse_quantity
from sipup.services.quantities import quantity_problem, stock_problem


def problem_with(text):
    with pytest.raises(InvalidQuantity) as error:
        parse_quantity(text)
    return str(error.value)


@pytest.mark.parametrize("text, quantity", [("1", 1), (" 24 ", 24), ("+6", 6), ("007", 7), ("100000", 100_000)])
def test_whole_numbers_are_quantities(text, quantity):
    assert parse_quantity(text) == quantity


def test_zero_is_refused():
    assert problem_with("0") == "Quantity 0 must be at least 1."


def test_negative_is_refused():
    assert problem_with("-3") == "Quantity -3 must be at least 1."
    assert problem_with("--3") == "Quantity “--3” is not a number."


@pytest.mark.parametrize("text", ["1.5", "2,5"])
def test_fractions_are_refused_as_not_whole_packs(text):
    assert problem_with(text) == f"Quantity “{text}” is not a whole number of packs."


def test_more_than_the_maximum_is_refused():
    assert problem_with("100001") == "Quantity 100001 is more than 100,000 packs; call us for such an order."


def test_a_number_with_thousands_of_digits_is_refused_as_too_many():
    message = problem_with("9" * 5000)

    assert message.startswith("Quantity 99999999999999999999")
    assert message.endswith("is more than 100,000 packs; call us for such an order.")
    assert len(message) < 120


@pytest.mark.parametrize("text", ["abc", "5 cases", "²", "1/2"])
def test_not_a_number_is_named(text):
    assert problem_with(text) == f"Quantity “{text}” is not a number."


def test_long_nonsense_is_shortened_in_the_message():
    assert problem_with("x" * 500) == f"Quantity “{'x' * 20}” is not a number."


@pytest.mark.parametrize("text", ["", "   ", None])
def test_empty_asks_for_a_quantity(text):
    assert problem_with(text) == "Enter a quantity."


def test_below_the_minimum(app, make_product):
    product = make_product(sku="WATER-12", min_qty=5)

    assert quantity_problem(product, 4) == "The minimum for WATER-12 is 5."
    assert quantity_problem(product, 5) is None


def test_not_a_multiple_of_the_step_suggests_the_nearest_valid_quantities(app, make_product):
    product = make_product(sku="COLA-6", min_qty=6, qty_step=6)

    assert quantity_problem(product, 8) == "COLA-6 comes in steps of 6: order 6 or 12."
    assert quantity_problem(product, 13) == "COLA-6 comes in steps of 6: order 12 or 18."
    assert quantity_problem(product, 18) is None


def test_step_suggestion_never_goes_below_the_minimum(app, make_product):
    product = make_product(sku="KEG-30", min_qty=10, qty_step=4)

    # 8 would be a multiple of 4 but is below the minimum of 10.
    assert quantity_problem(product, 10) == "KEG-30 comes in steps of 4: order 12."


def test_stock_covers_the_quantity(app, make_product):
    product = make_product(stock_on_hand=10, stock_reserved=4)

    assert product.available == 6
    assert stock_problem(product, 6) is None


def test_stock_short_names_what_is_left(app, make_product):
    product = make_product(sku="JUICE-1", stock_on_hand=10, stock_reserved=4)

    assert stock_problem(product, 7) == "Only 6 of JUICE-1 in stock."


def test_stock_fully_reserved_is_out_of_stock(app, make_product):
    product = make_product(sku="JUICE-2", stock_on_hand=5, stock_reserved=5)

    assert stock_problem(product, 1) == "JUICE-2 is out of stock."


def test_backorder_allowed_ignores_stock(app, make_product):
    product = make_product(stock_on_hand=0, backorder_allowed=True)

    assert stock_problem(product, 50) is None
