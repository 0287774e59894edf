"""The persistent cart of one user: add, change, remove, and price it for display and checkout."""

from dataclasses import dataclass, field, fields
from decimal import Decimal

from flask_babel import gettext
from sqlalchemy import bindparam, delete, func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import joinedload

from sipup.cache import cached

from ..database import kept_loaded, run_in_transaction
from ..exceptions import DomainError, InvalidQuantity, NotFound, OutOfStock
from ..extensions import db
from ..models import CartItem, Category, PriceTier, Product, ProductImage
from . import vat
from .images import picture_values
from .pricing import load_tiers, money, unit_price
from .quantities import backorder_note, out_of_stock, quantity_problem, stock_problem


@dataclass(slots=True)
class ShownProduct:
    """A cart line's product as the cart page, the dashboard and checkout price it: plain values read with the
    line (the ORM instance costs more to build than the page to render); `picture` as the product_picture macro
    reads it, or None when not read."""

    id: int
    sku: str
    name: str
    sell_unit: str
    base_price: Decimal
    min_qty: int
    qty_step: int
    deposit: Decimal
    vat_class: str
    stock_on_hand: int
    stock_reserved: int
    backorder_allowed: bool
    active: bool
    picture: dict | None = None

    @property
    def available(self):
        return self.stock_on_hand - self.stock_reserved


@dataclass
class PricedLine:
    product: Product | ShownProduct
    quantity: int
    unit_price: Decimal
    unit_deposit: Decimal
    line_total: Decimal
    problems: list = field(default_factory=list)  # rules that stop the line being ordered at all
    stock_note: str | None = None  # stock is short now; checkout's reservation has the last word
    backorder_note: str | None = None  # part or all of it ships when back in stock
    vat_rate: Decimal = Decimal("0")
    deposit_vat_rate: Decimal = Decimal("0")


@dataclass
class PricedCart:
    lines: list
    goods_total: Decimal
    deposit_total: Decimal
    vat_total: Decimal
    total: Decimal
    vat_summary: list = field(default_factory=list)  # [vat.VatRow] per rate
    reverse_charge: bool = False

    @property
    def problems(self):
        return [p for line in self.lines for p in line.problems]

    @property
    def stock_notes(self):
        return [line.stock_note for line in self.lines if line.stock_note]

    @property
    def count(self):
        return len(self.lines)


ZERO = Decimal("0")
_UNREAD = object()  # add(): the line was not read with the product

# Each conflict means another request on the same line committed meanwhile, so a request needs at most one
# attempt per request racing it: ten covers ten tabs at once (five ran out under load with eight).
PUT_ATTEMPTS = 10


class LineChanged(DomainError):
    """The cart line changed between reading and writing it."""


def add(user_id, product, quantity, replace=False, line=_UNREAD):
    """Put a quantity of a product in the cart (added to what is there unless replace); the new quantity.
    `line`: the cart's line for the product as product_with_line() read it, (id, quantity) or None.

    One buyer's requests may run at once (two tabs, a double click): a line that another request added,
    changed or removed meanwhile is read again, so no quantity is lost and no request fails for it."""
    (result,) = add_many(user_id, [(product, quantity)], replace, None if line is _UNREAD else {product.id: line})
    if isinstance(result, DomainError):
        raise result
    return result


def add_many(user_id, pairs, replace=False, lines=None):
    """add() for many (product, quantity) pairs in one transaction: for each pair its line's new quantity, or
    the DomainError that refused it (the others are put in all the same). `lines`: {product id: (line id,
    quantity) or None} as read with the products in this transaction, for the first attempt."""
    results, wanted = [None] * len(pairs), []
    for index, (product, _quantity) in enumerate(pairs):
        refused = out_of_stock(product) if product.active else None
        if not product.active:
            results[index] = NotFound(gettext("%(sku)s is no longer sold.", sku=product.sku))
        elif refused:
            results[index] = OutOfStock(refused)
        else:
            wanted.append(index)
    if not wanted:
        return results
    # The products as read stay loaded across the commits (the caller shows their names and stock notes next).
    with kept_loaded():
        for _attempt in range(PUT_ATTEMPTS):
            try:
                # A line read from an older snapshot fails its conditional update and is read again (a rollback
                # starts a new snapshot): no commit is needed first.
                put = [pairs[index] for index in wanted]
                done = run_in_transaction(_put, user_id, put, replace, lines, fresh=False)
            except (IntegrityError, LineChanged):
                lines = None
                continue
            for index, result in zip(wanted, done):
                results[index] = result
            return results
    skus = ", ".join(pairs[index][0].sku for index in wanted)
    raise LineChanged(
        gettext("Your cart changed in another window while %(sku)s was being added; please try again.", sku=skus)
    )


def _put(user_id, pairs, replace, known=None):
    if known is None:
        known = {pid: (line_id, quantity) for pid, line_id, quantity in _read_lines(user_id, pairs)}
    lines = dict(known)  # as written so far: the same product may come again later in the list
    # The cache keeps a cart's count of lines (count()), which a new quantity leaves as it was, and its lines as
    # shown (shown_entry()), which depend on both.
    new_line = {"cache_touches": (f"cart:{user_id}",)}
    same_lines = {"cache_touches": (f"cart-quantities:{user_id}",)}
    results = []
    for product, quantity in pairs:
        line = lines.get(product.id)
        new_quantity = quantity if (replace or line is None) else line[1] + quantity
        problem = quantity_problem(product, new_quantity)
        if problem:
            results.append(InvalidQuantity(problem))
            continue
        if line is None:
            # The same line inserted by another request meanwhile: IntegrityError, and the lines are read again.
            values = {"user_id": user_id, "product_id": product.id, "quantity": new_quantity}
            inserted = db.session.execute(_NEW_LINE, values, execution_options=new_line)
            lines[product.id] = (inserted.inserted_primary_key[0], new_quantity)
        else:
            # Only if the line still holds what was read (the database checks the newest committed row).
            values = {"line_id": line[0], "was": line[1], "new_quantity": new_quantity}
            if db.session.execute(_CHANGED_LINE, values, execution_options=same_lines).rowcount != 1:
                raise LineChanged()
            lines[product.id] = (line[0], new_quantity)
        results.append(new_quantity)
    return results


def _read_lines(user_id, pairs):
    """(product id, line id, quantity) of the user's lines for these pairs' products, as committed now."""
    return db.session.execute(_LINES_OF, {"user_id": user_id, "product_ids": list({p.id for p, _ in pairs})})


def product_with_line(user_id, sku):
    """(the product sold with this SKU, in any case, as a ShownProduct; the user's cart line for it as (id,
    quantity), or None), read together, so that a cart add writes without reading the line again. NotFound for
    an unknown SKU or a product no longer sold."""
    wanted = (sku or "").strip()
    found = products_with_lines(user_id, [wanted]).get(wanted.upper())
    if found is None or not found[0].active:
        raise NotFound(gettext("There is no product with SKU “%(sku)s”.", sku=sku))
    return found


def products_with_lines(user_id, skus):
    """{SKU upper-cased: (ShownProduct, the user's cart line for it as (id, quantity) or None)} for these SKUs in
    any case, sold or not: one statement (a second only for SKUs not stored in upper case)."""
    wanted, found = {sku.upper() for sku in skus}, {}
    # SKUs are kept in upper case (the back office stores them so): an index lookup; a SKU stored in another
    # case is looked for through every product only when that finds nothing.
    for statement in (_PRODUCTS_WITH_LINES, _PRODUCTS_WITH_LINES_ANY_CASE):
        missing = list(wanted - found.keys())
        if not missing:
            break
        for line_id, quantity, *values in db.session.execute(statement, {"user_id": user_id, "skus": missing}):
            product = ShownProduct(*values)
            found[product.sku.upper()] = (product, None if line_id is None else (line_id, quantity))
    return found


def remove(user_id, product_id):
    """Take a product out of the cart."""
    stmt = delete(CartItem).where(CartItem.user_id == user_id, CartItem.product_id == product_id)
    db.session.execute(stmt.execution_options(cache_touches=(f"cart:{user_id}",)))
    db.session.commit()


def items(user_id):
    """The cart's items with their products, in the order they were added."""
    stmt = select(CartItem).options(joinedload(CartItem.product)).where(CartItem.user_id == user_id)
    return list(db.session.scalars(stmt.order_by(CartItem.id)))


# Read through the tables rather than the models: a plain Core statement skips the ORM's compile and result
# set-up (a tenth of reading the lines).
_LINES, _PRODUCTS, _CATEGORIES, _IMAGES, _TIERS = (
    m.__table__.c for m in (CartItem, Product, Category, ProductImage, PriceTier)
)
_SHOWN_COLUMNS = [_PRODUCTS[f.name] for f in fields(ShownProduct) if f.name != "picture"]  # a ShownProduct's values
# A product's first picture, as Product.images orders them: the one of its pictures a cart line is read with.
_FIRST_IMAGE = (
    select(_IMAGES.id)
    .where(_IMAGES.product_id == _PRODUCTS.id)
    .order_by(_IMAGES.position, _IMAGES.id)
    .limit(1)
    .correlate(Product.__table__)
    .scalar_subquery()
)
# A cart's lines with the product columns a ShownProduct holds and the price tiers of one price list, in the order
# they were added (a line comes once per tier of its product): one statement.
_SHOWN = (
    select(_LINES.quantity, _TIERS.min_qty, _TIERS.price, *_SHOWN_COLUMNS)
    .join(Product.__table__, _PRODUCTS.id == _LINES.product_id)
    .outerjoin(
        PriceTier.__table__,
        (_TIERS.product_id == _PRODUCTS.id) & (_TIERS.price_list_id == bindparam("price_list_id")),
    )
    .where(_LINES.user_id == bindparam("user_id"))
    .order_by(_LINES.id, _TIERS.min_qty)
)
# The same with each product's category and first picture (a product without pictures keeps its line, with none).
_SHOWN_WITH_PICTURES = (
    _SHOWN.add_columns(_CATEGORIES.slug, _IMAGES.digest, _IMAGES.width, _IMAGES.height)
    .outerjoin(Category.__table__, _CATEGORIES.id == _PRODUCTS.category_id)
    .outerjoin(ProductImage.__table__, _IMAGES.product_id == _PRODUCTS.id)
    .where(or_(_IMAGES.id.is_(None), _IMAGES.id == _FIRST_IMAGE))
)
# Products by SKU with the ShownProduct columns, and the user's cart line for each if there is one.
_PRODUCT_AND_LINE = (
    select(_LINES.id, _LINES.quantity, *_SHOWN_COLUMNS)
    .select_from(Product.__table__)
    .outerjoin(CartItem.__table__, (_LINES.product_id == _PRODUCTS.id) & (_LINES.user_id == bindparam("user_id")))
)
_PRODUCTS_WITH_LINES = _PRODUCT_AND_LINE.where(_PRODUCTS.sku.in_(bindparam("skus", expanding=True)))
_PRODUCTS_WITH_LINES_ANY_CASE = _PRODUCT_AND_LINE.where(
    func.upper(_PRODUCTS.sku).in_(bindparam("skus", expanding=True))
)
# A cart's lines for some products; a line inserted, and one changed only if it still holds what was read.
_LINES_OF = select(_LINES.product_id, _LINES.id, _LINES.quantity).where(
    _LINES.user_id == bindparam("user_id"), _LINES.product_id.in_(bindparam("product_ids", expanding=True))
)
_NEW_LINE = CartItem.__table__.insert()
_CHANGED_LINE = (
    CartItem.__table__.update()
    .where(_LINES.id == bindparam("line_id"), _LINES.quantity == bindparam("was"))
    .values(quantity=bindparam("new_quantity"))
)


def shown_lines(user_id, price_list_id, pictures=False):
    """The cart as committed now, by one statement: its (product, quantity) pairs in the order they were added
    (plain ShownProducts, with their first picture and category when `pictures`: the cart page's thumbnails), and
    the products' tiers in the price list (None: none), {product id: [(min_qty, price)]}, as price_lines() takes
    them."""
    pairs, tiers, product = [], {}, None
    values = {"user_id": user_id, "price_list_id": price_list_id}
    for quantity, min_qty, price, *columns in db.session.execute(_SHOWN_WITH_PICTURES if pictures else _SHOWN, values):
        if product is None or product.id != columns[0]:  # a line's first row: its tiers follow it, one per row
            if pictures:
                *columns, slug, digest, width, height = columns
            product = ShownProduct(*columns)
            if pictures:
                product.picture = picture_values(product.name, slug, digest, width, height)
            pairs.append((product, quantity))
            tiers[product.id] = []
        if min_qty is not None:
            tiers[product.id].append((min_qty, price))
    return pairs, tiers


def count(user_id):
    """How many lines the cart has (for the header on every page), through the cache."""

    def load():
        return db.session.scalar(select(func.count(CartItem.id)).where(CartItem.user_id == user_id))

    return cached(*count_entry(user_id), load)


def count_entry(user_id):
    """The cache entry (type, name, args, depends) of the cart's line count, for cached() and prefetch()."""
    return ("users", "cart-lines", user_id, [f"cart:{user_id}", "carts"])


def price_lines(price_list_id, pairs, vat_rules, country=None, vat_id=None, tiers=None):
    """Price (product, quantity) pairs for one price list; each line lists what stops it being ordered.

    vat_rules: vat.VatRules (or one rate for every class); country and vat_id: where it is delivered and the
    customer's VAT id, which decide the rates and reverse charge (no country: the shop's own). tiers: the products'
    tiers in the price list as read with them (shown_lines()); read here when not given."""
    rules = vat.as_rules(vat_rules)
    reverse = rules.reverse_charged(country, vat_id)
    if tiers is None:
        tiers = load_tiers(price_list_id, [p.id for p, _ in pairs])
    lines = []
    for product, quantity in pairs:
        price = unit_price(product.base_price, tiers.get(product.id, []), quantity)
        if not product.active:
            problems = [gettext("%(sku)s is no longer sold; remove it.", sku=product.sku)]
        else:
            problems = [p for p in [quantity_problem(product, quantity)] if p]
        lines.append(
            PricedLine(
                product,
                quantity,
                price,
                product.deposit,
                money(price * quantity),
                problems,
                stock_problem(product, quantity),
                backorder_note(product, quantity),
                ZERO if reverse else rules.rate(product.vat_class, country),
                ZERO if reverse else rules.deposit_rate(product.vat_class, country),
            )
        )
    goods = sum((line.line_total for line in lines), Decimal("0.00"))
    deposit = sum((money(line.unit_deposit * line.quantity) for line in lines), Decimal("0.00"))
    rows = vat.summary(vat.line_parts(lines))
    tax = sum((row.vat for row in rows), Decimal("0.00"))
    return PricedCart(lines, goods, deposit, tax, goods + deposit + tax, rows, reverse)


def shown_entry(user_id, price_list_id, pictures=False):
    """The cache entry (type, name, args, depends) of shown_lines(): as fresh as the cart's lines and quantities,
    the catalog, the stock and the price list."""
    return (
        "users",
        "cart-shown",
        (user_id, price_list_id, pictures),
        [f"cart:{user_id}", f"cart-quantities:{user_id}", "carts", "catalog", "stock", "type:products"]
        + ["prices", f"prices:{price_list_id}", "type:prices"],
    )


def priced(user, vat_rules, pictures=False):
    """The user's cart with today's prices for their company, taxed for its first (default) address, for showing
    (checkout prices the cart again under its lock, for the delivery address chosen)."""
    company = user.company
    price_list_id = company.price_list_id
    pairs, tiers = cached(
        *shown_entry(user.id, price_list_id, pictures), lambda: shown_lines(user.id, price_list_id, pictures)
    )
    country = company.addresses[0].country if company.addresses else None
    return price_lines(price_list_id, pairs, vat_rules, country, company.vat_id, tiers)
