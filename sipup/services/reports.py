"""Reports as CSV files that Excel opens correctly (sipup/csvfiles.py: UTF-8 with BOM, formula-safe, in
SIPUP_CSV_DIALECT): sales by period, customer and product, and receivables ageing. They are kept in the file
storage (reports/ in the instance folder, the database or the object store), so that a report one host's
worker built is listed and downloaded on every host."""

import re
from datetime import timedelta
from decimal import Decimal

from flask import current_app
from flask_babel import gettext, lazy_gettext
from sqlalchemy import case, func, select

from sipup.jobs import enqueue
from sipup.jobs.names import BUILD_REPORT
from sipup.storage import Missing, get_storage

from ..csvfiles import to_text
from ..exceptions import InvalidInput, NotFound
from ..extensions import db
from ..models import Company, Invoice, Order, OrderLine, OrderStatus, utcnow
from ..replicas import replica_reads
from .parsing import parse_date

KINDS = {
    "sales_by_period": lazy_gettext("Sales by period"),
    "sales_by_customer": lazy_gettext("Sales by customer"),
    "sales_by_product": lazy_gettext("Sales by product"),
    "receivables_ageing": lazy_gettext("Receivables ageing"),
}
SAFE_NAME = re.compile(r"^[a-z_]+-[0-9-]+(_[0-9-]+)?\.csv$")


def parse_range(start, end):
    """(start date, end date) from ISO strings; end is inclusive. Bad input raises InvalidInput."""
    first, last = (parse_date(value, gettext("Dates must look like 2026-01-31.")) for value in (start, end))
    if first is None or last is None:
        raise InvalidInput(gettext("Dates must look like 2026-01-31."))
    if last < first:
        raise InvalidInput(gettext("The end date is before the start date."))
    if (last - first).days > 3660:
        raise InvalidInput(gettext("A report covers at most ten years."))
    return first, last


def build(kind, start=None, end=None):
    """Build one report, keep it in the file storage and return its file name."""
    if kind not in KINDS:
        raise InvalidInput(gettext("Unknown report “%(kind)s”.", kind=str(kind)[:40]))
    with replica_reads():  # a report tolerates a second of lag: a replica's work, where there is one
        if kind == "receivables_ageing":
            today = utcnow().date()
            header, rows = _ageing(today)
            name = f"{kind}-{today:%Y-%m-%d}.csv"
        else:
            first, last = parse_range(start, end)
            header, rows = RANGED[kind](first, last)
            name = f"{kind}-{first:%Y-%m-%d}_{last:%Y-%m-%d}.csv"
    text = "\ufeff" + to_text(header, rows, current_app.config["CSV_DIALECT"])  # the BOM: Excel reads UTF-8
    get_storage().put(f"reports/{name}", text.encode("utf-8"), "text/csv")
    return name


def _sold(first, last):
    return (
        Order.status != OrderStatus.CANCELLED,
        Order.created_at >= first,
        Order.created_at < last + timedelta(days=1),
    )


def _period(column, monthly):
    if db.engine.dialect.name == "sqlite":
        return func.strftime("%Y-%m" if monthly else "%Y-%m-%d", column)
    return func.date_format(column, "%Y-%m" if monthly else "%Y-%m-%d")


def report_query(kind, first, last):
    """The statement behind one sales report over first..last, both days included (also timed by
    `flask db optimize`)."""
    if kind == "sales_by_period":
        period = _period(Order.created_at, _monthly(first, last)).label("period")
        return (
            select(
                period,
                func.count(),
                func.sum(Order.goods_total),
                func.sum(Order.deposit_total),
                func.sum(Order.vat_total),
                func.sum(Order.total),
            )
            .where(*_sold(first, last))
            .group_by(period)
            .order_by(period)
        )
    if kind == "sales_by_customer":
        return (
            select(Company.name, func.count(Order.id), func.sum(Order.goods_total), func.sum(Order.total))
            .join(Company, Company.id == Order.company_id)
            .where(*_sold(first, last))
            .group_by(Company.id, Company.name)
            .order_by(func.sum(Order.total).desc())
        )
    if kind == "sales_by_product":
        # Lines carry their order's created_at: the same range on both tables (and the join on it) lets a
        # partitioned database read only the months asked for, of order_lines as of orders.
        return (
            select(OrderLine.sku, OrderLine.name, func.sum(OrderLine.quantity), func.sum(OrderLine.line_total))
            .join(Order, (Order.id == OrderLine.order_id) & (Order.created_at == OrderLine.created_at))
            .where(*_sold(first, last), OrderLine.created_at >= first, OrderLine.created_at < last + timedelta(days=1))
            .group_by(OrderLine.sku, OrderLine.name)
            .order_by(func.sum(OrderLine.line_total).desc())
        )
    raise InvalidInput(gettext("Unknown report “%(kind)s”.", kind=str(kind)[:40]))


def _monthly(first, last):
    return (last - first).days > 62


def _sales_by_period(first, last):
    rows = db.session.execute(report_query("sales_by_period", first, last)).all()
    return [
        gettext("Month") if _monthly(first, last) else gettext("Day"),
        gettext("Orders"),
        gettext("Goods"),
        gettext("Deposit"),
        gettext("VAT"),
        gettext("Total"),
    ], [list(r) for r in rows]


def _sales_by_customer(first, last):
    rows = db.session.execute(report_query("sales_by_customer", first, last)).all()
    return [gettext("Customer"), gettext("Orders"), gettext("Goods"), gettext("Total")], [list(r) for r in rows]


def _sales_by_product(first, last):
    rows = db.session.execute(report_query("sales_by_product", first, last)).all()
    return [gettext("SKU"), gettext("Product"), gettext("Quantity"), gettext("Goods")], [list(r) for r in rows]


# The report of each kind over a range of days (receivables ageing is as of a day): (header, rows).
RANGED = {
    "sales_by_period": _sales_by_period,
    "sales_by_customer": _sales_by_customer,
    "sales_by_product": _sales_by_product,
}


def ageing_query(today):
    """The statement behind the receivables ageing (also timed by `flask db optimize`)."""
    age = (
        func.julianday(today) - func.julianday(Invoice.issued_at)
        if db.engine.dialect.name == "sqlite"
        else func.datediff(today, Invoice.issued_at)
    )
    open_amount = Invoice.amount - Invoice.paid_amount
    return (
        select(
            Company.name,
            func.sum(case((age <= 30, open_amount), else_=0)),
            func.sum(case(((age > 30) & (age <= 60), open_amount), else_=0)),
            func.sum(case((age > 60, open_amount), else_=0)),
            func.sum(case((Invoice.due_date < today, open_amount), else_=0)),
            func.sum(open_amount),
        )
        .join(Company, Company.id == Invoice.company_id)
        .where(Invoice.paid_at.is_(None))
        .group_by(Company.id, Company.name)
        .order_by(func.sum(open_amount).desc())
    )


def _ageing(today):
    """Open amounts per customer by days since the invoice date: 0-30, 31-60, over 60; and what is overdue."""
    rows = db.session.execute(ageing_query(today)).all()
    return [
        gettext("Customer"),
        gettext("0-30 days"),
        gettext("31-60 days"),
        gettext("over 60 days"),
        gettext("Overdue"),
        gettext("Open total"),
    ], [[r[0], *(_money(v) for v in r[1:])] for r in rows]


def _money(value):
    return Decimal(str(value or 0)).quantize(Decimal("0.01"))


def available():
    """The report files, newest first: [(name, size in bytes, when written)]."""
    entries = []
    for info in get_storage().list("reports"):
        name = info.key.split("/", 1)[1]
        if SAFE_NAME.match(name):
            entries.append((name, info.size, info.modified))
    return sorted(entries, key=lambda e: e[2], reverse=True)


def read(name):
    """The bytes of a report file by name, or NotFound (only report names are looked up)."""
    if not SAFE_NAME.match(name or ""):
        raise NotFound(gettext("There is no such report."))
    try:
        return get_storage().get(f"reports/{name}")
    except Missing:
        raise NotFound(gettext("There is no such report.")) from None


def previous_month(today=None):
    today = today or utcnow().date()
    last = today.replace(day=1) - timedelta(days=1)
    return last.replace(day=1), last


def queue_monthly(today=None):
    """Enqueue last month's sales reports and the receivables ageing; returns what was queued."""
    first, last = previous_month(today)
    queued = []
    for kind in KINDS:
        args = (kind,) if kind == "receivables_ageing" else (kind, first.isoformat(), last.isoformat())
        if enqueue(BUILD_REPORT, *args, dedupe_key=f"report:{':'.join(args)}:{utcnow():%Y-%m-%d}") is not None:
            queued.append(kind)
    db.session.commit()
    return f"queued {', '.join(queued) or 'nothing'} for {first:%Y-%m}"
