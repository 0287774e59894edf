"""The hourly cache cleanup: expired filesystem-cache entries, old statistics buckets, old job history, old
checkout keys."""

import os
import time
from datetime import timedelta

from flask import current_app
from sqlalchemy import delete

from sipup.cache import purge_expired
from sipup.exceptions import InvalidInput
from sipup.extensions import db
from sipup.i18n import N_, kept_error
from sipup.jobs.manage import cleanup
from sipup.metrics.counter_stores import SqliteCounterStore
from sipup.models import CheckoutKey, utcnow


def purge_statistics(now=None):
    """Delete statistics past their retention from the embedded store (instance/metrics.db); returns rows
    removed. The store also prunes when it is written to; this covers the hours when nothing was (an idle
    site). Redis needs nothing: its keys carry an expiry."""
    path = os.path.join(current_app.instance_path, "metrics.db")
    if current_app.config["REDIS_URL"] or not os.path.exists(path):
        return 0
    return SqliteCounterStore(path).prune(now)


def forget_checkout_keys(days):
    """Delete checkout forms' one-time keys older than `days` (no form is sent again that late); returns rows."""
    removed = db.session.execute(delete(CheckoutKey).where(CheckoutKey.created_at < utcnow() - timedelta(days=days)))
    db.session.commit()
    return removed.rowcount


def cache_cleanup():
    """Run every part of the cleanup; returns a one-line summary."""
    cache = purge_expired()
    stats = purge_statistics()
    jobs = cleanup(current_app.config["QUEUE_KEEP_DAYS"])
    keys = forget_checkout_keys(current_app.config["QUEUE_KEEP_DAYS"])
    cache_text = "the cache server expires its own entries" if cache is None else f"{cache} expired cache files"
    return (
        f"{cache_text}; {stats} old statistics rows; {jobs} finished jobs past retention removed; "
        f"{keys} old checkout keys removed"
    )


def pause(seconds):
    """The ping job's work: wait `seconds` (at most ten minutes), then answer "pong"."""
    try:
        seconds = min(max(float(seconds), 0.0), 600.0)
    except ValueError:
        raise kept_error(
            InvalidInput, N_("seconds: %(value)s is not a number of seconds"), value=repr(seconds)
        ) from None
    time.sleep(seconds)
    return "pong"
