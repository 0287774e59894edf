"""The data behind `/monitor`: one function per panel, each reading the shared, pre-aggregated figures.

Panels are cheap because every figure is already summed in buckets (sipup/metrics.py counters and the
query statistics); on top of that a panel's data is kept for SIPUP_MONITOR_PANEL_SECONDS (10) in this
process, so many admins polling every 30 seconds cost one computation per panel and process.
"""
import threading
import time

from flask import current_app

from . import health, recommendations
from .charts import line_chart
from .extensions import db
from .traffic import traffic

_memo_lock = threading.Lock()


def _remember(name, build):
    memo = current_app.extensions.setdefault("monitor_memo", {})
    now = time.monotonic()
    with _memo_lock:
        hit = memo.get(name)
        if hit and hit[0] > now:
            return hit[1]
    data = build()
    data["as_of"] = time.time()
    with _memo_lock:
        memo[name] = (now + current_app.config["MONITOR_PANEL_SECONDS"], data)
    return data


def health_panel():
    return health.run_checks()


def traffic_panel():
    figures = traffic(current_app.extensions["counters"], 60)
    minutes = figures["per_minute"]
    figures["chart"] = line_chart(
        [m["start"] for m in minutes],
        [("requests", "c-main", [m["requests"] for m in minutes]),
         ("server errors", "c-bad", [m["errors"] for m in minutes])],
    )
    figures["per_minute_now"] = minutes[-2]["requests"] if len(minutes) > 1 else 0  # the last full minute
    return figures


def database_panel():
    from .query_stats import pool_status

    summary = current_app.extensions["query_stats"].summary("hour")
    count = sum(kind["count"] for kind in summary["kinds"].values())
    total_ms = sum(kind["total_ms"] for kind in summary["kinds"].values())
    return {
        "summary": summary,
        "statements": summary["statements"],
        "queries_per_minute": count / 60,
        "avg_ms": total_ms / count if count else None,
        "top": summary["statements"][:8],
        "slow": [row for row in summary["statements"] if row["slow"]][:8],
        "slow_ms": current_app.config["SLOW_QUERY_MS"],
        "warn_queries": current_app.config["QUERY_WARN_PER_REQUEST"],
        "pool": pool_status(db.engine),
        "pool_shared": current_app.extensions["counters"].totals("db", "minute", 60),
    }


def queue_panel():
    from datetime import timedelta

    from sqlalchemy import func, select

    from .models import Job, JobStatus, utcnow
    from .queue import PRIORITIES, WAITING, queue_status

    status = queue_status()
    now = utcnow()
    day_ago = now - timedelta(days=1)
    finished = dict(db.session.execute(
        select(Job.status, func.count()).where(Job.finished_at >= day_ago).group_by(Job.status)).all())
    failed = db.session.scalars(
        select(Job).where(Job.status == JobStatus.FAILED).order_by(Job.finished_at.desc()).limit(10)).all()
    counters = current_app.extensions["counters"]
    series = counters.series("queue", "minute", 60)
    hour = counters.totals("queue", "minute", 60)
    pending = {name: sum(status["counts"][s][name] for s in WAITING) for name in PRIORITIES}
    processors = [dict(run, age_seconds=(now - (run["finished_at"] or run["started_at"])).total_seconds())
                  for run in status["runs"]]
    workers = [run for run in processors if run["processor"].startswith("worker") and run["age_seconds"] < 180]
    return {
        "status": status,
        "pending": pending,
        "pending_total": sum(pending.values()),
        "running": sum(status["counts"][JobStatus.RUNNING].values()),
        "done_24h": finished.get(JobStatus.DONE, 0),
        "failed_24h": finished.get(JobStatus.FAILED, 0),
        "failed": [{"id": j.id, "name": j.name, "error": j.error, "attempts": j.attempts,
                    "finished_at": j.finished_at} for j in failed],
        "processors": processors,
        "done_per_minute": hour.get("done", 0) / 60,
        "enqueued_hour": hour.get("enqueued", 0),
        # What cron can take at most: the --limit of each run in the last hour, per minute; a live worker has
        # no such ceiling, so the capacity rule does not apply while one runs.
        "capacity_per_minute": None if workers else hour.get("capacity", 0) / 60,
        "chart": line_chart([start for start, _ in series], [
            ("done", "c-main", [v.get("done", 0) for _, v in series]),
            ("enqueued", "c-alt", [v.get("enqueued", 0) for _, v in series]),
            ("failed", "c-bad", [v.get("failed", 0) for _, v in series]),
        ]),
    }


def queue_figures():
    data = panel("queue")
    return {"pending": data["pending_total"], "failed_24h": data["failed_24h"],
            "arrivals_per_minute": data["enqueued_hour"] / 60, "capacity_per_minute": data["capacity_per_minute"],
            "arrival_samples": data["enqueued_hour"]}


def cache_panel():
    from .cache import EVENTS, TYPES, cache_status

    counters = current_app.extensions["counters"]
    totals = counters.totals("cache", "minute", 60)
    series = counters.series("cache", "minute", 60)
    types = []
    for type_ in TYPES:
        row = {event: totals.get(f"{type_}.{event}", 0) for event in EVENTS}
        reads = row["hit"] + row["miss"]
        types.append(dict(row, type=type_, hit_rate=row["hit"] / reads if reads else None))
    hits, misses = sum(t["hit"] for t in types), sum(t["miss"] for t in types)

    def rate(values):
        got = sum(v for k, v in values.items() if k.endswith(".hit"))
        reads = got + sum(v for k, v in values.items() if k.endswith(".miss"))
        return got / reads if reads else None

    return {
        "status": cache_status(),
        "types": types,
        "total": {"hits": hits, "misses": misses, "hit_rate": hits / (hits + misses) if hits + misses else None,
                  # "all" counts what belongs to no one type, such as a failed generation write.
                  "errors": sum(t["error"] for t in types) + totals.get("all.error", 0),
                  "fallbacks": sum(t["fallback"] for t in types) + totals.get("all.fallback", 0)},
        "chart": line_chart([start for start, _ in series],
                            [("hit rate", "c-main", [rate(values) for _, values in series])], percent=True),
    }


def limits_panel():
    from . import limits

    if "limits" not in current_app.extensions:
        return {"enabled": False}
    status = limits.status()
    series = status["refused_per_minute"]
    status["chart"] = line_chart([start for start, _ in series], [("429s", "c-bad", [n for _, n in series])])
    status["per_minute_now"] = series[-2][1] if len(series) > 1 else 0
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


def recommendations_panel():
    return {"rules": recommendations.evaluate(figures(), current_app.extensions["counters"])}


PANELS = {  # page order
    "health": ("Health", health_panel),
    "traffic": ("Traffic", traffic_panel),
    "database": ("Database", database_panel),
    "cache": ("Cache", cache_panel),
    "queue": ("Queue", queue_panel),
    "limits": ("Rate limits", limits_panel),
    "recommendations": ("Recommendations", recommendations_panel),
}


def panels():
    """(name, title) of every panel in page order."""
    return [(name, title) for name, (title, _build) in PANELS.items()]


def forget(name):
    """Drop a panel's remembered data after an action changed it."""
    with _memo_lock:
        current_app.extensions.setdefault("monitor_memo", {}).pop(name, None)


def panel(name):
    """The panel's data, remembered for a few seconds; KeyError for an unknown panel."""
    title, build = PANELS[name]
    return _remember(name, build)


# --- /metrics ----------------------------------------------------------------------------------

def _families():
    """(name, help, [(labels, value)]) for every figure /metrics exports; windows are in the names."""
    checks = panel("health")
    traffic_data = panel("traffic")
    database = panel("database")
    rules = panel("recommendations")["rules"]
    state = health.ORDER
    endpoints = traffic_data["endpoints"] + [traffic_data["total"]]
    families = [
        ("sipup_health_verdict", "Overall health: 0 green, 1 amber, 2 red.",
         [({}, {"green": 0, "amber": 1, "red": 2}[checks["verdict"]])]),
        ("sipup_health_check", "Each health check: 0 ok or off, 1 warn, 2 bad.",
         [({"check": c["name"]}, state[c["state"]]) for c in checks["checks"]]),
        ("sipup_requests_last_hour", "Requests in the last hour, all processes.",
         [({"endpoint": e["endpoint"]}, e["requests"]) for e in endpoints]),
        ("sipup_server_errors_last_hour", "Responses 500 and above in the last hour.",
         [({"endpoint": e["endpoint"]}, e["server_errors"]) for e in endpoints]),
        ("sipup_request_p95_seconds_last_hour", "Upper bound of the p95 response time bin, last hour.",
         [({"endpoint": e["endpoint"]}, e["p95_ms"] / 1000) for e in endpoints if e["p95_ms"] is not None]),
        ("sipup_db_statements_last_hour", "Database statements in the last hour by kind.",
         [({"kind": kind}, row["count"]) for kind, row in sorted(database["summary"]["kinds"].items())]),
        ("sipup_db_slow_statements_last_hour", "Statements slower than SIPUP_SLOW_QUERY_MS in the last hour.",
         [({}, sum(row["slow"] for row in database["statements"]))]),
        ("sipup_db_pool_checked_out", "Connections in use in this process's pool.",
         [({}, database["pool"].get("checkedout", 0))]),
        ("sipup_recommendations_firing", "Recommendations that currently fire.",
         [({}, sum(r["state"] == "firing" for r in rules))]),
    ]
    return families


def _label(value):
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def prometheus_text():
    lines = []
    for name, help_text, samples in _families():
        lines += [f"# HELP {name} {help_text}", f"# TYPE {name} gauge"]
        for labels, value in samples:
            tags = ",".join(f'{key}="{_label(val)}"' for key, val in labels.items())
            number = "+Inf" if value == float("inf") else f"{float(value):g}"
            lines.append(f"{name}{{{tags}}} {number}" if tags else f"{name} {number}")
    return "\n".join(lines) + "\n"
