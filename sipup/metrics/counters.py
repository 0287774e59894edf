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
import sqlite3
import threading
import time
import weakref
from collections import defaultdict
from contextlib import closing

import psutil

from sipup import redisclient
from sipup.files import private_file

log = logging.getLogger("sipup.metrics")

RESOLUTIONS = {"minute": (60, 120), "hour": (3600, 7 * 24 + 1)}  # bucket seconds, buckets kept (a week of hours)
TOTAL = "total"  # the resolution of running totals: one bucket (start 0), never pruned or expired
# Groups whose names are bounded (endpoints, job types, cache types, kinds): their totals are exported.
TOTAL_GROUPS = frozenset({"traffic", "cache", "jobs", "queue", "limits", "db", "sql"})
FLUSH_SECONDS = 5
RETRY_SECONDS = 30  # after a store error, wait this long before trying again from a request
MAX_PENDING = 50_000  # names x buckets (and maxima) kept in memory while the store is down
MAX_DESCRIPTIONS = 5_000  # texts kept in memory while the store is down
DESCRIPTION_SECONDS = 8 * 86400  # a text not written again for this long goes (the 7-day range shows it)
PRUNE_SECONDS = 60  # the SQLite store drops old buckets at most this often (buckets are a minute at least)


def connect_sqlite(path):
    """A connection to a statistics file in instance/ that the server's threads, its other processes and
    the command line share: WAL, so readers never wait for the writer. A new file is made 0600 first, so its
    -wal and -shm files (which SQLite gives the database's mode) are private too."""
    conn = sqlite3.connect(private_file(path), timeout=5)
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
    """Counters in instance/metrics.db: the embedded default, shared by the server processes and the CLI."""

    name = "sqlite"

    def __init__(self, path, host=socket.gethostname()):
        self.path, self.host = path, host
        self.last_prune = -float("inf")  # the first write prunes
        with closing(self._connect()) as conn, conn:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS counters (grp TEXT, res TEXT, start INTEGER, name TEXT, "
                "value INTEGER, PRIMARY KEY (grp, res, start, name)) WITHOUT ROWID"
            )
            conn.execute("CREATE TABLE IF NOT EXISTS marks (name TEXT PRIMARY KEY, since REAL)")
            conn.execute(  # running totals (TOTAL) per host: never pruned
                "CREATE TABLE IF NOT EXISTS host_totals (grp TEXT, host TEXT, name TEXT, value INTEGER, "
                "PRIMARY KEY (grp, host, name)) WITHOUT ROWID"
            )
            conn.execute(
                "CREATE TABLE IF NOT EXISTS maxima (grp TEXT, res TEXT, start INTEGER, name TEXT, "
                "value REAL, PRIMARY KEY (grp, res, start, name)) WITHOUT ROWID"
            )
            conn.execute(
                "CREATE TABLE IF NOT EXISTS descriptions (grp TEXT, key TEXT, text TEXT, written REAL, "
                "PRIMARY KEY (grp, key)) WITHOUT ROWID"
            )

    def _connect(self):
        return connect_sqlite(self.path)

    def write(self, pending, maxima=None, descriptions=None):
        rows = [(g, res, start, name, value) for (g, res, start, name), value in pending.items() if res != TOTAL]
        totals = [(g, self.host, name, value) for (g, res, _start, name), value in pending.items() if res == TOTAL]
        now = time.time()
        with closing(self._connect()) as conn, conn:
            conn.executemany(
                "INSERT INTO counters (grp, res, start, name, value) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (grp, res, start, name) DO UPDATE SET value = value + excluded.value",
                rows,
            )
            conn.executemany(
                "INSERT INTO host_totals (grp, host, name, value) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (grp, host, name) DO UPDATE SET value = value + excluded.value",
                totals,
            )
            conn.executemany(
                "INSERT INTO maxima (grp, res, start, name, value) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (grp, res, start, name) DO UPDATE SET value = MAX(value, excluded.value)",
                [(*key, value) for key, value in (maxima or {}).items()],
            )
            conn.executemany(
                "INSERT INTO descriptions (grp, key, text, written) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (grp, key) DO UPDATE SET text = excluded.text, written = excluded.written",
                [(g, key, text, now) for (g, key), text in (descriptions or {}).items()],
            )
            if time.monotonic() - self.last_prune >= PRUNE_SECONDS:
                self.last_prune = time.monotonic()
                self._prune(conn, now)

    def prune(self, now=None):
        """Drop buckets and maxima past their retention and texts not written for DESCRIPTION_SECONDS;
        returns the rows removed. Writes prune too; this covers the hours when nothing is written."""
        with closing(self._connect()) as conn, conn:
            return self._prune(conn, time.time() if now is None else now)

    @staticmethod
    def _prune(conn, now):
        removed = 0
        for res, (seconds, kept) in RESOLUTIONS.items():
            for table in ("counters", "maxima"):
                removed += conn.execute(
                    f"DELETE FROM {table} WHERE res = ? AND start < ?", (res, now - seconds * kept)
                ).rowcount
        removed += conn.execute("DELETE FROM descriptions WHERE written < ?", (now - DESCRIPTION_SECONDS,)).rowcount
        return removed

    def read(self, group, res, starts):
        if res == TOTAL:
            with closing(self._connect()) as conn:
                rows = conn.execute(
                    "SELECT name, value FROM host_totals WHERE grp = ? AND host = ?", (group, self.host)
                ).fetchall()
            return {0: dict(rows)} if rows else {}
        found = defaultdict(dict)
        for start, name, value in self._select("counters", "start, name, value", group, res, starts):
            found[start][name] = value
        return found

    def read_maxima(self, group, res, starts):
        return dict(self._select("maxima", "name, MAX(value)", group, res, starts, "GROUP BY name"))

    def _select(self, table, columns, group, res, starts, tail=""):
        marks = ", ".join("?" * len(starts))
        with closing(self._connect()) as conn:
            return conn.execute(
                f"SELECT {columns} FROM {table} WHERE grp = ? AND res = ? AND start IN ({marks}) {tail}",
                (group, res, *starts),
            ).fetchall()

    def read_descriptions(self, group):
        with closing(self._connect()) as conn:
            return dict(conn.execute("SELECT key, text FROM descriptions WHERE grp = ?", (group,)))

    def mark(self, name, active, now):
        with closing(self._connect()) as conn, conn:
            if active:
                conn.execute("INSERT OR IGNORE INTO marks (name, since) VALUES (?, ?)", (name, now))
            row = conn.execute("SELECT since FROM marks WHERE name = ?", (name,)).fetchone()
            if not active:
                conn.execute("DELETE FROM marks WHERE name = ?", (name,))
            return row[0] if row else None

    def read_marks(self, prefix):
        with closing(self._connect()) as conn:
            rows = conn.execute("SELECT name, since FROM marks WHERE substr(name, 1, ?) = ?", (len(prefix), prefix))
            return dict(rows)

    def close(self):
        pass


class RedisCounterStore:
    """Counters in Redis hashes, one per group and bucket, added to by every process and host; each
    expires after its window. Maxima live in a hash beside their bucket's (`<bucket key>:max`), texts in
    one hash per group (`<group>:descriptions`) that expires eight days after the group's last write."""

    name = "redis"
    # KEYS[1]: a maxima hash; ARGV[1]: its seconds to live (0: none); then name, value pairs: each field
    # keeps the largest value it was given. One call per bucket, atomic against the other processes.
    _MAX = """
        for i = 2, #ARGV, 2 do
            local current = redis.call('HGET', KEYS[1], ARGV[i])
            if not current or tonumber(ARGV[i + 1]) > tonumber(current) then
                redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
            end
        end
        if tonumber(ARGV[1]) > 0 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
    """

    def __init__(self, url, namespace, host=socket.gethostname()):
        self.prefix, self.host = f"{namespace}:counters", host
        self.client = redisclient.connect(url, timeout=1)
        self.set_max = self.client.register_script(self._MAX)

    def _key(self, group, res, start):
        return f"{self.prefix}:{group}:{res}:{self.host if res == TOTAL else start}"

    def _descriptions_key(self, group):
        return f"{self.prefix}:{group}:descriptions"

    def write(self, pending, maxima=None, descriptions=None):
        pipe = self.client.pipeline(transaction=False)
        keys, groups = set(), set()
        for (group, res, start, name), value in pending.items():
            key = self._key(group, res, start)
            pipe.hincrby(key, name, value)
            keys.add((key, res))
            groups.add(group)
        for key, res in keys:
            if res in RESOLUTIONS:  # running totals never expire
                seconds, kept = RESOLUTIONS[res]
                pipe.expire(key, seconds * kept)
        by_bucket = defaultdict(list)
        for (group, res, start, name), value in (maxima or {}).items():
            by_bucket[(group, res, start)] += [name, repr(value)]
            groups.add(group)
        for (group, res, start), pairs in by_bucket.items():
            seconds, kept = RESOLUTIONS.get(res, (0, 0))
            self.set_max(keys=[f"{self._key(group, res, start)}:max"], args=[seconds * kept, *pairs], client=pipe)
        by_group = defaultdict(dict)
        for (group, key), text in (descriptions or {}).items():
            by_group[group][key] = text
        for group, texts in by_group.items():
            pipe.hset(self._descriptions_key(group), mapping=texts)
            groups.add(group)
        # Texts live as long as figures of their group still come in, not eight days after the last new one.
        for group in groups:
            pipe.expire(self._descriptions_key(group), DESCRIPTION_SECONDS)
        pipe.execute()

    def read(self, group, res, starts):
        found = {}
        for start, fields in zip(starts, self._hashes(self._key(group, res, start) for start in starts)):
            if fields:
                found[start] = {k.decode(): int(v) for k, v in fields.items()}
        return found

    def read_maxima(self, group, res, starts):
        found = {}
        for fields in self._hashes(f"{self._key(group, res, start)}:max" for start in starts):
            for raw_name, raw_value in fields.items():
                name, value = raw_name.decode(), float(raw_value)
                found[name] = max(found.get(name, value), value)
        return found

    def _hashes(self, keys):
        pipe = self.client.pipeline(transaction=False)
        for key in keys:
            pipe.hgetall(key)
        return pipe.execute()

    def read_descriptions(self, group):
        return {k.decode(): v.decode() for k, v in self.client.hgetall(self._descriptions_key(group)).items()}

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

    def read_marks(self, prefix):
        found = self.client.hgetall(f"{self.prefix}:marks")
        return {k.decode(): float(v) for k, v in found.items() if k.decode().startswith(prefix)}

    def close(self):
        self.client.close()


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
            self._arm_timer()
        self.flush_if_due()

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
        if self.timer is None:
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

    def flush_if_due(self):
        """Flush when the last flush is FLUSH_SECONDS ago (RETRY_SECONDS after a store error)."""
        if time.monotonic() - self.last_flush >= (RETRY_SECONDS if self.store_error else FLUSH_SECONDS):
            self.flush()

    def flush(self, at_exit=False):
        """Hand pending counts to the store; on a store error keep them (bounded) and say so (not at exit,
        when the log may be closed and nothing can be done about it)."""
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
