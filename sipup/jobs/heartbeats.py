"""The queue_runs table: each processor's last run (for /monitor and `flask queue status`) and the row of
the queue store's epoch (STORE_ROW), which records the store's losses."""

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError

from sipup.extensions import db
from sipup.models import QueueRun

STORE_ROW = "queue-store"  # the queue_runs row of the epoch, not a processor (see sipup.jobs.queue)


def write_heartbeat(processor, values):
    stmt = update(QueueRun).where(QueueRun.processor == processor).values(**values)
    if not db.session.execute(stmt.execution_options(synchronize_session=False)).rowcount:
        try:
            with db.session.begin_nested():
                db.session.add(QueueRun(processor=processor, **values))
        except IntegrityError:  # an overlapping run wrote it first
            db.session.execute(stmt.execution_options(synchronize_session=False))


def last_processor_start():
    return db.session.scalar(select(func.max(QueueRun.started_at)).where(QueueRun.processor != STORE_ROW))


def last_processor_finish():
    """When any processor last finished (or started, while it runs), or None when none ever ran."""
    return db.session.scalar(
        select(func.max(func.coalesce(QueueRun.finished_at, QueueRun.started_at))).where(
            QueueRun.processor != STORE_ROW
        )
    )


def store_loss():
    """The last time the queue store lost messages: {"at", "lost", "times"} or None."""
    row = db.session.get(QueueRun, STORE_ROW)
    if row is None or not row.failures:
        return None
    return {"at": row.finished_at, "lost": row.jobs_run, "times": row.failures}
