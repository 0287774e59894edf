"""Back-office services for staff: order queues, products and stock, companies, price lists."""
import secrets
from decimal import Decimal, InvalidOperation

from sqlalchemy import func, or_, select
from sqlalchemy.orm import selectinload

from ..cache import Plain, cached
from ..extensions import db
from ..models import Category, Company, Order, OrderStatus, PriceList, PriceTier, Product, User
from .errors import FieldErrors, InvalidInput, NotFound


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
    """Orders for the back office, newest first, filtered by status, company and number/PO."""
    stmt = orders_query(status, company_id, query).options(selectinload(Order.company))
    return db.paginate(stmt, page=page, per_page=per_page, error_out=False, count=False)


def orders_query(status=None, company_id=None, query=""):
    """The statement behind the back-office order list (also timed by `flask db optimize`)."""
    stmt = select(Order)
    if status:
        stmt = stmt.where(Order.status == status)
    if company_id:
        stmt = stmt.where(Order.company_id == company_id)
    query = (query or "").strip()
    if query:
        stmt = stmt.where(or_(Order.number == query, Order.po_reference == query))
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
    return cached("dashboard", "backoffice", (), ["orders", "orders-all", "catalog", "companies"], _dashboard)


def _dashboard():
    from .orders import order_row

    def rows(status):
        return [order_row(o, o.company.name) for o in find_orders(status=status, per_page=10).items]

    low = [Plain(sku=p.sku, name=p.name, available=p.available, low_stock_threshold=p.low_stock_threshold)
           for p in low_stock()]
    return {"counts": status_counts(), "waiting": rows(OrderStatus.PLACED), "holds": rows(OrderStatus.CREDIT_HOLD),
            "low": low}


def find_products(query="", page=1, per_page=50):
    """All products (active or not) by SKU or name."""
    stmt = select(Product).options(selectinload(Product.category))
    query = (query or "").strip()
    if query:
        like = f"%{query}%"
        stmt = stmt.where(or_(Product.sku.ilike(like), Product.name.ilike(like)))
    return db.paginate(stmt.order_by(Product.sku), page=page, per_page=per_page, error_out=False)


def _decimal(form, name, errors, label):
    raw = (form.get(name) or "").strip().replace(",", ".")
    try:
        value = Decimal(raw)
    except InvalidOperation:
        errors[name] = f"{label} “{raw[:20]}” is not an amount such as 12.50."
        return None
    if value < 0 or value >= Decimal("10000000000") or value != value.quantize(Decimal("0.01")):
        errors[name] = f"{label} must be 0 or more with at most two decimals."
        return None
    return value


def _int(form, name, errors, label, minimum=0):
    raw = (form.get(name) or "").strip()
    if not raw.lstrip("-").isdigit():
        errors[name] = f"{label} “{raw[:20]}” is not a whole number."
        return None
    value = int(raw)
    if value < minimum or value > 10_000_000:
        errors[name] = f"{label} must be between {minimum} and 10,000,000."
        return None
    return value


def save_product(product, form):
    """Create (product None) or update a product from form fields; every wrong field is named."""
    errors = {}
    values = {
        "sku": (form.get("sku") or "").strip().upper(),
        "name": (form.get("name") or "").strip(),
        "sell_unit": (form.get("sell_unit") or "").strip(),
        "description": (form.get("description") or "").strip()[:5000],
        "base_price": _decimal(form, "base_price", errors, "Base price"),
        "deposit": _decimal(form, "deposit", errors, "Deposit"),
        "min_qty": _int(form, "min_qty", errors, "Minimum quantity", 1),
        "qty_step": _int(form, "qty_step", errors, "Quantity step", 1),
        "stock_on_hand": _int(form, "stock_on_hand", errors, "Stock on hand"),
        "low_stock_threshold": _int(form, "low_stock_threshold", errors, "Low-stock threshold"),
        "backorder_allowed": form.get("backorder_allowed") == "on",
        "active": form.get("active") == "on",
    }
    if not values["sku"] or len(values["sku"]) > 40 or not all(c.isalnum() or c in "-_." for c in values["sku"]):
        errors["sku"] = "SKU must be 1 to 40 letters, digits, dashes, dots or underscores."
    elif db.session.scalar(select(Product.id).where(Product.sku == values["sku"], Product.id != (product.id if product else -1))):
        errors["sku"] = f"SKU {values['sku']} is taken by another product."
    for name, label, size in (("name", "Name", 200), ("sell_unit", "Sell unit", 80)):
        if not values[name] or len(values[name]) > size:
            errors[name] = f"{label} must be 1 to {size} characters."
    if values["min_qty"] and values["qty_step"] and values["min_qty"] % values["qty_step"]:
        errors["min_qty"] = f"The minimum quantity must be a multiple of the step ({values['qty_step']})."
    category_id = form.get("category_id", "")
    category = db.session.get(Category, int(category_id)) if category_id.isdigit() else None
    if category is None:
        errors["category_id"] = "Choose a category."
    if product is not None and values["stock_on_hand"] is not None and values["stock_on_hand"] < product.stock_reserved and not values["backorder_allowed"]:
        errors["stock_on_hand"] = (
            f"{product.stock_reserved} are reserved by open orders; stock on hand cannot be lower "
            "unless backorders are allowed."
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


def save_company(company, form):
    """Update a company's commercial terms from form fields."""
    errors = {}
    name = (form.get("name") or "").strip()
    if not name or len(name) > 200:
        errors["name"] = "Name must be 1 to 200 characters."
    elif db.session.scalar(select(Company.id).where(Company.name == name, Company.id != company.id)):
        errors["name"] = f"Another company is called {name}."
    credit_limit = _decimal(form, "credit_limit", errors, "Credit limit")
    terms = _int(form, "payment_terms_days", errors, "Payment terms", 0)
    if terms is not None and terms > 365:
        errors["payment_terms_days"] = "Payment terms can be at most 365 days."
    list_id = form.get("price_list_id", "")
    price_list = db.session.get(PriceList, int(list_id)) if list_id.isdigit() else None
    if list_id and price_list is None:
        errors["price_list_id"] = "Choose a price list or none."
    if errors:
        raise FieldErrors(errors)
    company.name, company.credit_limit, company.payment_terms_days = name, credit_limit, terms
    company.vat_id = (form.get("vat_id") or "").strip()[:32] or None
    company.price_list_id = price_list.id if price_list else None
    company.active = form.get("active") == "on"
    db.session.commit()
    return company


def set_user_active(user_id, company_id, active):
    """Let a company's user sign in, or stop them (which ends their sessions)."""
    user = db.session.get(User, user_id)
    if user is None or user.company_id != company_id:
        raise NotFound("There is no such user in this company.")
    user.active = active
    if not active:
        user.session_token = secrets.token_hex(16)
    db.session.commit()
    return user


def price_list_tiers(price_list_id):
    """A price list with its tiers, by SKU then quantity."""
    price_list = db.session.get(PriceList, price_list_id)
    if price_list is None:
        raise NotFound("There is no such price list.")
    tiers = db.session.scalars(
        select(PriceTier)
        .join(Product)
        .options(selectinload(PriceTier.product))
        .where(PriceTier.price_list_id == price_list_id)
        .order_by(Product.sku, PriceTier.min_qty)
    ).all()
    return price_list, tiers


def save_tier(price_list_id, form):
    """Add a tier to a price list, or change the price of the tier with the same minimum."""
    errors = {}
    sku = (form.get("sku") or "").strip().upper()
    product = db.session.scalar(select(Product).where(Product.sku == sku))
    if product is None:
        errors["sku"] = f"Unknown SKU “{sku[:40]}”."
    min_qty = _int(form, "min_qty", errors, "From quantity", 1)
    price = _decimal(form, "price", errors, "Price")
    if errors:
        raise FieldErrors(errors)
    tier = db.session.scalar(
        select(PriceTier).where(
            PriceTier.price_list_id == price_list_id, PriceTier.product_id == product.id, PriceTier.min_qty == min_qty
        )
    )
    if tier is None:
        db.session.add(PriceTier(price_list_id=price_list_id, product_id=product.id, min_qty=min_qty, price=price))
    else:
        tier.price = price
    db.session.commit()


def delete_tier(price_list_id, tier_id):
    """Remove one tier from a price list."""
    tier = db.session.get(PriceTier, tier_id)
    if tier is None or tier.price_list_id != price_list_id:
        raise InvalidInput("That tier no longer exists.")
    db.session.delete(tier)
    db.session.commit()
