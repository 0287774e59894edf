"""Demo and scale data: a believable drinks catalog, companies with price lists, and months of orders.

Everything is inserted in batches through SQLAlchemy Core (sipup.dbtools.batch), so a million orders take minutes.
"""

import logging
import random
import secrets
from datetime import timedelta
from decimal import Decimal

from sqlalchemy import func, select, update

from sipup.dbtools.batch import bulk_insert
from sipup.storage import StorageUnavailable

from .. import searchtext
from ..extensions import db
from ..models import (
    Address,
    Category,
    Company,
    Invoice,
    Order,
    OrderEvent,
    OrderLine,
    OrderStatus,
    PriceList,
    PriceTier,
    Product,
    Role,
    Sequence,
    ShoppingList,
    ShoppingListItem,
    User,
    utcnow,
)
from .catalog import index_products, merge_search_index
from .images import placeholder_picture, store_picture
from .orders import order_number
from .pricing import money

BATCH = 5000
S = OrderStatus

CATEGORIES = ["Beer", "Wine", "Spirits", "Soft drinks", "Water", "Juices", "Mixers", "Coffee & tea"]
# (category, name, sell unit, base price per pack, deposit per pack, minimum, step)
CATALOG = [
    ("Beer", "Hofbräu Pils", "crate of 20 x 0.5 l", "17.90", "3.10", 1, 1),
    ("Beer", "Hofbräu Pils", "case of 24 x 0.33 l", "19.40", "3.42", 1, 1),
    ("Beer", "Kellerbier naturtrüb", "crate of 20 x 0.5 l", "19.90", "3.10", 1, 1),
    ("Beer", "Weißbier hell", "crate of 20 x 0.5 l", "20.50", "3.10", 1, 1),
    ("Beer", "Helles Lager", "keg of 30 l", "89.00", "30.00", 1, 1),
    ("Beer", "Pils alkoholfrei", "case of 24 x 0.33 l", "18.20", "3.42", 1, 1),
    ("Beer", "IPA Craft", "case of 24 x 0.33 l", "34.80", "3.42", 1, 1),
    ("Wine", "Riesling trocken", "case of 6 x 0.75 l", "41.40", "0.00", 1, 1),
    ("Wine", "Grauburgunder", "case of 6 x 0.75 l", "47.70", "0.00", 1, 1),
    ("Wine", "Primitivo di Manduria", "case of 6 x 0.75 l", "53.90", "0.00", 1, 1),
    ("Wine", "Prosecco DOC extra dry", "case of 6 x 0.75 l", "39.00", "0.00", 2, 1),
    ("Wine", "Hauswein rot", "bag-in-box 10 l", "38.50", "0.00", 1, 1),
    ("Spirits", "London Dry Gin", "case of 6 x 0.7 l", "89.40", "0.00", 1, 1),
    ("Spirits", "Vodka", "case of 6 x 0.7 l", "69.00", "0.00", 1, 1),
    ("Spirits", "Rum weiß", "case of 6 x 0.7 l", "74.40", "0.00", 1, 1),
    ("Spirits", "Kräuterlikör", "case of 12 x 0.02 l", "11.90", "0.00", 5, 5),
    ("Soft drinks", "Cola", "crate of 24 x 0.2 l glass", "14.90", "4.50", 1, 1),
    ("Soft drinks", "Cola zero", "crate of 24 x 0.2 l glass", "14.90", "4.50", 1, 1),
    ("Soft drinks", "Orangenlimonade", "crate of 24 x 0.33 l glass", "16.80", "4.50", 1, 1),
    ("Soft drinks", "Cola", "pack of 12 x 1.0 l PET", "13.20", "3.00", 2, 2),
    ("Soft drinks", "Spezi", "crate of 24 x 0.33 l glass", "16.80", "4.50", 1, 1),
    ("Water", "Mineralwasser classic", "crate of 12 x 0.7 l glass", "7.20", "3.30", 2, 1),
    ("Water", "Mineralwasser still", "crate of 12 x 0.7 l glass", "7.20", "3.30", 2, 1),
    ("Water", "Tafelwasser medium", "pack of 6 x 1.5 l PET", "3.60", "1.50", 4, 2),
    ("Water", "Gastro-Wasser", "crate of 24 x 0.25 l glass", "11.40", "4.26", 1, 1),
    ("Juices", "Apfelsaft naturtrüb", "crate of 6 x 1.0 l glass", "10.80", "2.40", 1, 1),
    ("Juices", "Orangensaft", "crate of 24 x 0.2 l glass", "19.20", "4.50", 1, 1),
    ("Juices", "Rhabarberschorle", "crate of 24 x 0.33 l glass", "21.60", "4.50", 1, 1),
    ("Mixers", "Tonic Water", "case of 24 x 0.2 l glass", "21.50", "3.42", 1, 1),
    ("Mixers", "Ginger Beer", "case of 24 x 0.2 l glass", "23.90", "3.42", 1, 1),
    ("Mixers", "Bitter Lemon", "case of 24 x 0.2 l glass", "21.50", "3.42", 1, 1),
    ("Coffee & tea", "Espresso beans", "bag of 1 kg", "18.90", "0.00", 6, 6),
    ("Coffee & tea", "Eistee Pfirsich", "crate of 24 x 0.33 l glass", "17.40", "4.50", 1, 1),
]
BRANDS = ["Alpen", "Nordquell", "Rheintal", "Seeland", "Bergkrone", "Talhof", "Lindenau", "Sonnhalde"]
COMPANY_KINDS = ["Bar", "Café", "Restaurant", "Hotel", "Kiosk", "Getränkemarkt", "Bistro", "Club", "Biergarten"]
COMPANY_NAMES = [
    "Centrale",
    "am Markt",
    "Seeblick",
    "Linde",
    "Zur Post",
    "Stern",
    "Hafen",
    "Alte Mühle",
    "Goldener Hirsch",
]
CITIES = [("80331", "München"), ("50667", "Köln"), ("20095", "Hamburg"), ("10115", "Berlin"), ("70173", "Stuttgart")]
# Price lists: (name, discount on base, extra tier (min quantity, further discount))
PRICE_LISTS = [
    ("Gastro", "0.05", (10, "0.10")),
    ("Retail", "0.08", (25, "0.12")),
    ("Key accounts", "0.12", (50, "0.16")),
]


def seed_catalog(products=len(CATALOG), rng=None):
    """Categories and `products` products: the real catalog first, then brand variants of it."""
    rng = rng or random.Random(1)
    existing = {c.name: c.id for c in db.session.scalars(select(Category))}
    for position, name in enumerate(CATEGORIES):
        if name not in existing:
            category = Category(name=name, slug=name.lower().replace(" & ", "-").replace(" ", "-"), position=position)
            db.session.add(category)
            db.session.flush()
            existing[name] = category.id
    db.session.commit()
    taken = set(db.session.scalars(select(Product.sku)))
    rows = []
    for index in range(products):
        category, name, unit, price, deposit, minimum, step = CATALOG[index % len(CATALOG)]
        variant = index // len(CATALOG)
        if variant:
            name = f"{BRANDS[variant % len(BRANDS)]} {name}"
            price = money(Decimal(price) * Decimal(rng.randint(85, 125)) / 100)
        sku = f"{category[:3].upper()}-{index + 1:05d}"
        if sku in taken:
            continue
        folded = searchtext.product_text(name, sku, category, unit)  # Core inserts skip the model's events
        rows.append(
            dict(
                sku=sku,
                name=name,
                description=f"{name}, sold as {unit}. Deposit is charged per pack and refunded on return.",
                category_id=existing[category],
                sell_unit=unit,
                base_price=Decimal(price),
                min_qty=minimum,
                qty_step=step,
                deposit=Decimal(deposit),
                stock_on_hand=rng.choice([0, 8, 40, 120, 300, 800]) if index % 11 else 0,
                stock_reserved=0,
                backorder_allowed=index % 17 == 0,
                low_stock_threshold=10,
                active=True,
                updated_at=utcnow(),
                search_text=folded,
                search_terms=searchtext.terms(folded),
            )
        )
    count = bulk_insert(Product, rows, batch_size=BATCH)
    index_products(skus=[row["sku"] for row in rows])
    db.session.commit()
    merge_search_index()
    return count


# A colour per category for the generated demo pictures.
HUES = [
    (176, 120, 30),
    (120, 30, 60),
    (70, 90, 120),
    (200, 40, 40),
    (40, 120, 180),
    (220, 140, 30),
    (60, 140, 90),
    (90, 60, 40),
]


def seed_pictures():
    """A generated picture (drawn, not downloaded) for every product that has none; none when the file storage
    fails (the products show their initials, and the demo works all the same)."""

    categories = [c.id for c in db.session.scalars(select(Category).order_by(Category.position))]
    for product in db.session.scalars(select(Product).where(~Product.images.any())).all():
        hue = HUES[categories.index(product.category_id) % len(HUES)] if product.category_id in categories else HUES[0]
        try:
            store_picture(product, placeholder_picture(f"{product.name} · {product.sell_unit}", hue))
        except StorageUnavailable as exc:
            db.session.rollback()
            logging.getLogger("sipup.seed").warning("Demo pictures left out: %s", exc.reason)
            return


def seed_price_lists():
    """The three price lists with a tier for every product: a discount, and a deeper one from a quantity."""
    lists = []
    for name, discount, (tier_qty, tier_discount) in PRICE_LISTS:
        price_list = db.session.scalar(select(PriceList).where(PriceList.name == name))
        if price_list is None:
            price_list = PriceList(name=name)
            db.session.add(price_list)
            db.session.flush()
            products = db.session.execute(select(Product.id, Product.base_price, Product.min_qty)).all()
            rows = []
            for product_id, base, minimum in products:
                rows.append(
                    dict(
                        price_list_id=price_list.id,
                        product_id=product_id,
                        min_qty=minimum,
                        price=money(base * (1 - Decimal(discount))),
                    )
                )
                if tier_qty > minimum:
                    rows.append(
                        dict(
                            price_list_id=price_list.id,
                            product_id=product_id,
                            min_qty=tier_qty,
                            price=money(base * (1 - Decimal(tier_discount))),
                        )
                    )
            bulk_insert(PriceTier, rows, batch_size=BATCH)
        lists.append(price_list.id)
    db.session.commit()
    return lists


def seed_companies(count, password, rng=None):
    """Companies with an address, a price list, an owner and a buyer; returns the customer logins."""
    rng = rng or random.Random(2)
    lists = seed_price_lists()
    holder = User(email="x")  # hash the shared demo password once, not once per user
    holder.set_password(password)
    start = db.session.scalar(select(func.count(Company.id))) or 0
    logins = []
    for index in range(start, start + count):
        kind, place = COMPANY_KINDS[index % len(COMPANY_KINDS)], COMPANY_NAMES[(index // 9) % len(COMPANY_NAMES)]
        name = f"{kind} {place}" + (f" {index // 81 + 1}" if index >= 81 else "")
        postcode, city = CITIES[index % len(CITIES)]
        company = Company(
            name=name,
            vat_id=f"DE{100000000 + index * 7919 % 899999999}",
            payment_terms_days=rng.choice([14, 30, 30, 45]),
            credit_limit=Decimal(rng.choice([5000, 10000, 10000, 25000])),
            price_list_id=None if index % 5 == 4 else lists[index % len(lists)],
        )
        company.addresses.append(
            Address(label="Main", street=f"Hauptstraße {index + 1}", postcode=postcode, city=city, country="DE")
        )
        if index % 3 == 0:
            company.addresses.append(
                Address(label="Storage", street=f"Lagerweg {index + 2}", postcode=postcode, city=city, country="DE")
            )
        db.session.add(company)
        slug = "".join(ch for ch in name.lower() if ch.isalnum())[:30] + (str(index) if index >= 81 else "")
        for role in (Role.OWNER, Role.BUYER):
            email = f"{role}@{slug}.example"
            db.session.add(
                User(
                    email=email,
                    role=role,
                    company=company,
                    name=f"{role.capitalize()} of {name}",
                    password_hash=holder.password_hash,
                )
            )
            if len(logins) < 2:
                logins.append((role, email))
        if index % 200 == 199:
            db.session.commit()
    db.session.commit()
    return logins


def seed_orders(count, months, rng=None, progress=None):
    """`count` orders spread over the last `months` months, older ones further along their life."""
    rng = rng or random.Random(3)
    companies = db.session.execute(select(Company.id, Company.payment_terms_days)).all()
    buyers = dict(db.session.execute(select(User.company_id, User.id).where(User.role == Role.BUYER)).all())
    products = db.session.execute(
        select(
            Product.id,
            Product.sku,
            Product.name,
            Product.sell_unit,
            Product.base_price,
            Product.deposit,
            Product.min_qty,
        )
    ).all()
    addresses = dict(db.session.execute(select(Address.company_id, Address.street)).all())
    if not companies or not products:
        raise ValueError("Seed companies and products before orders.")
    next_id = (db.session.scalar(select(func.max(Order.id))) or 0) + 1
    invoice_counters = {name: value for name, value in db.session.execute(select(Sequence.name, Sequence.value))}
    now = utcnow()
    span = timedelta(days=30 * months)
    # Order dates in ascending order, so numbers and ids rise together.
    offsets = sorted((rng.random() for _ in range(count)), reverse=True)
    done = 0
    while done < count:
        orders, lines, events, invoices = [], [], [], []
        for offset in offsets[done : done + BATCH]:
            created = (now - span * offset).replace(microsecond=0)  # as stored: the number's month holds
            age = (now - created).days
            status = _status_for_age(age, rng)
            company_id, terms = rng.choice(companies)
            order_id = next_id
            next_id += 1
            goods = deposit = Decimal("0.00")
            for product in rng.sample(products, k=min(len(products), rng.randint(1, 5))):
                quantity = product.min_qty * rng.randint(1, 6)
                line_total = money(product.base_price * quantity)
                goods += line_total
                deposit += money(product.deposit * quantity)
                lines.append(
                    dict(
                        order_id=order_id,
                        created_at=created,
                        product_id=product.id,
                        sku=product.sku,
                        name=product.name,
                        sell_unit=product.sell_unit,
                        quantity=quantity,
                        unit_price=product.base_price,
                        unit_deposit=product.deposit,
                        line_total=line_total,
                    )
                )
            vat = money((goods + deposit) * Decimal("0.20"))
            total = goods + deposit + vat
            orders.append(
                dict(
                    id=order_id,
                    number=order_number(order_id, created),
                    company_id=company_id,
                    buyer_id=buyers.get(company_id),
                    status=status,
                    po_reference=f"PO-{order_id}",
                    requested_date=(created + timedelta(days=2)).date(),
                    delivery_address=addresses.get(company_id, ""),
                    note="",
                    goods_total=goods,
                    deposit_total=deposit,
                    vat_total=vat,
                    total=total,
                    created_at=created,
                    updated_at=created,
                )
            )
            events.append(dict(order_id=order_id, status=S.PLACED, note="", user_id=None, created_at=created))
            if status != S.PLACED:
                events.append(
                    dict(
                        order_id=order_id,
                        status=status,
                        note="",
                        user_id=None,
                        created_at=created + timedelta(days=min(age, 3)),
                    )
                )
            if status in (S.INVOICED, S.PAID):
                issued = created + timedelta(days=2)
                key = f"invoice-{issued:%Y}"
                invoice_counters[key] = invoice_counters.get(key, 0) + 1
                invoices.append(
                    dict(
                        number=f"INV-{issued:%Y}-{invoice_counters[key]:06d}",
                        order_id=order_id,
                        company_id=company_id,
                        amount=total,
                        paid_amount=total if status == S.PAID else Decimal("0.00"),
                        issued_at=issued,
                        due_date=(issued + timedelta(days=terms)).date(),
                        paid_at=min(issued + timedelta(days=min(terms, age)), now) if status == S.PAID else None,
                    )
                )
        for model, rows in ((Order, orders), (OrderLine, lines), (OrderEvent, events), (Invoice, invoices)):
            bulk_insert(model, rows, batch_size=BATCH)
        _save_counters(invoice_counters)
        # One commit per batch of orders, not one for the whole run: a million orders in one transaction
        # would grow the undo log (or SQLite's WAL) by gigabytes and hold their locks for minutes, and a
        # failure near the end would throw away all the work. Each commit holds whole orders (lines,
        # events, invoice and invoice counter together), so a failed run leaves complete orders only.
        db.session.commit()
        done += len(orders)
        if progress:
            progress(len(orders))
    _recompute_reservations()
    return count


def _status_for_age(age_days, rng):
    if age_days > 45:
        return S.PAID if rng.random() < 0.97 else S.CANCELLED
    if age_days > 10:
        return rng.choice([S.PAID, S.INVOICED, S.INVOICED])
    if age_days > 2:
        return rng.choice([S.SHIPPED, S.INVOICED, S.CONFIRMED])
    return rng.choice([S.PLACED, S.CONFIRMED, S.PLACED])


def _save_counters(counters):
    """Store the invoice counters in the current transaction, with the invoices that used them."""
    for name, value in counters.items():
        updated = db.session.execute(update(Sequence).where(Sequence.name == name).values(value=value)).rowcount
        if not updated:
            db.session.add(Sequence(name=name, value=value))
    db.session.flush()


def _recompute_reservations():
    """Reserved stock is what open orders hold: recomputed once after bulk inserts."""
    held = (
        select(func.coalesce(func.sum(OrderLine.quantity), 0))
        .join(Order, Order.id == OrderLine.order_id)
        .where(OrderLine.product_id == Product.id, Order.status.in_((S.PLACED, S.CREDIT_HOLD, S.CONFIRMED)))
        .scalar_subquery()
    )
    db.session.execute(update(Product).values(stock_reserved=held))
    # Demo stock must cover what is reserved, or the check constraint would be a lie.
    db.session.execute(
        update(Product)
        .where(Product.stock_on_hand < Product.stock_reserved)
        .values(stock_on_hand=Product.stock_reserved)
    )
    db.session.commit()


DEMO_LISTS = [  # (whose, name, shared, others may edit, how many products)
    (Role.OWNER, "Weekly bar order", True, True, 6),
    (Role.BUYER, "Weekend party", True, False, 4),
    (Role.BUYER, "Samples to try", False, False, 2),
]


def seed_shopping_lists(rng=None):
    """A few shopping lists per company, kept by its owner and its buyer, in quantities the products are sold in."""
    rng = rng or random.Random(4)
    products = db.session.scalars(select(Product).where(Product.active.is_(True)).order_by(Product.sku)).all()
    for company in db.session.scalars(select(Company).order_by(Company.id)):
        users = {user.role: user for user in company.users}
        for role, name, shared, others_may_edit, count in DEMO_LISTS:
            if role not in users:
                continue
            shopping_list = ShoppingList(
                company_id=company.id,
                owner_id=users[role].id,
                name=name,
                shared=shared,
                others_may_edit=others_may_edit,
            )
            for product in rng.sample(products, min(count, len(products))):
                smallest = -(-product.min_qty // product.qty_step) * product.qty_step
                shopping_list.items.append(
                    ShoppingListItem(product_id=product.id, quantity=smallest * rng.randint(1, 3))
                )
            db.session.add(shopping_list)
    db.session.commit()


def seed_demo():
    """A small, complete shop: catalog, companies, staff, an admin, some months of orders and shopping lists."""
    password = secrets.token_urlsafe(9)
    seed_catalog()
    seed_pictures()
    customer_logins = seed_companies(6, password)
    staff = []
    for role in (Role.ADMIN, Role.STAFF):
        email = f"{role}@sipup.example"
        if not db.session.scalar(select(User.id).where(User.email == email)):
            user = User(email=email, role=role, name=role.capitalize())
            user.set_password(password)
            db.session.add(user)
        staff.append((role, email))
    db.session.commit()
    seed_orders(60, 6)
    seed_shopping_lists()
    return [(role, email, password) for role, email in staff + customer_logins]
