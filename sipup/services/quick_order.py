"""Quick order: read pasted `SKU qty` lines or an Excel-style CSV and preview every line's status."""

import csv
import io
import math
import re
from dataclasses import dataclass
from decimal import Decimal

from flask_babel import gettext

from .. import i18n
from ..exceptions import DomainError, InvalidInput, InvalidQuantity, NotFound
from ..extensions import db
from . import catalog
from .cart import add_many, price_lines, products_with_lines
from .parsing import parse_quantity

SEPARATORS = re.compile(r"\s*[;,\t]\s*|\s+")
QUOTED = re.compile(r'"[^"]*"')
MAX_LINE_CHARS = 1000
HEADER_WORDS = {"sku", "article", "artikel", "item", "product", "code", "artikelnummer", "art.-nr."}


@dataclass
class PreviewLine:
    line_no: int
    raw: str
    sku: str
    quantity: int | None
    product: object = None
    unit_price: Decimal | None = None
    line_total: Decimal | None = None
    problem: str | None = None
    stock_note: str | None = None

    @property
    def ok(self):
        return self.problem is None

    @property
    def fits_list(self):
        """Whether a shopping list may keep this line: a product sold in this quantity (stock aside)."""
        return self.product is not None and self.problem in (None, self.stock_note)


def read_upload(data, max_bytes, size=None):
    """The text of an uploaded CSV file (size: its full length when only a head was read)."""
    size = len(data) if size is None else size
    if size > max_bytes:
        # Rounded up, so a file just over 2 MB does not read as "2.0 MB; at most 2 MB".
        raise InvalidInput(
            gettext(
                "The file is %(size)s MB; quick-order files can be at most %(most)s MB. Split it into smaller files.",
                size=i18n.number(math.ceil(size * 10 / 1_048_576) / 10, 1),
                most=max_bytes // 1_048_576,
            )
        )
    if data.startswith(b"PK\x03\x04"):
        raise InvalidInput(gettext("This is an Excel workbook, not a CSV file. In Excel choose Save As → CSV UTF-8."))
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            return data.decode("utf-16")
        except UnicodeDecodeError:
            raise InvalidInput(
                gettext(
                    "The file starts like UTF-16 text but is not valid UTF-16. "
                    "In Excel choose Save As → CSV UTF-8 (comma delimited)."
                )
            ) from None
    if b"\x00" in data:
        raise InvalidInput(gettext("This file is not text. Upload a CSV file with one SKU and quantity per line."))
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise InvalidInput(
            gettext(
                "The file is not UTF-8 text (first odd character on line %(line)s). "
                "In Excel choose Save As → CSV UTF-8 (comma delimited).",
                line=line,
            )
        ) from None


def parse(text, max_lines):
    """Split text into (line number, raw line, SKU, quantity text); blank lines and a header are skipped."""
    text = text.lstrip("\ufeff")
    raw_lines = text.splitlines()
    entries = [(n, line.strip()) for n, line in enumerate(raw_lines, start=1) if line.strip()]
    if entries and entries[0][1].lower().startswith("sep="):
        entries = entries[1:]  # Excel's "sep=;" hint names the delimiter; it is no order line
    if not entries:
        raise InvalidInput(gettext("Enter at least one line: a SKU and a quantity, e.g. “BEE-00001 5”."))
    if len(entries) > max_lines:
        raise InvalidInput(
            gettext(
                "That is %(lines)s lines; a quick order takes at most %(most)s. Split it into parts.",
                lines=i18n.number(len(entries)),
                most=i18n.number(max_lines),
            )
        )
    parsed = []
    for number, line in entries:
        if len(line) > MAX_LINE_CHARS:  # also keeps csv below its field size limit
            raise InvalidInput(
                gettext(
                    "Line %(number)s has %(value)s characters; a line holds one SKU and its quantity.",
                    number=number,
                    value=format(len(line), ","),
                )
            )
        if ";" in line or "," in line or '"' in line:
            unquoted = QUOTED.sub("", line)  # a quoted product name may hold either delimiter
            delimiter = ";" if unquoted.count(";") >= unquoted.count(",") else ","
            fields = [f.strip() for f in next(csv.reader(io.StringIO(line), delimiter=delimiter))]
        else:
            fields = SEPARATORS.split(line)
        fields = [f for f in fields if f != ""]
        if number == entries[0][0] and fields and fields[0].lower() in HEADER_WORDS:
            continue
        sku = fields[0] if fields else ""
        quantity_text = fields[1] if len(fields) > 1 else ""
        parsed.append((number, line, sku, quantity_text))
    if not parsed:
        raise InvalidInput(
            gettext("Enter at least one line below the header: a SKU and a quantity, e.g. “BEE-00001 5”.")
        )
    return parsed


def preview(text, price_list_id, vat_rate, max_lines):
    """Every line with its product, price for the quantity, and the problem that stops it, if any."""
    parsed = parse(text, max_lines)
    products = catalog.products_by_skus([sku for _, _, sku, _ in parsed if sku])
    lines, seen = [], {}
    for number, raw, sku, quantity_text in parsed:
        line = PreviewLine(number, raw[:200], sku[:40], None)
        lines.append(line)
        if not quantity_text:
            line.problem = gettext("No quantity: write the SKU, then the quantity.")
            continue
        try:
            line.quantity = parse_quantity(quantity_text)
        except InvalidQuantity as exc:
            line.problem = str(exc)
            continue
        product = products.get(sku.upper())
        if product is None or not product.active:
            line.problem = (
                gettext("Unknown SKU “%(sku)s”.", sku=sku[:40])
                if product is None
                else gettext("%(sku)s is no longer sold.", sku=product.sku)
            )
            continue
        if product.id in seen:
            line.problem = gettext(
                "%(sku)s is already on line %(seen)s; put it on one line.", sku=product.sku, seen=seen[product.id]
            )
            continue
        seen[product.id] = number
        line.product = product
    candidates = [line for line in lines if line.ok]
    priced = price_lines(price_list_id, [(line.product, line.quantity) for line in candidates], vat_rate)
    for line, priced_line in zip(candidates, priced.lines):
        line.unit_price, line.line_total = priced_line.unit_price, priced_line.line_total
        line.stock_note = priced_line.stock_note
        line.problem = (priced_line.problems or [priced_line.stock_note])[0]
    return lines


def add_to_cart(user_id, pairs):
    """Put (SKU, quantity text) pairs in the cart by the cart's rules; returns (lines added, problems)."""
    # The products with the cart's lines for them in one read; the lines are then written without reading them again.
    found = products_with_lines(user_id, [sku for sku, _ in pairs])
    outcomes, wanted = [None] * len(pairs), []  # per line: the new quantity or the DomainError
    for index, (sku, raw) in enumerate(pairs):
        product, _line = found.get(sku.upper(), (None, None))
        try:
            if product is None:
                raise NotFound(gettext("Unknown SKU “%(sku)s”.", sku=sku[:40]))
            wanted.append((index, product, parse_quantity(raw)))
        except DomainError as exc:
            outcomes[index] = exc
    lines = {product.id: line for product, line in found.values()}
    try:  # in one transaction
        done = add_many(user_id, [(product, quantity) for _, product, quantity in wanted], lines=lines)
    except DomainError as exc:  # the cart kept changing in another window
        db.session.rollback()
        done = [exc] * len(wanted)
    for (index, _, _), outcome in zip(wanted, done):
        outcomes[index] = outcome
    problems = [str(outcome) for outcome in outcomes if isinstance(outcome, DomainError)]
    return len(outcomes) - len(problems), problems
