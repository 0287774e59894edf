"""The readers of sipup/services/parsing.py: every kind of number and date typed in one place."""

from datetime import date
from decimal import Decimal

import pytest

from sipup.exceptions import InvalidInput
from sipup.services.parsing import page_number, parse_count, parse_date, parse_money, whole_number


@pytest.mark.parametrize("text, number", [("1", 1), (" 42 ", 42), ("007", 7), ("٣", 3), (str(2**31 - 1), 2**31 - 1)])
def test_whole_numbers_are_ids(text, number):
    assert whole_number(text) == number


@pytest.mark.parametrize(
    "text", ["", None, "0", "-1", "+1", "²", "½", "1.0", "1e3", str(2**31), str(2**63), "9" * 5000]
)
def test_anything_else_is_no_id(text):
    assert whole_number(text) is None


def test_page_numbers_past_every_list_or_malformed_show_page_one_with_a_notice():
    assert page_number(None) == (1, None) and page_number("") == (1, None) and page_number("7") == (7, None)
    for text in ("9223372036854775807", "0", "-3", "abc", "²", "1" * 40):
        page, notice = page_number(text)
        assert page == 1 and notice.startswith(f"Page “{text[:20]}” is not a page number")


def test_counts_name_the_field_and_the_range():
    assert parse_count("0", "Stock") == 0
    with pytest.raises(InvalidInput, match="^Stock “²” is not a whole number.$"):
        parse_count("²", "Stock")
    with pytest.raises(InvalidInput, match="^Step must be between 1 and 10,000,000.$"):
        parse_count(str(2**64), "Step", 1)
    with pytest.raises(InvalidInput, match="^Step must be between 1 and 10,000,000.$"):
        parse_count("-3", "Step", 1)


@pytest.mark.parametrize(
    "text, amount", [("12.50", "12.50"), ("12,5", "12.50"), ("1 250,00", "1250.00"), ("0", "0.00"), ("12.500", "12.50")]
)
def test_amounts_are_decimals_of_cents(text, amount):
    assert parse_money(text) == Decimal(amount)


@pytest.mark.parametrize("text", ["NaN", "sNaN", "-sNaN", "Infinity", "-inf", "abc", "", "1,2,5.0"])
def test_what_is_no_amount_is_named(text):
    with pytest.raises(InvalidInput, match=f"^Price “{text}” is not an amount such as 12.50.$"):
        parse_money(text, "Price")


@pytest.mark.parametrize("text", ["-1", "1.005", "1E+9999999999", "10000000000"])
def test_amounts_outside_the_column_are_refused(text):
    with pytest.raises(InvalidInput, match="^Price must be 0 or more with at most two decimals.$"):
        parse_money(text, "Price")


def test_positive_amounts_refuse_zero():
    with pytest.raises(InvalidInput, match="above 0"):
        parse_money("0.00", positive=True)


def test_dates_are_iso_and_inside_the_calendar_we_keep():
    assert parse_date("2026-01-31") == date(2026, 1, 31)
    assert parse_date("  ") is None
    with pytest.raises(InvalidInput, match="^“2026-02-30” is not a date; use YYYY-MM-DD, e.g. 2026-01-31.$"):
        parse_date("2026-02-30")
    with pytest.raises(InvalidInput, match="between 1900 and 2199"):
        parse_date("9999-12-31")
    with pytest.raises(InvalidInput, match="^Dates must look like 2026-01-31.$"):
        parse_date("x", "Dates must look like 2026-01-31.")
