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

import threading

from sipup.jobs.outbox import Sending
from sipup.jobs.process import Processing
from sipup.jobs.reaper import Reaping
from sipup.jobs.running import Running
from sipup.jobs.store import StoreWatch, make_huey


class Queue(Sending, Running, Reaping, Processing, StoreWatch):
    """The jobs of one app: Huey for transport, the jobs table for the record.

    Its parts are in their own modules: sending (outbox), running (running), runs whose process went away
    (reaper), housekeeping and `flask queue process` (process), the store's epoch (store).
    """

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


def register_queue(app):
    """Give the app its queue; the jobs are declared as sipup/__init__.py imports sipup/tasks.py."""
    app.extensions["queue"] = Queue(app)
