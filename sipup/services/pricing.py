"""Buyer prices: the company's price list tiers, else the base price; the highest tier met wins."""

from collections import defaultdict
from decimal import ROUND_HALF_UP, Decimal

from sqlalchemy import select

from sipup.cache import cached_many

from ..extensions import db
from ..models import PriceTier

CENT = Decimal("0.01")


def money(value):
    """Round to cents, half up, as invoices do."""
    return Decimal(value).quantize(CENT, rounding=ROUND_HALF_UP)


def load_tiers(price_list_id, product_ids):
    """The tiers of one price list for many products, in one query: {product_id: [(min_qty, price)]}."""
    tiers = defaultdict(list)
    if price_list_id is None or not product_ids:
        return tiers
    rows = db.session.execute(
        select(PriceTier.product_id, PriceTier.min_qty, PriceTier.price)
        .where(PriceTier.price_list_id == price_list_id, PriceTier.product_id.in_(set(product_ids)))
        .order_by(PriceTier.product_id, PriceTier.min_qty)
    )
    for product_id, min_qty, price in rows:
        tiers[product_id].append((min_qty, price))
    return tiers


def tiers_for(price_list_id, product_ids):
    """load_tiers() through the cache: every product's tiers in one round trip, fresh after any tier change."""
    if price_list_id is None or not product_ids:
        return {}

    def load(missing):
        tiers = load_tiers(price_list_id, missing)
        return {product_id: list(tiers.get(product_id, [])) for product_id in missing}

    return cached_many("prices", f"tiers:{price_list_id}", product_ids, ["prices", f"prices:{price_list_id}"], load)


def unit_price(base_price, tiers, quantity):
    """The price per unit for a quantity: the highest tier whose minimum is met, else the base price."""
    price = base_price
    for min_qty, tier_price in tiers:  # sorted by min_qty
        if quantity >= min_qty:
            price = tier_price
    return price


def price_steps(product, tiers):
    """What a product page shows: [(from_quantity, unit_price)] starting at the minimum quantity."""
    steps = []
    for from_qty in [product.min_qty] + [min_qty for min_qty, _ in tiers]:
        # A tier from 10 on a product sold in sixes first applies to 12: show what can be ordered.
        quantity = -(-max(from_qty, product.min_qty) // product.qty_step) * product.qty_step
        price = unit_price(product.base_price, tiers, quantity)
        if not steps or (quantity > steps[-1][0] and price != steps[-1][1]):
            steps.append((quantity, price))
    return steps


def company_price_list_id(user):
    return user.company.price_list_id if user.company else None
