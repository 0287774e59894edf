"""CSV files a buyer downloads (shopping lists, orders, invoices): every file is written by csv_text() alone,
so the whole export can move onto a shared CSV writer (dialect setting, BOM) by changing that one function."""
import csv
import io

from sqlalchemy import select

from ..extensions import db
from ..models import Invoice, Order
from .orders import history_query

# A spreadsheet runs a cell that starts with one of these as a formula (CSV injection).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
EXPORT_BATCH = 1000


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


ORDER_COLUMNS = ("order", "date", "status", "po_reference", "goods", "deposit", "vat", "total")
INVOICE_COLUMNS = ("invoice", "order", "issued", "due", "amount", "paid", "open", "paid_on")


def orders_csv(company_id):
    """Every order of a company as CSV, newest first, for its own bookkeeping."""
    rows = ((o.number, f"{o.created_at:%Y-%m-%d}", o.status, o.po_reference, o.goods_total, o.deposit_total,
             o.vat_total, o.total)
            for o in db.session.scalars(history_query(company_id).execution_options(yield_per=EXPORT_BATCH)))
    return csv_text(ORDER_COLUMNS, rows)


def invoices_csv(company_id):
    """Every invoice of a company as CSV, newest first, with what is paid and open."""
    stmt = (select(Invoice, Order.number).outerjoin(Order, Order.id == Invoice.order_id)
            .where(Invoice.company_id == company_id).order_by(Invoice.issued_at.desc(), Invoice.id.desc()))
    rows = ((i.number, number or "", f"{i.issued_at:%Y-%m-%d}", f"{i.due_date:%Y-%m-%d}", i.amount, i.paid_amount,
             i.open_amount, f"{i.paid_at:%Y-%m-%d}" if i.paid_at else "")
            for i, number in db.session.execute(stmt))
    return csv_text(INVOICE_COLUMNS, rows)
