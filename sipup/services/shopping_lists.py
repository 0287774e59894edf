"""Shopping lists: named lists of products and quantities a company's users keep, share and order again.

A list belongs to one company. Its owner sees it; when shared, the company's other users see it too, and
edit it when the owner allowed that. The company's owners see and manage every list of their company.
Ordering a list goes through quick order (the list's CSV is what quick order reads), so packs, steps and
stock follow the same rules as every other way into the cart.
"""

from typing import NamedTuple

from flask_babel import gettext
from sqlalchemy import func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import selectinload

from ..cache import cached
from ..exceptions import FieldErrors, InvalidInput, InvalidQuantity, NotAllowed, NotFound
from ..extensions import db
from ..models import Role, ShoppingList, ShoppingListItem, utcnow
from . import catalog, quick_order
from .cart import items as cart_items
from .csv_export import csv_text
from .parsing import parse_quantity
from .quantities import quantity_problem

CSV_HEADER = ("sku", "quantity", "product", "pack")
SAVE_ATTEMPTS = 3


def _is_company_owner(user):
    return user.role == Role.OWNER


def _visible(user):
    """The statement of the lists this user may see: own, shared, or all of the company for its owners."""
    stmt = select(ShoppingList).where(ShoppingList.company_id == user.company_id)
    if not _is_company_owner(user):
        stmt = stmt.where(or_(ShoppingList.owner_id == user.id, ShoppingList.shared.is_(True)))
    return stmt


def lists_for(user):
    """The lists this user sees, by name, each with its number of products: [(list, count)]."""
    # Counted per list shown (the index on list_id), not over every company's lists.
    count = select(func.count()).where(ShoppingListItem.list_id == ShoppingList.id).scalar_subquery()
    stmt = (
        _visible(user)
        .add_columns(count)
        .options(selectinload(ShoppingList.owner))
        .order_by(ShoppingList.name, ShoppingList.id)
    )
    return [tuple(row) for row in db.session.execute(stmt)]


def choices_entry(company_id):
    """The cache entry (type, name, args, depends) of a company's lists for the "Save to list" forms."""
    return ("users", "list-choices", company_id, [f"lists:{company_id}", "lists", "companies"])


class ListChoice(NamedTuple):
    """A list as the "Save to list" forms offer it: plain values, kept in the cache per company."""

    id: int
    name: str
    owner_id: int
    shared: bool
    others_may_edit: bool


def editable_lists(user):
    """The lists this user may add products to, by name: the choices of the cart's and a product's "Save to
    list" form. The company's lists are read through the cache as plain values (every page with the form
    shows them) and sorted out for this user here."""
    company_id = user.company_id

    def load():
        stmt = (
            select(*(getattr(ShoppingList, name) for name in ListChoice._fields))
            .where(ShoppingList.company_id == company_id)
            .order_by(ShoppingList.name, ShoppingList.id)
        )
        return [tuple(row) for row in db.session.execute(stmt)]

    rows = cached(*choices_entry(company_id), load)
    owner = _is_company_owner(user)
    choices = (ListChoice(*row) for row in rows)
    return [
        choice
        for choice in choices
        if (owner or choice.owner_id == user.id or choice.shared) and may_edit(user, choice)
    ]


def get_list(user, list_id):
    """One list this user may see, with its products; another company's or a private one is NotFound."""
    stmt = (
        _visible(user)
        .where(ShoppingList.id == list_id)
        .options(selectinload(ShoppingList.items).selectinload(ShoppingListItem.product))
    )
    shopping_list = db.session.scalar(stmt) if list_id else None
    if shopping_list is None:
        raise NotFound(gettext("There is no such shopping list."))
    return shopping_list


def may_edit(user, shopping_list):
    """Whether this user may change the list's products."""
    return may_manage(user, shopping_list) or (shopping_list.shared and shopping_list.others_may_edit)


def may_manage(user, shopping_list):
    """Whether this user may rename, share or delete the list: its owner or the company's owner."""
    return shopping_list.owner_id == user.id or _is_company_owner(user)


def _require(allowed, message):
    if not allowed:
        raise NotAllowed(message)


def _clean_name(name):
    name = " ".join((name or "").split())
    if not name:
        raise FieldErrors({"name": gettext("Give the list a name, e.g. “weekly bar order”.")})
    if len(name) > 120:
        raise FieldErrors({"name": gettext("The name has %(count)s characters; at most 120.", count=len(name))})
    return name


def create(user, name):
    """A new list of this user, shared with the company to see (not to edit)."""
    shopping_list = ShoppingList(
        company_id=user.company_id, owner_id=user.id, name=_clean_name(name), shared=True, others_may_edit=False
    )
    db.session.add(shopping_list)
    db.session.commit()
    return shopping_list


def list_for_saving(user, list_id, new_name):
    """The list products are saved to: a new one when a name is given, else one the user may edit."""
    if (new_name or "").strip():
        return create(user, new_name)
    if not list_id:
        raise FieldErrors({"list_id": gettext("Choose a list, or name a new one.")})
    shopping_list = get_list(user, list_id)
    _require(
        may_edit(user, shopping_list),
        gettext(
            "Only %(owner)s may change “%(name)s”.",
            owner=shopping_list.owner.name or shopping_list.owner.email,
            name=shopping_list.name,
        ),
    )
    return shopping_list


def add_items(user, shopping_list, pairs, max_items):
    """Add (SKU, quantity text) pairs, each to what the list holds of it; returns (lines saved, problems).

    A quantity must be one the product is sold in (packs, minimum, steps); stock does not matter to a list."""
    _require(may_edit(user, shopping_list), gettext("You may not change “%(name)s”.", name=shopping_list.name))
    products = catalog.products_by_skus([sku for sku, _ in pairs])
    saved, problems, wanted = 0, [], {}
    for sku, raw in pairs:
        product = products.get((sku or "").strip().upper())
        if product is None or not product.active:
            problems.append(
                gettext("Unknown SKU “%(sku)s”.", sku=sku[:40])
                if product is None
                else gettext("%(sku)s is no longer sold.", sku=product.sku)
            )
            continue
        try:
            quantity = parse_quantity(raw)
        except InvalidQuantity as exc:
            problems.append(gettext("%(sku)s: %(exc)s", sku=product.sku, exc=exc))
            continue
        wanted.setdefault(product.id, [product, 0])[1] += quantity
    for _attempt in range(SAVE_ATTEMPTS):
        try:
            saved, more = _save(shopping_list, wanted, max_items)
            break
        except IntegrityError:  # another user added one of these products meanwhile: read the list again
            db.session.rollback()
            db.session.refresh(shopping_list)
    else:
        raise InvalidInput(gettext("“%(name)s” changed meanwhile; please try again.", name=shopping_list.name))
    return saved, problems + more


def _save(shopping_list, wanted, max_items):
    held = {item.product_id: item for item in shopping_list.items}
    saved, problems = 0, []
    for product_id, (product, quantity) in wanted.items():
        item = held.get(product_id)
        total = quantity + (item.quantity if item else 0)
        problem = quantity_problem(product, total)
        if problem:
            problems.append(problem)
        elif item is None and len(shopping_list.items) >= max_items:
            problems.append(
                gettext("%(sku)s: a list holds at most %(max_items)s products.", sku=product.sku, max_items=max_items)
            )
        elif item is None:
            shopping_list.items.append(ShoppingListItem(product_id=product.id, product=product, quantity=total))
            saved += 1
        else:
            item.quantity = total
            saved += 1
    shopping_list.updated_at = utcnow()
    db.session.commit()
    return saved, problems


def update_quantities(user, shopping_list, entered):
    """Set the quantities typed in ({product id: text}); returns {product id: problem} of those refused."""
    _require(may_edit(user, shopping_list), gettext("You may not change “%(name)s”.", name=shopping_list.name))
    errors = {}
    for item in shopping_list.items:
        raw = entered.get(item.product_id)
        if raw is None or raw.strip() == str(item.quantity):
            continue
        try:
            quantity = parse_quantity(raw)
            problem = quantity_problem(item.product, quantity)
            if problem:
                raise InvalidQuantity(problem)
        except InvalidQuantity as exc:
            errors[item.product_id] = str(exc)
            continue
        item.quantity = quantity
    shopping_list.updated_at = utcnow()
    db.session.commit()
    return errors


def remove_item(user, shopping_list, product_id):
    """Take a product off the list."""
    _require(may_edit(user, shopping_list), gettext("You may not change “%(name)s”.", name=shopping_list.name))
    shopping_list.items[:] = [item for item in shopping_list.items if item.product_id != product_id]
    shopping_list.updated_at = utcnow()
    db.session.commit()


def update_settings(user, shopping_list, name, shared, others_may_edit):
    """Rename the list and decide who sees and edits it (its owner or the company's owner only)."""
    _require(
        may_manage(user, shopping_list),
        gettext("Only the list's owner or your company's owner may change who sees and edits it."),
    )
    shopping_list.name = _clean_name(name)
    shopping_list.shared = bool(shared)
    shopping_list.others_may_edit = bool(shared and others_may_edit)
    db.session.commit()


def delete(user, shopping_list):
    """Delete a list (its owner or the company's owner only)."""
    _require(may_manage(user, shopping_list), gettext("Only the list's owner or your company's owner may delete it."))
    db.session.delete(shopping_list)
    db.session.commit()


def export_csv(shopping_list):
    """The list as CSV that quick order and list import read back: SKU, quantity, then product and pack."""
    rows = [
        (item.product.sku, item.quantity, item.product.name, item.product.sell_unit) for item in shopping_list.items
    ]
    return csv_text(CSV_HEADER, rows)


def order_preview(user, shopping_list, vat_rate, max_lines):
    """What "Order this list" would do: quick order's preview of the list, with what the cart holds now."""
    if not shopping_list.items:
        raise InvalidInput(gettext("“%(name)s” is empty; add products before ordering it.", name=shopping_list.name))
    lines = quick_order.preview(export_csv(shopping_list), user.company.price_list_id, vat_rate, max_lines)
    in_cart = {item.product_id: item.quantity for item in cart_items(user.id)}
    for line in lines:
        line.in_cart = in_cart.get(line.product.id, 0) if line.product else 0
    return lines


def order(user, shopping_list, vat_rate, max_lines):
    """Put the lines quick order accepts in the cart, as its "add valid lines" does; returns (lines added,
    problems of the lines left out)."""
    lines = order_preview(user, shopping_list, vat_rate, max_lines)
    added, problems = quick_order.add_to_cart(
        user.id, [(line.product.sku, str(line.quantity)) for line in lines if line.ok]
    )
    return added, [line.problem for line in lines if not line.ok] + problems
