"""Read replicas (SIPUP_DATABASE_REPLICA_URLS): which reads go to a MariaDB/MySQL replica, which replica is fit
to take them, and what /monitor and `flask serve` say about them.

A statement goes to a replica only when all of this holds, else to the primary:
- it runs inside `replica_reads` (read-only pages: catalog, product pages, order and back-office lists,
  reports), in a GET or HEAD request or outside any request (a report job), and it is a plain SELECT;
- the session has not written in its transaction: after a write, everything of that transaction is the
  primary's;
- this browser wrote nothing in the last few seconds (read-your-writes: its session cookie carries until when
  its reads stay on the primary, so every host and process honours it; after checkout the buyer sees the order);
- it does not fill the cache (`on_primary`): a value kept for minutes must not come from a replica that has not
  yet seen the write that invalidated it;
- a replica is fit: replication running, from this primary, of the same schema, at most SIPUP_REPLICA_MAX_LAG
  seconds behind (SHOW REPLICA STATUS, asked at most every CHECK_SECONDS per process). With none fit, reads
  go to the primary; each replica that is not fit is logged once and shown amber or red on /monitor.

The routing is Flask-SQLAlchemy's documented hook for it, a Session subclass's get_bind(); a session keeps the
replica it picked until its transaction ends, so one page reads one replica.
"""

import contextvars
import itertools
import math
import threading
import time
from contextlib import contextmanager

from flask import current_app, has_app_context, has_request_context, request
from flask import session as browser_session
from flask_sqlalchemy.session import Session
from sqlalchemy import Select, event, text
from sqlalchemy.exc import DBAPIError

from sipup.compat import is_locking_read
from sipup.metrics.outages import describe, outage

CHECK_SECONDS = 1.5  # how long a process trusts what it last saw of a replica
PRIMARY_UNTIL = "primary_until"  # in the browser's session: until when (epoch seconds) its reads use the primary
WROTE, PICKED = "sipup_wrote", "sipup_replica"  # in a database session's info, for its current transaction

# A replica's states; only REPLICATING takes reads.
UNCHECKED = "unchecked"
REPLICATING = "replicating"
LAGGING = "lagging"
STOPPED = "replication stopped"
NOT_A_REPLICA = "not a replica"
OTHER_PRIMARY = "replica of another server"
OTHER_SCHEMA = "another database"
NO_PRIVILEGE = "no privilege"
DOWN = "down"

_REPLICA, _PRIMARY = "replica", "primary"
_route = contextvars.ContextVar("sipup_read_route", default=None)
ACCESS_DENIED = {1227, 1142, 1044}  # the account may not run SHOW REPLICA STATUS (or read the database)
NO_SCHEMA = {1049, 1146}  # no such database; no alembic_version table in it


@contextmanager
def replica_reads():
    """Inside (a `with` block, or a view or service it decorates), plain reads may go to a fit replica."""
    token = _route.set(_REPLICA)
    try:
        yield
    finally:
        _route.reset(token)


@contextmanager
def on_primary():
    """Inside, every read goes to the primary (cache fills: what they read is kept for minutes)."""
    token = _route.set(_PRIMARY)
    try:
        yield
    finally:
        _route.reset(token)


class RoutingSession(Session):
    """Flask-SQLAlchemy's session, sending what `replica_reads` allows to a fit replica."""

    def get_bind(self, mapper=None, clause=None, bind=None, **kwargs):
        """A fit replica's engine for a read that may go there, else the primary's."""
        if bind is None and _may_use_replica(self, clause):
            if PICKED not in self.info:
                self.info[PICKED] = current_app.extensions["sipup_replicas"].pick()
            if self.info[PICKED] is not None:
                return self.info[PICKED]
        return super().get_bind(mapper=mapper, clause=clause, bind=bind, **kwargs)


def _may_use_replica(session, clause):
    if _route.get() != _REPLICA or session.info.get(WROTE) or not isinstance(clause, Select):
        return False
    if is_locking_read(clause) or not has_app_context() or "sipup_replicas" not in current_app.extensions:
        return False
    if has_request_context():
        return request.method in ("GET", "HEAD") and browser_session.get(PRIMARY_UNTIL, 0) <= time.time()
    return True


@event.listens_for(RoutingSession, "after_flush")
def _flushed(session, _context):
    session.info[WROTE] = True


@event.listens_for(RoutingSession, "do_orm_execute")
def _executed(state):
    if state.is_insert or state.is_update or state.is_delete:
        state.session.info[WROTE] = True


@event.listens_for(RoutingSession, "after_commit")
def _committed(session):
    session.info.pop(PICKED, None)
    if session.info.pop(WROTE, False) and has_request_context() and "sipup_replicas" in current_app.extensions:
        # Whole seconds, rounded up: the cookie stays small and the browser reads the primary at least that long.
        browser_session[PRIMARY_UNTIL] = math.ceil(time.time() + current_app.extensions["sipup_replicas"].stay_seconds)


@event.listens_for(RoutingSession, "after_rollback")
def _rolled_back(session):
    session.info.pop(PICKED, None)
    session.info.pop(WROTE, None)


class Replica:
    """One replica: its engine and what this process last saw of it."""

    def __init__(self, engine):
        self.engine = engine
        url = engine.url
        self.where = f"{url.host}:{url.port or 3306}/{url.database}"
        self.state, self.lag, self.detail, self.checked = UNCHECKED, None, "", None
        self.reads = 0  # read transactions sent here by this process
        self.outage = outage(f"Read replica {self.where}")

    @property
    def fit(self):
        return self.state == REPLICATING

    def update(self, state, lag, detail):
        """Take a check's result; a replica that stops being fit is logged once, and its return too."""
        self.state, self.lag, self.detail, self.checked = state, lag, detail, time.time()
        if self.fit:
            self.outage.ok()
        else:
            self.outage.failed(f"{state}: {detail}; its reads go to the primary or another replica")


class ReplicaSet:
    """The configured replicas, checked at most every CHECK_SECONDS, and the pick of a fit one."""

    def __init__(self, primary, engines, max_lag, check_seconds=CHECK_SECONDS):
        self.primary = primary
        self.replicas = [Replica(engine) for engine in engines]
        self.max_lag = max_lag
        self.check_seconds = check_seconds
        # A write reaches a fit replica within max_lag (+1: the lag is counted in whole seconds) plus one check.
        self.stay_seconds = max_lag + 1 + check_seconds
        self.lock = threading.Lock()
        self.checked_at = float("-inf")
        self.turn = itertools.count()
        self.fallbacks = 0  # reads a replica could have taken that went to the primary: none was fit

    def pick(self):
        """The engine of a fit replica (in turn), or None: then the read goes to the primary."""
        if time.monotonic() - self.checked_at >= self.check_seconds and self.lock.acquire(blocking=False):
            try:  # one thread checks; the others go on with what was seen last
                self.check()
            finally:
                self.lock.release()
        fit = [replica for replica in self.replicas if replica.fit]
        if not fit:
            self.fallbacks += 1
            return None
        replica = fit[next(self.turn) % len(fit)]
        replica.reads += 1
        return replica.engine

    def check(self):
        """Ask every replica how it replicates, and the primary who it is."""
        primary_id, version = _identity(self.primary)
        for replica in self.replicas:
            replica.update(*inspect(replica.engine, primary_id, version, self.max_lag))
        self.checked_at = time.monotonic()

    def problems(self):
        """One line per replica not fit now (for `flask serve`), after checking them all."""
        self.check()
        return [
            f"read replica {r.where} (SIPUP_DATABASE_REPLICA_URLS) is {r.state}: {r.detail}; its reads go to the "
            "primary until it is fit (/monitor shows it)."
            for r in self.replicas
            if not r.fit
        ]

    def status(self):
        """What /monitor shows: per replica its state, lag, detail and reads; and the reads none could take."""
        if time.monotonic() - self.checked_at >= self.check_seconds:
            with self.lock:
                self.check()
        rows = [
            {
                "where": r.where,
                "state": r.state,
                "fit": r.fit,
                "down": r.state == DOWN,
                "lag": r.lag,
                "detail": r.detail,
                "reads": r.reads,
                "engine": r.engine,
            }
            for r in self.replicas
        ]
        return {"replicas": rows, "max_lag": self.max_lag, "fallbacks": self.fallbacks}


def _identity(primary):
    """(server_id, schema version) of the primary, or (None, None) when it does not answer now."""
    try:
        with primary.connect() as conn:
            server_id = conn.execute(text("SELECT @@server_id")).scalar()
            version = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
    except DBAPIError:
        return None, None
    return int(server_id), version


def inspect(engine, primary_id, primary_version, max_lag):
    """(state, lag in seconds or None, detail) of the replica behind this engine."""
    try:
        with engine.connect() as conn:
            row = _replica_status(conn)
            version = _schema_version(conn)
    except DBAPIError as error:
        code = error.orig.args[0] if error.orig is not None and error.orig.args else None
        if code in ACCESS_DENIED:
            return (
                NO_PRIVILEGE,
                None,
                (f"{describe(error)} (MariaDB: GRANT SLAVE MONITOR ON *.* TO the user; MySQL: REPLICATION CLIENT)"),
            )
        if code in NO_SCHEMA:
            return OTHER_SCHEMA, None, f"{describe(error)}: not a copy of the primary's database"
        return DOWN, None, describe(error)
    return judge(row, version, primary_id, primary_version, max_lag)


def _schema_version(conn):
    """The database's Alembic revision, or None where it holds no sipup schema."""
    try:
        return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
    except DBAPIError as error:
        if not (error.orig is not None and error.orig.args and error.orig.args[0] in NO_SCHEMA):
            raise
        return None


def _replica_status(conn):
    """SHOW REPLICA STATUS as a dict (MariaDB 10.5+, MySQL 8.0.22+), SHOW SLAVE STATUS on older servers."""
    try:
        row = conn.execute(text("SHOW REPLICA STATUS")).mappings().first()
    except DBAPIError as error:
        if not (error.orig is not None and error.orig.args and error.orig.args[0] == 1064):  # syntax: older
            raise
        row = conn.execute(text("SHOW SLAVE STATUS")).mappings().first()
    return dict(row) if row is not None else None


def _field(row, *names):
    return next((row[name] for name in names if name in row), None)


def judge(row, version, primary_id, primary_version, max_lag):
    """(state, lag, detail) from a replica's status row (MariaDB's or MySQL's column names) and schema version."""
    if row is None:
        return NOT_A_REPLICA, None, "SHOW REPLICA STATUS is empty: replication is not set up on this server"
    lag = _field(row, "Seconds_Behind_Master", "Seconds_Behind_Source")
    source_id = _field(row, "Master_Server_Id", "Source_Server_Id")
    if primary_id is not None and source_id and int(source_id) != primary_id:
        return OTHER_PRIMARY, lag, f"it replicates server_id {source_id}; the primary is server_id {primary_id}"
    if version is None:
        return OTHER_SCHEMA, lag, "it holds no sipup schema (no alembic_version table): not the primary's database"
    if primary_version is not None and version != primary_version:
        return OTHER_SCHEMA, lag, f"its schema is {version!r}, the primary's {primary_version!r}"
    io, sql = (
        _field(row, "Slave_IO_Running", "Replica_IO_Running"),
        _field(row, "Slave_SQL_Running", "Replica_SQL_Running"),
    )
    if io != "Yes" or sql != "Yes":
        error = _field(row, "Last_SQL_Error") or _field(row, "Last_IO_Error") or "stopped (STOP SLAVE?)"
        return STOPPED, lag, f"IO thread {io}, SQL thread {sql}: {error}"
    if lag is None or int(lag) > max_lag:
        return LAGGING, lag, f"{lag} s behind the primary (SIPUP_REPLICA_MAX_LAG is {max_lag} s)"
    return REPLICATING, int(lag), f"{lag} s behind the primary"
