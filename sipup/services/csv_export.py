"""CSV files a buyer downloads (shopping lists, orders, invoices), written by sipup.csvfiles in the
SIPUP_CSV_DIALECT: formula-safe cells, numbers left numbers, a UTF-8 BOM so Excel reads umlauts."""

from flask import current_app
from flask_babel import lazy_gettext
from sqlalchemy import select

from ..csvfiles import to_text
from ..extensions import db
from ..models import Invoice, Order
from .orders import history_query

EXPORT_BATCH = 1000


def csv_text(header, rows):
    """The CSV text of a header and rows for a download, with the BOM Excel looks for."""
    return "\ufeff" + to_text(header, rows, current_app.config["CSV_DIALECT"])


# Column names in the reader's language (the files are for their bookkeeping; nothing imports them back).
ORDER_COLUMNS = (
    lazy_gettext("order"),
    lazy_gettext("date"),
    lazy_gettext("status"),
    lazy_gettext("po_reference"),
    lazy_gettext("goods"),
    lazy_gettext("deposit"),
    lazy_gettext("vat"),
    lazy_gettext("total"),
)
INVOICE_COLUMNS = (
    lazy_gettext("invoice"),
    lazy_gettext("order"),
    lazy_gettext("issued"),
    lazy_gettext("due"),
    lazy_gettext("amount"),
    lazy_gettext("paid"),
    lazy_gettext("open"),
    lazy_gettext("paid_on"),
)


def orders_csv(company_id):
    """Every order of a company as CSV, newest first, for its own bookkeeping."""
    rows = (
        (
            o.number,
            f"{o.created_at:%Y-%m-%d}",
            o.status,
            o.po_reference,
            o.goods_total,
            o.deposit_total,
            o.vat_total,
            o.total,
        )
        for o in db.session.scalars(history_query(company_id).execution_options(yield_per=EXPORT_BATCH))
    )
    return csv_text([str(name) for name in ORDER_COLUMNS], rows)


def invoices_csv(company_id):
    """Every invoice of a company as CSV, newest first, with what is paid and open."""
    stmt = (
        select(Invoice, Order.number)
        .outerjoin(Order, Order.id == Invoice.order_id)
        .where(Invoice.company_id == company_id)
        .order_by(Invoice.issued_at.desc(), Invoice.id.desc())
    )
    rows = (
        (
            i.number,
            number or "",
            f"{i.issued_at:%Y-%m-%d}",
            f"{i.due_date:%Y-%m-%d}",
            i.amount,
            i.paid_amount,
            i.open_amount,
            f"{i.paid_at:%Y-%m-%d}" if i.paid_at else "",
        )
        for i, number in db.session.execute(stmt)
    )
    return csv_text([str(name) for name in INVOICE_COLUMNS], rows)
