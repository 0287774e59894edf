"""Quantity rules of a product: whole packs, at least the minimum, in multiples of the step."""


def quantity_problem(product, quantity):
    """Why a quantity cannot be ordered for this product, or None when it can."""
    if quantity < product.min_qty:
        return f"The minimum for {product.sku} is {product.min_qty}."
    if quantity % product.qty_step:
        lower = quantity - quantity % product.qty_step
        upper = lower + product.qty_step
        choices = f"{lower} or {upper}" if lower >= product.min_qty else f"{upper}"
        return f"{product.sku} comes in steps of {product.qty_step}: order {choices}."
    return None


def out_of_stock(product):
    """Why a product cannot be put in a cart at all (none left and no backorders), or None."""
    if product.available <= 0 and not product.backorder_allowed:
        return f"{product.name} ({product.sku}) is out of stock; it cannot be ordered until it is back."
    return None


def backorder_note(product, quantity):
    """What a buyer should know when a backorderable product has less than a quantity in stock, or None."""
    if not product.backorder_allowed or quantity <= product.available:
        return None
    if product.available <= 0:
        return f"{product.sku} is on backorder, ships when in stock."
    return f"{product.available} of {product.sku} in stock; the rest is on backorder, ships when in stock."


def stock_problem(product, quantity):
    """Why stock cannot cover a quantity, or None."""
    if product.backorder_allowed or quantity <= product.available:
        return None
    if product.available <= 0:
        return f"{product.sku} is out of stock."
    return f"Only {product.available} of {product.sku} in stock."
