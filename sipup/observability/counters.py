"""Shared counters: named counts per minute and per hour, added up across processes and hosts.

The cache, the rate limiter, the queue and the request log count what happens here, and `/monitor`
and the command line read the same figures. Each process adds to a pending table in memory (a dict
update under a lock) and flushes it every few seconds: into Redis hashes where `SIPUP_REDIS_URL` is
set, else into a SQLite file in instance/ that the server processes and the command line share.

    counters = app.extensions["counters"]
    counters.incr("cache", "products.hit")
    counters.totals("cache", "minute", 5)     # {"products.hit": 812, ...} over the last 5 minutes
    counters.series("cache", "hour", 24)      # [(start, {...}), ...] oldest first, empty hours included

The groups in TOTAL_GROUPS also keep a running total per name, never pruned: one row (or Redis hash
field) that every process adds to, so `/metrics` exports true, monotonically increasing counters for
the whole site whichever process answers the scrape (`counters.running_totals("traffic")`).

A store that fails (Redis down) keeps the figures pending in memory, bounded, and says so in
`store_error`; counting never fails a request.
"""

import atexit
import logging
import os
import socket
import sqlite3
import threading
import time
import weakref
from collections import defaultdict
from contextlib import closing

import redis

log = logging.getLogger("sipup.metrics")

RESOLUTIONS = {"minute": (60, 120), "hour": (3600, 48)}  # bucket seconds, buckets kept
TOTAL = "total"  # the resolution of running totals: one bucket (start 0), never pruned or expired
# Groups whose names are bounded (endpoints, job types, cache types, kinds): their totals are exported.
TOTAL_GROUPS = frozenset({"traffic", "cache", "jobs", "queue", "limits", "db", "sql"})
FLUSH_SECONDS = 5
RETRY_SECONDS = 30  # after a store error, wait this long before trying again from a request
MAX_PENDING = 50_000  # names x buckets kept in memory while the store is down


def connect_sqlite(path):
    """A connection to a statistics file in instance/ that the server's threads, its other processes and
    the command line share: WAL, so readers never wait for the writer."""
    conn = sqlite3.connect(path, timeout=5)
    conn.execute("PRAGMA journal_mode=WAL")
    return conn


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


class SqliteCounterStore:
    name = "sqlite"

    def __init__(self, path):
        self.path = path
        with closing(self._connect()) as conn, conn:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS counters (grp TEXT, res TEXT, start INTEGER, name TEXT, "
                "value INTEGER, PRIMARY KEY (grp, res, start, name)) WITHOUT ROWID"
            )
            conn.execute("CREATE TABLE IF NOT EXISTS marks (name TEXT PRIMARY KEY, since REAL)")
            conn.execute(  # running totals (TOTAL): never pruned
                "CREATE TABLE IF NOT EXISTS totals (grp TEXT, name TEXT, value INTEGER, PRIMARY KEY (grp, name)) "
                "WITHOUT ROWID"
            )

    def _connect(self):
        return connect_sqlite(self.path)

    def write(self, pending):
        rows = [(g, res, start, name, value) for (g, res, start, name), value in pending.items() if res != TOTAL]
        totals = [(g, name, value) for (g, res, _start, name), value in pending.items() if res == TOTAL]
        with closing(self._connect()) as conn, conn:
            conn.executemany(
                "INSERT INTO counters (grp, res, start, name, value) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (grp, res, start, name) DO UPDATE SET value = value + excluded.value",
                rows,
            )
            conn.executemany(
                "INSERT INTO totals (grp, name, value) VALUES (?, ?, ?) "
                "ON CONFLICT (grp, name) DO UPDATE SET value = value + excluded.value",
                totals,
            )
            for res, (seconds, kept) in RESOLUTIONS.items():
                conn.execute("DELETE FROM counters WHERE res = ? AND start < ?", (res, time.time() - seconds * kept))

    def read(self, group, res, starts):
        if res == TOTAL:
            with closing(self._connect()) as conn:
                rows = conn.execute("SELECT name, value FROM totals WHERE grp = ?", (group,)).fetchall()
            return {0: dict(rows)} if rows else {}
        marks = ", ".join("?" * len(starts))
        with closing(self._connect()) as conn:
            rows = conn.execute(
                f"SELECT start, name, value FROM counters WHERE grp = ? AND res = ? AND start IN ({marks})",
                (group, res, *starts),
            ).fetchall()
        found = defaultdict(dict)
        for start, name, value in rows:
            found[start][name] = value
        return found

    def mark(self, name, active, now):
        with closing(self._connect()) as conn, conn:
            if active:
                conn.execute("INSERT OR IGNORE INTO marks (name, since) VALUES (?, ?)", (name, now))
            row = conn.execute("SELECT since FROM marks WHERE name = ?", (name,)).fetchone()
            if not active:
                conn.execute("DELETE FROM marks WHERE name = ?", (name,))
            return row[0] if row else None

    def close(self):
        pass


class RedisCounterStore:
    name = "redis"

    def __init__(self, url, namespace):
        self.prefix = f"{namespace}:counters"
        self.client = redis.Redis.from_url(url, socket_timeout=1, socket_connect_timeout=1)

    def _key(self, group, res, start):
        return f"{self.prefix}:{group}:{res}:{start}"

    def write(self, pending):
        pipe = self.client.pipeline(transaction=False)
        keys = set()
        for (group, res, start, name), value in pending.items():
            key = self._key(group, res, start)
            pipe.hincrby(key, name, value)
            keys.add((key, res))
        for key, res in keys:
            if res in RESOLUTIONS:  # running totals never expire
                seconds, kept = RESOLUTIONS[res]
                pipe.expire(key, seconds * kept)
        pipe.execute()

    def read(self, group, res, starts):
        pipe = self.client.pipeline(transaction=False)
        for start in starts:
            pipe.hgetall(self._key(group, res, start))
        found = {}
        for start, fields in zip(starts, pipe.execute()):
            if fields:
                found[start] = {k.decode(): int(v) for k, v in fields.items()}
        return found

    def mark(self, name, active, now):
        key = f"{self.prefix}:marks"
        pipe = self.client.pipeline(transaction=True)
        if active:
            pipe.hsetnx(key, name, now)
        pipe.hget(key, name)
        if not active:
            pipe.hdel(key, name)
        since = pipe.execute()[1 if active else 0]
        return float(since) if since is not None else None

    def close(self):
        self.client.close()


PROCESS = f"{socket.gethostname()}:{os.getpid()}"


def live_processes(counters, minutes=10):
    """How many processes (web servers, workers, cron runs) wrote figures in the last `minutes`."""
    return len(counters.totals("processes", "minute", minutes))


class Counters:
    """Pending counts of this process, flushed to the shared store every few seconds."""

    def __init__(self, store):
        self.store = store
        self.lock = threading.Lock()
        self.pending = defaultdict(int)
        self.last_flush = time.monotonic()
        self.store_error = None

    def incr(self, group, name, amount=1, now=None):
        """Add to a counter in the current minute and hour (`now`: a Unix time, for tests)."""
        self.incr_many(group, {name: amount}, now)

    def incr_many(self, group, amounts, now=None, totals_only=None):
        """Add to several counters of one group under one lock: {name: amount}; `totals_only`: more
        {name: amount} that only the running totals keep (finer labels that /monitor does not show)."""
        now = time.time() if now is None else now
        starts = [(res, bucket_start(now, res)) for res in RESOLUTIONS]
        if group in TOTAL_GROUPS:
            starts.append((TOTAL, 0))
        with self.lock:
            pending = self.pending
            for name, amount in amounts.items():
                for res, start in starts:
                    pending[(group, res, start, name)] += amount
            if totals_only and group in TOTAL_GROUPS:
                for name, amount in totals_only.items():
                    pending[(group, TOTAL, 0, name)] += amount
        wait = RETRY_SECONDS if self.store_error else FLUSH_SECONDS
        if time.monotonic() - self.last_flush >= wait:
            self.flush()

    def flush(self, at_exit=False):
        """Hand pending counts to the store; on a store error keep them (bounded) and say so (not at exit,
        when the log may be closed and nothing can be done about it)."""
        with self.lock:
            pending, self.pending = self.pending, defaultdict(int)
            self.last_flush = time.monotonic()
        if not pending:
            return
        # Each flush says this process is alive: group "processes" counts the processes that wrote lately,
        # for the connection budget (pool size x processes against the database's max_connections).
        pending[("processes", "minute", bucket_start(time.time(), "minute"), PROCESS)] += 1
        try:
            self.store.write(pending)
            self.store_error = None
        except Exception as exc:  # Redis down: figures are best-effort, requests are not
            if at_exit:
                return
            if self.store_error is None:
                log.warning("Counters not saved (%s store): %s", self.store.name, exc)
            self.store_error = str(exc) or type(exc).__name__
            with self.lock:
                for key, value in pending.items():
                    if len(self.pending) < MAX_PENDING or key in self.pending:
                        self.pending[key] += value

    def series(self, group, res="minute", count=60, now=None):
        """[(bucket start, {name: count})] for the last `count` buckets, oldest first, this one last."""
        self.flush()
        if res == TOTAL:
            starts = [0]
        else:
            seconds = RESOLUTIONS[res][0]
            current = bucket_start(time.time() if now is None else now, res)
            starts = [current - seconds * i for i in range(count - 1, -1, -1)]
        try:
            found = self.store.read(group, res, starts)
        except Exception as exc:  # the store is down: show what this process still holds
            self.store_error = str(exc) or type(exc).__name__
            found = {}
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

    def running_totals(self, group):
        """{name: total since the store began} of a group in TOTAL_GROUPS, over every process."""
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

    def status(self):
        return {"store": self.store.name, "store_error": self.store_error}


_LIVE = weakref.WeakSet()


@atexit.register
def _flush_at_exit():
    for counters in list(_LIVE):
        counters.flush(at_exit=True)


def register_counters(app):
    if app.config["REDIS_URL"]:
        store = RedisCounterStore(app.config["REDIS_URL"], app.config["REDIS_NAMESPACE"])
    else:
        store = SqliteCounterStore(os.path.join(app.instance_path, "metrics.db"))
    counters = Counters(store)
    _LIVE.add(counters)
    app.extensions["counters"] = counters
    return counters
