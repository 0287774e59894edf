"""Shared counters: named counts per minute and per hour, added up across processes and hosts.

The one bucketed store of sipup's figures: requests (traffic), the cache, the rate limiter, the queue and
every SQL statement (query statistics, group "dbstats") count here, and `/monitor`, `/metrics` and the
command line read the same figures. Each process adds to a pending table in memory (a dict update under
a lock) and flushes it every few seconds, and within FLUSH_SECONDS after a burst however the traffic
stops: into Redis hashes where `SIPUP_REDIS_URL` is set, else into instance/metrics.db, a SQLite file
that the server processes and the command line share.

    counters = app.extensions["counters"]
    counters.incr("cache", "products.hit")
    counters.totals("cache", "minute", 5)     # {"products.hit": 812, ...} over the last 5 minutes
    counters.series("cache", "hour", 24)      # [(start, {...}), ...] oldest first, empty hours included

Beside sums the store keeps what plain adds cannot express: maxima per bucket (`add_buckets(...,
maxima=)`, read with `maxima()`: the slowest run of a statement) and short texts per key (`describe()`,
`descriptions()`: a statement's SQL by its hash, an exception group's last trace), kept eight days after
they were last written. A part that folds its figures in memory first (the query statistics keep at most
500 statements a bucket) registers a source with `add_source()`: every flush, the timer's and the one at
exit included, first takes what the sources hold.

The groups in TOTAL_GROUPS also keep a running total per name and host, never pruned: one row (or Redis
hash field) that every process of this host (server, worker, cron runs; SIPUP_HOST_NAME) adds to, so each
host's `/metrics` exports true, monotonically increasing counters of its own, the Prometheus way: summed
over the scraped hosts in PromQL they are the site's (`counters.running_totals("traffic")`).

Every flush also notes the host's CPU and memory (maxima per minute, group "hosts"), and the traffic
module counts each host's requests there, for the hosts panel on `/monitor`.

A store that fails (Redis down) keeps the figures pending in memory, bounded, shows them from there and
says so in `store_error`; counting never fails a request.
"""

import atexit
import logging
import os
import socket
import threading
import time
import weakref
from collections import defaultdict

import psutil

from sipup.metrics.counter_stores import (
    RESOLUTIONS,
    TOTAL,
    RedisCounterStore,
    SqliteCounterStore,
)

log = logging.getLogger("sipup.metrics")

# Groups whose names are bounded (endpoints, job types, cache types, kinds): their totals are exported.
TOTAL_GROUPS = frozenset({"traffic", "cache", "jobs", "queue", "limits", "db", "sql"})
FLUSH_SECONDS = 5
RETRY_SECONDS = 30  # after a store error, wait this long before trying again from a request
MAX_PENDING = 50_000  # names x buckets (and maxima) kept in memory while the store is down
MAX_DESCRIPTIONS = 5_000  # texts kept in memory while the store is down


def percentile(hist, q, bounds):
    """The upper bound of the histogram bin holding the q-quantile; inf past the last bound, None if empty."""
    count = sum(hist)
    if not count:
        return None
    seen = 0
    for index, value in enumerate(hist):
        seen += value
        if seen >= q * count:
            return float(bounds[index]) if index < len(bounds) else float("inf")
    return float("inf")


def bucket_start(now, res):
    seconds = RESOLUTIONS[res][0]
    return int(now // seconds * seconds)


PROCESS = f"{socket.gethostname()}:{os.getpid()}"


def _memory_percent():
    return psutil.virtual_memory().percent


class Counters:
    """Pending counts of this process, flushed to the shared store every few seconds."""

    def __init__(self, store, host=socket.gethostname()):
        self.store, self.host = store, host
        self.lock = threading.Lock()
        self.pending = defaultdict(int)  # (group, res, start, name) -> amount
        self.pending_maxima = {}  # (group, res, start, name) -> the largest value
        self.pending_descriptions = {}  # (group, key) -> text
        self.sources = []
        self.last_flush = time.monotonic()
        self.store_error = None
        self.timer = None  # flushes the end of a burst when no later request comes to do it
        self.closed = False
        self._buckets = (None, (), ())  # the second they are for, the buckets, with the running total too

    def incr(self, group, name, amount=1, now=None):
        """Add to a counter in the current minute and hour (`now`: a Unix time, for tests)."""
        self.incr_many(group, {name: amount}, now)

    def incr_many(self, group, amounts, now=None, totals_only=None):
        """Add to several counters of one group under one lock: {name: amount}; `totals_only`: more
        {name: amount} that only the running totals keep (finer labels that /monitor does not show)."""
        starts = self._buckets_at(time.time() if now is None else now, group in TOTAL_GROUPS)
        with self.lock:
            pending = self.pending
            for name, amount in amounts.items():
                for res, start in starts:
                    pending[(group, res, start, name)] += amount
            if totals_only and group in TOTAL_GROUPS:
                for name, amount in totals_only.items():
                    pending[(group, TOTAL, 0, name)] += amount
            self._arm_timer()
        self.flush_if_due()

    def _buckets_at(self, now, with_total):
        """(resolution, start) of each bucket a count at `now` goes to (and the running total's): worked out once a
        second, as every request counts several times."""
        second = int(now)
        known = self._buckets
        if known[0] != second:
            buckets = tuple((res, bucket_start(second, res)) for res in RESOLUTIONS)
            known = self._buckets = (second, buckets, (*buckets, (TOTAL, 0)))
        return known[2] if with_total else known[1]

    def add_source(self, source):
        """Call `source()` at the start of every flush, to hand over through add_buckets() and describe()
        what it folds in memory first; it calls wake() when it starts holding figures."""
        self.sources.append(source)

    def add_buckets(self, group, buckets, maxima=None):
        """Add to counters of buckets the caller chose: {(res, start): {name: amount}} (res TOTAL and start 0
        for running totals); `maxima`: {(res, start): {name: value}}, each kept at its largest. Flushed
        with the next flush (sources call this from one)."""
        with self.lock:
            for (res, start), amounts in buckets.items():
                for name, amount in amounts.items():
                    self.pending[(group, res, start, name)] += amount
            for (res, start), values in (maxima or {}).items():
                for name, value in values.items():
                    key = (group, res, start, name)
                    self.pending_maxima[key] = max(self.pending_maxima.get(key, value), value)

    def describe(self, group, texts):
        """Keep a short text per key of a group ({key: text}, e.g. a statement's SQL by its hash), written
        with the next flush and kept until it has not been written for DESCRIPTION_SECONDS."""
        with self.lock:
            for key, text in texts.items():
                self.pending_descriptions[(group, key)] = text

    def wake(self):
        """Make sure a flush follows within FLUSH_SECONDS (RETRY_SECONDS after a store error)."""
        with self.lock:
            self._arm_timer()

    def _arm_timer(self):
        """Under the lock: a flush follows however the traffic stops."""
        if self.timer is None and not self.closed:
            self.timer = threading.Timer(RETRY_SECONDS if self.store_error else FLUSH_SECONDS, self._flush_by_timer)
            self.timer.daemon = True
            self.timer.start()

    def _flush_by_timer(self):
        with self.lock:
            self.timer = None
        try:
            self.flush()
        except Exception:  # a bug in a source must not kill the timer thread silently
            log.exception("Counters flush failed")

    def close(self):
        """Flush what is pending now and write nothing later (no timer, nothing at exit): for an app that is done,
        before the store it wrote to is removed (a scratch Redis namespace, an instance folder)."""
        with self.lock:
            if self.closed:
                return
            self.closed = True
            timer, self.timer = self.timer, None
        if timer is not None:
            timer.cancel()
        _LIVE.discard(self)
        self.flush(at_exit=True)  # the last write: flush() writes nothing after close() but this one

    def flush_if_due(self):
        """Flush when the last flush is FLUSH_SECONDS ago (RETRY_SECONDS after a store error)."""
        if time.monotonic() - self.last_flush >= (RETRY_SECONDS if self.store_error else FLUSH_SECONDS):
            self.flush()

    def flush(self, at_exit=False):
        """Hand pending counts to the store; on a store error keep them (bounded) and say so (not at exit,
        when the log may be closed and nothing can be done about it)."""
        if self.closed and not at_exit:
            return
        for source in self.sources:
            source()
        with self.lock:
            pending, self.pending = self.pending, defaultdict(int)
            maxima, self.pending_maxima = self.pending_maxima, {}
            descriptions, self.pending_descriptions = self.pending_descriptions, {}
            self.last_flush = time.monotonic()
        if not (pending or maxima or descriptions):
            return
        # Each flush says this host is alive, and how loaded it is (the largest reading of the minute), for the
        # hosts panel.
        minute = bucket_start(time.time(), "minute")
        pending[("hosts", "minute", minute, f"{self.host}|f")] += 1
        for name, value in ((f"{self.host}|cpu", psutil.cpu_percent()), (f"{self.host}|mem", _memory_percent())):
            maxima[("hosts", "minute", minute, name)] = max(maxima.get(("hosts", "minute", minute, name), 0), value)
        try:
            self.store.write(pending, maxima, descriptions)
            self.store_error = None
        except Exception as exc:  # Redis down: figures are best-effort, requests are not
            if at_exit:
                return
            if self.store_error is None:
                log.warning("Counters not saved (%s store): %s", self.store.name, exc)
            self.store_error = str(exc) or type(exc).__name__
            self._keep(pending, maxima, descriptions)

    def _keep(self, pending, maxima, descriptions):
        """Put figures the store refused back, bounded however long it stays down."""
        with self.lock:
            for key, value in pending.items():
                if len(self.pending) < MAX_PENDING or key in self.pending:
                    self.pending[key] += value
            for key, value in maxima.items():
                if len(self.pending_maxima) < MAX_PENDING or key in self.pending_maxima:
                    self.pending_maxima[key] = max(self.pending_maxima.get(key, value), value)
            for key, text in descriptions.items():
                if len(self.pending_descriptions) < MAX_DESCRIPTIONS:
                    self.pending_descriptions.setdefault(key, text)  # a newer text came meanwhile

    def _starts(self, res, count, now):
        if res == TOTAL:
            return [0]
        seconds = RESOLUTIONS[res][0]
        current = bucket_start(time.time() if now is None else now, res)
        return [current - seconds * i for i in range(count - 1, -1, -1)]

    def _read(self, read, *args):
        try:
            return read(*args)
        except Exception as exc:  # the store is down: show what this process still holds
            self.store_error = str(exc) or type(exc).__name__
            return {}

    def series(self, group, res="minute", count=60, now=None):
        """[(bucket start, {name: count})] for the last `count` buckets, oldest first, this one last."""
        self.flush()
        starts = self._starts(res, count, now)
        found = self._read(self.store.read, group, res, starts)
        wanted = set(starts)
        with self.lock:  # what could not be flushed is still ours to show
            for (g, r, start, name), value in self.pending.items():
                if g == group and r == res and start in wanted:
                    values = found.setdefault(start, {})
                    values[name] = values.get(name, 0) + value
        return [(start, found.get(start, {})) for start in starts]

    def totals(self, group, res="minute", count=60, now=None):
        """{name: count} summed over the last `count` buckets."""
        total = defaultdict(int)
        for _start, values in self.series(group, res, count, now):
            for name, value in values.items():
                total[name] += value
        return dict(total)

    def maxima(self, group, res="minute", count=60, now=None):
        """{name: the largest value} over the last `count` buckets (see add_buckets)."""
        self.flush()
        starts = self._starts(res, count, now)
        found = self._read(self.store.read_maxima, group, res, starts)
        wanted = set(starts)
        with self.lock:
            for (g, r, start, name), value in self.pending_maxima.items():
                if g == group and r == res and start in wanted:
                    found[name] = max(found.get(name, value), value)
        return found

    def descriptions(self, group):
        """{key: text} of a group (see describe)."""
        found = self._read(self.store.read_descriptions, group)
        with self.lock:
            for (g, key), text in self.pending_descriptions.items():
                if g == group:
                    found[key] = text
        return found

    def running_totals(self, group):
        """{name: total since the store began} of a group in TOTAL_GROUPS, over every process of this host."""
        return dict(self.series(group, TOTAL, 1, now=0)[0][1])

    def mark(self, name, active, now=None):
        """Since when a condition has held, shared by all processes: the first time it was seen active.
        Marked inactive, the condition is forgotten (the next activation starts anew) and the time it
        had held since is returned, or None when it was not active. None also when the store fails."""
        try:
            return self.store.mark(name, active, time.time() if now is None else now)
        except Exception as exc:  # the store is down: durations are unknown, nothing else is lost
            self.store_error = str(exc) or type(exc).__name__
            return None

    def marks(self, prefix=""):
        """{name: since} of the active marks whose names start with `prefix` ({} when the store fails)."""
        return self._read(self.store.read_marks, prefix)

    def status(self):
        return {"store": self.store.name, "store_error": self.store_error}


_LIVE = weakref.WeakSet()


@atexit.register
def _flush_at_exit():
    for counters in list(_LIVE):
        counters.flush(at_exit=True)


def close_counters(namespace):
    """Close this process's counters that write into a Redis namespace (see Counters.close), before it is deleted."""
    for counters in list(_LIVE):
        if getattr(counters.store, "namespace", None) == namespace:
            counters.close()


def register_counters(app):
    host = app.config["HOST_NAME"]
    if app.config["REDIS_URL"]:
        store = RedisCounterStore(app.config["REDIS_URL"], app.config["REDIS_NAMESPACE"], host)
    else:
        store = SqliteCounterStore(os.path.join(app.instance_path, "metrics.db"), host)
    counters = Counters(store, host)
    _LIVE.add(counters)
    app.extensions["counters"] = counters
    return counters
