"""The job queue: Huey carries the messages, the `jobs` table is the record that no job is lost.

Huey removes a message before it runs the task and never acknowledges it: a process killed mid-run loses
the message, and `enqueue` raises while Redis is down. So every job also has a row in `jobs`, written in
the same transaction as the business change that caused it:

- enqueue() adds the row; the Huey message goes out only after that transaction commits (no mail for an
  order that rolled back). When Huey cannot take it (Redis down), the row is marked undispatched (the
  outbox) and the next processor run sends it; the request that caused it still succeeds.
- A runner claims the row with one conditional UPDATE (queued/retrying -> running, with a lease), so two
  processors holding the same message (a re-sent one) never both run it.
- A failure retries after QUEUE_RETRY_DELAY x attempt seconds through Huey's schedule, up to
  QUEUE_MAX_ATTEMPTS; bad data (PermanentError or a DomainError) fails at once. Failed jobs stay.
- The reaper turns a running job whose lease ran out (its process died) into a retry, or a failure when
  it has no attempts left, and re-sends jobs whose message went missing.
- The queue store's epoch: the first processor run writes a token into Huey's store (Redis or the SQLite
  file) and the same time into the `queue-store` row of queue_runs. A run that finds the token gone (Redis
  restarted without persistence, a failover to an empty replica, a flush) re-sends at once every job the
  table says was sent and still waits, and records the loss for /monitor; the claim keeps the duplicates
  of messages that did survive from running twice.
- A run the database went away under (while claiming, running or recording it) is held by its process, which
  gives the claim back (queued again, the attempt not counted) at its next housekeeping after the database
  answers: within a minute in the worker, instead of after the lease.
- A paused priority (a mark in the shared counters store, set on /monitor or by `flask queue pause`) is
  not claimed: its messages are dropped as they come and the jobs wait in the table, unsent, until the
  priority is resumed; the next run's outbox then sends them.
- A stopping worker (SIGTERM, Ctrl+C) takes no new job, lets running ones finish for up to
  SIPUP_WORKER_STOP_SECONDS, then queues again at once what is still running, instead of leaving it to the lease.

Jobs therefore run at least once, and each is written to be safe to run twice.

`flask queue process` does in one short run what Huey's consumer does in its loops (Scheduler.loop:
read_schedule then enqueue; Worker.loop: dequeue then execute); `flask queue worker` runs Huey's own
consumer with thread workers, its scheduler extended with the same housekeeping.
"""

import json
import logging
import os
import threading
import time
from datetime import datetime, timedelta

from flask import current_app, has_app_context
from huey import PriorityRedisHuey, SqliteHuey
from huey.api import PeriodicTask, TaskWrapper
from huey.exceptions import RetryTask
from sqlalchemy import event, func, select, update
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import Session

from sipup import redisclient
from sipup.database import DATABASE, forget_transaction, is_unavailable, run_in_transaction
from sipup.exceptions import DomainError
from sipup.extensions import db
from sipup.files import private_file
from sipup.i18n import shown
from sipup.jobs import compat
from sipup.metrics import exceptions
from sipup.metrics.counters import percentile
from sipup.metrics.outages import outage
from sipup.models import Job, JobStatus, QueueRun, utcnow

log = logging.getLogger("sipup.queue")

PRIORITIES = {"high": 2, "normal": 1, "low": 0}
PRIORITY_NAMES = {value: name for name, value in PRIORITIES.items()}
S = JobStatus
WAITING = (S.QUEUED, S.RETRYING)
SKIPPED = "skipped"
PENDING_KEY = "sipup_jobs_to_send"
EPOCH_KEY = "sipup_epoch"  # in Huey's own key-value store: gone when the store lost its data
STORE_ROW = "queue-store"  # the queue_runs row of the epoch, not a processor (see the module doc)
EPOCH_FORMAT = "%Y-%m-%dT%H:%M:%S"
QUEUE_STORE = "Job queue store"  # its outages' name in the log (sipup.metrics.outages)
PAUSED = "paused:"  # marks of paused priorities in the shared counters store: paused:<priority name>
RUNNING = "running:"  # marks of running jobs in the shared counters store: running:<job id>|<host>|<pid>
CATCH_UP_MINUTES = 24 * 60  # periodic jobs missed while no processor ran are enqueued once, up to a day back


RESULT_LENGTH = 400  # Job.result


def _result_text(result):
    """What a job returned, as its record keeps it: a kept message that would be cut short is stored translated
    into the shop's default language instead, so that it stays readable."""
    text = str(result or "")
    if len(text) > RESULT_LENGTH:
        text = shown(text)
    return text[:RESULT_LENGTH]


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


def make_huey(config, instance_path, blocking=False):
    """Huey on Redis with priorities when REDIS_URL is set, else on SQLite in instance/; results off."""
    if config["REDIS_URL"]:
        pool = redisclient.connect(config["REDIS_URL"], timeout=5, connect_timeout=2).connection_pool
        huey = PriorityRedisHuey(
            f"{config['REDIS_NAMESPACE']}_queue",
            results=False,
            utc=True,
            connection_pool=pool,
            blocking=blocking,
            read_timeout=1,
        )
    else:
        huey = SqliteHuey(
            "sipup",
            results=False,
            utc=True,
            # The queue holds mail addresses: its file (and so its -wal and -shm) is the service account's.
            filename=private_file(os.path.join(instance_path, "queue.db")),
            strict_fifo=True,
            timeout=30,
        )
    compat.share_registry(huey, _HOLDER._registry)
    return huey


# --- enqueueing ---------------------------------------------------------------------------------


def enqueue(job_or_name, *args, priority=None, delay=0, dedupe_key=None):
    """Record a job in the current transaction; Huey gets it once that transaction commits.

    Returns the Job, or None when a job with the same dedupe_key already exists.
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
    if dedupe_key is None:
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


# --- the queue of one app -------------------------------------------------------------------------


class Queue:
    """The jobs of one app: Huey for transport, the jobs table for the record."""

    def __init__(self, app):
        self.app = app
        config = app.config
        self.max_attempts = config["QUEUE_MAX_ATTEMPTS"]
        self.retry_delay = config["QUEUE_RETRY_DELAY"]
        self.lease_seconds = config["QUEUE_LEASE_SECONDS"]
        self.backend = "redis" if config["REDIS_URL"] else "sqlite"
        self._huey = None
        self._lock = threading.Lock()
        self.tally = {"run": 0, "failed": 0}
        self.running = {}  # job id -> attempt, of the jobs this process runs now
        self.held = {}  # job id -> claim time, of runs the database went away under: given back when it answers
        self.stopping = threading.Event()  # set by a stopping worker: claim nothing more

    @property
    def huey(self):
        if self._huey is None:
            self._huey = make_huey(self.app.config, self.app.instance_path)
        return self._huey

    def counters(self):
        return self.app.extensions["counters"]

    # sending -----------------------------------------------------------------------------------

    def task_for(self, job_id, name, args, priority, run_at):
        """The Huey message for a job row: its id is the row's id."""
        wrapper = JOBS[name]
        return wrapper.task_class(
            args=tuple(json.loads(args)), id=str(job_id), priority=priority, eta=run_at if run_at > utcnow() else None
        )

    def _put(self, task):
        if task.eta is not None:
            self.huey.add_schedule(task)
        else:
            self.huey.enqueue(task)

    def send(self, messages):
        """Hand committed jobs to Huey; what Huey cannot take stays in the outbox for the processor."""
        sent = 0
        try:
            for message in messages:
                self._put(self.task_for(*message))
                sent += 1
        except Exception as exc:  # Redis down or the queue file locked: the jobs table keeps them
            unsent = [message[0] for message in messages[sent:]]
            outage(QUEUE_STORE).failed(exc, where=" (jobs wait in the jobs table for the next processor run)")
            self.counters().incr("queue", "deferred", len(unsent))
            with db.engine.begin() as conn:
                conn.execute(update(Job).where(Job.id.in_(unsent)).values(dispatched_at=None))
        else:
            outage(QUEUE_STORE).ok()

    # running -----------------------------------------------------------------------------------

    def run(self, task, func, args):
        """Claim the job row, run the job, record the outcome; raise RetryTask for Huey to retry it."""
        job_id = int(task.id) if str(task.id).isdigit() else None
        if self.stopping.is_set():  # taken from the queue as the worker stopped: leave it to another
            self._put(task)
            return SKIPPED
        claimed_at = utcnow().replace(microsecond=0)
        try:
            if job_id is not None and PRIORITY_NAMES.get(task.priority) in paused_priorities(self.counters()):
                self._mark_unsent(job_id)  # it waits in the table; the outbox sends it once resumed
                db.session.commit()
                return SKIPPED
            claimed = self._claim(job_id, task.name, claimed_at) if job_id is not None else None
            if claimed is None:
                log.info("Skipped %s: not waiting to run (already run, running elsewhere, or unknown).", task)
                return SKIPPED
            attempts, max_attempts, due = claimed
            count_wait(self.counters(), task, (utcnow() - due).total_seconds())
            mark = f"{RUNNING}{job_id}|{self.app.config['HOST_NAME']}|{os.getpid()}"
            self.counters().mark(mark, True)  # for "Running now" on /monitor, from every host
            with self._lock:
                self.running[job_id] = attempts
            return self._run_claimed(task, func, args, job_id, attempts, max_attempts)
        except DBAPIError as exc:
            if not is_unavailable(exc):
                raise
            return self._hold(task, job_id, claimed_at, exc)
        finally:
            with self._lock:
                ran = self.running.pop(job_id, None) is not None
            if ran:
                self.counters().mark(mark, False)

    def _hold(self, task, job_id, claimed_at, error):
        """The database went away during this run: keep its claim to give back once the database answers."""
        forget_transaction()
        with self._lock:
            self.held[job_id] = claimed_at
        outage(DATABASE).failed(error, where=f" (job {task.name} #{job_id} held, queued again when it answers)")
        return SKIPPED

    def _run_claimed(self, task, func, args, job_id, attempts, max_attempts):
        counters = self.counters()
        counters.incr("queue", "run")
        with self._lock:
            self.tally["run"] += 1
        started = time.perf_counter()
        try:
            result = func(*args)
        except (PermanentError, DomainError) as exc:
            db.session.rollback()
            # A domain error raised with its message kept (i18n.kept_error) is shown in each reader's language.
            self._finish(job_id, attempts, S.FAILED, error=getattr(exc, "kept", None) or str(exc) or type(exc).__name__)
            count_run(counters, task, started, "f")
            return self._failed(task, exc, counters)
        except Exception as exc:
            if isinstance(exc, DBAPIError) and is_unavailable(exc):
                raise  # not the job's fault: held and given back (see run)
            db.session.rollback()
            exceptions.record(counters, exc, f"job {task.name}")  # for /monitor's Exceptions
            error = f"{type(exc).__name__}: {exc}"
            count_run(counters, task, started, "r" if attempts < max_attempts else "f")
            if attempts < max_attempts:
                run_at = utcnow() + timedelta(seconds=self.retry_delay * attempts)
                self._finish(job_id, attempts, S.RETRYING, error=error, run_at=run_at)
                counters.incr("queue", "retried")
                with self._lock:
                    self.tally["failed"] += 1
                log.warning(
                    "Job %s failed (attempt %d of %d), retrying at %s: %s", task, attempts, max_attempts, run_at, error
                )
                raise RetryTask(eta=run_at) from exc
            self._finish(job_id, attempts, S.FAILED, error=error)
            return self._failed(task, exc, counters)
        self._finish(job_id, attempts, S.DONE, result=_result_text(result))
        count_run(counters, task, started, None)
        counters.incr("queue", "done")
        return S.DONE

    def _failed(self, task, exc, counters):
        counters.incr("queue", "failed")
        with self._lock:
            self.tally["failed"] += 1
        log.error("Job %s failed for good: %s", task, exc)
        return S.FAILED

    def _claim(self, job_id, name, now=None):
        now = now or utcnow()
        lease = JOBS[name].lease or self.lease_seconds if name in JOBS else self.lease_seconds
        # Run again after a deadlock or, on Galera, a claim of the same job on another node that committed
        # first: the second try finds the job running and claims nothing.
        changed = run_in_transaction(_claim_row, job_id, name, now, lease)
        if changed != 1:
            return None
        return db.session.execute(select(Job.attempts, Job.max_attempts, Job.run_at).where(Job.id == job_id)).one()

    def _finish(self, job_id, attempts, status, error="", result="", run_at=None):
        now = utcnow()
        values = {"status": status, "error": error[:4000], "result": result, "lease_until": None}
        if status == S.RETRYING:
            values.update(run_at=run_at, dispatched_at=now)
        else:
            values["finished_at"] = now
        # Only the run that holds the claim may record its end (the reaper may have moved on).
        db.session.execute(
            update(Job)
            .where(Job.id == job_id, Job.status == S.RUNNING, Job.attempts == attempts)
            .values(**values)
            .execution_options(synchronize_session=False)
        )
        db.session.commit()

    # housekeeping shared by `flask queue process` and the worker's scheduler --------------------

    def give_back(self, now=None):
        """Queue again at once the runs this process held while the database was away (see run); the attempt
        does not count. A claim that never reached the database had its message spent: the outbox resends it."""
        with self._lock:
            held = dict(self.held)
        now = now or utcnow()
        error = "The database went away during this run; queued again once it answered."
        for job_id, claimed_at in held.items():
            db.session.execute(
                update(Job)
                .where(Job.id == job_id, Job.status == S.RUNNING, Job.started_at == claimed_at)
                .values(
                    status=S.RETRYING,
                    attempts=Job.attempts - 1,
                    run_at=now,
                    dispatched_at=None,
                    lease_until=None,
                    error=error,
                )
                .execution_options(synchronize_session=False)
            )
            self._mark_unsent(job_id)
        db.session.commit()
        with self._lock:
            for job_id in held:
                self.held.pop(job_id, None)
        return len(held)

    def _mark_unsent(self, job_id):
        db.session.execute(
            update(Job)
            .where(Job.id == job_id, Job.status.in_(WAITING))
            .values(dispatched_at=None)
            .execution_options(synchronize_session=False)
        )

    def reap(self, now=None):
        """Running jobs whose lease ran out (their process died): retry them, or fail those out of attempts."""
        now = now or utcnow()
        expired = db.session.execute(
            select(Job.id, Job.attempts, Job.max_attempts, Job.lease_until).where(
                Job.status == S.RUNNING, Job.lease_until < now
            )
        ).all()
        for job_id, attempts, max_attempts, lease_until in expired:
            error = f"The process running it stopped (lease ran out at {lease_until:%Y-%m-%d %H:%M:%S} UTC)."
            if attempts < max_attempts:
                values = {"status": S.RETRYING, "run_at": now, "dispatched_at": None, "error": error}
            else:
                values = {"status": S.FAILED, "finished_at": now, "error": error}
            db.session.execute(
                update(Job)
                .where(Job.id == job_id, Job.status == S.RUNNING, Job.attempts == attempts)
                .values(lease_until=None, **values)
                .execution_options(synchronize_session=False)
            )
        db.session.commit()
        self.forget_finished_runs()
        return len(expired)

    def forget_finished_runs(self):
        """Take back "running" marks whose job no longer runs: their process died (the lease ran out), stopped
        with the job still running, or could not take the mark back while the store was away."""
        counters = self.counters()
        marked = running_marks(counters, every=True)
        if not marked:
            return
        running = set(
            db.session.scalars(
                select(Job.id).where(Job.id.in_({job_id for job_id, _ in marked}), Job.status == S.RUNNING)
            )
        )
        db.session.commit()
        for job_id, name in marked:
            if job_id not in running:
                counters.mark(name, False)

    def drain_outbox(self, now=None, limit=500):
        """Send jobs Huey never got (Redis was down) or whose message went missing; return how many."""
        now = now or utcnow()
        stale = now - timedelta(seconds=self.lease_seconds)
        paused = [PRIORITIES[name] for name in paused_priorities(self.counters())]
        rows = db.session.execute(
            select(Job.id, Job.name, Job.args, Job.priority, Job.run_at, Job.dispatched_at)
            .where(
                Job.status.in_(WAITING),
                Job.priority.not_in(paused),
                Job.dispatched_at.is_(None) | ((Job.dispatched_at < stale) & (Job.run_at < stale)),
            )
            .order_by(Job.priority.desc(), Job.id)
            .limit(limit)
        ).all()
        sent = 0
        for job_id, name, args, priority, run_at, _dispatched_at in rows:
            if name not in JOBS:
                self._mark(job_id, status=S.FAILED, finished_at=now, error=f"Unknown job type {name!r}.")
                continue
            self._put(self.task_for(job_id, name, args, priority, run_at))  # raises while Huey is down
            self._mark(job_id, dispatched_at=now)
            sent += 1
        db.session.commit()
        return sent

    def return_unfinished(self):
        """Queue again at once the jobs this process still runs (a worker stopping); return how many."""
        with self._lock:
            running = dict(self.running)
        now = utcnow()
        error = (
            f"The worker stopped before this run finished (SIPUP_WORKER_STOP_SECONDS="
            f"{self.app.config['WORKER_STOP_SECONDS']}); queued again."
        )
        returned = 0
        for job_id, attempts in running.items():
            returned += db.session.execute(
                update(Job)
                .where(Job.id == job_id, Job.status == S.RUNNING, Job.attempts == attempts)
                .values(status=S.RETRYING, run_at=now, dispatched_at=None, lease_until=None, error=error)
                .execution_options(synchronize_session=False)
            ).rowcount
        db.session.commit()
        if returned:
            try:
                self.drain_outbox(now)
            except Exception as exc:  # the queue store is down too: the next processor run sends them
                db.session.rollback()
                log.warning("Unfinished jobs wait in the jobs table for the next processor run: %s", exc)
        return returned

    def _mark(self, job_id, **values):
        db.session.execute(
            update(Job).where(Job.id == job_id).values(**values).execution_options(synchronize_session=False)
        )

    def release_scheduled(self, now=None):
        """Move delayed jobs whose time has come (retries, scheduled ones) into the queue, as Huey's scheduler does."""
        released = 0
        for task in self.huey.read_schedule(now or utcnow()):
            self.huey.enqueue(task)
            released += 1
        return released

    def enqueue_periodic(self, now=None, since=None):
        """Enqueue periodic jobs due since the last processor run, once each (one per job and minute)."""
        now = (now or utcnow()).replace(second=0, microsecond=0)
        since = max(since or now, now - timedelta(minutes=CATCH_UP_MINUTES))
        due = {}
        minute = since.replace(second=0, microsecond=0)
        while minute <= now:
            for task in self.huey.read_periodic(minute):
                due[task.name] = minute  # the latest due minute of each
            minute += timedelta(minutes=1)
        added = []
        for name, minute in sorted(due.items()):
            if enqueue(name, dedupe_key=f"periodic:{name}@{minute:%Y-%m-%dT%H:%M}") is not None:
                added.append(name)
        db.session.commit()
        return added

    def heartbeat(self, processor, started_at, finished_at=None, jobs_run=0, failures=0):
        """Record a processor's last run (time, jobs run, failures) for /monitor and `flask queue status`."""
        values = {"started_at": started_at, "finished_at": finished_at, "jobs_run": jobs_run, "failures": failures}
        # Overlapping runs may insert the first row at once: MariaDB then reports a deadlock, retried here.
        run_in_transaction(_write_heartbeat, processor, values)

    def housekeeping(self, now, since):
        """Reaper, lost store, outbox, due delayed jobs and periodic jobs (the monitor's alerts among them);
        returns what each did and a "problems" list, one line per real problem. A failing part is logged and
        the rest goes on."""
        done = {"problems": []}
        for name, step in (
            ("given_back", lambda: self.give_back(now)),
            ("reaped", lambda: self.reap(now)),
            ("lost", lambda: self.check_store(now)),
            ("resent", lambda: self.drain_outbox(now)),
            ("released", lambda: self.release_scheduled(now)),
            ("periodic", lambda: self.enqueue_periodic(now, since)),
        ):
            try:
                done[name] = step()
            except Exception as exc:  # Redis down: the jobs table keeps everything for the next run
                db.session.rollback()
                log.warning("Queue housekeeping step %s failed: %s", name, exc)
                done[name] = None
                done["problems"].append(f"{name}: failed: {exc}")
        if done["lost"]:
            done["problems"].append(describe_loss(self.backend, done["lost"], now))
        return done

    def check_store(self, now):
        """Notice that the queue store forgot its messages and re-send every job the table says was sent.

        Returns the number of messages lost (0 when the store still holds its epoch); see the module doc."""
        token = self.huey.get(EPOCH_KEY, peek=True)
        row = db.session.get(QueueRun, STORE_ROW)
        recorded = row.started_at.strftime(EPOCH_FORMAT) if row is not None else None
        if token is not None and row is None:  # the table is newer than the store (first run on this database)
            run_in_transaction(_write_heartbeat, STORE_ROW, {"started_at": _parse_epoch(token)})
            return 0
        if token is not None and token == recorded:
            return 0
        epoch = now.replace(microsecond=0)
        if token is None and not self.huey.put_if_empty(EPOCH_KEY, epoch.strftime(EPOCH_FORMAT)):
            return 0  # an overlapping run noticed it first and re-sends
        if token is not None:  # another epoch: an old snapshot restored, or another database's store
            self.huey.put(EPOCH_KEY, epoch.strftime(EPOCH_FORMAT))
        held = self.huey.pending_count() + self.huey.scheduled_count()  # all sent after the loss
        resent = self.resend_waiting(now)
        # A store without an epoch that the table never recorded is a first run, not a loss.
        lost = max(resent - held, 0) if row is not None else 0
        values = {"started_at": epoch}
        if lost:
            values.update(finished_at=now, jobs_run=lost, failures=(row.failures or 0) + 1)
            log.error("%s", describe_loss(self.backend, lost, now))
        run_in_transaction(_write_heartbeat, STORE_ROW, values)
        return lost

    def resend_waiting(self, now):
        """Send every waiting job the table says was sent to Huey again; return how many."""
        rows = db.session.execute(
            select(Job.id, Job.name, Job.args, Job.priority, Job.run_at)
            .where(Job.status.in_(WAITING), Job.dispatched_at.is_not(None))
            .order_by(Job.id)
        ).all()
        db.session.commit()
        sent = 0
        for message in rows:
            if message.name in JOBS:  # an unknown one fails in drain_outbox, with its reason
                self._put(self.task_for(*message))
                sent += 1
        return sent

    def process(self, limit, processor="process"):
        """Run at most `limit` ready jobs, highest priority first, after the housekeeping; return a summary."""
        now = utcnow()
        since = last_processor_start()
        self.heartbeat(processor, now)
        summary = self.housekeeping(now, since)
        run = failed = 0
        while run < limit:
            try:
                task = self.huey.dequeue()
                if task is None:
                    break
                if not self.huey.ready_to_run(task, now):
                    self.huey.add_schedule(task)
                    continue
                outcome = self.huey.execute(task, now)
            except Exception as exc:  # the queue store went away: the jobs table keeps what is left
                db.session.rollback()
                log.error("Job queue unreachable while processing: %s", exc)
                summary["error"] = str(exc) or type(exc).__name__
                summary["problems"].append(f"queue unreachable: {summary['error']}")
                break
            if outcome == SKIPPED:
                continue
            run += 1
            failed += outcome != S.DONE
        self.heartbeat(processor, now, utcnow(), run, failed)
        self.counters().incr_many("queue", {"processor_runs": 1, "capacity": limit})
        self.counters().flush()
        summary.update(run=run, failed=failed)
        return summary


def paused_priorities(counters):
    """The names of the paused priorities ({} while the store does not answer: jobs then run)."""
    return {name.removeprefix(PAUSED) for name in counters.marks(PAUSED)} & set(PRIORITIES)


def set_paused(counters, priority, paused):
    """Pause or resume a priority for every processor and worker; raises when the store does not answer."""
    if priority not in PRIORITIES:
        raise ValueError(f"Unknown priority {priority!r}; use high, normal or low.")
    counters.store.mark(PAUSED + priority, paused, time.time())


def running_marks(counters, every=False):
    """{job id: (host, process id, since)} of the jobs that processors and workers of every host run now, by
    the marks they set as they start each run, the newest mark of a job where it has more ({} while the store
    does not answer). every: [(job id, mark name)] of every mark instead."""
    found, names = {}, []
    for name, since in sorted(counters.marks(RUNNING).items(), key=lambda item: item[1]):
        job_id, _, where = name.removeprefix(RUNNING).partition("|")
        host, _, pid = where.rpartition("|")
        if job_id.isdigit():
            found[int(job_id)] = (host, pid, since)
            names.append((int(job_id), name))
    return names if every else found


def last_processor_start():
    return db.session.scalar(select(func.max(QueueRun.started_at)).where(QueueRun.processor != STORE_ROW))


def last_processor_finish():
    """When any processor last finished (or started, while it runs), or None when none ever ran."""
    return db.session.scalar(
        select(func.max(func.coalesce(QueueRun.finished_at, QueueRun.started_at))).where(
            QueueRun.processor != STORE_ROW
        )
    )


def _parse_epoch(token):
    return datetime.strptime(token, EPOCH_FORMAT)


def describe_loss(backend, lost, when):
    store = "Redis" if backend == "redis" else "The queue file"
    return f"{store} lost {lost} queued message(s) at {when:%H:%M} UTC; re-sent."


def store_loss():
    """The last time the queue store lost messages: {"at", "lost", "times"} or None."""
    row = db.session.get(QueueRun, STORE_ROW)
    if row is None or not row.failures:
        return None
    return {"at": row.finished_at, "lost": row.jobs_run, "times": row.failures}


# Run times per job type, in the shared counters (group "jobs"): `<name>|n` runs, `|f` failed for good,
# `|r` failed and retried, `|h<i>` the run-time histogram in seconds (bounds below). The running totals
# also keep `|t` (milliseconds run) and `|<priority>:<outcome>` (done, failed, retried) for /metrics.
RUN_BOUNDS_S = (0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600)


OUTCOMES = {"f": "failed", "r": "retried", None: "done"}


def count_run(counters, task, started, failure):
    """Count one run of a job with its run time; failure: "f" (for good), "r" (retried) or None."""
    seconds = time.perf_counter() - started
    name, priority = task.name, PRIORITY_NAMES.get(task.priority, "normal")
    index = next((i for i, bound in enumerate(RUN_BOUNDS_S) if seconds <= bound), len(RUN_BOUNDS_S))
    amounts = {f"{name}|n": 1, f"{name}|h{index}": 1}
    if failure:
        amounts[f"{name}|{failure}"] = 1
    totals = {f"{name}|t": round(seconds * 1000), f"{name}|{priority}:{OUTCOMES[failure]}": 1}
    counters.incr_many("jobs", amounts, totals_only=totals)


def job_type_stats(counters, hours=24):
    """Per job type over the last `hours`: runs, failures (for good), retries and the p95 run time in s."""
    rows = {}
    for key, value in counters.totals("jobs", "hour", hours).items():
        name, _, field = key.rpartition("|")
        row = rows.setdefault(
            name, {"name": name, "runs": 0, "failed": 0, "retried": 0, "hist": [0] * (len(RUN_BOUNDS_S) + 1)}
        )
        if field.startswith("h"):
            row["hist"][int(field[1:])] += value
        else:
            row[{"n": "runs", "f": "failed", "r": "retried"}[field]] += value
    for row in rows.values():
        row["p95_s"] = percentile(row["hist"], 0.95, RUN_BOUNDS_S)
    return sorted(rows.values(), key=lambda r: (-r["runs"], r["name"]))


# Waits per priority in the shared counters (group "waits"): `<priority>|h<i>`, a histogram in seconds of the
# time from when a job was due (enqueued, or its delay or retry came) to the start of its run.
WAITS = "waits"
WAIT_BOUNDS_S = (1, 2, 5, 10, 30, 60, 120, 300, 900, 3600)


def count_wait(counters, task, seconds):
    """Count how long a job waited for its run to start."""
    priority = PRIORITY_NAMES.get(task.priority, "normal")
    index = next((i for i, bound in enumerate(WAIT_BOUNDS_S) if seconds <= bound), len(WAIT_BOUNDS_S))
    counters.incr(WAITS, f"{priority}|h{index}")


def wait_stats(counters, res="minute", count=60):
    """Per priority, highest first, over the last `count` buckets: runs started, and the p50 and p95 wait in
    seconds (the upper bound of its histogram bin; None without runs, inf past the last bound)."""
    hists = {name: [0] * (len(WAIT_BOUNDS_S) + 1) for name in PRIORITIES}
    for key, value in counters.totals(WAITS, res, count).items():
        name, _, field = key.rpartition("|")
        if name in hists and field[1:].isdigit() and int(field[1:]) < len(hists[name]):
            hists[name][int(field[1:])] += value
    return [
        {
            "priority": name,
            "started": sum(hist),
            "p50_s": percentile(hist, 0.50, WAIT_BOUNDS_S),
            "p95_s": percentile(hist, 0.95, WAIT_BOUNDS_S),
        }
        for name, hist in hists.items()
    ]


def _write_heartbeat(processor, values):
    stmt = update(QueueRun).where(QueueRun.processor == processor).values(**values)
    if not db.session.execute(stmt.execution_options(synchronize_session=False)).rowcount:
        try:
            with db.session.begin_nested():
                db.session.add(QueueRun(processor=processor, **values))
        except IntegrityError:  # an overlapping run wrote it first
            db.session.execute(stmt.execution_options(synchronize_session=False))


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


def register_queue(app):
    """Give the app its queue; the jobs are declared as sipup/__init__.py imports sipup/tasks.py."""
    app.extensions["queue"] = Queue(app)


def _claim_row(job_id, name, now, lease):
    """Mark the job running if it waits to run: 1 when this processor claimed it, else 0."""
    return db.session.execute(
        update(Job)
        .where(Job.id == job_id, Job.name == name, Job.status.in_(WAITING), Job.run_at <= now + timedelta(seconds=2))
        .values(
            status=S.RUNNING,
            attempts=Job.attempts + 1,
            started_at=now,
            finished_at=None,
            lease_until=now + timedelta(seconds=lease),
        )
        .execution_options(synchronize_session=False)
    ).rowcount
