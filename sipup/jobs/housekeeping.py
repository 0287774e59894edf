"""The hourly cache cleanup: expired filesystem-cache entries, old statistics buckets, old job history."""

import os
import sqlite3
import time
from contextlib import closing

from flask import current_app

from sipup.cache import purge_expired
from sipup.jobs.manage import cleanup
from sipup.observability import counters as metrics
from sipup.observability import query_stats
from sipup.services.errors import InvalidInput


def purge_statistics(now=None):
    """Delete statistics buckets past their retention from the SQLite stores; returns rows removed.

    Each store also prunes when it is written to; this covers the hours when nothing was (an idle site).
    The Redis stores need nothing: their keys carry an expiry.
    """
    now = now or time.time()
    removed = 0
    for filename, table, resolutions in (
        ("metrics.db", "counters", metrics.RESOLUTIONS),
        ("query_stats.db", "buckets", query_stats.RESOLUTIONS),
    ):
        path = os.path.join(current_app.instance_path, filename)
        if current_app.config["REDIS_URL"] or not os.path.exists(path):
            continue
        with closing(sqlite3.connect(path, timeout=5)) as conn, conn:
            for res, (seconds, kept) in resolutions.items():
                # The same cut-off as the store's own pruning (buckets beyond `kept` are never read).
                removed += conn.execute(
                    f"DELETE FROM {table} WHERE res = ? AND start < ?", (res, now - seconds * kept)
                ).rowcount
    return removed


def cache_cleanup():
    """Run every part of the cleanup; returns a one-line summary."""
    cache = purge_expired()
    stats = purge_statistics()
    jobs = cleanup(current_app.config["QUEUE_KEEP_DAYS"])
    cache_text = "the cache server expires its own entries" if cache is None else f"{cache} expired cache files"
    return f"{cache_text}; {stats} old statistics rows; {jobs} finished jobs past retention removed"


def pause(seconds):
    """The ping job's work: wait `seconds` (at most ten minutes), then answer "pong"."""
    try:
        seconds = min(max(float(seconds), 0.0), 600.0)
    except ValueError:
        raise InvalidInput(f"seconds: {seconds!r} is not a number of seconds") from None
    time.sleep(seconds)
    return "pong"
