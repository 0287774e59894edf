"""Engine set-up per backend and the unit of work that retries on deadlock without half-applying."""

import logging
import os
import random
import secrets
import sqlite3
import time
from contextlib import contextmanager

from flask import has_request_context
from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.pool import PoolProxiedConnection

from sipup.metrics.outages import outage
from sipup.metrics.pool import MeasuredQueuePool
from sipup.metrics.query_stats import register_query_stats, time_statements
from sipup.replicas import ReplicaSet

from .compat import set_read_timeout
from .extensions import db

log = logging.getLogger(__name__)
DATABASE = "Database"  # its outages' name in the log (sipup.metrics.outages)

# MySQL/MariaDB error codes worth retrying the whole unit for: deadlock, lock wait timeout. On Galera a
# transaction that lost certification to one committed on another node ends in 1213 ("WSREP detected
# deadlock/conflict") too, or, at commit, in 1180 naming WSREP: retried the same way.
RETRYABLE_MYSQL_ERRORS = {1213, 1205}
RETRYABLE_WSREP_ERRORS = {1180}
# On Galera every checkout of the last units on other nodes conflicts with the one that committed first, so a
# hot row may lose a few rounds: 3 attempts were spent by buyers of a 40-buyer race over three nodes.
RETRY_ATTEMPTS = 8
# MySQL/MariaDB error codes that say the server is not there: cannot connect (2002, 2003), gone away (2006),
# connection lost or timed out (2013, 2055), shutting down (1053), connection killed (1927).
UNAVAILABLE_MYSQL_ERRORS = {2002, 2003, 2006, 2013, 2055, 1053, 1927}


def register_database(app):
    """Bind Flask-SQLAlchemy and time every statement of the engine (Flask-Migrate is bound by migrations())."""
    options = app.config["SQLALCHEMY_ENGINE_OPTIONS"]
    if "pool_size" in options:  # a server database: its pool counts the checkouts that waited
        options.setdefault("poolclass", MeasuredQueuePool)
    db.init_app(app)
    app.teardown_appcontext(_end_session)  # runs before Flask-SQLAlchemy's own, which then finds nothing to do
    with app.app_context():
        collector = register_query_stats(app, db.engine)
        event.listen(db.engine, "checkout", _answered)
        if db.engine.dialect.name in ("mysql", "mariadb"):
            register_timeouts(app, db.engine)
            reset_only_open_transactions(db.engine)
        register_replicas(app, collector)


def register_replicas(app, collector):
    """An engine per SIPUP_DATABASE_REPLICA_URLS entry, pooled, timed and limited like the primary's, and the
    replica set that routes reads to them (sipup/replicas.py)."""
    urls = app.config["DATABASE_REPLICA_URLS"]
    if not urls:
        return
    options = {**app.config["SQLALCHEMY_ENGINE_OPTIONS"], "poolclass": MeasuredQueuePool}
    engines = [create_engine(url, **options) for url in urls]
    for engine in engines:
        time_statements(app, collector, engine)
        register_timeouts(app, engine)
        reset_only_open_transactions(engine)
    app.extensions["sipup_replicas"] = ReplicaSet(db.engine, engines, app.config["REPLICA_MAX_LAG"])


def register_timeouts(app, engine):
    """Each checkout of a MySQL/MariaDB connection gets the limits of who uses it: a web request a short read
    timeout and statement limit (a silent database becomes a 503 within seconds), the worker and commands long
    ones (reports, optimize)."""
    config = app.config
    web = (config["DB_READ_TIMEOUT"], config["DB_STATEMENT_TIMEOUT"])
    background = (config["DB_JOB_TIMEOUT"] or None, 0)

    @event.listens_for(engine, "checkout")
    def _limits(dbapi_connection, record, _proxy):
        read_timeout, statement_seconds = web if has_request_context() else background
        set_read_timeout(dbapi_connection, read_timeout)
        if record.info.get("statement_seconds") != statement_seconds:  # a SET only when the user changes
            with dbapi_connection.cursor() as cursor:
                cursor.execute(statement_limit(dbapi_connection.get_server_info(), statement_seconds))
            record.info["statement_seconds"] = statement_seconds


STATEMENTS_RAN = "sipup_statements_ran"  # in a pooled connection's info: its transaction may be open


def reset_only_open_transactions(engine):
    """A MySQL/MariaDB connection goes back to the pool with a ROLLBACK only when a statement ran on it since its
    last COMMIT or ROLLBACK: a write request's commit ended its transaction already, and the pool's ROLLBACK after
    it was one more round trip. A read's transaction is still ended, so no idle connection keeps a snapshot or
    metadata locks. The engine is built with pool_reset_on_return=None (config/engines.py); this takes over the
    reset, the way SQLAlchemy's "reset" pool event is meant to be used."""
    dialect = engine.dialect
    commit, rollback = dialect.do_commit, dialect.do_rollback

    @event.listens_for(engine, "before_cursor_execute")
    def _ran(conn, _cursor, _statement, _parameters, _context, _executemany):
        _pool_entry_info(conn.connection)[STATEMENTS_RAN] = True

    def ended(call):
        def end(connection):
            call(connection)
            _pool_entry_info(connection).pop(STATEMENTS_RAN, None)

        return end

    dialect.do_commit, dialect.do_rollback = ended(commit), ended(rollback)

    @event.listens_for(engine, "reset")
    def _reset(dbapi_connection, record, state):
        if record.info.pop(STATEMENTS_RAN, False) and not state.terminate_only:
            rollback(dbapi_connection)  # a failure here makes the pool drop the connection, as its own reset would


def _pool_entry_info(connection):
    """The info of a pooled connection's pool entry ({} for a connection outside the pool: the dialect's first
    connect, a raw DBAPI connection)."""
    info = connection.record_info if isinstance(connection, PoolProxiedConnection) else None
    return {} if info is None else info


def statement_limit(server_version, seconds):
    """The SET that stops this session's statements after `seconds` (0: never): MariaDB's max_statement_time,
    MySQL's max_execution_time (milliseconds, SELECTs only)."""
    if "mariadb" in server_version.lower():
        return f"SET SESSION max_statement_time = {int(seconds)}"
    return f"SET SESSION max_execution_time = {int(seconds) * 1000}"


def _answered(_dbapi_connection, _record, _proxy):
    """A connection was handed out (alive, where the pool pings): a database outage, if any, is over."""
    outage(DATABASE).ok()


def _end_session(_exc):
    """Close the context's session; when closing fails (its connection died), forget the session all the same,
    so a later context never inherits its failed transaction, and let the error be logged."""
    try:
        db.session.remove()
    except DBAPIError:
        db.session.registry.clear()
        raise


def migrations(app):
    """Flask-Migrate's binding of the app (its folder, the options migrations/env.py reads), made on first use:
    Flask-Migrate imports alembic, 0.2 s of start-up that `flask queue process` and the servers need not pay."""
    if "migrate" not in app.extensions:
        from flask_migrate import Migrate  # lazy: alembic takes 0.2 s to import; only migrations need it

        ours = app.cli.commands.get("db")
        Migrate(app, db, directory=_migrations_dir(), render_as_batch=True, compare_type=True)
        if ours is not None:  # Flask-Migrate adds its own `db` group; sipup's (cli/db.py) offers its commands
            app.cli.commands["db"] = ours
    return app.extensions["migrate"]


def _migrations_dir():
    return os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "migrations")


# What MySQL/MariaDB error codes mean for someone who just set SIPUP_DATABASE_URL.
CONNECT_ERRORS = {
    1045: "the server refused user {user!r}: check the user name and password.",
    1049: "database {database!r} does not exist on {host}: CREATE DATABASE {database} CHARACTER SET utf8mb4;",
    2003: "nothing answers at {host}:{port}: is MySQL/MariaDB running there, and is the port open?",
    2005: "the host name {host!r} is unknown.",
}


def check_database(app):
    """Connect once; on failure return one line that names the problem, else None."""
    with app.app_context():
        url = db.engine.url
        try:
            with db.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        except DBAPIError as error:
            code = error.orig.args[0] if error.orig is not None and error.orig.args else None
            template = CONNECT_ERRORS.get(code) if isinstance(code, int) else None
            detail = (
                template.format(user=url.username, database=url.database, host=url.host, port=url.port or 3306)
                if template
                else str(error.orig).splitlines()[0]
            )
            return f"SIPUP_DATABASE_URL ({url.render_as_string(hide_password=True)}): {detail}"
        finally:
            db.engine.dispose()
    return None


# Why a database takes no writes, by SQLite's words and MySQL/MariaDB's error codes: read-only (1290: running
# with --read-only, 1792: read-only transaction, 1036: table is read only), full (1021: disk full, 1114: table full).
NOT_WRITABLE = {
    "read-only": ("readonly database", "read-only file system", "read only"),
    "full": ("database or disk is full", "disk is full", "no space left"),
}
MYSQL_NOT_WRITABLE = {1290: "read-only", 1792: "read-only", 1036: "read-only", 1021: "full", 1114: "full"}
MIN_FREE_BYTES = 1024 * 1024  # below this, the next write of a SQLite file may fail half-way


def write_problem(error):
    """ "read-only" or "full" when a database error says the database takes no writes, else None."""
    orig = getattr(error, "orig", None) or error
    code = orig.args[0] if getattr(orig, "args", None) and isinstance(orig.args[0], int) else None
    if code in MYSQL_NOT_WRITABLE:
        return MYSQL_NOT_WRITABLE[code]
    text_ = str(orig).lower()
    return next((kind for kind, words in NOT_WRITABLE.items() if any(word in text_ for word in words)), None)


def check_writable():
    """None when the database takes a write now, else one line saying why not (the file system of a SQLite file:
    read-only or full; any backend: a no-op update of Alembic's one-row table, committed)."""
    url = db.engine.url
    if url.get_backend_name() == "sqlite" and url.database and not url.database.startswith(("file:", ":memory:")):
        folder = os.path.dirname(os.path.abspath(url.database))
        stats = os.statvfs(folder) if hasattr(os, "statvfs") else None
        if stats is not None and stats.f_flag & os.ST_RDONLY:
            return f"read-only: the file system holding {folder} is mounted read-only"
        if stats is not None and stats.f_bavail * stats.f_frsize < MIN_FREE_BYTES:
            return (
                f"full: {stats.f_bavail * stats.f_frsize // 1024} KB free where {os.path.basename(url.database)} lives"
            )
    try:
        with db.engine.begin() as conn:  # a connection of its own: nothing of the request's session is committed
            conn.execute(text("UPDATE alembic_version SET version_num = version_num"))
    except DBAPIError as error:
        kind = write_problem(error)
        if kind is None:
            raise
        return f"{kind}: {str(error.orig).splitlines()[0][:160]}"
    return None


@event.listens_for(Engine, "connect")
def _sqlite_pragmas(dbapi_connection, _record):
    if type(dbapi_connection).__module__.startswith("sqlite3"):
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA busy_timeout=30000")
        _write_ahead_log(cursor)
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()


WAL_ATTEMPTS = 50  # 0.1 s apart


def _write_ahead_log(cursor):
    """Put the file in WAL mode, which the file keeps: once set, a connection only reads that it is. Setting it
    needs the file to itself, and while another connection holds a write on a file not yet in WAL mode SQLite
    answers "database is locked" at once, without its busy wait (two server processes, or the server and the
    worker, starting together on a new file): then try again until that write is done."""
    for attempt in range(WAL_ATTEMPTS):
        if cursor.execute("PRAGMA journal_mode").fetchone()[0].lower() == "wal":
            return
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or attempt == WAL_ATTEMPTS - 1:
                raise
            time.sleep(0.1)


def is_retryable(error):
    """A deadlock, lock wait timeout or Galera certification conflict: the server rolled the unit back, running
    it again may succeed."""
    orig = getattr(error, "orig", None)
    code = orig.args[0] if orig is not None and orig.args else None
    if code in RETRYABLE_WSREP_ERRORS:
        return "wsrep" in str(orig).lower()
    return code in RETRYABLE_MYSQL_ERRORS


def is_unavailable(error):
    """The database went away (or never answered): not a fault of the statement, worth running again later."""
    if getattr(error, "connection_invalidated", False):
        return True
    orig = getattr(error, "orig", None)
    code = orig.args[0] if orig is not None and orig.args else None
    return code in UNAVAILABLE_MYSQL_ERRORS


def forget_transaction():
    """Roll the session back even when its connection died (the first rollback finds it dead and drops it)."""
    try:
        db.session.rollback()
    except DBAPIError:
        db.session.rollback()


@contextmanager
def kept_loaded():
    """Within the block, a commit leaves what the session loaded as it was instead of expiring it: what a
    request shows after its write (a product's name, the order's number) is not read again. A rollback still
    expires everything."""
    session = db.session()
    expire_on_commit, session.expire_on_commit = session.expire_on_commit, False
    try:
        yield
    finally:
        session.expire_on_commit = expire_on_commit


def run_in_transaction(work, *args, attempts=RETRY_ATTEMPTS, fresh=True, **kwargs):
    """Run work(*args) and commit; on deadlock, lock timeout or certification conflict roll back and run it all
    again, after a short random pause (units that collided do not collide again in step). fresh=False: work
    may run in the transaction the request already read in, for work whose writes check what they read."""
    # Start from a fresh transaction: on MySQL/MariaDB a transaction that already read something
    # (the signed-in user, say) keeps that snapshot, which would hide what others committed since.
    if fresh:
        db.session.commit()
    for attempt in range(1, attempts + 1):
        try:
            result = work(*args, **kwargs)
            db.session.commit()
            return result
        except OperationalError as error:
            db.session.rollback()
            if not is_retryable(error) or attempt == attempts:
                raise
            log.warning("Retrying %s after %s (attempt %d)", work.__name__, error.orig, attempt)
            time.sleep(random.uniform(0.02, 0.05) * attempt)
        except BaseException:
            db.session.rollback()
            raise


def paginate(stmt, page, per_page, **kwargs):
    """db.paginate for a page typed into a URL: a page past the last shows the last (an empty list, page 1)."""
    results = db.paginate(stmt, page=page, per_page=per_page, error_out=False, **kwargs)
    if results.page > 1 and results.page > results.pages:
        results = db.paginate(stmt, page=max(results.pages, 1), per_page=per_page, error_out=False, **kwargs)
    return results


def scratch_database(base_url):
    """Create a uniquely named database on a MySQL/MariaDB server; return its URL and a function dropping it."""
    url = make_url(base_url)
    name = f"{url.database or 'sipup_scratch'}_{secrets.token_hex(4)}"
    server = create_engine(url._replace(database=None))  # documented: set() cannot clear a field
    with server.begin() as conn:
        conn.execute(text(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"))

    def drop():
        with server.begin() as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS `{name}`"))
        server.dispose()

    return url.set(database=name).render_as_string(hide_password=False), drop
