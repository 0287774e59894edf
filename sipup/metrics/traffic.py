"""Request statistics: requests, errors and a latency histogram per endpoint, in the shared counters.

Every request but static files adds to counters of the group "traffic" (see sipup/metrics/counters.py), so all
processes and hosts add up to one set of figures for `/monitor` and `/metrics`. Names per endpoint:
`<endpoint>|n` requests, `|e` server errors (5xx), `|c` client errors (4xx), `|l` rate-limited (429),
`|t` total milliseconds, `|h<i>` the latency histogram (bounds in BOUNDS_MS). The running totals also
keep `|<METHOD> <status>` and `|u` (microseconds) per endpoint, for /metrics. The group "hosts" counts the
same per host (SIPUP_HOST_NAME), for the hosts panel: `hosts()` reads it. The group "usage" counts a
signed-in request under its company and user, ids only (`c<company id>|n` requests, `|t` milliseconds;
`u<user id>|...` the same), for the usage panel: `usage()` reads it. The sign-in sets `g.usage_ids`
(company id or None, user id) when it loads the user; requests of nobody signed in count nowhere there.
"""

import time
from collections import defaultdict

from flask import g, request, request_started

from sipup.config import HTTP_METHODS
from sipup.metrics.counters import percentile

BOUNDS_MS = (5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000)
GROUP = "traffic"
# The same per host: `<host>|n`, `|e`, `|t`, `|h<i>`; the counters add `|f` (flushes: the host is alive) and
# the maxima `|cpu`, `|mem`.
HOSTS = "hosts"
USAGE = "usage"
SKIPPED = {"static"}


def _bin(ms):
    for index, bound in enumerate(BOUNDS_MS):
        if ms <= bound:
            return index
    return len(BOUNDS_MS)


def register_traffic(app):
    if not app.config["REQUEST_STATS"]:
        return
    counters = app.extensions["counters"]
    host = app.config["HOST_NAME"]

    # The signal comes before every before_request hook, the rate limiter's included, so refused requests
    # are timed too.
    def _start(sender, **extra):
        g.traffic_started = time.perf_counter()

    request_started.connect(_start, app, weak=False)

    @app.after_request
    def _record(response):
        started = g.pop("traffic_started", None)
        endpoint = request.endpoint or "(no route)"
        if started is None or endpoint in SKIPPED:
            return response
        ms = (time.perf_counter() - started) * 1000
        status = response.status_code
        amounts = {f"{endpoint}|n": 1, f"{endpoint}|t": round(ms), f"{endpoint}|h{_bin(ms)}": 1}
        on_host = {f"{host}|n": 1, f"{host}|t": round(ms), f"{host}|h{_bin(ms)}": 1}
        if status >= 500:
            amounts[f"{endpoint}|e"] = on_host[f"{host}|e"] = 1
        elif status == 429:
            amounts[f"{endpoint}|l"] = 1
        elif status >= 400:
            amounts[f"{endpoint}|c"] = 1
        method = request.method if request.method in HTTP_METHODS else "other"  # any word a client sends
        totals = {f"{endpoint}|{method} {status}": 1, f"{endpoint}|u": round(ms * 1000)}
        counters.incr_many(GROUP, amounts, totals_only=totals)
        counters.incr_many(HOSTS, on_host)
        ids = g.get("usage_ids")
        if ids is not None:
            company_id, user_id = ids
            usage = {f"u{user_id}|n": 1, f"u{user_id}|t": round(ms)}
            if company_id is not None:
                usage.update({f"c{company_id}|n": 1, f"c{company_id}|t": round(ms)})
            counters.incr_many(USAGE, usage)
        return response


def summarise(values):
    """Per endpoint and in total from summed counters: requests, errors, avg and p50/p95/p99 (ms)."""
    rows = defaultdict(lambda: {"n": 0, "e": 0, "c": 0, "l": 0, "t": 0, "hist": [0] * (len(BOUNDS_MS) + 1)})
    for name, value in values.items():
        endpoint, _, field = name.rpartition("|")
        row = rows[endpoint]
        if field.startswith("h"):
            row["hist"][int(field[1:])] += value
        elif field in row:
            row[field] += value
    total = {"n": 0, "e": 0, "c": 0, "l": 0, "t": 0, "hist": [0] * (len(BOUNDS_MS) + 1)}
    for row in rows.values():
        for field in ("n", "e", "c", "l", "t"):
            total[field] += row[field]
        total["hist"] = [a + b for a, b in zip(total["hist"], row["hist"])]
    return [_row(endpoint, row) for endpoint, row in rows.items()], _row("all", total)


def _row(endpoint, row):
    n = row["n"]
    return {
        "endpoint": endpoint,
        "requests": n,
        "server_errors": row["e"],
        "client_errors": row["c"],
        "limited": row["l"],
        "error_rate": row["e"] / n if n else 0.0,
        "avg_ms": row["t"] / n if n else None,
        "p50_ms": percentile(row["hist"], 0.50, BOUNDS_MS),
        "p95_ms": percentile(row["hist"], 0.95, BOUNDS_MS),
        "p99_ms": percentile(row["hist"], 0.99, BOUNDS_MS),
        "hist": row["hist"],
    }


def traffic(counters, buckets=60, res="minute"):
    """The last `buckets` minutes (or hours): per endpoint (busiest first), the total, and per bucket the
    requests, errors and p50/p95/p99 in ms (None where there was no request)."""
    series = counters.series(GROUP, res, buckets)
    summed = defaultdict(int)
    per_bucket = []
    for start, values in series:
        requests = errors = 0
        hist = [0] * (len(BOUNDS_MS) + 1)
        for name, value in values.items():
            summed[name] += value
            if name.endswith("|n"):
                requests += value
            elif name.endswith("|e"):
                errors += value
            elif name.rpartition("|")[2].startswith("h"):
                hist[int(name.rpartition("|")[2][1:])] += value
        row = {"start": start, "requests": requests, "errors": errors}
        for q in (50, 95, 99):
            value = percentile(hist, q / 100, BOUNDS_MS)
            # Past the last bound the time is only known to be longer: drawn at the bound, said in words.
            row[f"p{q}_ms"] = None if value is None else min(value, float(BOUNDS_MS[-1]))
        per_bucket.append(row)
    endpoints, total = summarise(summed)
    endpoints.sort(key=lambda row: row["requests"], reverse=True)
    return {"endpoints": endpoints, "total": total, "buckets": per_bucket}


def hosts(counters, minutes=5):
    """Each host that served requests or wrote figures in the last `minutes`, busiest first: requests a
    minute, server errors, p95 (ms), the largest CPU and memory use (%) and the minute it was last seen (its
    start, and how many minutes before this one)."""
    series = counters.series(HOSTS, "minute", minutes)
    summed, last_seen = defaultdict(int), {}
    for start, values in series:
        for name, value in values.items():
            summed[name] += value
            last_seen[name.rpartition("|")[0]] = start
    loads = counters.maxima(HOSTS, "minute", minutes)
    rows = {row["endpoint"]: row for row in summarise(summed)[0]}
    found = []
    for host in last_seen:
        row = rows[host]
        found.append(
            {
                "host": host,
                "per_minute": row["requests"] / minutes,
                "requests": row["requests"],
                "server_errors": row["server_errors"],
                "p95_ms": row["p95_ms"],
                "cpu": loads.get(f"{host}|cpu"),
                "memory": loads.get(f"{host}|mem"),
                "last_seen": last_seen[host],
                "minutes_ago": (series[-1][0] - last_seen[host]) // 60,
            }
        )
    return sorted(found, key=lambda row: (-row["requests"], row["host"]))


def usage(counters, buckets=60, res="minute", top=10):
    """Who loads the site over the last `buckets` minutes (or hours): {"companies": ..., "users": ...}, each
    {"requests": [...], "time": [...]}, the `top` ids by requests and by server time, each row {"id",
    "requests", "ms", "avg_ms"}; "total" per kind: {"ids", "requests", "ms"}."""
    rows = {"c": {}, "u": {}}
    for name, value in counters.totals(USAGE, res, buckets).items():
        who, _, field = name.rpartition("|")
        if who[:1] in rows and who[1:].isdigit() and field in ("n", "t"):
            row = rows[who[:1]].setdefault(int(who[1:]), {"id": int(who[1:]), "requests": 0, "ms": 0})
            row["requests" if field == "n" else "ms"] += value
    found = {}
    for kind, name in (("c", "companies"), ("u", "users")):
        every = list(rows[kind].values())
        for row in every:
            row["avg_ms"] = row["ms"] / row["requests"] if row["requests"] else None
        found[name] = {
            "requests": sorted(every, key=lambda r: (-r["requests"], -r["ms"], r["id"]))[:top],
            "time": sorted(every, key=lambda r: (-r["ms"], -r["requests"], r["id"]))[:top],
            "total": {
                "ids": len(every),
                "requests": sum(r["requests"] for r in every),
                "ms": sum(r["ms"] for r in every),
            },
        }
    return found
