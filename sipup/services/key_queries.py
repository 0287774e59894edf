"""The key queries `flask db optimize` times before and after its run: the statements sipup's busiest pages
and its reports run, built by the same service functions, with real values from the data."""

from datetime import date

from sqlalchemy import select

from sipup.dbtools.partitions import month_start
from sipup.models import Order, OrderStatus, Product

from .backoffice import orders_query, status_counts_query
from .catalog import search_query
from .orders import history_query, order_query, uninvoiced_query
from .reports import KINDS, ageing_query, report_query


def key_queries(conn, now):
    """[(label, statement)] for the data `conn` reaches; none while there is no order."""
    latest = conn.execute(
        select(Order.number, Order.company_id, Order.created_at).order_by(Order.id.desc()).limit(1)
    ).first()
    if latest is None:
        return []
    number, company_id, created = latest
    first, until = month_start(created, -1), month_start(created)  # the last full month, as cron asks
    last = date.fromordinal(until.toordinal() - 1)
    word = conn.execute(select(Product.name).where(Product.active.is_(True)).order_by(Product.id).limit(1)).scalar()
    queries = [("storefront: catalog page, all products", search_query().limit(24))]
    if word:
        queries.append((f"storefront: search “{word.split()[0]}”", search_query(word.split()[0]).limit(24)))
    queries += [
        ("storefront: a company's order history, newest 20", history_query(company_id).limit(20)),
        ("storefront: an order by number", order_query(number)),
        ("checkout: credit check (orders not yet invoiced)", uninvoiced_query(company_id)),
        ("back office: placed orders, newest 30", orders_query(OrderStatus.PLACED).limit(30)),
        ("back office: counts per status", status_counts_query()),
    ]
    queries += [
        (f"report {kind} ({first:%Y-%m})", report_query(kind, first, last))
        for kind in KINDS
        if kind != "receivables_ageing"
    ]
    queries.append(("report receivables_ageing", ageing_query(now.date())))
    return queries
