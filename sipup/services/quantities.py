"""Quantity rules of a product: whole packs, at least the minimum, in multiples of the step."""

from flask_babel import gettext


def quantity_problem(product, quantity):
    """Why a quantity cannot be ordered for this product, or None when it can."""
    if quantity < product.min_qty:
        return gettext("The minimum for %(sku)s is %(minimum)s.", sku=product.sku, minimum=product.min_qty)
    if quantity % product.qty_step:
        lower = quantity - quantity % product.qty_step
        upper = lower + product.qty_step
        if lower >= product.min_qty:
            return gettext(
                "%(sku)s comes in steps of %(step)s: order %(lower)s or %(upper)s.",
                sku=product.sku,
                step=product.qty_step,
                lower=lower,
                upper=upper,
            )
        return gettext(
            "%(sku)s comes in steps of %(step)s: order %(upper)s.", sku=product.sku, step=product.qty_step, upper=upper
        )
    return None


def out_of_stock(product):
    """Why a product cannot be put in a cart at all (none left and no backorders), or None."""
    if product.available <= 0 and not product.backorder_allowed:
        return gettext(
            "%(name)s (%(sku)s) is out of stock; it cannot be ordered until it is back.",
            name=product.name,
            sku=product.sku,
        )
    return None


def backorder_note(product, quantity):
    """What a buyer should know when a backorderable product has less than a quantity in stock, or None."""
    if not product.backorder_allowed or quantity <= product.available:
        return None
    if product.available <= 0:
        return gettext("%(sku)s is on backorder, ships when in stock.", sku=product.sku)
    return gettext(
        "%(available)s of %(sku)s in stock; the rest is on backorder, ships when in stock.",
        available=product.available,
        sku=product.sku,
    )


def stock_problem(product, quantity):
    """Why stock cannot cover a quantity, or None."""
    if product.backorder_allowed or quantity <= product.available:
        return None
    if product.available <= 0:
        return gettext("%(sku)s is out of stock.", sku=product.sku)
    return gettext("Only %(available)s of %(sku)s in stock.", available=product.available, sku=product.sku)
