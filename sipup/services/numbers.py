"""Gap-free numbers of invoices and credit notes: a counter per name and year, advanced in the transaction
that uses the value, so a number rolled back is given again and none is skipped."""

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from ..extensions import db
from ..models import Sequence


def next_number(name):
    """The next value of a gap-free counter; the row stays locked until the transaction ends."""
    for _ in range(2):
        bumped = db.session.execute(
            update(Sequence).where(Sequence.name == name).values(value=Sequence.value + 1)
        ).rowcount
        if bumped:
            return db.session.scalar(select(Sequence.value).where(Sequence.name == name))
        try:
            with db.session.begin_nested():
                db.session.add(Sequence(name=name, value=1))
            return 1
        except IntegrityError:
            continue  # another transaction created it first: bump it instead
    raise RuntimeError(f"Sequence {name} could not be advanced")
