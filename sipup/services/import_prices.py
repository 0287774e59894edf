"""The price tiers file of a bulk import and export: one line per price list, SKU and from-quantity.

The price lists must exist (staff make them at /admin/price-lists/new); a tier is created or its price
changed, and tiers the file does not name are kept. Each price list's changes go to its audit trail as one
entry per batch, naming the file.
"""

from flask_babel import gettext
from sqlalchemy import func, select, tuple_

from sipup.dbtools.batch import bulk_insert, bulk_update

from ..exceptions import InvalidInput, LineRefused
from ..extensions import db
from ..models import PriceList, PriceTier, Product
from . import audit
from .parsing import parse_count, parse_money

COLUMNS = ("price_list", "sku", "min_qty", "price")
REQUIRED = COLUMNS
KEY_COLUMN = "min_qty"
CHUNK = 500


def read(record):
    """((list name in lower case, SKU, from-quantity), values) of one line; LineRefused naming each wrong cell."""
    problems = []
    name = (record.get("price_list") or "").strip()
    sku = (record.get("sku") or "").strip().upper()
    if not name or len(name) > 120:
        problems.append(("price_list", gettext("must be 1 to %(size)s characters", size=120)))
    if not sku or len(sku) > 40:
        problems.append(("sku", gettext("must be 1 to %(size)s characters", size=40)))
    values = {"price_list": name, "sku": sku}
    for column, parse, args in (
        ("min_qty", parse_count, (gettext("From quantity"), 1)),
        ("price", parse_money, (gettext("Price"),)),
    ):
        try:
            values[column] = parse(record.get(column), *args)
        except InvalidInput as exc:
            problems.append((column, str(exc)))
    if problems:
        raise LineRefused(problems)
    return (name.lower(), sku, values["min_qty"]), values


def _lists():
    return {name.lower(): id_ for id_, name in db.session.execute(select(PriceList.id, PriceList.name))}


def _product_ids(skus):
    found = {}
    for start in range(0, len(skus), CHUNK):
        found.update(
            db.session.execute(
                select(Product.sku, Product.id).where(Product.sku.in_(skus[start : start + CHUNK]))
            ).all()
        )
    return found


def _tiers(pairs):
    """(price list id, product id, min_qty) -> (tier id, price) for the tiers of these lists and products."""
    found = {}
    pairs = sorted(set(pairs))
    for start in range(0, len(pairs), CHUNK):
        stmt = select(
            PriceTier.id, PriceTier.price_list_id, PriceTier.product_id, PriceTier.min_qty, PriceTier.price
        ).where(tuple_(PriceTier.price_list_id, PriceTier.product_id).in_(pairs[start : start + CHUNK]))
        for id_, list_id, product_id, min_qty, price in db.session.execute(stmt):
            found[(list_id, product_id, min_qty)] = (id_, price)
    return found


def _resolve(entries):
    lists = _lists()
    products = _product_ids(sorted({values["sku"] for _line, _key, values in entries}))
    pairs = [(lists[k[0]], products[k[1]]) for _l, k, _v in entries if k[0] in lists and k[1] in products]
    return lists, products, _tiers(pairs)


def plan(entries):
    """What each line would do: create a tier, change its price, or nothing; or why it is refused."""
    lists, products, tiers = _resolve(entries)
    items = []
    for line, key, values in entries:
        item = {"line": line, "key": f"{values['price_list']} · {values['sku']} from {values['min_qty']}", "group": key}
        item["values"] = values
        if key[0] not in lists:
            items.append(
                item
                | {
                    "action": "refused",
                    "column": "price_list",
                    "why": gettext("there is no price list “%(name)s”", name=values["price_list"]),
                }
            )
        elif key[1] not in products:
            items.append(
                item
                | {
                    "action": "refused",
                    "column": "sku",
                    "why": gettext("there is no product %(sku)s", sku=values["sku"]),
                }
            )
        else:
            tier = tiers.get((lists[key[0]], products[key[1]], key[2]))
            if tier is None:
                items.append(item | {"action": "create", "changes": [f"{values['price']:.2f}"]})
            elif tier[1] != values["price"]:
                items.append(item | {"action": "change", "changes": [f"price: {tier[1]:.2f} → {values['price']:.2f}"]})
            else:
                items.append(item | {"action": "same", "changes": []})
    return items


def apply(items, actor=None, source=""):
    """Create and reprice the tiers of one batch of planned lines, in the caller's transaction."""
    lists, products, tiers = _resolve([(item["line"], item["group"], item["values"]) for item in items])
    inserts, updates, per_list = [], [], {}
    for item in items:
        list_name, sku, min_qty = item["group"]
        list_id, product_id = lists[list_name], products[sku]
        tier = tiers.get((list_id, product_id, min_qty))
        price = item["values"]["price"]
        if tier is None:
            inserts.append({"price_list_id": list_id, "product_id": product_id, "min_qty": min_qty, "price": price})
        elif tier[1] != price:
            updates.append({"id": tier[0], "price": price})
        else:
            continue
        counts = per_list.setdefault(list_id, [0, 0])
        counts[0 if tier is None else 1] += 1
    bulk_insert(PriceTier, inserts)
    bulk_update(PriceTier, updates)
    for list_id, (created, changed) in per_list.items():
        audit.record(
            "price_list",
            list_id,
            "tiers",
            "",
            gettext(
                "%(source)s: %(created)s new, %(changed)s repriced", source=source, created=created, changed=changed
            ),
            actor,
        )
    return len(inserts), len(updates)


def export_rows():
    """Every tier of every price list, by list, SKU and from-quantity."""
    stmt = (
        select(PriceList.name, Product.sku, PriceTier.min_qty, PriceTier.price)
        .join(PriceTier, PriceTier.price_list_id == PriceList.id)
        .join(Product, Product.id == PriceTier.product_id)
        .order_by(PriceList.name, Product.sku, PriceTier.min_qty)
    )
    yield from db.session.execute(stmt.execution_options(yield_per=CHUNK))


def count():
    """How many tiers there are."""
    return db.session.scalar(select(func.count()).select_from(PriceTier))
