"""What the command line and /monitor read and do with the job record: status, browse, retry, cancel,
delete (one job or every failed one), pause and resume a priority, clean up."""

import time
from datetime import timedelta

from flask import current_app
from flask_babel import gettext
from sqlalchemy import func, select, update

from sipup.database import paginate
from sipup.extensions import db
from sipup.i18n import N_, fitted, kept, stored_kept
from sipup.jobs.heartbeats import STORE_ROW, store_loss
from sipup.jobs.marks import paused_priorities, running_marks, set_paused
from sipup.jobs.registry import JOBS, PRIORITIES, PRIORITY_NAMES, WAITING, S, send_after_commit
from sipup.jobs.running import ERROR_LENGTH
from sipup.models import Job, QueueRun, utcnow


def queue_status():
    """Counts by status and priority, the oldest waiting job's age, processor runs and Huey's own sizes."""
    queue = current_app.extensions["queue"]
    counts = {status.value: {name: 0 for name in PRIORITIES} for status in S}
    for status, priority, count in db.session.execute(
        select(Job.status, Job.priority, func.count()).group_by(Job.status, Job.priority)
    ):
        counts[status][PRIORITY_NAMES.get(priority, str(priority))] = count
    now = utcnow()
    oldest = db.session.scalar(select(func.min(Job.run_at)).where(Job.status.in_(WAITING), Job.run_at <= now))
    runs = db.session.scalars(
        select(QueueRun).where(QueueRun.processor != STORE_ROW).order_by(QueueRun.started_at.desc())
    ).all()
    status = {
        "backend": queue.backend,
        "counts": counts,
        "oldest_waiting_seconds": (now - oldest).total_seconds() if oldest else None,
        "outbox": db.session.scalar(
            select(func.count()).select_from(Job).where(Job.status.in_(WAITING), Job.dispatched_at.is_(None))
        ),
        "runs": [
            {
                "processor": r.processor,
                "started_at": r.started_at,
                "finished_at": r.finished_at,
                "jobs_run": r.jobs_run,
                "failures": r.failures,
            }
            for r in runs
        ],
        "last_minute": queue.counters().totals("queue", "minute", 1),
        "huey": None,
        "huey_error": None,
        "store_loss": store_loss(),
        "paused": sorted(paused_priorities(queue.counters()), key=lambda name: -PRIORITIES[name]),
    }
    try:
        status["huey"] = {"pending": queue.huey.pending_count(), "scheduled": queue.huey.scheduled_count()}
    except Exception as exc:  # Redis down: the table still answers
        status["huey_error"] = str(exc) or type(exc).__name__
    return status


RUNNING_SHOWN = 50  # "Running now" lists at most this many, the longest running first


def running_now():
    """The jobs running at this moment on every host, longest running first: id, name, priority, attempt,
    the host and process that run it (None for a run whose process set no mark: an older version, or the
    store did not answer) and the seconds it has run."""
    marks = running_marks(current_app.extensions["queue"].counters())
    rows = db.session.execute(
        select(Job.id, Job.name, Job.priority, Job.attempts, Job.started_at, Job.lease_until)
        .where(Job.status == S.RUNNING)
        .order_by(Job.started_at, Job.id)
        .limit(RUNNING_SHOWN)
    ).all()
    now = utcnow()
    found = []
    for row in rows:
        host, pid, since = marks.get(row.id, (None, None, None))
        seconds = time.time() - since if since is not None else (now - (row.started_at or now)).total_seconds()
        found.append(
            {
                "id": row.id,
                "name": row.name,
                "priority": PRIORITY_NAMES.get(row.priority, str(row.priority)),
                "attempt": row.attempts,
                "host": host,
                "pid": pid,
                "seconds": max(0.0, seconds),
                "overdue": row.lease_until is not None and row.lease_until < now,
            }
        )
    return sorted(found, key=lambda job: -job["seconds"])


def retry_job(job_id):
    """Queue a failed or cancelled job again with fresh attempts; returns the job, or raises LookupError /
    ValueError."""
    record = db.session.get(Job, job_id)
    if record is None:
        raise LookupError(gettext("There is no job %(id)s.", id=job_id))
    if record.status not in (S.FAILED, S.CANCELLED):
        raise ValueError(
            gettext(
                "Job %(id)s is %(status)s; only failed and cancelled jobs can be retried.",
                id=job_id,
                status=record.status,
            )
        )
    _requeue(record)
    db.session.commit()
    return record


def failed_jobs():
    """(how many jobs failed, the newest one's id): what a bulk action on the failed jobs is asked to confirm."""
    count, newest = db.session.execute(select(func.count(), func.max(Job.id)).where(Job.status == S.FAILED)).one()
    return count, newest


def retry_failed(upto=None):
    """Queue every failed job (up to id `upto`, the newest one confirmed) again; returns how many."""
    query = select(Job).where(Job.status == S.FAILED).order_by(Job.id)
    if upto is not None:
        query = query.where(Job.id <= upto)
    records = db.session.scalars(query).all()
    for record in records:
        _requeue(record)
    db.session.commit()
    return len(records)


def _requeue(record):
    now = utcnow()
    record.status, record.attempts, record.run_at = S.QUEUED, 0, now
    record.dispatched_at, record.finished_at, record.lease_until = now, None, None
    record.error = fitted(
        kept(N_("(retried by hand; last error: %(error)s)"), error=stored_kept(record.error)), ERROR_LENGTH
    )
    send_after_commit(record)


def find_jobs(state=None, name=None, priority=None, page=1, per_page=50):
    """A page of jobs, newest first, filtered by state, job type and priority (names as in PRIORITIES)."""
    query = select(Job).order_by(Job.id.desc())
    if state:
        query = query.where(Job.status == state)
    if name:
        query = query.where(Job.name == name)
    if priority:
        query = query.where(Job.priority == PRIORITIES[priority])
    return paginate(query, page, per_page, max_per_page=200)


def job_names():
    """Every job type known to this code or present in the table, for the browser's filter."""
    stored = db.session.scalars(select(Job.name).distinct()).all()
    return sorted(set(stored) | set(JOBS))


def cancel_job(job_id):
    """Stop a waiting job from running; its message, if it comes, is skipped. Raises LookupError / ValueError."""
    record = db.session.get(Job, job_id)
    if record is None:
        raise LookupError(gettext("There is no job %(id)s.", id=job_id))
    changed = db.session.execute(
        update(Job)
        .where(Job.id == job_id, Job.status.in_(WAITING))
        .values(
            status=S.CANCELLED,
            finished_at=utcnow(),
            lease_until=None,
            error=fitted(
                kept(N_("(cancelled by hand; last error: %(error)s)"), error=stored_kept(record.error)), ERROR_LENGTH
            )
            if record.error
            else kept(N_("(cancelled by hand)")),
        )
        .execution_options(synchronize_session=False)
    ).rowcount
    db.session.commit()
    if not changed:
        db.session.refresh(record)
        raise ValueError(
            gettext(
                "Job %(id)s is %(status)s; only queued and retrying jobs can be cancelled.",
                id=job_id,
                status=record.status,
            )
        )
    db.session.refresh(record)
    return record


def delete_job(job_id):
    """Delete a job that is not running from the history. Raises LookupError / ValueError."""
    record = db.session.get(Job, job_id)
    if record is None:
        raise LookupError(gettext("There is no job %(id)s.", id=job_id))
    if record.status == S.RUNNING:
        raise ValueError(gettext("Job %(id)s is running; delete it once it has finished.", id=job_id))
    name = record.name
    deleted = db.session.execute(Job.__table__.delete().where(Job.id == job_id, Job.status != S.RUNNING)).rowcount
    db.session.commit()
    if not deleted:
        raise ValueError(gettext("Job %(id)s started running meanwhile; delete it once it has finished.", id=job_id))
    return name


def delete_failed(upto=None):
    """Delete every failed job (up to id `upto`, the newest one confirmed) from the history; returns how many."""
    condition = Job.status == S.FAILED
    if upto is not None:
        condition = condition & (Job.id <= upto)
    deleted = db.session.execute(Job.__table__.delete().where(condition)).rowcount
    db.session.commit()
    return deleted


def pause(priority):
    """Stop every processor and worker from running jobs of a priority (high, normal, low) until resumed."""
    set_paused(current_app.extensions["counters"], priority, True)


def resume(priority):
    """Let jobs of a paused priority run again; the next processor run sends those that waited."""
    set_paused(current_app.extensions["counters"], priority, False)


def cleanup(days):
    """Delete finished (done, failed, cancelled) jobs that finished more than `days` days ago; returns how many.
    Heartbeats of workers gone as long (each worker process has its own) go too."""
    cutoff = utcnow() - timedelta(days=days)
    deleted = db.session.execute(
        Job.__table__.delete().where(Job.status.in_((S.DONE, S.FAILED, S.CANCELLED)), Job.finished_at < cutoff)
    ).rowcount
    db.session.execute(
        QueueRun.__table__.delete().where(
            QueueRun.processor.startswith("worker@"), func.coalesce(QueueRun.finished_at, QueueRun.started_at) < cutoff
        )
    )
    db.session.commit()
    return deleted


def describe_age(seconds):
    if seconds is None:
        return gettext("none waiting")
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
