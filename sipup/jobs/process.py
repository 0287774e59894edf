"""`flask queue process`: one short run of the housekeeping (shared with the worker's scheduler) and of the
ready jobs, as Huey's consumer does in its loops (Scheduler.loop: read_schedule then enqueue; Worker.loop:
dequeue then execute)."""

import logging
from datetime import timedelta

from sipup.database import run_in_transaction
from sipup.extensions import db
from sipup.jobs.heartbeats import last_processor_start, write_heartbeat
from sipup.jobs.registry import S, enqueue
from sipup.jobs.running import SKIPPED
from sipup.jobs.store import describe_loss
from sipup.models import utcnow

log = logging.getLogger("sipup.queue")

CATCH_UP_MINUTES = 24 * 60  # periodic jobs missed while no processor ran are enqueued once, up to a day back


class Processing:
    """Queue's housekeeping and `flask queue process`."""

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
        run_in_transaction(write_heartbeat, processor, values)

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
