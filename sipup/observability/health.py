"""System health: each part checked and given a state, and one verdict over them all.

A check returns a dict: name, state ("ok", "warn", "bad" or "off" for a part not configured), a short
value and a detail line that says what to do. The verdict is the worst state.
"""

import os
import shutil
import time
from datetime import timedelta

import psutil
import redis
from flask import current_app
from sqlalchemy import text

from sipup import redisclient
from sipup.cache.layer import cache_status
from sipup.database import check_writable
from sipup.extensions import db
from sipup.jobs.heartbeats import last_processor_finish, store_loss
from sipup.jobs.store import describe_loss
from sipup.metrics.pool import pool_status
from sipup.models import utcnow
from sipup.storage import get_storage
from sipup.web import untrusted_proxy_requests

ORDER = {"off": 0, "ok": 0, "warn": 1, "bad": 2}
VERDICTS = {0: "green", 1: "amber", 2: "red"}
DB_SLOW_MS = 50  # a SELECT 1 slower than this means a loaded or distant database
POOL_WARN = 0.8  # share of the pool (size + overflow) in use
DISK_WARN, DISK_BAD = 0.10, 0.03  # free share of the disk holding instance/
MEMORY_WARN = 0.90
PROCESSOR_STALE_MINUTES = 10  # cron runs every minute or five: ten minutes without a run means it stopped
STORE_LOSS_HOURS = 24  # a queue store's data loss is named this long (amber for the first hour)
STARTED = time.time()
psutil.cpu_percent(interval=None)  # the first reading is always 0: take it now, so the panel's is real


def check(name, state, value, detail=""):
    return {"name": name, "state": state, "value": value, "detail": detail}


def database():
    started = time.perf_counter()
    try:
        if db.engine.dialect.name == "sqlite":
            version = "SQLite " + db.session.execute(text("SELECT sqlite_version()")).scalar()
        else:
            version = db.session.execute(text("SELECT VERSION()")).scalar()
    except Exception as exc:  # any driver error: the database is the one part that must answer
        db.session.rollback()
        return check("Database", "bad", "unreachable", f"{type(exc).__name__}: {str(exc)[:160]}")
    ms = (time.perf_counter() - started) * 1000
    problem = check_writable()
    if problem:
        return check(
            "Database",
            "bad",
            "not writable",
            f"{version}: {problem}; free space or make it writable, orders cannot be saved meanwhile",
        )
    pool = pool_status(db.engine)
    state, detail = "ok", version
    in_use = pool.get("checkedout")
    if pool.get("max"):
        detail += f" · pool {in_use} in use of {pool['size']} (+{pool['max'] - pool['size']} overflow)"
        if in_use >= POOL_WARN * pool["max"]:
            state, detail = "warn", detail + ": raise SIPUP_DB_POOL_SIZE or add database capacity"
    if ms > DB_SLOW_MS:
        state = "warn"
    return check("Database", state, f"{ms:.1f} ms", detail)


def redis_server():
    url = current_app.config["REDIS_URL"]
    if not url:
        return check("Redis", "off", "not configured", "embedded default: counters, cache and queue stay on this host")

    client = redisclient.connect(url, timeout=1)
    started = time.perf_counter()
    try:
        info = client.info("server")
        memory = client.info("memory")
        # Sentinel: which server is the primary now (the sentinels' answer), so a failover shows here.
        where = f"Sentinel, primary {redisclient.primary_address(url)} · " if redisclient.is_sentinel(url) else ""
    except redis.RedisError as exc:
        via = f" ({redisclient.describe(url)})" if redisclient.is_sentinel(url) else ""
        return check(
            "Redis",
            "bad",
            "unreachable",
            f"{type(exc).__name__}: {exc}{via}; shared limits, cache and "
            "statistics fall back to this process until it answers",
        )
    finally:
        client.close()
    ms = (time.perf_counter() - started) * 1000
    return check(
        "Redis",
        "ok",
        f"{ms:.1f} ms",
        f"{where}Redis {info.get('redis_version')} · {memory.get('used_memory_human', '?')} used",
    )


def disk():
    path = current_app.instance_path
    usage = shutil.disk_usage(path)
    free = usage.free / usage.total if usage.total else 0
    state = "bad" if free < DISK_BAD else "warn" if free < DISK_WARN else "ok"
    detail = f"{usage.free / 2**30:.1f} GB free of {usage.total / 2**30:.0f} GB where instance/ lives"
    if state != "ok":
        detail += ": free space (old backups in instance/backups, logs in instance/logs)"
    return {**check("Disk", state, f"{free:.0%} free", detail), "free": free}


def host():
    memory = psutil.virtual_memory()
    process = psutil.Process()
    rss = process.memory_info().rss
    cpu = psutil.cpu_percent(interval=None)
    state = "warn" if memory.percent / 100 >= MEMORY_WARN else "ok"
    return check(
        "Host",
        state,
        f"CPU {cpu:.0f}%",
        f"memory {memory.percent:.0f}% used of {memory.total / 2**30:.1f} GB · this process "
        f"{rss / 2**20:.0f} MB · {os.cpu_count()} cores · up {duration(time.time() - STARTED)}",
    )


def duration(seconds):
    """A span of time as a person says it: 45 s, 12 min, 3 h 5 min, 2 d 4 h."""
    seconds = int(seconds)
    if seconds < 90:
        return f"{seconds} s"
    if seconds < 5400:
        return f"{round(seconds / 60)} min"
    if seconds < 172800:
        return f"{seconds // 3600} h {seconds % 3600 // 60} min"
    return f"{seconds // 86400} d {seconds % 86400 // 3600} h"


def counters_store():
    status = current_app.extensions["counters"].status()
    if status["store_error"]:
        return check(
            "Statistics",
            "warn",
            f"{status['store']}: failing",
            f"{status['store_error']}; figures are kept in each process until the store answers",
        )
    return check("Statistics", "ok", status["store"], "shared figures for this page and the command line")


def queue_processor():
    queue = current_app.extensions["queue"]
    last = last_processor_finish()
    if last is None:
        return check(
            "Queue processor",
            "warn",
            "never ran",
            "add the cron line from cron/crontab (`flask queue process` every minute) or start `flask queue worker`",
        )
    now = utcnow()
    minutes = (now - last).total_seconds() / 60
    detail = f"last run {duration(minutes * 60)} ago · Huey on {queue.backend}"
    if minutes > PROCESSOR_STALE_MINUTES:
        return check(
            "Queue processor",
            "bad",
            f"{minutes:,.0f} min ago",
            detail + ": jobs wait; check cron (cron/crontab) or the worker's process",
        )
    loss = store_loss()
    if loss and now - loss["at"] < timedelta(hours=STORE_LOSS_HOURS):
        event = describe_loss(queue.backend, loss["lost"], loss["at"])
        if now - loss["at"] < timedelta(hours=1):
            return check(
                "Queue processor",
                "warn",
                "store lost data",
                f"{event} Give Redis persistence (docs/jobs.md, “Redis for the queue”). · {detail}",
            )
        detail = f"{detail} · {event}"
    return check("Queue processor", "ok", f"{minutes * 60:,.0f} s ago", detail)


def cache():
    status = cache_status()
    where = f"{status['driver']} ({status['where']})"
    if status["state"] == "degraded":
        since = time.strftime("%H:%M UTC", time.gmtime(status["degraded_since"]))
        return check(
            "Cache",
            "warn",
            f"degraded since {since}",
            f"{where}: {status['last_error']}; pages are computed from the database meanwhile, "
            "and the cache is tried again every few seconds",
        )
    if status["driver"] == "none":
        return check("Cache", "warn", "off", "SIPUP_CACHE_URL=none://: every page is computed from the database")
    rate = status["hit_rate_hour"]
    return check("Cache", "ok", "no reads yet" if rate is None else f"{rate:.0%} hits", f"{where}, answering")


def limiter():
    limits = current_app.extensions.get("limits")
    if limits is None:
        return check("Rate limits", "warn", "off", "SIPUP_RATELIMIT_ENABLED=false: no client is limited")
    if limits.fallback_active:
        return check(
            "Rate limits",
            "warn",
            "per process",
            "Redis unreachable: each process counts on its own until it answers, so the shared budget is not enforced",
        )
    shared = "shared by every process" if limits.storage_name == "redis" else "this process only"
    return check("Rate limits", "ok", limits.storage_name, f"{limits.strategy} counting, {shared}")


def proxy():
    hops = current_app.config["PROXY_HOPS"]
    if hops:
        return check(
            "Proxies",
            "ok",
            f"{hops} trusted",
            f"SIPUP_PROXY_HOPS={hops}: client addresses are those the proxies in front report in X-Forwarded-For",
        )
    seen = untrusted_proxy_requests()
    if seen:
        return check(
            "Proxies",
            "warn",
            f"{seen:,} untrusted",
            f"{seen:,} request(s) in the last hour came from this "
            "host with X-Forwarded-For while SIPUP_PROXY_HOPS=0: every client shares the proxy's address "
            "and one rate-limit budget; set SIPUP_PROXY_HOPS to the number of proxies in front",
        )
    return check("Proxies", "off", "none", "SIPUP_PROXY_HOPS=0: clients connect directly")


def storage():
    backend = get_storage()
    problem = backend.problem()
    if problem:
        return check(
            "Storage",
            "bad",
            f"{backend.name}: failing",
            f"{backend.where}: {problem}; picture uploads, reports and stock files fail until it works",
        )
    shared = "this host only" if backend.name == "folder" else "shared by every host"
    return check("Storage", "ok", backend.name, f"{backend.where}: reachable, {shared}")


def replicas():
    """Read replicas: amber while one is skipped (down, lagging, stopped, not this primary's), off without any."""
    replica_set = current_app.extensions.get("sipup_replicas")
    if replica_set is None:
        return check(
            "Read replicas", "off", "none", "SIPUP_DATABASE_REPLICA_URLS is not set: every read goes to the primary"
        )
    rows = replica_set.status()["replicas"]
    unfit = [row for row in rows if not row["fit"]]
    value = f"{len(rows) - len(unfit)} of {len(rows)} fit"
    if not unfit:
        return check("Read replicas", "ok", value, "reads that tolerate a second of lag go to them")
    named = "; ".join(f"{row['where']} {row['state']}: {row['detail']}" for row in unfit)
    return check("Read replicas", "warn", value, f"{named} (its reads go to the primary or another replica)")


BUILT_IN = (
    database,
    replicas,
    redis_server,
    cache,
    counters_store,
    queue_processor,
    limiter,
    proxy,
    storage,
    disk,
    host,
)


def run_checks():
    """Every check, each isolated so one failing check cannot hide the others."""
    results = []
    for function in BUILT_IN:
        try:
            results.append(function())
        except Exception as exc:  # a broken check is itself a finding, shown in its row
            name = function.__name__.replace("_", " ").capitalize()
            results.append(check(name, "warn", "check failed", f"{type(exc).__name__}: {exc}"))
    worst = max((ORDER[r["state"]] for r in results), default=0)
    return {"verdict": VERDICTS[worst], "checks": results}
