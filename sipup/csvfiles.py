"""CSV as spreadsheets read it: one writer for every file sipup writes, one reader for every table it is sent.

Writing: text cells that Excel would run as a formula (starting with =, +, -, @, a tab or CR: OWASP's CSV
injection advice) get a leading apostrophe, which Excel shows as text; numbers (int, Decimal, float) are
written as numbers, so a negative amount stays a negative amount. SIPUP_CSV_DIALECT picks the delimiter and
decimal mark: `excel` (`,` and `.`) or `excel-eu` (`;` and `,`, what Excel expects where the decimal mark is
a comma); unset, it follows SIPUP_CURRENCY (EUR: `excel-eu`). Files start with a UTF-8 BOM, so Excel reads
umlauts right.

    write_file(path, header, rows, dialect)   # atomically, mode 0600, with the BOM
    to_text(header, rows, "excel")            # the same as a string, without the BOM
    read_table(data, ("sku", "stock_on_hand"))  # yields (line number, {column: value}) of an upload
    uncell("'-Sale-")                         # "-Sale-": the text a formula-safe cell stood for
"""

import csv
import io
import os
import secrets
from datetime import date, datetime
from decimal import Decimal

from flask_babel import format_decimal, gettext

from .exceptions import InvalidInput
from .files import open_private

DIALECTS = {"excel": (",", "."), "excel-eu": (";", ",")}
COMMA_CURRENCIES = {"EUR"}  # where Excel's list separator is usually ";" because the decimal mark is ","
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def default_dialect(currency):
    """The dialect for a currency when SIPUP_CSV_DIALECT is not set."""
    return "excel-eu" if str(currency).upper() in COMMA_CURRENCIES else "excel"


def cell(value, decimal_mark="."):
    """One value as the text of a cell: numbers with the decimal mark, dates in ISO, text made formula-safe."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (int, Decimal, float)):
        text = format(value, "f") if isinstance(value, Decimal) else str(value)
        return text.replace(".", decimal_mark)
    if isinstance(value, (date, datetime)):
        return value.isoformat()
    text = str(value)
    return "'" + text if text.startswith(FORMULA_START) else text


def uncell(text):
    """The text a cell of ours stood for: the apostrophe cell() put before a formula-like value taken off again,
    so a name such as "-Sale-" written out and read back is "-Sale-" once more."""
    text = text or ""
    return text[1:] if text.startswith("'") and text[1:].startswith(FORMULA_START) else text


def _write(handle, header, rows, dialect):
    delimiter, decimal_mark = DIALECTS[dialect]
    writer = csv.writer(handle, delimiter=delimiter)
    writer.writerow([cell(name) for name in header])
    for row in rows:
        writer.writerow([cell(value, decimal_mark) for value in row])


def to_text(header, rows, dialect="excel"):
    """The CSV text of a header and rows (no BOM: for standard output and tools)."""
    out = io.StringIO()
    _write(out, header, rows, dialect)
    return out.getvalue()


def write_file(path, header, rows, dialect="excel"):
    """Write a CSV file for Excel: UTF-8 with BOM, private to the service account, never seen half-written."""
    # A temporary file of this run's own: two runs writing one file (two workers) must not write into one.
    temporary = f"{path}.{secrets.token_hex(4)}.part"
    with open_private(temporary, "w", encoding="utf-8-sig", newline="") as handle:
        _write(handle, header, rows, dialect)
    os.replace(temporary, path)
    return path


def read_table(data, columns):
    """Yield (line number, {column: value}) from CSV bytes or text whose first line names the columns;
    InvalidInput when a column is missing or the file is not CSV a spreadsheet would write."""
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8-sig")
        except UnicodeDecodeError:
            # Excel on Windows saves CSV in the ANSI code page; bytes it leaves undefined become "�"
            # in the line they are on, which is then reported, instead of failing the whole file.
            data = data.decode("cp1252", errors="replace")
    sample = data[:2048]
    delimiter = ";" if sample.count(";") > sample.count(",") else ","
    # newline=None reads old Mac files (CR only) and Windows files alike.
    reader = csv.reader(io.StringIO(data, newline=None), delimiter=delimiter)
    try:
        header = next(reader, None)
        names = [h.strip().lower() for h in header or []]
        missing = [c for c in columns if c not in names]
        if missing:
            raise InvalidInput(
                gettext(
                    "The first line must name the columns %(columns)s; missing: %(missing)s.",
                    columns=", ".join(columns),
                    missing=", ".join(missing),
                )
            )
        for row in reader:
            if any(value.strip() for value in row):
                yield reader.line_num, dict(zip(names, row))
    except csv.Error as exc:
        raise InvalidInput(
            gettext(
                "Line %(line)s cannot be read as CSV (%(why)s); save the file from the spreadsheet again as CSV.",
                line=reader.line_num,
                why=_reason(exc),
            )
        ) from None


def _reason(error):
    text = str(error)
    if "field larger than field limit" in text:
        return gettext("a value is longer than %(most)s characters", most=format_decimal(csv.field_size_limit()))
    return text
