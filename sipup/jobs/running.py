"""Running one job: claim its row with a lease, run it, record the outcome (done, retry or failed), and hold
a run the database went away under."""

import logging
import os
import time
from datetime import timedelta

from huey.exceptions import RetryTask
from sqlalchemy import select, update
from sqlalchemy.exc import DBAPIError

from sipup.database import DATABASE, forget_transaction, is_unavailable, run_in_transaction
from sipup.exceptions import DomainError
from sipup.extensions import db
from sipup.i18n import fitted
from sipup.jobs.marks import RUNNING, paused_priorities
from sipup.jobs.registry import JOBS, PRIORITY_NAMES, WAITING, PermanentError, S
from sipup.jobs.stats import count_run, count_wait
from sipup.metrics import exceptions
from sipup.metrics.outages import outage
from sipup.models import Job, utcnow

log = logging.getLogger("sipup.queue")

SKIPPED = "skipped"
RESULT_LENGTH = 400  # Job.result
ERROR_LENGTH = 4000  # how much of a job's error its record keeps


class Running:
    """Queue's runs of jobs."""

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
        values = {"status": status, "error": fitted(error, ERROR_LENGTH), "result": result, "lease_until": None}
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


def _result_text(result):
    """What a job returned, as its record keeps it: a kept message that would be cut short is stored translated
    into the shop's default language instead, so that it stays readable."""
    return fitted(result if isinstance(result, str) else str(result or ""), RESULT_LENGTH)
