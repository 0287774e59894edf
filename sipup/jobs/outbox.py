"""Handing jobs to Huey: the messages of committed jobs, and the outbox, which sends again what Huey never
got (the queue store was down) or whose message went missing."""

import json
from datetime import timedelta

from sqlalchemy import select, update

from sipup.extensions import db
from sipup.jobs.marks import paused_priorities
from sipup.jobs.registry import JOBS, PRIORITIES, WAITING, S
from sipup.jobs.store import QUEUE_STORE
from sipup.metrics.outages import outage
from sipup.models import Job, utcnow


class Sending:
    """Queue's sending of job rows to Huey."""

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

    def _mark(self, job_id, **values):
        db.session.execute(
            update(Job).where(Job.id == job_id).values(**values).execution_options(synchronize_session=False)
        )

    def _mark_unsent(self, job_id):
        db.session.execute(
            update(Job)
            .where(Job.id == job_id, Job.status.in_(WAITING))
            .values(dispatched_at=None)
            .execution_options(synchronize_session=False)
        )
