"""CSV files a buyer downloads (shopping lists, orders, invoices): every file is written by csv_text() alone,
so the whole export can move onto a shared CSV writer (dialect setting, BOM) by changing that one function."""
import csv
import io

# A spreadsheet runs a cell that starts with one of these as a formula (CSV injection).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value):
    """A value fit for a spreadsheet: text that would start a formula gets a leading apostrophe; numbers
    (int, Decimal) stay numbers, so -12.50 in an amount column is not mangled."""
    if value is None:
        return ""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def csv_text(header, rows):
    """The CSV text of a header and rows, with every cell made safe."""
    out = io.StringIO()
    # Text quoted: a product name holding ; or , then never looks like more columns to quick order's reader.
    writer = csv.writer(out, lineterminator="\r\n", quoting=csv.QUOTE_NONNUMERIC)
    writer.writerow([safe_cell(name) for name in header])
    writer.writerows([safe_cell(value) for value in row] for row in rows)
    return out.getvalue()
