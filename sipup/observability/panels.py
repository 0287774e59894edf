"""The data behind `/monitor`: one function per panel, each reading the shared, pre-aggregated figures.

Panels are cheap because every figure is already summed in buckets (sipup/metrics/counters.py counters and the
query statistics); on top of that a panel's data is kept for SIPUP_MONITOR_PANEL_SECONDS (10) in this
process, so many admins polling every 30 seconds cost one computation per panel and process.
"""

import threading
import time
from datetime import timedelta

from flask import current_app
from flask_babel import lazy_gettext, lazy_pgettext
from sqlalchemy import func, select
from sqlalchemy.exc import DBAPIError

from sipup.cache.layer import EVENTS, TYPES, cache_status
from sipup.extensions import db
from sipup.jobs.manage import queue_status, running_now
from sipup.jobs.registry import PRIORITIES, WAITING
from sipup.jobs.stats import wait_stats
from sipup.limits import limiter as limits
from sipup.metrics import exceptions
from sipup.metrics.pool import connection_budget as budget
from sipup.metrics.pool import describe_pool, pool_status
from sipup.metrics.processes import pool_holders
from sipup.metrics.traffic import hosts, traffic, usage
from sipup.models import Company, Job, JobStatus, User, utcnow
from sipup.observability import health, recommendations
from sipup.observability.charts import BUCKET_WORDS, DEFAULT_RANGE, RANGES, line_chart

_memo_lock = threading.Lock()


def _remember(key, build):
    memo = current_app.extensions.setdefault("monitor_memo", {})
    now = time.monotonic()
    with _memo_lock:
        hit = memo.get(key)
        if hit and hit[0] > now:
            return hit[1]
    data = build()
    data["as_of"] = time.time()
    with _memo_lock:
        memo[key] = (now + current_app.config["MONITOR_PANEL_SECONDS"], data)
    return data


def _span(range_):
    """(bucket resolution, buckets, words, minutes per bucket) of a time range."""
    res, count, words = RANGES[range_]
    return res, count, words, 1 if res == "minute" else 60


def health_panel(range_=DEFAULT_RANGE):
    return health.run_checks()


def traffic_panel(range_=DEFAULT_RANGE):
    res, count, words, per = _span(range_)
    figures = traffic(current_app.extensions["counters"], count, res)
    buckets = figures["buckets"]
    starts = [b["start"] for b in buckets]
    figures["chart"] = line_chart(
        starts,
        [
            (lazy_gettext("requests"), "c-main", [b["requests"] for b in buckets]),
            (lazy_gettext("server errors"), "c-bad", [b["errors"] for b in buckets]),
        ],
    )
    figures["latency_chart"] = line_chart(
        starts,
        [
            ("p50", "c-main", [b["p50_ms"] for b in buckets]),
            ("p95", "c-warn", [b["p95_ms"] for b in buckets]),
            ("p99", "c-bad", [b["p99_ms"] for b in buckets]),
        ],
        unit=" ms",
        show=lambda v: f"≤ {v:,.0f} ms" if v < 10000 else "> 10 s",
    )
    # The last full minute, or the average minute of the last full hour.
    figures["per_minute_now"] = buckets[-2]["requests"] / per if len(buckets) > 1 else 0
    figures.update(range=range_, range_words=words, per_bucket=BUCKET_WORDS[res])
    return figures


HOSTS_MINUTES = 5  # a host not seen this long drops off the panel


def hosts_panel(range_=DEFAULT_RANGE):
    """A row per host seen in the last few minutes, so one sick or idle host stands out."""
    rows = hosts(current_app.extensions["counters"], HOSTS_MINUTES)
    return {"hosts": rows, "minutes": HOSTS_MINUTES, "this_host": current_app.config["HOST_NAME"]}


def database_panel(range_=DEFAULT_RANGE):
    _res, buckets, words, per = _span(range_)
    connections = connection_budget()  # first: its own statements are then in the summary below
    summary = current_app.extensions["query_stats"].summary(range_)
    count = sum(kind["count"] for kind in summary["kinds"].values())
    total_ms = sum(kind["total_ms"] for kind in summary["kinds"].values())
    minutes = buckets * per
    pool = pool_status(db.engine)
    return {
        "summary": summary,
        "statements": summary["statements"],
        "queries_per_minute": count / minutes,
        "avg_ms": total_ms / count if count else None,
        "top": summary["statements"][:8],
        "slow": [row for row in summary["statements"] if row["slow"]][:8],
        "slow_ms": current_app.config["SLOW_QUERY_MS"],
        "warn_queries": current_app.config["QUERY_WARN_PER_REQUEST"],
        "pool": pool,
        "pool_line": describe_pool(pool),
        "pool_shared": current_app.extensions["counters"].totals("db", "minute", 60),
        "connections": connections,
        "replicas": replica_panel(),
        "range": range_,
        "range_words": words,
    }


def replica_panel():
    """Each read replica's state, lag, reads sent there, pool and connection budget (None without replicas)."""
    replica_set = current_app.extensions.get("sipup_replicas")
    if replica_set is None:
        return None
    status = replica_set.status()
    holders = pool_holders(current_app.extensions["counters"])
    for row in status["replicas"]:
        engine = row.pop("engine")
        row["pool_line"] = describe_pool(pool_status(engine))
        try:  # the server's max_connections against every process's pool to it
            row["connections"] = None if row["down"] else budget(engine, current_app.config, holders)
        except DBAPIError:
            row["connections"] = None
    return status


def connection_budget():
    """The connections the pool-holding processes of the last hour may open, against MariaDB's
    max_connections (None on SQLite)."""
    return budget(db.engine, current_app.config, pool_holders(current_app.extensions["counters"]))


def queue_panel(range_=DEFAULT_RANGE):

    res, count, words, per = _span(range_)
    status = queue_status()
    now = utcnow()
    day_ago = now - timedelta(days=1)
    finished = dict(
        db.session.execute(
            select(Job.status, func.count()).where(Job.finished_at >= day_ago).group_by(Job.status)
        ).all()
    )
    failed = db.session.scalars(
        select(Job).where(Job.status == JobStatus.FAILED).order_by(Job.finished_at.desc()).limit(10)
    ).all()
    counters = current_app.extensions["counters"]
    series = counters.series("queue", res, count)
    hour = counters.totals("queue", "minute", 60)
    pending = {name: sum(status["counts"][s][name] for s in WAITING) for name in PRIORITIES}
    processors = [
        dict(run, age_seconds=(now - (run["finished_at"] or run["started_at"])).total_seconds())
        for run in status["runs"]
    ]
    workers = [run for run in processors if run["processor"].startswith("worker") and run["age_seconds"] < 180]
    done_in_range = sum(v.get("done", 0) for _, v in series)
    return {
        "status": status,
        "pending": pending,
        "pending_total": sum(pending.values()),
        "running": sum(status["counts"][JobStatus.RUNNING].values()),
        "done_24h": finished.get(JobStatus.DONE, 0),
        "failed_24h": finished.get(JobStatus.FAILED, 0),
        "failed": [
            {"id": j.id, "name": j.name, "error": j.error, "attempts": j.attempts, "finished_at": j.finished_at}
            for j in failed
        ],
        "processors": processors,
        "done_per_minute": done_in_range / (count * per),
        "enqueued_hour": hour.get("enqueued", 0),
        # What cron can take at most: the --limit of each run in the last hour, per minute; a live worker has
        # no such ceiling, so the capacity rule does not apply while one runs.
        "capacity_per_minute": None if workers else hour.get("capacity", 0) / 60,
        "chart": line_chart(
            [start for start, _ in series],
            [
                (lazy_pgettext("job state", "done"), "c-main", [v.get("done", 0) for _, v in series]),
                (lazy_gettext("enqueued"), "c-alt", [v.get("enqueued", 0) for _, v in series]),
                (lazy_pgettext("job state", "failed"), "c-bad", [v.get("failed", 0) for _, v in series]),
            ],
        ),
        "range": range_,
        "range_words": words,
        "per_bucket": BUCKET_WORDS[res],
    }


def running_panel(range_=DEFAULT_RANGE):
    """The jobs running at this moment on every host, with the host and process and how long each has run."""
    jobs = running_now()
    return {"jobs": jobs, "lease_seconds": current_app.config["QUEUE_LEASE_SECONDS"]}


def waits_panel(range_=DEFAULT_RANGE):
    """Per priority, how long jobs waited from being due to their start (p50, p95) in the range."""
    res, count, words, _per = _span(range_)
    return {"waits": wait_stats(current_app.extensions["counters"], res, count), "range": range_, "range_words": words}


USAGE_TOP = 10


def usage_panel(range_=DEFAULT_RANGE):
    """The companies and users with the most requests and the most server time in the range, with their names."""
    res, count, words, _per = _span(range_)
    found = usage(current_app.extensions["counters"], count, res, USAGE_TOP)
    user_ids = {row["id"] for kind_rows in (found["users"]["requests"], found["users"]["time"]) for row in kind_rows}
    users = {
        user.id: user
        for user in db.session.execute(
            select(User.id, User.email, User.role, User.company_id).where(User.id.in_(user_ids))
        ).all()
    }
    company_ids = {row["id"] for side in ("requests", "time") for row in found["companies"][side]}
    company_ids |= {user.company_id for user in users.values() if user.company_id is not None}
    names = dict(db.session.execute(select(Company.id, Company.name).where(Company.id.in_(company_ids))).all())
    for row in found["companies"]["requests"] + found["companies"]["time"]:
        row["name"] = names.get(row["id"])
    for row in found["users"]["requests"] + found["users"]["time"]:
        user = users.get(row["id"])
        row.update(
            email=user.email if user else None,
            role=user.role if user else None,
            company_id=user.company_id if user else None,
            company=names.get(user.company_id) if user else None,
        )
    found.update(range=range_, range_words=words, top=USAGE_TOP)
    return found


def exceptions_panel(range_=DEFAULT_RANGE):
    """Unexpected exceptions of requests and jobs in the range, grouped by type and place, with the last trace."""
    res, count, words, _per = _span(range_)
    rows = exceptions.groups(current_app.extensions["counters"], res, count)
    return {"groups": rows, "total": sum(r["count"] for r in rows), "range": range_, "range_words": words}


def queue_figures():
    data = panel("queue")
    return {
        "pending": data["pending_total"],
        "failed_24h": data["failed_24h"],
        "arrivals_per_minute": data["enqueued_hour"] / 60,
        "capacity_per_minute": data["capacity_per_minute"],
        "arrival_samples": data["enqueued_hour"],
    }


def cache_panel(range_=DEFAULT_RANGE):
    res, count, words, _per = _span(range_)
    counters = current_app.extensions["counters"]
    series = counters.series("cache", res, count)
    totals = {}
    for _start, values in series:
        for key, value in values.items():
            totals[key] = totals.get(key, 0) + value
    types = []
    for type_ in TYPES:
        row = {event: totals.get(f"{type_}.{event}", 0) for event in EVENTS}
        reads = row["hit"] + row["miss"]
        types.append(dict(row, type=type_, hit_rate=row["hit"] / reads if reads else None))
    hits, misses = sum(t["hit"] for t in types), sum(t["miss"] for t in types)

    def rate(values):
        got = sum(v for k, v in values.items() if k.endswith(".hit"))
        reads = got + sum(v for k, v in values.items() if k.endswith(".miss"))
        return got / reads if reads else None  # no reads: a gap in the chart, not 0%

    return {
        "status": cache_status(),
        "types": types,
        "total": {
            "hits": hits,
            "misses": misses,
            "hit_rate": hits / (hits + misses) if hits + misses else None,
            # "all" counts what belongs to no one type, such as a failed generation write.
            "errors": sum(t["error"] for t in types) + totals.get("all.error", 0),
            "fallbacks": sum(t["fallback"] for t in types) + totals.get("all.fallback", 0),
        },
        "chart": line_chart(
            [start for start, _ in series],
            [(lazy_gettext("hit rate"), "c-main", [rate(values) for _, values in series])],
            percent=True,
        ),
        "range": range_,
        "range_words": words,
    }


def limits_panel(range_=DEFAULT_RANGE):
    if "limits" not in current_app.extensions:
        return {"enabled": False}
    _res, count, words, per = _span(range_)
    status = limits.status(minutes=count * per)
    series = status["refused_per_minute"]
    status["chart"] = line_chart([start for start, _ in series], [("429s", "c-bad", [n for _, n in series])])
    status["per_minute_now"] = series[-2][1] / per if len(series) > 1 else 0
    status.update(range=range_, range_words=words)
    return status


def figures():
    """Everything the recommendations read, from the other panels' (remembered) data. A part whose panel
    fails is left out, so its rules say "not available" while the others still judge."""

    def part(read):
        try:
            return read()
        except Exception:  # the failing panel shows the error itself; the rules go on without it
            current_app.logger.exception("Figures for the recommendations not read")
            return None

    checks = part(lambda: panel("health")["checks"]) or []
    disk = next((c for c in checks if c["name"] == "Disk"), None)
    database = part(lambda: panel("database")) or {}
    return {
        "traffic": part(lambda: panel("traffic")),
        "database": database,
        "pool": database.get("pool"),
        "disk_free": disk.get("free") if disk else None,
        "queue": part(queue_figures),
        "cache": part(lambda: {"total": panel("cache")["total"]}),
    }


def recommendations_panel(range_=DEFAULT_RANGE):
    return {"rules": recommendations.evaluate(figures(), current_app.extensions["counters"])}


def verdict():
    """The one verdict Health and Recommendations both show: red when a check is bad, amber when a check
    warns or a rule fires, else green; with what makes it so."""
    checks = panel("health")["checks"]
    firing = [r for r in panel("recommendations")["rules"] if r["state"] == "firing"]
    bad = [c for c in checks if c["state"] == "bad"]
    warn = [c for c in checks if c["state"] == "warn"]
    colour = "red" if bad else "amber" if warn or firing else "green"
    return {"colour": colour, "bad": bad, "warn": warn, "firing": firing}


PANELS = {  # page order, titles in the reader's language; ranged panels offer the last hour, 24 hours or 7 days
    "health": (lazy_gettext("Health"), health_panel, False),
    "traffic": (lazy_gettext("Traffic"), traffic_panel, True),
    "hosts": (lazy_gettext("Hosts"), hosts_panel, False),
    "exceptions": (lazy_gettext("Exceptions"), exceptions_panel, True),
    "database": (lazy_gettext("Database"), database_panel, True),
    "cache": (lazy_gettext("Cache"), cache_panel, True),
    "queue": (lazy_gettext("Queue"), queue_panel, True),
    "running": (lazy_gettext("Running now"), running_panel, False),
    "waits": (lazy_gettext("Wait per priority"), waits_panel, True),
    "usage": (lazy_gettext("Usage"), usage_panel, True),
    "limits": (lazy_gettext("Rate limits"), limits_panel, True),
    "recommendations": (lazy_gettext("Recommendations"), recommendations_panel, False),
}


def panels():
    """(name, title) of every panel in page order."""
    return [(name, title) for name, (title, _build, _ranged) in PANELS.items()]


def ranged(name):
    """Whether the panel offers a time range."""
    return PANELS[name][2]


def forget(name):
    """Drop a panel's remembered data (every range) after an action changed it."""
    with _memo_lock:
        memo = current_app.extensions.setdefault("monitor_memo", {})
        for key in [k for k in memo if k.split(":")[0] == name]:
            memo.pop(key)


def panel(name, range_=DEFAULT_RANGE):
    """The panel's data over a time range, remembered for a few seconds; KeyError for an unknown panel."""
    title, build, _ranged = PANELS[name]
    range_ = range_ if range_ in RANGES else DEFAULT_RANGE
    return _remember(f"{name}:{range_}", lambda: build(range_))


# --- /metrics ----------------------------------------------------------------------------------
