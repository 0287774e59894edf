"""The products file of a bulk import and export: one line per SKU, created or updated by its SKU.

A cell left empty keeps what the product has (a new product gets the usual default); categories named in the
file that do not exist yet are created. Written with set-based inserts and updates, so 10,000 lines take
seconds; the search text the ORM events keep for one product is computed here for many.
"""

from flask_babel import gettext
from sqlalchemy import func, select

from sipup.dbtools.batch import bulk_insert, bulk_update

from .. import searchtext
from ..exceptions import InvalidInput, LineRefused
from ..extensions import db
from ..models import Category, Product, utcnow
from . import vat
from .catalog import index_products
from .parsing import MAX_COUNT, parse_count, parse_money

COLUMNS = (
    "sku",
    "name",
    "category",
    "pack",
    "unit_price",
    "deposit",
    "vat_class",
    "min_qty",
    "qty_step",
    "stock",
    "active",
)
REQUIRED = ("sku", "name", "category", "pack", "unit_price")
KEY_COLUMN = "sku"
VAT_CLASSES = tuple(vat.CLASS_LABELS)  # standard, reduced, zero
YES, NO = {"yes", "y", "true", "1", "ja", "x"}, {"no", "n", "false", "0", "nein"}
# Column of the file -> attribute of Product, for what is compared and written.
FIELDS = {
    "name": "name",
    "category": "category_id",
    "pack": "sell_unit",
    "unit_price": "base_price",
    "deposit": "deposit",
    "min_qty": "min_qty",
    "qty_step": "qty_step",
    "stock": "stock_on_hand",
    "active": "active",
    "vat_class": "vat_class",
}
DEFAULTS = {"deposit": 0, "min_qty": 1, "qty_step": 1, "stock": 0, "active": True, "vat_class": "standard"}
CHUNK = 1000


def _sized(record, column, size, problems):
    value = (record.get(column) or "").strip()
    if not value or len(value) > size:
        problems.append((column, gettext("must be 1 to %(size)s characters", size=size)))
    return value


def _optional(record, column, parse, problems, *args):
    raw = (record.get(column) or "").strip()
    if not raw:
        return None
    try:
        return parse(raw, *args)
    except InvalidInput as exc:
        problems.append((column, str(exc)))
        return None


def read_flag(raw, column, problems):
    """yes/no (true/false, 1/0, ja/nein) as a bool, None when empty; anything else is a problem of column."""
    word = (raw or "").strip().lower()
    if not word:
        return None
    if word in YES | NO:
        return word in YES
    problems.append((column, gettext("“%(word)s” is neither yes nor no", word=word[:20])))
    return None


def read(record):
    """(SKU, values) of one line; LineRefused naming each wrong cell."""
    problems = []
    sku = (record.get("sku") or "").strip().upper()
    if not sku or len(sku) > 40 or not all(c.isalnum() or c in "-_." for c in sku):
        problems.append(("sku", gettext("must be 1 to 40 letters, digits, dashes, dots or underscores")))
    values = {
        "name": _sized(record, "name", 200, problems),
        "category": _sized(record, "category", 100, problems),
        "pack": _sized(record, "pack", 80, problems),
        "unit_price": _optional(record, "unit_price", parse_money, problems, gettext("Unit price")),
        "deposit": _optional(record, "deposit", parse_money, problems, gettext("Deposit")),
        "min_qty": _optional(record, "min_qty", parse_count, problems, gettext("Minimum quantity"), 1),
        "qty_step": _optional(record, "qty_step", parse_count, problems, gettext("Quantity step"), 1),
        "stock": _optional(record, "stock", parse_count, problems, gettext("Stock"), 0, MAX_COUNT),
        "active": read_flag(record.get("active"), "active", problems),
        "vat_class": (record.get("vat_class") or "").strip().lower() or None,
    }
    if values["unit_price"] is None and not any(c == "unit_price" for c, _ in problems):
        problems.append(("unit_price", gettext("is empty")))
    if values["vat_class"] is not None and values["vat_class"] not in VAT_CLASSES:
        problems.append(
            (
                "vat_class",
                gettext(
                    "“%(value)s” is not one of %(classes)s",
                    value=values["vat_class"][:20],
                    classes=", ".join(VAT_CLASSES),
                ),
            )
        )
    if problems:
        raise LineRefused(problems)
    return sku, values


def _existing(skus):
    """The products with these SKUs, by SKU (in chunks: an IN list of 10,000 is too long for some servers)."""
    found = {}
    for start in range(0, len(skus), CHUNK):
        for product in db.session.scalars(select(Product).where(Product.sku.in_(skus[start : start + CHUNK]))):
            found[product.sku] = product
    return found


def _categories():
    return {name.lower(): id_ for id_, name in db.session.execute(select(Category.id, Category.name))}


def _shown(value):
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def plan(entries):
    """What each line would do: create, change (with each change) or nothing; or why it is refused."""
    products = _existing([key for _line, key, _values in entries])
    categories = _categories()
    names = dict(db.session.execute(select(Category.id, Category.name)).all())
    items = []
    for line, sku, values in entries:
        product = products.get(sku)
        item = {"line": line, "key": sku, "group": sku, "values": values}
        wanted = _wanted(product, values, categories)
        if product is None:
            merged = {column: wanted.get(column, DEFAULTS.get(column)) for column in FIELDS}
        else:
            merged = {column: wanted.get(column, getattr(product, attr)) for column, attr in FIELDS.items()}
        step = merged["qty_step"]
        if merged["min_qty"] % step:
            items.append(
                item
                | _refused(
                    "min_qty", gettext("the minimum quantity must be a multiple of the step (%(step)s)", step=step)
                )
            )
            continue
        if product is not None and merged["stock"] < product.stock_reserved and not product.backorder_allowed:
            items.append(
                item
                | _refused(
                    "stock",
                    gettext(
                        "%(reserved)s are reserved by open orders; stock cannot be lower unless backorders are allowed",
                        reserved=product.stock_reserved,
                    ),
                )
            )
            continue
        if product is None:
            new = (
                ""
                if values["category"].lower() in categories
                else " " + gettext("(new category %(name)s)", name=values["category"])
            )
            items.append(item | {"action": "create", "changes": [f"{values['name']}{new}"]})
            continue
        changes = []
        for column, attr in FIELDS.items():
            old, new = getattr(product, attr), merged[column]
            if old != new:
                if column == "category":
                    old, new = names.get(old, old), values["category"]
                changes.append(f"{column}: {_shown(old)} → {_shown(new)}")
        items.append(item | {"action": "change" if changes else "same", "changes": changes})
    return items


def _wanted(product, values, categories):
    """The values a line sets (empty cells left out); a category not yet made counts as a change."""
    wanted = {}
    for column in FIELDS:
        value = values.get(column)
        if column == "category":
            value = categories.get(values["category"].lower(), values["category"])
        if value is not None:
            wanted[column] = value
    return wanted


def _refused(column, why):
    return {"action": "refused", "column": column, "why": why}


def _category_ids(names):
    """The id of each category named (any case), creating those that do not exist yet."""
    categories = _categories()
    for name in names:
        if name.lower() not in categories:
            slug = _free_slug(searchtext.folded(name).replace(" ", "-")[:90] or "category")
            category = Category(name=name, slug=slug, position=len(categories))
            db.session.add(category)
            db.session.flush()
            categories[name.lower()] = category.id
    return categories


def _free_slug(slug):
    taken = set(db.session.scalars(select(Category.slug).where(Category.slug.like(f"{slug}%"))))
    candidate, n = slug, 1
    while candidate in taken:
        n += 1
        candidate = f"{slug}-{n}"
    return candidate


def apply(items, actor=None, source=""):
    """Create and update the products of one batch of planned lines, in the caller's transaction."""
    categories = _category_ids({item["values"]["category"] for item in items})
    names = {id_: name for name, id_ in categories.items()}
    products = _existing([item["key"] for item in items])
    inserts, updates, now = [], [], utcnow()
    for item in items:
        values, product = item["values"], products.get(item["key"])
        row = {}
        for column, attr in FIELDS.items():
            value = categories[values["category"].lower()] if column == "category" else values.get(column)
            if value is None:
                value = getattr(product, attr) if product is not None else DEFAULTS[column]
            row[attr] = value
        text = searchtext.product_text(row["name"], item["key"], names[row["category_id"]], row["sell_unit"])
        row.update(search_text=text, search_terms=searchtext.terms(text), updated_at=now)
        if product is None:
            inserts.append(row | {"sku": item["key"], "stock_reserved": 0, "backorder_allowed": False})
        else:
            updates.append(row | {"id": product.id})
    bulk_insert(Product, inserts)
    bulk_update(Product, updates)
    index_products(skus=[row["sku"] for row in inserts], ids=[row["id"] for row in updates])
    return len(inserts), len(updates)


def export_rows():
    """Every product as a line of the file, by SKU."""
    stmt = select(Product, Category.name).join(Category).order_by(Product.sku).execution_options(yield_per=CHUNK)
    for product, category in db.session.execute(stmt):
        yield (
            product.sku,
            product.name,
            category,
            product.sell_unit,
            product.base_price,
            product.deposit,
            product.vat_class,
            product.min_qty,
            product.qty_step,
            product.stock_on_hand,
            product.active,
        )


def count():
    """How many products there are."""
    return db.session.scalar(select(func.count()).select_from(Product))
