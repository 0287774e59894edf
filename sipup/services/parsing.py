"""Reading what people type and upload: ids, counts, quantities, money and dates, each kind in one place.

Every reader accepts what a person would write and refuses the rest with a message naming the value, never
with an exception of Python's own: `Decimal("NaN")` cannot be compared, "²" passes `str.isdigit()` but not
`int()`, and SQLite cannot bind an integer of 2**63 or more. New fields use these, and get that right.

    whole_number("12")                        # 12; None for "", "²", "-3", "1e3", 30 digits (ids, pages)
    page_number("9223372036854775807")        # (1, "Page “…” is not a page number; showing page 1.")
    parse_count("5", "Stock on hand", 0)      # 5, else InvalidInput naming the label and the range
    parse_quantity("1.000")                   # 1000 packs in German ("1,000" in English), else InvalidQuantity
    parse_money("2.500,00", "Price")          # Decimal("2500.00") in German, "2,500.00" in English, else InvalidInput
    parse_date("2026-01-31")                  # date(2026, 1, 31); None when empty; else InvalidInput
"""

import re
from datetime import date
from decimal import Decimal, InvalidOperation

from babel.numbers import NumberFormatError, parse_decimal
from flask_babel import gettext

from ..exceptions import InvalidInput, InvalidQuantity
from ..i18n import current_language

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
    return 1, gettext("Page “%(page)s” is not a page number; showing page 1.", page=str(text)[:20])


def parse_count(text, label, minimum=0, maximum=MAX_COUNT):
    """A whole number from minimum to maximum (stock, minimum quantities, days), else InvalidInput naming label."""
    raw = str(text if text is not None else "").strip()
    found = _whole(raw)
    if found is None:
        raise InvalidInput(gettext("%(label)s “%(value)s” is not a whole number.", label=label, value=raw[:20]))
    value = _value(*found)
    if not minimum <= value <= maximum:
        raise InvalidInput(
            gettext(
                "%(label)s must be between %(minimum)s and %(maximum)s.",
                label=label,
                minimum=_number(minimum),
                maximum=_number(maximum),
            )
        )
    return value


def parse_quantity(text, language=None):
    """A quantity typed by a user, as a whole number of packs ("1.000" in German and "1,000" in English are a
    thousand); explains what is wrong with it."""
    raw = str(text if text is not None else "").strip()
    if not raw:
        raise InvalidQuantity(gettext("Enter a quantity."))
    found = _whole(raw) or _whole(_grouped_whole(raw, language or current_language()))
    if found is None:
        try:
            float(raw.replace(",", "."))
        except ValueError:
            raise InvalidQuantity(gettext("Quantity “%(value)s” is not a number.", value=raw[:20])) from None
        raise InvalidQuantity(gettext("Quantity “%(value)s” is not a whole number of packs.", value=raw[:20]))
    sign, digits = found
    value = _value(sign, digits)
    shown = (sign if sign == "-" else "") + digits[:20] + ("…" if len(digits) > 20 else "")
    if value <= 0:
        raise InvalidQuantity(gettext("Quantity %(value)s must be at least 1.", value=shown))
    if value > MAX_QUANTITY:
        raise InvalidQuantity(
            gettext(
                "Quantity %(value)s is more than %(maximum)s packs; call us for such an order.",
                value=shown,
                maximum=_number(MAX_QUANTITY),
            )
        )
    return value


def _grouped_whole(raw, language):
    """The digits of a whole number written with the language's group separators ("1.000" in German), else ""."""
    if not any(char in raw for char in ".,\u00a0\u202f'"):
        return ""
    try:
        value = parse_decimal(raw, locale=language, strict=True)
    except (NumberFormatError, ValueError):
        return ""
    return str(value) if value.is_finite() and value == value.to_integral_value() and "." not in str(value) else ""


def _number(value):
    """A limit in a message, grouped as the current language writes it."""
    return f"{value:,}".replace(",", "." if current_language() == "de" else ",")


def parse_money(text, label=None, positive=False, language=None):
    """An amount with at most two decimals as the language writes it ("2.500,00" or "2500,00" in German,
    "2,500.00" in English; a lone decimal comma or point is read as one either way), 0 or more (above 0:
    positive), else InvalidInput naming label; NaN, infinities and exponents past the column's size are refused."""
    label = label or gettext("Amount")
    language = language or current_language()
    raw = str(text if text is not None else "").strip()
    number = raw.replace(" ", "").replace("\u00a0", "").replace("\u202f", "")
    value = _written_decimal(number, language)
    if value is None and number and set(number) <= PLAIN_AMOUNT | set("eE"):
        # What the language's own rules refuse, such as "12.50" in German or "12,50" in English, is read as
        # before: a lone comma or point is the decimal separator.
        if "," in number and "." not in number:
            number = number.replace(",", ".")
        try:
            value = Decimal(number)
        except InvalidOperation:
            value = None
    if value is None or not value.is_finite():
        raise InvalidInput(
            gettext(
                "%(label)s “%(value)s” is not an amount such as %(example)s.",
                label=label,
                value=raw[:20],
                example="12,50" if language == "de" else "12.50",
            )
        )
    low_ok = value > 0 if positive else value >= 0
    if not low_ok or value >= MAX_MONEY or value != value.quantize(CENT):
        if positive:
            raise InvalidInput(gettext("%(label)s must be above 0 with at most two decimals.", label=label))
        raise InvalidInput(gettext("%(label)s must be 0 or more with at most two decimals.", label=label))
    return value.quantize(CENT)


PLAIN_AMOUNT = set("0123456789.,+-")


def _written_decimal(number, language):
    """number read by the language's rules (Babel's CLDR data: grouping and decimal separators), else None."""
    if not number or len(number) > 40 or not set(number) <= PLAIN_AMOUNT:
        return None
    try:
        return parse_decimal(number, locale=language, strict=True)
    except (NumberFormatError, ValueError, InvalidOperation):
        return None


def parse_date(text, problem=None):
    """An ISO date from a form field or file, or None when empty; problem: the message for a wrong one."""
    problem = problem or gettext("“{text}” is not a date; use YYYY-MM-DD, e.g. 2026-01-31.")
    raw = str(text if text is not None else "").strip()
    if not raw:
        return None
    try:
        value = date.fromisoformat(raw)
    except ValueError:
        raise InvalidInput(problem.format(text=raw[:20])) from None
    if not FIRST_DATE <= value <= LAST_DATE:
        raise InvalidInput(
            gettext(
                "“%(value)s” is not a date between %(first)s and %(last)s.",
                value=raw[:20],
                first=FIRST_DATE.year,
                last=LAST_DATE.year,
            )
        )
    return value
