"""`flask queue worker`: Huey's consumer with thread workers, its scheduler running sipup's housekeeping
once a minute, stopped gracefully by SIGTERM, Ctrl+C and Ctrl+Break. While Redis or the database is away it
logs one line, a count a minute and one line when it is back, not a traceback per poll."""

import logging
import os
import socket

from huey.consumer import Consumer, Scheduler, Worker
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from sqlalchemy.exc import DBAPIError

from sipup.database import DATABASE, forget_transaction, is_unavailable
from sipup.jobs import compat
from sipup.jobs.heartbeats import last_processor_start
from sipup.jobs.registry import bind_app
from sipup.jobs.store import QUEUE_STORE, make_huey
from sipup.metrics import processes
from sipup.metrics.outages import outage
from sipup.models import utcnow

log = logging.getLogger("sipup.queue")


STORE_ERRORS = (RedisConnectionError, RedisTimeoutError)  # the queue store is away, not a fault of sipup


class _StoreOutages(logging.Filter):
    """Huey logs a traceback for each failed poll of its store (many a second across the threads): count an
    unreachable store as one outage instead and drop the record."""

    def filter(self, record):
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, STORE_ERRORS):
            outage(QUEUE_STORE).failed(error)
            return False
        return True


STORE_OUTAGES = _StoreOutages()


class _QuietWorker(Worker):
    """Huey's worker, its failed polls of an unreachable store counted as one outage."""

    def create_logger(self):
        logger = super().create_logger()
        logger.addFilter(STORE_OUTAGES)
        return logger


class _HousekeepingScheduler(Scheduler):
    """Huey's scheduler, whose once-a-minute periodic step runs sipup's housekeeping instead; its reads of the
    store each second tell when an unreachable store answers again."""

    queue = None
    processor = None

    def create_logger(self):
        logger = super().create_logger()
        logger.addFilter(STORE_OUTAGES)
        return logger

    def loop(self, now=None):
        store = outage(QUEUE_STORE)
        failures = store.total
        super().loop(now)
        if store.down and store.total == failures:  # this second's read of the schedule went through
            store.ok()

    def enqueue_periodic_tasks(self, now):
        queue = self.queue
        with queue.app.app_context():
            try:
                started = utcnow()
                since = last_processor_start()
                queue.heartbeat(self.processor, started, started, queue.tally["run"], queue.tally["failed"])
                queue.housekeeping(started, since)
                queue.counters().flush()
            except DBAPIError as exc:  # the database is away: try again next minute, keep the consumer alive
                forget_transaction()
                if is_unavailable(exc):
                    outage(DATABASE).failed(exc, where=" (queue housekeeping)")
                else:
                    log.exception("Queue housekeeping failed")
            except Exception:
                forget_transaction()
                log.exception("Queue housekeeping failed")


class _GracefulConsumer(Consumer):
    """Huey's consumer, stopped gracefully by SIGTERM (service managers), Ctrl+C and Ctrl+Break alike."""

    queue = None

    def __init__(self, *args, **kwargs):
        super().__init__(*args, graceful_signal="TERM", **kwargs)
        compat.stop_gracefully_on(self, ("SIGINT", "SIGBREAK"))  # SIGBREAK: Ctrl+Break in a Windows console

    def stop(self, graceful=False):
        self.queue.stopping.set()  # a message dequeued from now on goes back to the queue unrun
        super().stop(graceful)


def build_worker(app, workers):
    """Huey's consumer with thread workers (the only kind that runs on Windows) and sipup's housekeeping."""
    bind_app(app)
    queue = app.extensions["queue"]
    huey = make_huey(app.config, app.instance_path, blocking=True)
    queue._huey = huey
    scheduler = type(
        "SipupScheduler",
        (_HousekeepingScheduler,),
        {"queue": queue, "processor": f"worker@{socket.gethostname()}:{os.getpid()}"},
    )
    consumer_class = type(
        "SipupConsumer",
        (_GracefulConsumer,),
        {"scheduler_class": scheduler, "worker_class": _QuietWorker, "queue": queue},
    )
    return consumer_class(
        huey,
        workers=workers,
        worker_type="thread",
        periodic=True,
        scheduler_interval=1,
        initial_delay=0.05,
        max_delay=1.0,
        shutdown_timeout=app.config["WORKER_STOP_SECONDS"],
    )


def run_worker(app, workers):
    """Run the consumer until SIGTERM or Ctrl+C; then queue again at once the jobs that did not finish in time."""
    consumer = build_worker(app, workers)
    processes.register(app, workers + 1)  # its threads and the scheduler's hold the pool's connections
    consumer.run()
    with app.app_context():
        returned = app.extensions["queue"].return_unfinished()
    if returned:
        log.warning(
            "Worker stopped with %d job(s) unfinished after %d s; they are queued again.",
            returned,
            app.config["WORKER_STOP_SECONDS"],
        )
    return returned
