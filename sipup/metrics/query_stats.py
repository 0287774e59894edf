"""Query statistics and the slow query log: every statement timed, per normalised SQL and kind.

Statements are counted in the shared counters (sipup/metrics/counters.py), group "dbstats", so
every process and host adds up in the one store (Redis, or instance/metrics.db): summaries read the
minute buckets of the last hour and the hour buckets of the last day. Each process folds its figures
per bucket in memory first, at most MAX_STATEMENTS statements a bucket (the rest count as "other"),
and hands them to the counters at each of their flushes. Names per statement key (the hash of its
normalised text, or "kind:<kind>", or "other"): `<key>|n` runs, `|u` total microseconds, `|s` slow
runs, `|h<i>` the latency histogram (bounds in BOUNDS_MS), and the maximum `|u` of one run; beside them
`@requests`, `@request_queries` and `@heavy_requests`. Statement texts are the counters' descriptions.
The running totals per kind (group "sql", for /metrics) are added at the same time.
"""

import hashlib
import logging
import os
import threading
import time
from collections import defaultdict

from flask import g, has_request_context, request
from sqlalchemy import event

from sipup.files import PrivateRotatingFileHandler, private_folder
from sipup.metrics.counter_stores import TOTAL
from sipup.metrics.counters import bucket_start, percentile
from sipup.metrics.statements import COMMIT, CONNECT, PING, ROLLBACK, kind_of, normalise, short_sql

log = logging.getLogger("sipup.query_stats")

GROUP = "dbstats"  # not in the counters' TOTAL_GROUPS: its names (statements) are unbounded
# Latency histogram bounds in milliseconds; one more bin holds everything slower.
BOUNDS_MS = (1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500)
# What a summary reads: resolution, buckets.
WINDOWS = {"hour": ("minute", 60), "day": ("hour", 24), "week": ("hour", 7 * 24)}
MAX_STATEMENTS = 500  # per bucket: bounded memory whatever the workload
OTHER = "other"  # where statements beyond MAX_STATEMENTS in one bucket are counted


def _bin(ms):
    for index, bound in enumerate(BOUNDS_MS):
        if ms <= bound:
            return index
    return len(BOUNDS_MS)


class Stat:
    """Count, total and max time (whole microseconds, so sums and maxima agree) and a histogram for one
    statement in one bucket."""

    __slots__ = ("count", "total", "max", "hist", "slow")

    def __init__(self):
        self.count, self.total, self.max, self.slow = 0, 0, 0, 0
        self.hist = [0] * (len(BOUNDS_MS) + 1)

    def add(self, us, index, slow):
        """One run of `us` microseconds, in histogram bin `index`."""
        self.count += 1
        self.total += us
        self.max = max(self.max, us)
        self.hist[index] += 1
        self.slow += slow


class Bucket:
    """One time bucket: statements by key, plus request counts.

    At most `limit` distinct statements; further ones fold into "other". The per-kind rows ("kind:...")
    and "other" itself are not statements and never fold, so kinds stay right however many statements run.
    """

    COUNTERS = ("requests", "request_queries", "heavy_requests")  # what the counters keep beside statements

    def __init__(self, limit=MAX_STATEMENTS):
        self.statements = {}
        self.limit = limit
        self.distinct = 0  # statements counted against the limit
        self.requests = 0
        self.request_queries = 0
        self.heavy_requests = 0

    def stat(self, key):
        stat = self.statements.get(key)
        if stat is None:
            counted = not key.startswith("kind:") and key != OTHER
            if counted and self.limit is not None and self.distinct >= self.limit:
                return self.stat(OTHER)
            stat = self.statements[key] = Stat()
            self.distinct += counted
        return stat

    def to_counters(self):
        """({name: amount}, {name: maximum}): this bucket as counters of the group "dbstats"."""
        amounts, maxima = {}, {}
        for key, stat in self.statements.items():
            amounts[f"{key}|n"] = stat.count
            amounts[f"{key}|u"] = stat.total
            if stat.slow:
                amounts[f"{key}|s"] = stat.slow
            for index, value in enumerate(stat.hist):
                if value:
                    amounts[f"{key}|h{index}"] = value
            maxima[f"{key}|u"] = stat.max
        for field in self.COUNTERS:
            if getattr(self, field):
                amounts[f"@{field}"] = getattr(self, field)
        return amounts, maxima

    @classmethod
    def from_counters(cls, amounts, maxima):
        """The bucket `to_counters` describes (or the sum of several: totals and maxima over a window)."""
        bucket = cls(limit=None)
        for name, value in amounts.items():
            if name.startswith("@"):
                setattr(bucket, name[1:], value)
                continue
            key, _, part = name.rpartition("|")
            stat = bucket.statements.setdefault(key, Stat())
            if part == "n":
                stat.count = value
            elif part == "u":
                stat.total = value
            elif part == "s":
                stat.slow = value
            elif part.startswith("h"):
                stat.hist[int(part[1:])] = value
        for name, value in maxima.items():
            stat = bucket.statements.get(name.rpartition("|")[0])
            if stat is not None:
                stat.max = value
        return bucket


def kind_totals(pending):
    """{"<kind>|n": count, "|u": microseconds, "|s": slow, "|h<i>": histogram} over the pending minute buckets."""
    totals = defaultdict(int)
    for (res, _start), bucket in pending.items():
        if res != "minute":  # every statement is in one minute bucket and one hour bucket: count it once
            continue
        for key, stat in bucket.statements.items():
            if key.startswith("kind:"):
                kind = key[5:]
                totals[f"{kind}|n"] += stat.count
                totals[f"{kind}|u"] += stat.total
                totals[f"{kind}|s"] += stat.slow
                for index, value in enumerate(stat.hist):
                    totals[f"{kind}|h{index}"] += value
    return dict(totals)


class Collector:
    """Times statements and requests, folds them per bucket and hands them to the shared counters."""

    RESEND_SECONDS = 3600  # send statement texts again now and then, so the store keeps them

    def __init__(self, counters, slow_ms, warn_queries, slow_log=None):
        self.counters = counters
        self.slow_ms = slow_ms
        self.warn_queries = warn_queries
        self.slow_log = slow_log or logging.getLogger("sipup.slow_queries")
        self.lock = threading.Lock()
        self.pending = {}  # (res, start) -> Bucket
        self.new_sql = {}
        self.known = {}  # raw statement -> (key, kind, normalised): statements repeat, normalise once
        self.last_resend = time.monotonic()
        counters.add_source(self.hand_over)

    def _buckets(self, now):
        for res in ("minute", "hour"):
            start = bucket_start(now, res)
            bucket = self.pending.get((res, start))
            if bucket is None:
                bucket = self.pending[(res, start)] = Bucket()
            yield bucket

    def describe(self, statement):
        """(key, kind, normalised text); a statement first seen has its text queued for the store.

        Called under the lock, so the text and the figures of a statement reach the same flush."""
        known = self.known.get(statement)
        if known is None:
            text = normalise(statement)
            key = hashlib.sha1(text.encode()).hexdigest()[:12]
            known = (key, kind_of(text), text)
            if len(self.known) > 5000:
                self.known.clear()
            self.known[statement] = known
            self.new_sql[key] = text[:2000]
        return known

    def record(self, statement, ms, params_count):
        slow = ms >= self.slow_ms
        us, index, now = round(ms * 1000), _bin(ms), time.time()
        with self.lock:
            first = not self.pending
            key, kind, text = self.describe(statement)
            for bucket in self._buckets(now):
                bucket.stat(key).add(us, index, slow)
                bucket.stat(f"kind:{kind}").add(us, index, slow)
        if first:
            self.counters.wake()  # a flush follows however the traffic stops
        if has_request_context():
            g._sipup_queries = g.get("_sipup_queries", 0) + 1
        if slow:
            self.slow_log.warning("%.1f ms endpoint=%s params=%d sql=%s", ms, _endpoint(), params_count, text)

    def record_request(self, endpoint, queries):
        heavy = queries > self.warn_queries
        if heavy:
            log.warning(
                "Possible N+1: %s ran %d queries in one request (limit %d)", endpoint, queries, self.warn_queries
            )
        with self.lock:
            first = not self.pending
            for bucket in self._buckets(time.time()):
                bucket.requests += 1
                bucket.request_queries += queries
                bucket.heavy_requests += heavy
        if first:
            self.counters.wake()
        self.counters.flush_if_due()

    def hand_over(self):
        """The counters' source: pending buckets and new statement texts to the counters, with the running
        totals per kind (group "sql")."""
        with self.lock:
            pending, self.pending = self.pending, {}
            sql, self.new_sql = self.new_sql, {}
            if time.monotonic() - self.last_resend >= self.RESEND_SECONDS:
                self.known.clear()  # texts go to the store again: they expire when not written for eight days
                self.last_resend = time.monotonic()
        if sql:
            self.counters.describe(GROUP, sql)
        if not pending:
            return
        buckets, maxima = {}, {}
        for when, bucket in pending.items():
            buckets[when], maxima[when] = bucket.to_counters()
        self.counters.add_buckets(GROUP, buckets, maxima)
        self.counters.add_buckets("sql", {(TOTAL, 0): kind_totals(pending)})

    def flush(self):
        """Hand pending figures to the counters and the counters' to the store."""
        self.counters.flush()

    def summary(self, window="hour"):
        """Per statement and kind over the last hour (minute buckets) or day (hour buckets)."""
        if window not in WINDOWS:
            raise ValueError(f"window must be one of {', '.join(WINDOWS)}, not {window!r}")
        res, count = WINDOWS[window]
        total = Bucket.from_counters(self.counters.totals(GROUP, res, count), self.counters.maxima(GROUP, res, count))
        sql = self.counters.descriptions(GROUP)
        statements, kinds = [], {}
        for key, stat in total.statements.items():
            total_ms, max_ms = stat.total / 1000, stat.max / 1000
            row = {
                "key": key,
                "count": stat.count,
                "total_ms": total_ms,
                "max_ms": max_ms,
                "avg_ms": total_ms / stat.count if stat.count else 0.0,
                "slow": stat.slow,
                "p95_ms": min(percentile(stat.hist, 0.95, BOUNDS_MS) or 0.0, max_ms),
                "hist": list(stat.hist),
            }
            if key.startswith("kind:"):
                kinds[key[5:]] = row
            else:
                row["sql"] = (
                    f"(other statements beyond {MAX_STATEMENTS} a bucket)"
                    if key == OTHER
                    else sql.get(key, "(statement text expired)")
                )
                row["short"] = short_sql(row["sql"])
                statements.append(row)
        statements.sort(key=lambda r: r["total_ms"], reverse=True)
        status = self.counters.status()
        return {
            "window": window,
            "statements": statements,
            "kinds": kinds,
            "requests": total.requests,
            "queries_per_request": total.request_queries / total.requests if total.requests else 0.0,
            "heavy_requests": total.heavy_requests,
            "store": status["store"],
            "store_error": status["store_error"],
        }


def _endpoint():
    if has_request_context():
        return request.endpoint or request.path
    return "cli"


def register_query_stats(app, engine):
    """Time every statement of the engine and every request's query count, into the app's counters."""
    collector = Collector(
        app.extensions["counters"],
        app.config["SLOW_QUERY_MS"],
        app.config["QUERY_WARN_PER_REQUEST"],
        _slow_logger(app),
    )
    app.extensions["query_stats"] = collector
    if not app.config["DB_STATS"]:
        return collector

    time_statements(app, collector, engine)

    @app.before_request
    def _reset_queries():
        g._sipup_queries = 0  # g outlives a request when an app context was already pushed

    @app.after_request
    def _count_queries(response):
        if request.endpoint != "static":
            collector.record_request(request.endpoint or "unknown", g.get("_sipup_queries", 0))
        return response

    return collector


def time_statements(app, collector, engine):
    """Time every statement of this engine (the primary's, or a read replica's) into the collector."""
    if not app.config["DB_STATS"]:
        return

    # One cursor execution at a time per connection: a single start time, nothing left behind on errors.
    @event.listens_for(engine, "before_cursor_execute")
    def _start(conn, cursor, statement, parameters, context, executemany):
        conn.info["_sipup_started"] = time.perf_counter()

    @event.listens_for(engine, "after_cursor_execute")
    def _stop(conn, cursor, statement, parameters, context, executemany):
        _finish(conn, statement, parameters)

    @event.listens_for(engine, "handle_error")
    def _failed(context):
        # A statement that failed (lock wait timeout, deadlock) took its time too; often the slowest of all.
        if context.connection is not None and context.statement is not None:
            _finish(context.connection, context.statement, context.parameters)

    def _finish(conn, statement, parameters):
        started = conn.info.pop("_sipup_started", None)
        if started is not None:
            count = len(parameters) if isinstance(parameters, (list, tuple, dict)) else 0
            collector.record(statement, (time.perf_counter() - started) * 1000, count)

    _time_driver_calls(engine, collector)


def _time_driver_calls(engine, collector):
    """Count what reaches the server outside cursor.execute(): COMMIT and ROLLBACK (the pool's reset of a
    returned connection included), the connection set-up and the pre-ping, each timed like a statement."""
    dialect = engine.dialect

    def timed(call, label):
        def run(*args, **kwargs):
            started = time.perf_counter()
            try:
                return call(*args, **kwargs)
            finally:
                collector.record(label, (time.perf_counter() - started) * 1000, 0)

        return run

    # Instance attributes of this engine's dialect: SQLAlchemy calls them through the dialect object.
    dialect.do_commit = timed(dialect.do_commit, COMMIT)
    dialect.do_rollback = timed(dialect.do_rollback, ROLLBACK)
    dialect.do_ping = timed(dialect.do_ping, PING)

    @event.listens_for(engine, "do_connect")
    def _connect(dialect, conn_rec, cargs, cparams):
        # Connecting here (what SQLAlchemy does when no handler returns a connection) lets it be timed;
        # the session set-up SQLAlchemy runs on a new connection goes through cursors and is counted too.
        started = time.perf_counter()
        try:
            return dialect.connect(*cargs, **cparams)
        finally:
            collector.record(CONNECT, (time.perf_counter() - started) * 1000, 0)


_SLOW_HANDLERS = {}  # log file path -> handler: one open file per path, however many apps a process builds


def _slow_logger(app):
    """A logger writing to this app's <instance>/logs/slow_queries.log only.

    Not registered under a global name: two apps in one process (tests, a second instance) must not
    write each other's slow statements."""
    path = os.path.abspath(os.path.join(app.instance_path, "logs", "slow_queries.log"))
    handler = _SLOW_HANDLERS.get(path)
    if handler is None:
        private_folder(os.path.dirname(path))
        handler = PrivateRotatingFileHandler(
            path, maxBytes=10 * 1024 * 1024, backupCount=5, encoding="utf-8", delay=True
        )
        handler.setFormatter(logging.Formatter("%(asctime)s [%(process)d] %(message)s"))
        _SLOW_HANDLERS[path] = handler
    logger = logging.Logger("sipup.slow_queries", logging.WARNING)
    logger.addHandler(handler)
    logger.propagate = False
    return logger
