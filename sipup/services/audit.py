"""The audit trail: who changed a company's terms, a price list's tiers or a user's role, and when."""

from sqlalchemy import select

from ..extensions import db
from ..models import AuditEvent

COMMAND_LINE = "command line"


def record(subject, subject_id, field, old, new, actor=None):
    """Add one change to the trail in the caller's transaction; nothing when the value did not change."""
    old, new = "" if old is None else str(old), "" if new is None else str(new)
    if old == new:
        return None
    event = AuditEvent(
        subject=subject,
        subject_id=subject_id,
        field=field,
        old_value=old[:200],
        new_value=new[:200],
        actor_id=actor.id if actor is not None else None,
        actor=actor.email if actor is not None else COMMAND_LINE,
    )
    db.session.add(event)
    return event


def history(subject, subject_id, limit=50):
    """The newest changes to one company, price list or user."""
    return db.session.scalars(
        select(AuditEvent)
        .where(AuditEvent.subject == subject, AuditEvent.subject_id == subject_id)
        .order_by(AuditEvent.created_at.desc(), AuditEvent.id.desc())
        .limit(limit)
    ).all()
