"""Reading what people type and upload: ids, counts, quantities, money and dates, each kind in one place.

Every reader accepts what a person would write and refuses the rest with a message naming the value, never
with an exception of Python's own: `Decimal("NaN")` cannot be compared, "²" passes `str.isdigit()` but not
`int()`, and SQLite cannot bind an integer of 2**63 or more. New fields use these, and get that right.

    whole_number("12")                        # 12; None for "", "²", "-3", "1e3", 30 digits (ids, pages)
    page_number("9223372036854775807")        # (1, "Page “…” is not a page number; showing page 1.")
    parse_count("5", "Stock on hand", 0)      # 5, else InvalidInput naming the label and the range
    parse_quantity("24")                      # 24 packs, else InvalidQuantity saying why
    parse_money("12,50", "Price")             # Decimal("12.50"), else InvalidInput
    parse_date("2026-01-31")                  # date(2026, 1, 31); None when empty; else InvalidInput
"""

import re
from datetime import date
from decimal import Decimal, InvalidOperation

from ..exceptions import InvalidInput, InvalidQuantity

# Ids are INT columns: a longer number is no id of ours, and SQLite cannot even bind one past 2**63.
MAX_ID = 2**31 - 1
MAX_COUNT = 10_000_000  # stock levels, minimums, steps: far above any real one, far below 2**31
MAX_QUANTITY = 100_000
MAX_MONEY = Decimal("10000000000")  # Numeric(12, 2) holds up to 9,999,999,999.99
CENT = Decimal("0.01")
FIRST_DATE, LAST_DATE = date(1900, 1, 1), date(2199, 12, 31)  # date arithmetic stays inside date's range
# Digits of any script int() reads (not "²", which isdigit() accepts and int() refuses); leading zeros apart.
WHOLE_NUMBER = re.compile(r"([+-]?)0*(\d+)")
LONGEST = 18  # digits: more is above every limit here, and int() of thousands of digits is refused by Python


def _whole(text):
    """(sign, digits) of a whole number written in text, else None."""
    match = WHOLE_NUMBER.fullmatch(str(text if text is not None else "").strip())
    return match.groups() if match else None


def _value(sign, digits):
    """The number, or one past every limit (with its sign) when it has too many digits to be meant."""
    value = int(digits) if len(digits) <= LONGEST else 10**LONGEST
    return -value if sign == "-" else value


def whole_number(text, minimum=1, maximum=MAX_ID):
    """A positive id or page number typed into a form or URL, else None ("²" and 30 digits are None too)."""
    found = _whole(text)
    if found is None or found[0]:
        return None
    value = _value(*found)
    return value if minimum <= value <= maximum else None


def page_number(text):
    """The ?page= argument as (page, None), or (1, a notice naming the bad value); a missing one is page 1."""
    if text is None or text == "":
        return 1, None
    page = whole_number(text)
    if page:
        return page, None
    return 1, f"Page “{str(text)[:20]}” is not a page number; showing page 1."


def parse_count(text, label, minimum=0, maximum=MAX_COUNT):
    """A whole number from minimum to maximum (stock, minimum quantities, days), else InvalidInput naming label."""
    raw = str(text if text is not None else "").strip()
    found = _whole(raw)
    if found is None:
        raise InvalidInput(f"{label} “{raw[:20]}” is not a whole number.")
    value = _value(*found)
    if not minimum <= value <= maximum:
        raise InvalidInput(f"{label} must be between {minimum:,} and {maximum:,}.")
    return value


def parse_quantity(text):
    """A quantity typed by a user, as a whole number of packs; explains what is wrong with it."""
    raw = str(text if text is not None else "").strip()
    if not raw:
        raise InvalidQuantity("Enter a quantity.")
    found = _whole(raw)
    if found is None:
        try:
            float(raw.replace(",", "."))
        except ValueError:
            raise InvalidQuantity(f"Quantity “{raw[:20]}” is not a number.") from None
        raise InvalidQuantity(f"Quantity “{raw[:20]}” is not a whole number of packs.")
    sign, digits = found
    value = _value(sign, digits)
    shown = (sign if sign == "-" else "") + digits[:20] + ("…" if len(digits) > 20 else "")
    if value <= 0:
        raise InvalidQuantity(f"Quantity {shown} must be at least 1.")
    if value > MAX_QUANTITY:
        raise InvalidQuantity(f"Quantity {shown} is more than {MAX_QUANTITY:,} packs; call us for such an order.")
    return value


def parse_money(text, label="Amount", positive=False):
    """An amount with at most two decimals (a decimal comma is fine), 0 or more (above 0: positive), else
    InvalidInput naming label; NaN, infinities and exponents past the column's size are refused too."""
    raw = str(text if text is not None else "").strip()
    number = raw.replace(" ", "").replace("\u00a0", "")
    if "," in number and "." not in number:
        number = number.replace(",", ".")
    try:
        value = Decimal(number)
    except InvalidOperation:
        value = None
    if value is None or not value.is_finite():
        raise InvalidInput(f"{label} “{raw[:20]}” is not an amount such as 12.50.")
    low_ok = value > 0 if positive else value >= 0
    if not low_ok or value >= MAX_MONEY or value != value.quantize(CENT):
        floor = "above 0" if positive else "0 or more"
        raise InvalidInput(f"{label} must be {floor} with at most two decimals.")
    return value.quantize(CENT)


def parse_date(text, problem="“{text}” is not a date; use YYYY-MM-DD, e.g. 2026-01-31."):
    """An ISO date from a form field or file, or None when empty; problem: the message for a wrong one."""
    raw = str(text if text is not None else "").strip()
    if not raw:
        return None
    try:
        value = date.fromisoformat(raw)
    except ValueError:
        raise InvalidInput(problem.format(text=raw[:20])) from None
    if not FIRST_DATE <= value <= LAST_DATE:
        raise InvalidInput(f"“{raw[:20]}” is not a date between {FIRST_DATE.year} and {LAST_DATE.year}.")
    return value
