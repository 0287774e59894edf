"""Runs whose process went away: the reaper (a lease ran out), runs held while the database was away, and
the runs of a stopping worker, each queued again or failed."""

import logging

from sqlalchemy import select, update

from sipup.extensions import db
from sipup.jobs.marks import running_marks
from sipup.jobs.registry import S
from sipup.models import Job, utcnow

log = logging.getLogger("sipup.queue")


class Reaping:
    """Queue's handling of runs whose process went away."""

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
