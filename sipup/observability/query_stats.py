"""Query statistics and the slow query log: every statement timed, per normalised SQL and kind.

Statements are counted in minute buckets (kept an hour) and hour buckets (kept a day). Each process
adds its figures to a small pending table under a lock and flushes it every few seconds: into Redis
where configured, so all processes and hosts add up in one place, else into a SQLite file in
instance/ that the server and the command line share.
"""

import atexit
import hashlib
import logging
import os
import re
import threading
import time
import weakref
from collections import defaultdict
from contextlib import closing

import redis
from flask import current_app, g, has_app_context, has_request_context, request
from sqlalchemy import event, text

from sipup.files import PrivateRotatingFileHandler, private_folder
from sipup.observability import compat
from sipup.observability.counters import connect_sqlite, percentile

log = logging.getLogger("sipup.query_stats")

# Latency histogram bounds in milliseconds; one more bin holds everything slower.
BOUNDS_MS = (1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500)
RESOLUTIONS = {"minute": (60, 60), "hour": (3600, 24)}  # bucket seconds, buckets kept
MAX_STATEMENTS = 500  # per bucket: bounded memory whatever the workload
FLUSH_SECONDS = 5
KINDS = ("select", "insert", "update", "delete")
TRANSACTION_WORDS = ("commit", "rollback", "begin", "savepoint", "release")
OTHER = "other"  # where statements beyond MAX_STATEMENTS in one bucket are counted
# What the driver sends outside cursor.execute(): timed around the dialect's own calls (see register_query_stats).
COMMIT, ROLLBACK, CONNECT, PING = "COMMIT", "ROLLBACK", "(connect: handshake, login, session set-up)", "(ping)"

_STRING = re.compile(r"'(?:[^'\\]|\\.|'')*'")
_NUMBER = re.compile(r"(?<![\w$.`\"])-?(?:0x[0-9a-fA-F]+|\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)(?![\w.])")
_PARAM = re.compile(r"%\(\w+\)s|%s|\?|(?<!:):\w+")
_LIST = re.compile(r"\(\s*\?(?:\s*,\s*\?)+\s*\)")
_IN_ONE = re.compile(r"\bIN \(\?\)", re.IGNORECASE)  # a list of one is still a list
_ROWS = re.compile(r"(\(\?\+?\))(?:\s*,\s*\(\?\+?\))+")
_SPACE = re.compile(r"\s+")


def normalise(sql):
    """The statement with literals and parameters as ?, lists collapsed, whitespace single."""
    text = _STRING.sub("?", sql)
    text = _PARAM.sub("?", text)
    text = _NUMBER.sub("?", text)
    text = _SPACE.sub(" ", text).strip()
    text = _LIST.sub("(?+)", text)
    text = _IN_ONE.sub("IN (?+)", text)
    return _ROWS.sub(r"\1", text)


_COLUMNS = re.compile(r"\b(\w+)\.\w+(?: AS \w+)?(?:, \1\.\w+(?: AS \w+)?){2,}")


def short_sql(text):
    """For display: a run of three or more columns of one table as table.*, so FROM and WHERE show."""
    return _COLUMNS.sub(r"\1.*", text)


def kind_of(sql):
    if sql in (CONNECT, PING):
        return "connection"
    word = sql.lstrip("( ").split(" ", 1)[0].lower()
    if word == "with":
        return "select"
    if word in TRANSACTION_WORDS:
        return "transaction"
    return word if word in KINDS else "other"


def _bin(ms):
    for index, bound in enumerate(BOUNDS_MS):
        if ms <= bound:
            return index
    return len(BOUNDS_MS)


class Stat:
    """Count, total and max time and a histogram for one statement in one bucket."""

    __slots__ = ("count", "total", "max", "hist", "slow")

    def __init__(self):
        self.count, self.total, self.max, self.slow = 0, 0.0, 0.0, 0
        self.hist = [0] * (len(BOUNDS_MS) + 1)

    def add(self, ms, slow):
        self.count += 1
        self.total += ms
        self.max = max(self.max, ms)
        self.hist[_bin(ms)] += 1
        self.slow += slow

    def merge(self, other):
        self.count += other.count
        self.total += other.total
        self.max = max(self.max, other.max)
        self.slow += other.slow
        self.hist = [a + b for a, b in zip(self.hist, other.hist)]


class Bucket:
    """One time bucket: statements by key, plus request counts.

    At most `limit` distinct statements; further ones fold into "other". The per-kind rows ("kind:...")
    and "other" itself are not statements and never fold, so kinds stay right however many statements run.
    """

    COUNTERS = ("requests", "request_queries", "heavy_requests")  # what the stores keep beside statements

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

    def merge(self, other):
        for key, stat in other.statements.items():
            self.stat(key).merge(stat)
        self.requests += other.requests
        self.request_queries += other.request_queries
        self.heavy_requests += other.heavy_requests


class SqliteStore:
    """Buckets in a SQLite file in instance/: the embedded default, shared by the server and the CLI."""

    name = "sqlite"
    HIST = ", ".join(f"h{i}" for i in range(len(BOUNDS_MS) + 1))

    PRUNE_SECONDS = 3600

    def __init__(self, path):
        self.path = path
        self.last_prune = time.monotonic()
        with closing(self._connect()) as conn, conn:
            conn.execute(
                f"CREATE TABLE IF NOT EXISTS buckets (res TEXT, start INTEGER, key TEXT, count INTEGER, "
                f"total REAL, max REAL, slow INTEGER, {self.HIST.replace(',', ' INTEGER,')} INTEGER, "
                "PRIMARY KEY (res, start, key))"
            )
            conn.execute("CREATE TABLE IF NOT EXISTS statements (key TEXT PRIMARY KEY, sql TEXT)")

    def _connect(self):
        return connect_sqlite(self.path)

    def write(self, pending, sql):
        hist_names = self.HIST.split(", ")
        upsert = (
            f"INSERT INTO buckets (res, start, key, count, total, max, slow, {self.HIST}) "
            f"VALUES ({', '.join('?' * (7 + len(hist_names)))}) ON CONFLICT (res, start, key) DO UPDATE SET "
            "count = count + excluded.count, total = total + excluded.total, max = MAX(max, excluded.max), "
            "slow = slow + excluded.slow, " + ", ".join(f"{h} = {h} + excluded.{h}" for h in hist_names)
        )
        rows = []
        for (res, start), bucket in pending.items():
            for name, stat in bucket.statements.items():
                rows.append((res, start, name, stat.count, stat.total, stat.max, stat.slow, *stat.hist))
            for field in Bucket.COUNTERS:
                rows.append((res, start, "@" + field, getattr(bucket, field), 0, 0, 0, *([0] * len(hist_names))))
        with closing(self._connect()) as conn, conn:
            conn.executemany(upsert, rows)
            for res, (seconds, kept) in RESOLUTIONS.items():
                conn.execute(
                    "DELETE FROM buckets WHERE res = ? AND start < ?", (res, time.time() - seconds * (kept + 2))
                )
            if time.monotonic() - self.last_prune >= self.PRUNE_SECONDS:
                # Texts of statements no bucket counts any more; the ones written now stay.
                conn.execute("DELETE FROM statements WHERE key NOT IN (SELECT key FROM buckets)")
                self.last_prune = time.monotonic()
            conn.executemany("INSERT OR REPLACE INTO statements (key, sql) VALUES (?, ?)", sql.items())

    def read(self, res, starts):
        marks = ", ".join("?" * len(starts))
        with closing(self._connect()) as conn:
            rows = conn.execute(
                f"SELECT start, key, count, total, max, slow, {self.HIST} FROM buckets "
                f"WHERE res = ? AND start IN ({marks})",
                (res, *starts),
            ).fetchall()
            sql = dict(conn.execute("SELECT key, sql FROM statements"))
        buckets = {}
        for start, key, count, total, maximum, slow, *hist in rows:
            bucket = buckets.setdefault(start, Bucket())
            if key.startswith("@"):
                setattr(bucket, key[1:], count)
                continue
            stat = bucket.statements[key] = Stat()
            stat.count, stat.total, stat.max, stat.slow, stat.hist = count, total, maximum, slow, list(hist)
        return list(buckets.values()), sql


class RedisStore:
    """Buckets in Redis hashes, added to by every process and host; expired after their window."""

    name = "redis"
    _MAX = (
        "local cur = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0') "
        "if tonumber(ARGV[2]) > cur then redis.call('HSET', KEYS[1], ARGV[1], ARGV[2]) end"
    )

    def __init__(self, url, namespace):
        self.prefix = f"{namespace}:dbstats"
        self.client = redis.Redis.from_url(url, socket_timeout=1, socket_connect_timeout=1)
        self.set_max = self.client.register_script(self._MAX)

    def _key(self, res, start):
        return f"{self.prefix}:{res}:{start}"

    def write(self, pending, sql):
        pipe = self.client.pipeline(transaction=False)
        if sql:
            pipe.hset(f"{self.prefix}:sql", mapping=sql)
        # Texts live as long as figures still come in, not two days after the last new statement.
        pipe.expire(f"{self.prefix}:sql", 2 * 86400)
        for (res, start), bucket in pending.items():
            key = self._key(res, start)
            for name, stat in bucket.statements.items():
                pipe.hincrby(key, f"{name}|n", stat.count)
                pipe.hincrbyfloat(key, f"{name}|t", round(stat.total, 3))
                if stat.slow:
                    pipe.hincrby(key, f"{name}|s", stat.slow)
                for index, value in enumerate(stat.hist):
                    if value:
                        pipe.hincrby(key, f"{name}|h{index}", value)
                self.set_max(keys=[key], args=[f"{name}|x", round(stat.max, 3)], client=pipe)
            for field in Bucket.COUNTERS:
                value = getattr(bucket, field)
                if value:
                    pipe.hincrby(key, f"@{field}", value)
            seconds, kept = RESOLUTIONS[res]
            pipe.expire(key, seconds * (kept + 2))
        pipe.execute()

    def read(self, res, starts):
        pipe = self.client.pipeline(transaction=False)
        for start in starts:
            pipe.hgetall(self._key(res, start))
        pipe.hgetall(f"{self.prefix}:sql")
        *hashes, sql = pipe.execute()
        buckets = [self._bucket(h) for h in hashes if h]
        return buckets, {k.decode(): v.decode() for k, v in sql.items()}

    @staticmethod
    def _bucket(fields):
        bucket = Bucket()
        for raw_field, raw_value in fields.items():
            field, value = raw_field.decode(), float(raw_value)
            if field.startswith("@"):
                setattr(bucket, field[1:], int(value))
                continue
            name, _, part = field.rpartition("|")
            stat = bucket.statements.setdefault(name, Stat())
            if part == "n":
                stat.count = int(value)
            elif part == "t":
                stat.total = value
            elif part == "x":
                stat.max = value
            elif part == "s":
                stat.slow = int(value)
            elif part.startswith("h"):
                stat.hist[int(part[1:])] = int(value)
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
                totals[f"{kind}|u"] += round(stat.total * 1000)
                totals[f"{kind}|s"] += stat.slow
                for index, value in enumerate(stat.hist):
                    totals[f"{kind}|h{index}"] += value
    return dict(totals)


class Collector:
    """Times statements and requests, keeps pending figures, flushes them to the store."""

    RETRY_SECONDS = 30  # after a store error, wait this long before trying again from a request
    RESEND_SECONDS = 3600  # send statement texts again now and then, should the store have lost them

    def __init__(self, store, slow_ms, warn_queries, slow_log=None, counters=None):
        self.store = store
        self.counters = counters  # the shared counters: running totals per kind, for /metrics
        self.slow_ms = slow_ms
        self.warn_queries = warn_queries
        self.slow_log = slow_log or logging.getLogger("sipup.slow_queries")
        self.lock = threading.Lock()
        self.pending = {}
        self.new_sql = {}
        self.known = {}  # raw statement -> (key, kind, normalised): statements repeat, normalise once
        self.last_flush = time.monotonic()
        self.last_resend = time.monotonic()
        self.store_error = None
        self.timer = None  # flushes the end of a burst when no later request comes to do it

    def _buckets(self, now):
        for res, (seconds, _kept) in RESOLUTIONS.items():
            start = int(now // seconds * seconds)
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
        now = time.time()
        with self.lock:
            key, kind, text = self.describe(statement)
            for bucket in self._buckets(now):
                bucket.stat(key).add(ms, slow)
                bucket.stat(f"kind:{kind}").add(ms, slow)
            self._arm_timer()
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
            for bucket in self._buckets(time.time()):
                bucket.requests += 1
                bucket.request_queries += queries
                bucket.heavy_requests += heavy
            self._arm_timer()
        wait = self.RETRY_SECONDS if self.store_error else FLUSH_SECONDS
        if time.monotonic() - self.last_flush >= wait:
            self.flush()

    def _arm_timer(self):
        """Under the lock: make sure a flush follows within FLUSH_SECONDS, however the traffic stops."""
        if self.timer is None:
            delay = self.RETRY_SECONDS if self.store_error else FLUSH_SECONDS
            self.timer = threading.Timer(delay, self._flush_by_timer)
            self.timer.daemon = True
            self.timer.start()

    def _flush_by_timer(self):
        with self.lock:
            self.timer = None
        try:
            self.flush()
        except Exception:  # a statistics bug must not kill the timer thread silently
            log.exception("Query statistics flush failed")

    def flush(self, at_exit=False):
        """Hand pending figures to the store; on a store error keep serving and say so (not at exit, when
        the log may be closed and nothing can be done about it)."""
        with self.lock:
            pending, self.pending = self.pending, {}
            sql, self.new_sql = self.new_sql, {}
            self.last_flush = time.monotonic()
            if self.last_flush - self.last_resend >= self.RESEND_SECONDS:
                self.known.clear()  # texts go to the store again: it may have been emptied or expired them
                self.last_resend = self.last_flush
        if not pending:
            return
        if self.counters is not None:
            self.counters.incr_many("sql", {}, totals_only=kind_totals(pending))
        try:
            self.store.write(pending, sql)
            self.store_error = None
        except Exception as exc:  # Redis down: statistics are best-effort, requests are not
            if at_exit:
                return
            if self.store_error is None:
                log.warning("Query statistics not saved: %s", exc)
            self.store_error = str(exc) or type(exc).__name__
            with self.lock:
                # The texts must reach the store with later figures; forgetting which statements were
                # seen resends them then, and keeps memory bounded however long the store stays down.
                self.known.clear()

    def summary(self, window="hour"):
        """Per statement and kind over the last hour (minute buckets) or day (hour buckets)."""
        if window not in ("hour", "day"):
            raise ValueError(f"window must be 'hour' or 'day', not {window!r}")
        self.flush()
        res = "minute" if window == "hour" else "hour"
        seconds, kept = RESOLUTIONS[res]
        now = int(time.time() // seconds * seconds)
        starts = [now - i * seconds for i in range(kept)]
        try:
            buckets, sql = self.store.read(res, starts)
        except Exception as exc:  # the store is down: say so rather than fail the caller
            self.store_error = str(exc) or type(exc).__name__
            buckets, sql = [], {}
        total = Bucket(limit=None)
        for bucket in buckets:
            total.merge(bucket)
        statements, kinds = [], {}
        for key, stat in total.statements.items():
            row = {
                "key": key,
                "count": stat.count,
                "total_ms": stat.total,
                "max_ms": stat.max,
                "avg_ms": stat.total / stat.count if stat.count else 0.0,
                "slow": stat.slow,
                "p95_ms": min(percentile(stat.hist, 0.95, BOUNDS_MS) or 0.0, stat.max),
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
        return {
            "window": window,
            "statements": statements,
            "kinds": kinds,
            "requests": total.requests,
            "queries_per_request": total.request_queries / total.requests if total.requests else 0.0,
            "heavy_requests": total.heavy_requests,
            "store": self.store.name,
            "store_error": self.store_error,
        }


def _endpoint():
    if has_request_context():
        return request.endpoint or request.path
    return "cli"


# Collectors of apps still alive flush their last figures when the process ends; an app that is gone
# (tests build hundreds) takes its collector with it instead of keeping it until exit.
_LIVE_COLLECTORS = weakref.WeakSet()


@atexit.register
def _flush_at_exit():
    for collector in list(_LIVE_COLLECTORS):
        collector.flush(at_exit=True)


def register_query_stats(app, engine):
    """Time every statement of the engine and every request's query count."""
    if app.config["REDIS_URL"]:
        store = RedisStore(app.config["REDIS_URL"], app.config["REDIS_NAMESPACE"])
    else:
        store = SqliteStore(os.path.join(app.instance_path, "query_stats.db"))
    collector = Collector(
        store,
        app.config["SLOW_QUERY_MS"],
        app.config["QUERY_WARN_PER_REQUEST"],
        _slow_logger(app),
        app.extensions.get("counters"),
    )
    app.extensions["query_stats"] = collector
    if not app.config["DB_STATS"]:
        return collector

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

    @app.before_request
    def _reset_queries():
        g._sipup_queries = 0  # g outlives a request when an app context was already pushed

    @app.after_request
    def _count_queries(response):
        if request.endpoint != "static":
            collector.record_request(request.endpoint or "unknown", g.get("_sipup_queries", 0))
        return response

    _LIVE_COLLECTORS.add(collector)
    return collector


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


def pool_status(engine):
    """How the connection pool is doing: size, checked out, overflow, waits and timeouts (this process)."""
    pool = engine.pool
    status = {"class": type(pool).__name__}
    for name in ("size", "checkedout", "overflow", "checkedin"):
        method = getattr(pool, name, None)
        if callable(method):
            status[name] = method()
    if "overflow" in status:
        status["overflow"] = max(0, status["overflow"])  # QueuePool counts up from -size; below size is none
    status["max"] = status.get("size", 0) + compat.max_overflow(pool) if "size" in status else None
    status["timeouts"] = POOL_TIMEOUTS.value
    status["waits"] = POOL_WAITS.value
    status["wait_ms"] = round(POOL_WAITS.total_ms, 1)
    return status


def connection_budget(engine, config, processes):
    """Pool size + overflow per process x processes against the server's max_connections (MariaDB/MySQL);
    None on SQLite. The figures /monitor's rule and `flask db optimize --report` show."""
    if engine.dialect.name == "sqlite":
        return None

    with engine.connect() as conn:
        max_connections = int(conn.execute(text("SELECT @@max_connections")).scalar())
        status = {
            name.lower(): int(value)
            for name, value in conn.execute(
                text("SHOW GLOBAL STATUS WHERE Variable_name IN ('Threads_connected', 'Max_used_connections')")
            )
        }
    per_process = config["DB_POOL_SIZE"] + config["DB_MAX_OVERFLOW"]
    processes = max(processes, 1)
    return {
        "max_connections": max_connections,
        "per_process": per_process,
        "processes": processes,
        "needed": per_process * processes,
        "fit": max_connections // per_process if per_process else None,
        "connected": status.get("threads_connected"),
        "max_used": status.get("max_used_connections"),
    }


def describe_budget(budget):
    """The connection budget in one line."""
    if budget is None:
        return "SQLite: no connection limit to share"
    verdict = "fits" if budget["needed"] <= budget["max_connections"] else "does NOT fit"
    return (
        f"{budget['processes']} process(es) x {budget['per_process']} connections (SIPUP_DB_POOL_SIZE + "
        f"SIPUP_DB_MAX_OVERFLOW) = {budget['needed']} {verdict} in max_connections {budget['max_connections']}; "
        f"{budget['connected']} connected now, {budget['max_used']} at most since the server started"
    )


def describe_pool(status):
    """The pool status as one line: in use of size (+overflow), idle, waits and timeouts."""
    if status.get("size") is None:
        return f"{status['class']} (no fixed size: one connection per thread or per use)"
    return (
        f"{status['checkedout']} in use of {status['size']} (+{status['max'] - status['size']} overflow), "
        f"{status.get('checkedin', 0)} idle, {status['waits']:,} waits ({status['wait_ms']:,.0f} ms), "
        f"{status['timeouts']:,} timeouts; {status['class']}, this process"
    )


class _Counter:
    """A count (and summed milliseconds) of this process, also added to the shared counters (group "db")
    so /monitor shows the waits of every process."""

    def __init__(self, name):
        self.name = name
        self.value = 0
        self.total_ms = 0.0
        self.lock = threading.Lock()

    def add(self, ms=0.0):
        with self.lock:
            self.value += 1
            self.total_ms += ms
        if has_app_context():
            current_app.extensions["counters"].incr_many("db", {self.name: 1, f"{self.name}_ms": round(ms)})


POOL_TIMEOUTS = _Counter("pool_timeouts")
POOL_WAITS = _Counter("pool_waits")


class MeasuredQueuePool(compat.WaitTimingQueuePool):
    """SQLAlchemy's QueuePool, counting the checkouts that found every connection busy and waited."""

    on_wait = staticmethod(POOL_WAITS.add)
