"""Back-office services for staff: order queues, products and stock (companies and price lists: services.companies)."""

from flask_babel import gettext
from sqlalchemy import func, or_, select
from sqlalchemy.orm import selectinload

from sipup.cache import Plain, cached

from ..config import VAT_CLASSES
from ..database import paginate
from ..exceptions import FieldErrors, InvalidInput
from ..extensions import db
from ..models import Category, Company, Order, OrderStatus, Product, User
from .catalog import matching
from .orders import order_row
from .parsing import parse_count, parse_money, whole_number


def status_counts():
    """How many orders are in each status: {status: count}."""
    rows = db.session.execute(status_counts_query())
    counts = {status.value: 0 for status in OrderStatus}
    counts.update(dict(rows.all()))
    return counts


def status_counts_query():
    """The statement behind the back office's counts per status (also timed by `flask db optimize`)."""
    return select(Order.status, func.count()).group_by(Order.status)


def find_orders(status=None, company_id=None, query="", page=1, per_page=30):
    """Orders for the back office, newest first, filtered by status, company and a search, with their count."""
    stmt = orders_query(status, company_id, query).options(selectinload(Order.company))
    return paginate(stmt, page, per_page, count=True)


# How many companies or buyers a search may name before it asks for more letters.
MATCHES_NAMED = 200


def orders_query(status=None, company_id=None, query=""):
    """The statement behind the back-office order list (also timed by `flask db optimize`).

    A search finds, in any case, an order number (or the id it ends in), a PO reference by its start, and
    the orders of companies whose name, or buyers whose e-mail, holds it; each through an index."""
    stmt = select(Order)
    if status:
        stmt = stmt.where(Order.status == status)
    if company_id:
        stmt = stmt.where(Order.company_id == company_id)
    query = (query or "").strip()
    if query:
        like = "%" + query.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        found = [Order.number == query.upper(), Order.po_reference.like(like[1:], escape="\\")]
        digits = query.lstrip("0")
        if query.isascii() and query.isdigit() and digits and len(digits) <= 18:
            found.append(Order.id == int(digits))
        companies = select(Company.id).where(Company.name.ilike(like, escape="\\")).limit(MATCHES_NAMED)
        buyers = select(User.id).where(User.email.ilike(like, escape="\\")).limit(MATCHES_NAMED)
        company_ids, buyer_ids = db.session.scalars(companies).all(), db.session.scalars(buyers).all()
        if company_ids:
            found.append(Order.company_id.in_(company_ids))
        if buyer_ids:
            found.append(Order.buyer_id.in_(buyer_ids))
        stmt = stmt.where(or_(*found))
    return stmt.order_by(Order.created_at.desc(), Order.id.desc())


def low_stock(limit=20):
    """Active products at or below their low-stock threshold, emptiest first."""
    available = Product.stock_on_hand - Product.stock_reserved
    stmt = (
        select(Product)
        .where(Product.active.is_(True), available <= Product.low_stock_threshold)
        .order_by(available, Product.sku)
        .limit(limit)
    )
    return list(db.session.scalars(stmt))


def dashboard():
    """What the back office's first page shows, as plain data, through the cache."""
    return cached("dashboard", "backoffice", (), ["orders", "orders-all", "catalog", "stock", "companies"], _dashboard)


def _dashboard():
    def rows(status):
        return [order_row(o, o.company.name) for o in find_orders(status=status, per_page=10).items]

    low = [
        Plain(sku=p.sku, name=p.name, available=p.available, low_stock_threshold=p.low_stock_threshold)
        for p in low_stock()
    ]
    return {
        "counts": status_counts(),
        "waiting": rows(OrderStatus.PLACED),
        "holds": rows(OrderStatus.CREDIT_HOLD),
        "low": low,
    }


def find_products(query="", page=1, per_page=50):
    """All products (active or not) found as buyers find them (every word, any case or accent), by SKU."""

    stmt = select(Product).options(selectinload(Product.category))
    if (query or "").strip():
        stmt = matching(stmt, query)
    return paginate(stmt.order_by(Product.sku), page, per_page)


def company_names():
    """(id, name) of every customer company by name: the company filter of the order list."""
    return db.session.execute(select(Company.id, Company.name).order_by(Company.name)).all()


def find_companies(query="", page=1, per_page=50):
    """Customer companies by name, with their count; a search finds a name or VAT id holding it, in any case."""
    stmt = select(Company).options(selectinload(Company.price_list))
    query = (query or "").strip()
    if query:
        like = f"%{query}%"
        stmt = stmt.where(or_(Company.name.ilike(like), Company.vat_id.ilike(like)))
    return paginate(stmt.order_by(Company.name), page, per_page)


def _field(errors, name, parse, form, *args, **kwargs):
    """form[name] read by a parser of services/parsing.py; its complaint goes into errors[name]."""
    try:
        return parse(form.get(name), *args, **kwargs)
    except InvalidInput as exc:
        errors[name] = str(exc)
        return None


def save_product(product, form):
    """Create (product None) or update a product from form fields; every wrong field is named."""
    errors = {}
    values = {
        "sku": (form.get("sku") or "").strip().upper(),
        "name": (form.get("name") or "").strip(),
        "sell_unit": (form.get("sell_unit") or "").strip(),
        "description": (form.get("description") or "").strip()[:5000],
        "base_price": _field(errors, "base_price", parse_money, form, gettext("Base price")),
        "deposit": _field(errors, "deposit", parse_money, form, gettext("Deposit")),
        "min_qty": _field(errors, "min_qty", parse_count, form, gettext("Minimum quantity"), 1),
        "qty_step": _field(errors, "qty_step", parse_count, form, gettext("Quantity step"), 1),
        "stock_on_hand": _field(errors, "stock_on_hand", parse_count, form, gettext("Stock on hand")),
        "low_stock_threshold": _field(errors, "low_stock_threshold", parse_count, form, gettext("Low-stock threshold")),
        "vat_class": (form.get("vat_class") or "standard").strip(),
        "backorder_allowed": form.get("backorder_allowed") == "on",
        "active": form.get("active") == "on",
    }
    if not values["sku"] or len(values["sku"]) > 40 or not all(c.isalnum() or c in "-_." for c in values["sku"]):
        errors["sku"] = gettext("SKU must be 1 to 40 letters, digits, dashes, dots or underscores.")
    elif db.session.scalar(
        select(Product.id).where(Product.sku == values["sku"], Product.id != (product.id if product else -1))
    ):
        errors["sku"] = gettext("SKU %(sku)s is taken by another product.", sku=values["sku"])
    for name, label, size in (("name", gettext("Name"), 200), ("sell_unit", gettext("Sell unit"), 80)):
        if not values[name] or len(values[name]) > size:
            errors[name] = gettext(
                "%(label)s must be %(least)s to %(size)s characters.", label=label, least=1, size=size
            )
    if values["min_qty"] and values["qty_step"] and values["min_qty"] % values["qty_step"]:
        errors["min_qty"] = gettext(
            "The minimum quantity must be a multiple of the step (%(step)s).", step=values["qty_step"]
        )
    if values["vat_class"] not in VAT_CLASSES:
        errors["vat_class"] = gettext("Choose the VAT class: standard, reduced or zero.")
    category_id = whole_number(form.get("category_id"))
    category = db.session.get(Category, category_id) if category_id else None
    if category is None:
        errors["category_id"] = gettext("Choose a category.")
    if (
        product is not None
        and values["stock_on_hand"] is not None
        and values["stock_on_hand"] < product.stock_reserved
        and not values["backorder_allowed"]
    ):
        errors["stock_on_hand"] = gettext(
            "%(reserved)s are reserved by open orders; stock on hand cannot be lower unless backorders are allowed.",
            reserved=product.stock_reserved,
        )
    if errors:
        raise FieldErrors(errors)
    if product is None:
        product = Product(stock_reserved=0)
        db.session.add(product)
    for name, value in values.items():
        setattr(product, name, value)
    product.category_id = category.id
    db.session.commit()
    return product
