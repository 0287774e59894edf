"""The queue store: Huey on Redis or on a SQLite file, and its epoch, by which a processor notices that the
store lost its messages (Redis restarted without persistence, a failover to an empty replica, a flush)."""

import logging
import os
from datetime import datetime

from huey import PriorityRedisHuey, SqliteHuey

from sipup import redisclient
from sipup.database import run_in_transaction
from sipup.extensions import db
from sipup.files import private_file
from sipup.jobs import compat
from sipup.jobs.heartbeats import STORE_ROW, write_heartbeat
from sipup.jobs.registry import _HOLDER
from sipup.models import QueueRun

log = logging.getLogger("sipup.queue")

EPOCH_KEY = "sipup_epoch"  # in Huey's own key-value store: gone when the store lost its data
EPOCH_FORMAT = "%Y-%m-%dT%H:%M:%S"
QUEUE_STORE = "Job queue store"  # its outages' name in the log (sipup.metrics.outages)


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


class StoreWatch:
    """Queue's check of its store's epoch (see sipup.jobs.queue)."""

    def check_store(self, now):
        """Notice that the queue store forgot its messages and re-send every job the table says was sent.

        Returns the number of messages lost (0 when the store still holds its epoch); see the module doc."""
        token = self.huey.get(EPOCH_KEY, peek=True)
        row = db.session.get(QueueRun, STORE_ROW)
        recorded = row.started_at.strftime(EPOCH_FORMAT) if row is not None else None
        if token is not None and row is None:  # the table is newer than the store (first run on this database)
            run_in_transaction(write_heartbeat, STORE_ROW, {"started_at": _parse_epoch(token)})
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
        run_in_transaction(write_heartbeat, STORE_ROW, values)
        return lost


def _parse_epoch(token):
    return datetime.strptime(token, EPOCH_FORMAT)


def describe_loss(backend, lost, when):
    store = "Redis" if backend == "redis" else "The queue file"
    return f"{store} lost {lost} queued message(s) at {when:%H:%M} UTC; re-sent."
