"""System health: each part checked and given a state, and one verdict over them all.

A check returns a dict: name, state ("ok", "warn", "bad" or "off" for a part not configured), a short
value and a detail line that says what to do. The verdict is the worst state. Name, value and detail are English
(metrics' labels, the job history, tests); their kept forms (`kept`) are shown on /monitor and in the alert mails
in the reader's language (`|shown_field`), since the checks' results are shared by readers of every language.
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
from sipup.i18n import KEPT, N_, Figure, english, kept, shown
from sipup.jobs.heartbeats import last_processor_finish, store_loss
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
    """A check's row: name, value and detail as given (a message marked N_ or kept() with its values, or a
    plain text such as a version), in English, with the kept forms the pages translate for each reader."""
    forms = {"name": _kept(name), "value": _kept(value), "detail": _kept(detail)}
    return {
        "name": english(forms["name"]),
        "state": state,
        "value": english(forms["value"]),
        "detail": english(forms["detail"]),
        "kept": forms,
    }


def _kept(text):
    """A check's text as kept: a kept message as it is, a message marked N_ as a message without values (a
    plain value, such as a version or a server's error, comes as a kept message's value, never on its own)."""
    if text is None or text == "" or text.startswith(KEPT):
        return text
    return kept(text)


def plain(text):
    """A text that is no message (a version, a backend's name, a server's error): shown as it is everywhere."""
    return kept(N_("%(text)s"), text=str(text))


def database():
    started = time.perf_counter()
    try:
        if db.engine.dialect.name == "sqlite":
            version = "SQLite " + db.session.execute(text("SELECT sqlite_version()")).scalar()
        else:
            version = db.session.execute(text("SELECT VERSION()")).scalar()
    except Exception as exc:  # any driver error: the database is the one part that must answer
        db.session.rollback()
        return check(N_("Database"), "bad", N_("unreachable"), plain(f"{type(exc).__name__}: {str(exc)[:160]}"))
    ms = (time.perf_counter() - started) * 1000
    problem = check_writable()
    if problem:
        return check(
            N_("Database"),
            "bad",
            N_("not writable"),
            kept(
                N_("%(version)s: %(problem)s; free space or make it writable, orders cannot be saved meanwhile"),
                version=version,
                problem=problem,
            ),
        )
    pool = pool_status(db.engine)
    state, detail = "ok", plain(version)
    in_use = pool.get("checkedout")
    if pool.get("max"):
        detail = kept(
            N_("%(version)s · pool %(in_use)s in use of %(size)s (+%(overflow)s overflow)"),
            version=version,
            in_use=in_use,
            size=pool["size"],
            overflow=pool["max"] - pool["size"],
        )
        if in_use >= POOL_WARN * pool["max"]:
            state = "warn"
            detail = kept(N_("%(detail)s: raise SIPUP_DB_POOL_SIZE or add database capacity"), detail=detail)
    if ms > DB_SLOW_MS:
        state = "warn"
    return check(N_("Database"), state, kept(N_("%(ms)s ms"), ms=Figure(ms, 1)), detail)


def redis_server():
    url = current_app.config["REDIS_URL"]
    if not url:
        return check(
            N_("Redis"),
            "off",
            N_("not configured"),
            N_("embedded default: counters, cache and queue stay on this host"),
        )

    client = redisclient.connect(url, timeout=1)
    started = time.perf_counter()
    try:
        info = client.info("server")
        memory = client.info("memory")
        # Sentinel: which server is the primary now (the sentinels' answer), so a failover shows here.
        primary = redisclient.primary_address(url) if redisclient.is_sentinel(url) else ""
    except redis.RedisError as exc:
        via = f" ({redisclient.describe(url)})" if redisclient.is_sentinel(url) else ""
        return check(
            N_("Redis"),
            "bad",
            N_("unreachable"),
            kept(
                N_("%(error)s; shared limits, cache and statistics fall back to this process until it answers"),
                error=f"{type(exc).__name__}: {exc}{via}",
            ),
        )
    finally:
        client.close()
    ms = (time.perf_counter() - started) * 1000
    where = kept(N_("Sentinel, primary %(where)s · "), where=primary) if primary else ""
    return check(
        N_("Redis"),
        "ok",
        kept(N_("%(ms)s ms"), ms=Figure(ms, 1)),
        kept(
            N_("%(where)sRedis %(version)s · %(used)s used"),
            where=where,
            version=info.get("redis_version"),
            used=memory.get("used_memory_human", "?"),
        ),
    )


def disk():
    path = current_app.instance_path
    usage = shutil.disk_usage(path)
    free = usage.free / usage.total if usage.total else 0
    state = "bad" if free < DISK_BAD else "warn" if free < DISK_WARN else "ok"
    detail = kept(
        N_("%(free)s GB free of %(total)s GB where instance/ lives"),
        free=Figure(usage.free / 2**30, 1),
        total=Figure(usage.total / 2**30),
    )
    if state != "ok":
        detail = kept(
            N_("%(detail)s: free space (old backups in instance/backups, logs in instance/logs)"), detail=detail
        )
    return {
        **check(N_("Disk"), state, kept(N_("%(share)s free"), share=Figure(free, share=True)), detail),
        "free": free,
    }


def host():
    memory = psutil.virtual_memory()
    process = psutil.Process()
    rss = process.memory_info().rss
    cpu = psutil.cpu_percent(interval=None)
    state = "warn" if memory.percent / 100 >= MEMORY_WARN else "ok"
    return check(
        N_("Host"),
        state,
        kept(N_("CPU %(share)s"), share=Figure(cpu / 100, share=True)),
        kept(
            N_("memory %(share)s used of %(total)s GB · this process %(rss)s MB · %(cores)s cores · up %(up)s"),
            share=Figure(memory.percent / 100, share=True),
            total=Figure(memory.total / 2**30, 1),
            rss=Figure(rss / 2**20),
            cores=os.cpu_count(),
            up=lasted(time.time() - STARTED),
        ),
    )


def duration(seconds):
    """A span of time as a person says it, in the current language: 45 s, 12 min, 3 h 5 min, 2 d 4 h."""
    return shown(lasted(seconds))


def lasted(seconds):
    """duration() as a kept message, for data shown later to readers of any language."""
    seconds = int(seconds)
    if seconds < 90:
        return kept(N_("%(n)s s"), n=seconds)
    if seconds < 5400:
        return kept(N_("%(n)s min"), n=round(seconds / 60))
    if seconds < 172800:
        return kept(N_("%(h)s h %(min)s min"), h=seconds // 3600, min=seconds % 3600 // 60)
    return kept(N_("%(d)s d %(h)s h"), d=seconds // 86400, h=seconds % 86400 // 3600)


def counters_store():
    status = current_app.extensions["counters"].status()
    if status["store_error"]:
        return check(
            N_("Statistics"),
            "warn",
            kept(N_("%(store)s: failing"), store=status["store"]),
            kept(
                N_("%(error)s; figures are kept in each process until the store answers"), error=status["store_error"]
            ),
        )
    return check(
        N_("Statistics"), "ok", plain(status["store"]), N_("shared figures for this page and the command line")
    )


def queue_processor():
    queue = current_app.extensions["queue"]
    last = last_processor_finish()
    if last is None:
        return check(
            N_("Queue processor"),
            "warn",
            N_("never ran"),
            N_(
                "add the cron line from cron/crontab (`flask queue process` every minute) or start `flask queue worker`"
            ),
        )
    now = utcnow()
    minutes = (now - last).total_seconds() / 60
    detail = kept(N_("last run %(ago)s ago · Huey on %(backend)s"), ago=lasted(minutes * 60), backend=queue.backend)
    if minutes > PROCESSOR_STALE_MINUTES:
        return check(
            N_("Queue processor"),
            "bad",
            kept(N_("%(n)s min ago"), n=Figure(minutes)),
            kept(N_("%(detail)s: jobs wait; check cron (cron/crontab) or the worker's process"), detail=detail),
        )
    loss = store_loss()
    if loss and now - loss["at"] < timedelta(hours=STORE_LOSS_HOURS):
        event = kept(
            N_("Redis lost %(n)s queued message(s) at %(time)s UTC; re-sent.")
            if queue.backend == "redis"
            else N_("The queue file lost %(n)s queued message(s) at %(time)s UTC; re-sent."),
            n=loss["lost"],
            time=f"{loss['at']:%H:%M}",
        )
        if now - loss["at"] < timedelta(hours=1):
            return check(
                N_("Queue processor"),
                "warn",
                N_("store lost data"),
                kept(
                    N_("%(event)s Give Redis persistence (docs/jobs.md, “Redis for the queue”). · %(detail)s"),
                    event=event,
                    detail=detail,
                ),
            )
        detail = kept(N_("%(detail)s · %(event)s"), detail=detail, event=event)
    return check(N_("Queue processor"), "ok", kept(N_("%(n)s s ago"), n=Figure(minutes * 60)), detail)


def cache():
    status = cache_status()
    where = f"{status['driver']} ({status['where']})"  # names, the same in every language
    if status["state"] == "degraded":
        since = time.strftime("%H:%M UTC", time.gmtime(status["degraded_since"]))
        return check(
            N_("Cache"),
            "warn",
            kept(N_("degraded since %(since)s"), since=since),
            kept(
                N_(
                    "%(where)s: %(error)s; pages are computed from the database meanwhile, "
                    "and the cache is tried again every few seconds"
                ),
                where=where,
                error=status["last_error"],
            ),
        )
    if status["driver"] == "none":
        return check(
            N_("Cache"), "warn", N_("off"), N_("SIPUP_CACHE_URL=none://: every page is computed from the database")
        )
    rate = status["hit_rate_hour"]
    value = N_("no reads yet") if rate is None else kept(N_("%(share)s hits"), share=Figure(rate, share=True))
    return check(N_("Cache"), "ok", value, kept(N_("%(where)s, answering"), where=where))


def limiter():
    limits = current_app.extensions.get("limits")
    if limits is None:
        return check(N_("Rate limits"), "warn", N_("off"), N_("SIPUP_RATELIMIT_ENABLED=false: no client is limited"))
    if limits.fallback_active:
        return check(
            N_("Rate limits"),
            "warn",
            N_("per process"),
            N_(
                "Redis unreachable: each process counts on its own until it answers, so the shared budget is not "
                "enforced"
            ),
        )
    detail = (
        N_("%(strategy)s counting, shared by every process")
        if limits.storage_name == "redis"
        else N_("%(strategy)s counting, this process only")
    )
    return check(N_("Rate limits"), "ok", plain(limits.storage_name), kept(detail, strategy=limits.strategy))


def proxy():
    hops = current_app.config["PROXY_HOPS"]
    if hops:
        return check(
            N_("Proxies"),
            "ok",
            kept(N_("%(n)s trusted"), n=hops),
            kept(
                N_("SIPUP_PROXY_HOPS=%(n)s: client addresses are those the proxies in front report in X-Forwarded-For"),
                n=hops,
            ),
        )
    seen = untrusted_proxy_requests()
    if seen:
        return check(
            N_("Proxies"),
            "warn",
            kept(N_("%(n)s untrusted"), n=Figure(seen)),
            kept(
                N_(
                    "%(n)s request(s) in the last hour came from this host with X-Forwarded-For while "
                    "SIPUP_PROXY_HOPS=0: every client shares the proxy's address and one rate-limit budget; set "
                    "SIPUP_PROXY_HOPS to the number of proxies in front"
                ),
                n=Figure(seen),
            ),
        )
    return check(N_("Proxies"), "off", N_("none"), N_("SIPUP_PROXY_HOPS=0: clients connect directly"))


def storage():
    backend = get_storage()
    problem = backend.problem()
    if problem:
        return check(
            N_("Storage"),
            "bad",
            kept(N_("%(store)s: failing"), store=backend.name),
            kept(
                N_("%(where)s: %(problem)s; picture uploads, reports and stock files fail until it works"),
                where=backend.where,
                problem=problem,
            ),
        )
    detail = (
        N_("%(where)s: reachable, this host only")
        if backend.name == "folder"
        else N_("%(where)s: reachable, shared by every host")
    )
    return check(N_("Storage"), "ok", plain(backend.name), kept(detail, where=backend.where))


def replicas():
    """Read replicas: amber while one is skipped (down, lagging, stopped, not this primary's), off without any."""
    replica_set = current_app.extensions.get("sipup_replicas")
    if replica_set is None:
        return check(
            N_("Read replicas"),
            "off",
            N_("none"),
            N_("SIPUP_DATABASE_REPLICA_URLS is not set: every read goes to the primary"),
        )
    rows = replica_set.status()["replicas"]
    unfit = [row for row in rows if not row["fit"]]
    value = kept(N_("%(fit)s of %(n)s fit"), fit=len(rows) - len(unfit), n=len(rows))
    if not unfit:
        return check(N_("Read replicas"), "ok", value, N_("reads that tolerate a second of lag go to them"))
    named = "; ".join(f"{row['where']} {row['state']}: {row['detail']}" for row in unfit)
    return check(
        N_("Read replicas"),
        "warn",
        value,
        kept(N_("%(replicas)s (its reads go to the primary or another replica)"), replicas=named),
    )


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
            results.append(check(plain(name), "warn", N_("check failed"), plain(f"{type(exc).__name__}: {exc}")))
    worst = max((ORDER[r["state"]] for r in results), default=0)
    return {"verdict": VERDICTS[worst], "checks": results}
