"""Writes renew generations after commit: the session hooks note what each write changes, and `touch()` names
what they cannot see; the commit then bumps those generations, so every process and host sees a change at once."""

from itertools import chain

from flask import current_app, has_app_context
from sqlalchemy import event
from sqlalchemy.orm import Session

from sipup.extensions import db

TOUCHES = "sipup_cache_touches"


def touch(*names):
    """Renew these generations once the current transaction commits: for writes the session hooks cannot see."""
    db.session.info.setdefault(TOUCHES, set()).update(names)


# ORM objects name exactly what they change; Core statements through the session name their table,
# unless they pass execution_options(cache_touches=(...)) with something more precise.

TABLE_TOUCHES = {
    "products": ("catalog",),
    "categories": ("catalog",),
    "product_images": ("catalog",),
    "price_tiers": ("prices",),
    "price_lists": ("prices",),
    "companies": ("companies",),
    "addresses": ("companies",),  # the signed-in rows carry their company's addresses
    "users": ("users-all",),
    "user_sessions": ("users-all",),
    "orders": ("orders",),
    "order_lines": ("orders",),
    "order_events": ("orders",),
    "invoices": ("orders",),
    "payments": ("orders",),
    "cart_items": ("carts",),
    "shopping_lists": ("lists",),
}


def _object_touches(obj):
    table = getattr(obj, "__tablename__", None)
    if table in ("products", "categories", "product_images"):
        return ("catalog",)
    if table == "price_tiers":
        return (f"prices:{obj.price_list_id}",)
    if table == "price_lists":
        return (f"prices:{obj.id}",)
    if table in ("companies", "addresses"):
        return ("companies",)
    if table in ("orders", "invoices", "payments"):
        return (f"orders:{obj.company_id}", "orders-all")
    if table == "users":
        return (f"user:{obj.id}",)
    if table == "user_sessions":
        return (f"user:{obj.user_id}",)
    if table == "cart_items":
        return (f"cart:{obj.user_id}",)
    if table == "shopping_lists":
        return (f"lists:{obj.company_id}",)
    if table in ("order_lines", "order_events"):
        return ("orders-all",)  # always written with their order, which names the company
    return ()


@event.listens_for(Session, "after_flush")
def _note_flushed_objects(session, _context):
    names = session.info.setdefault(TOUCHES, set())
    for obj in chain(session.new, session.dirty, session.deleted):
        names.update(_object_touches(obj))


@event.listens_for(Session, "do_orm_execute")
def _note_statement(state):
    if not (state.is_insert or state.is_update or state.is_delete):
        return
    names = state.execution_options.get("cache_touches")
    if names is None:
        table = getattr(state.statement, "table", None)
        names = TABLE_TOUCHES.get(getattr(table, "name", None), ())
    if names:
        state.session.info.setdefault(TOUCHES, set()).update(names)


@event.listens_for(Session, "after_commit")
def _renew_after_commit(session):
    names = session.info.pop(TOUCHES, None)
    if names and has_app_context():
        cache = current_app.extensions.get("sipup_cache")
        if cache is not None:
            cache.bump(names)
