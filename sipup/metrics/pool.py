"""The connection pool's figures: its status (size, in use, overflow, waits, timeouts), the connection budget of
every pool-holding process against the server's max_connections, and the QueuePool that counts its waits."""

import threading

from flask import current_app, has_app_context
from sqlalchemy import text

from sipup.metrics import compat


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


def connection_budget(engine, config, holders):
    """The connections the pool-holding processes ({process: connections it may open}, see
    metrics/processes.py) may open together, against the server's max_connections (MariaDB/MySQL);
    None on SQLite. With none registered, one process of SIPUP_DB_POOL_SIZE + SIPUP_DB_MAX_OVERFLOW. The
    figures /monitor's rule and `flask db optimize --report` show."""
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
    needed = sum(holders.values()) if holders else per_process
    return {
        "max_connections": max_connections,
        "per_process": per_process,
        "processes": max(len(holders), 1),
        "registered": len(holders),
        "needed": needed,
        "fit": max_connections // per_process if per_process else None,
        "connected": status.get("threads_connected"),
        "max_used": status.get("max_used_connections"),
    }


def describe_budget(budget):
    """The connection budget in one line."""
    if budget is None:
        return "SQLite: no connection limit to share"
    verdict = "fits" if budget["needed"] <= budget["max_connections"] else "does NOT fit"
    processes = (
        f"{budget['processes']} process(es) x {budget['per_process']} connections (SIPUP_DB_POOL_SIZE + "
        "SIPUP_DB_MAX_OVERFLOW)"
    )
    if budget.get("registered"):  # flask serve and workers said what their threads can open
        processes += f" at most, {budget['needed']} by their threads (flask serve, flask queue worker):"
    else:  # none heard of lately: one process of the full pool
        processes += f" = {budget['needed']}"
    return (
        f"{processes} {verdict} in max_connections {budget['max_connections']}; "
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
