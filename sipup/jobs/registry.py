"""Declaring jobs and recording them: the `job` decorator and its registry (JOBS), `enqueue`, and the
hand-off of the recorded jobs to Huey once their transaction commits.

Calling a job or enqueue() adds a row to `jobs` in the current transaction; the Huey message goes out only
after that transaction commits (see sipup.jobs.queue for the whole design).
"""

import json
from datetime import timedelta

from flask import current_app, has_app_context
from huey.api import PeriodicTask, TaskWrapper
from sqlalchemy import event
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from sipup.extensions import db
from sipup.jobs import compat
from sipup.models import Job, JobStatus, utcnow

PRIORITIES = {"high": 2, "normal": 1, "low": 0}
PRIORITY_NAMES = {value: name for name, value in PRIORITIES.items()}
S = JobStatus
WAITING = (S.QUEUED, S.RETRYING)
PENDING_KEY = "sipup_jobs_to_send"


class PermanentError(Exception):
    """Retrying cannot fix this (bad data): the job fails at once with this reason."""


class _JobRegistry:
    """What TaskWrapper needs of a Huey instance: the shared registry, and `enqueue` for Huey's idiom.

    Calling a job (`tasks.ping()`, `tasks.send_mail("order", 5)`) or `.schedule(args, delay=60)` hands
    the task to `enqueue` here, so it is recorded in the current transaction exactly as `enqueue(job, *args)`
    records it; the caller commits. Returns the Job row (None for a duplicate dedupe key).
    """

    utc = True  # TaskWrapper.schedule() reads it to turn a delay or eta into UTC
    results = False  # TaskWrapper.map() reads it: sipup keeps no Huey results

    def __init__(self):
        self._registry = compat.new_registry()

    def enqueue(self, task):
        if task.kwargs:
            raise TypeError(
                f"{task.name}() takes its arguments by position (they are stored as a JSON list): "
                f"call {task.name}({', '.join(task.kwargs)}) without names, or "
                f"sipup.jobs.enqueue({task.name!r}, ...)."
            )
        delay = max((task.eta - utcnow()).total_seconds(), 0) if task.eta is not None else 0
        # Task() fills in the job's default priority when none was given; a priority= given wins.
        priority = task.priority if task.priority in PRIORITIES else PRIORITY_NAMES.get(task.priority)
        return enqueue(task.name, *task.args, priority=priority, delay=delay)


_HOLDER = _JobRegistry()
JOBS = {}  # name -> TaskWrapper, filled as sipup/tasks.py is imported (by sipup/__init__.py)


def job(priority="normal", periodic=None, lease=None, name=None):
    """Make a function a job: a Huey task whose runs are recorded, retried and leased (see the module doc).

    periodic: a huey.crontab(...) (UTC); the processor enqueues the job when it is due.
    lease: seconds a run may take before it counts as dead (default QUEUE_LEASE_SECONDS).
    name: what the `jobs` table stores and enqueue() takes (a constant of sipup.jobs.names); by default the
    function's name.
    """
    if priority not in PRIORITIES:
        raise ValueError(f"priority must be one of {', '.join(PRIORITIES)}")

    def decorate(func):
        def run(*args, task=None):
            return _execute(task, func, args)

        run.__module__, run.__doc__ = func.__module__, func.__doc__
        settings = {"default_priority": PRIORITIES[priority]}
        if periodic is not None:
            settings["validate_datetime"] = lambda self, timestamp: periodic(timestamp)
            settings["task_base"] = PeriodicTask
        wrapper = TaskWrapper(_HOLDER, run, context=True, name=name or func.__name__, **settings)
        wrapper.priority_name, wrapper.lease, wrapper.periodic = priority, lease, periodic
        wrapper.job_function = func  # the plain function, for benchmarks and direct calls
        JOBS[wrapper.name] = wrapper
        return wrapper

    return decorate


def enqueue(job_or_name, *args, priority=None, delay=0, dedupe_key=None, new_key=False):
    """Record a job in the current transaction; Huey gets it once that transaction commits.

    Returns the Job, or None when a job with the same dedupe_key already exists. new_key: the dedupe_key names
    something made in this transaction (a new order), so no job can hold it yet: the row is stored with its key
    without the savepoint that catches a duplicate.
    """
    queue = current_app.extensions["queue"]
    wrapper = JOBS[job_or_name] if isinstance(job_or_name, str) else job_or_name
    priority = priority or wrapper.priority_name
    if priority not in PRIORITIES:
        raise ValueError(f"Unknown priority {priority!r}; use high, normal or low.")
    now = utcnow()
    record = Job(
        name=wrapper.task_class.__name__,
        args=json.dumps(list(args)),
        priority=PRIORITIES[priority],
        status=S.QUEUED,
        attempts=0,
        max_attempts=queue.max_attempts,
        run_at=now + timedelta(seconds=delay),
        dedupe_key=dedupe_key,
        dispatched_at=now,
        created_at=now,
        error="",
        result="",
    )
    if dedupe_key is None or new_key:
        db.session.add(record)
        db.session.flush()
    else:
        try:
            with db.session.begin_nested():
                db.session.add(record)
        except IntegrityError:
            return None
    send_after_commit(record)
    return record


def send_after_commit(record):
    db.session.info.setdefault(PENDING_KEY, []).append(_message_of(record))


def _message_of(record):
    return record.id, record.name, record.args, record.priority, record.run_at


@event.listens_for(Session, "after_commit")
def _send_committed_jobs(session):
    pending = session.info.pop(PENDING_KEY, None)
    if pending and has_app_context():
        current_app.extensions["queue"].send(pending)
        # Counted once committed: jobs of a rolled-back transaction never arrived.
        current_app.extensions["counters"].incr("queue", "enqueued", len(pending))


@event.listens_for(Session, "after_transaction_end")
def _forget_rolled_back_jobs(session, transaction):
    # After a commit the list was already sent; what is left belonged to a rolled-back transaction.
    # A savepoint's end (a skipped duplicate) leaves the outer transaction's jobs alone.
    if transaction.parent is None:
        session.info.pop(PENDING_KEY, None)


def _execute(task, func, args):
    """Run one job in an app context of its own (worker threads have none; the processor's is shared)."""
    app = current_app._get_current_object() if has_app_context() else _bound_app
    if app is None:
        raise RuntimeError("No sipup app is bound to run jobs: use `flask queue process` or `flask queue worker`.")
    with app.app_context():
        return app.extensions["queue"].run(task, func, args)


_bound_app = None


def bind_app(app):
    """The app whose context a worker thread's jobs run in (worker threads have no app context of their own)."""
    global _bound_app
    _bound_app = app
