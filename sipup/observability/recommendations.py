"""Recommendations: the seed's daily checks and troubleshooting list as rules over measured figures.

Each rule measures one figure from the monitor's data (a value and the number of samples behind it),
fires past a threshold, and names the exact setting or command to change. A rule with too few samples
waits instead of firing, and one whose part is not built or not configured says so. Since when a
rule has fired is kept in the shared counters store, so every process reports the same duration.
A row's title, value and advice are English; their kept forms (`kept`) are shown on /monitor and in the alert
mails in the reader's language (`|shown_field`).
"""

import math
from dataclasses import dataclass
from typing import Callable

from sipup.i18n import N_, Figure, english, kept

HIT_RATE_MIN = 0.60
PENDING_JOBS_MAX = 50
SLOW_STATEMENTS_MAX = 10  # slow executions in the last hour
ERROR_RATE_MAX = 0.01
P95_MAX_MS = 500
POOL_SHARE_MAX = 0.8
DISK_FREE_MIN = 0.10
CRON_MARGIN = 1.5  # cron's --limit this many times the jobs arriving a minute


@dataclass(frozen=True)
class Rule:
    key: str
    title: str
    measure: Callable  # figures -> (value, samples) or None when the figure is not available
    fires: Callable  # value -> bool
    min_samples: int
    show: Callable  # value -> kept message (the text shown, translated for each reader)
    advice: str


def _get(figures, *path):
    value = figures
    for part in path:
        if not isinstance(value, dict) or value.get(part) is None:
            return None
        value = value[part]
    return value


def _hit_rate(figures):
    cache = _get(figures, "cache", "total")
    if cache is None:
        return None
    lookups = cache.get("hits", 0) + cache.get("misses", 0)
    return (cache["hits"] / lookups if lookups else None), lookups


def _pending_jobs(figures):
    pending = _get(figures, "queue", "pending")
    return None if pending is None else (pending, 1)


def _failed_jobs(figures):
    failed = _get(figures, "queue", "failed_24h")
    return None if failed is None else (failed, 1)


def _cron_capacity(figures):
    queue = _get(figures, "queue")
    if queue is None or queue.get("arrivals_per_minute") is None or queue.get("capacity_per_minute") is None:
        return None
    return (queue["arrivals_per_minute"], queue["capacity_per_minute"]), queue.get("arrival_samples", 0)


def cron_limit_needed(arrivals_per_minute):
    """The `--limit` of a once-a-minute `flask queue process` that keeps up with these arrivals, with a margin."""
    return max(10, math.ceil(arrivals_per_minute * CRON_MARGIN))


def _slow_statements(figures):
    statements = _get(figures, "database", "statements")
    if statements is None:
        return None
    return sum(row["slow"] for row in statements), sum(row["count"] for row in statements)


def _pool(figures):
    pool = _get(figures, "pool")
    if not pool or not pool.get("max"):
        return None
    waits = _get(figures, "database", "pool_shared", "pool_waits") or 0
    return (pool["checkedout"] / pool["max"], waits), 1


def _connections(figures):
    # Every pool counts against its own server: the primary's, and each read replica's.
    replicas = _get(figures, "database", "replicas") or {}
    budgets = [_get(figures, "database", "connections")]
    budgets += [row.get("connections") for row in replicas.get("replicas", ())]
    budgets = [budget for budget in budgets if budget]
    if not budgets:
        return None
    budget = max(budgets, key=lambda b: b["needed"] / max(b["max_connections"], 1))
    figures = ("needed", "max_connections", "processes", "per_process", "registered")
    return tuple(budget.get(name, 0) for name in figures), 1


def _error_rate(figures):
    total = _get(figures, "traffic", "total")
    if total is None:
        return None
    return total["error_rate"], total["requests"]


def _p95(figures):
    total = _get(figures, "traffic", "total")
    if total is None:
        return None
    return total["p95_ms"], total["requests"]


def _disk(figures):
    free = _get(figures, "disk_free")
    return None if free is None else (free, 1)


RULES = (
    Rule(
        "cache_hit_rate",
        N_("Cache hit rate under 60%"),
        _hit_rate,
        lambda v: v is not None and v < HIT_RATE_MIN,
        200,
        lambda v: (
            kept(N_("no lookups")) if v is None else kept(N_("%(share)s of lookups hit"), share=Figure(v, share=True))
        ),
        N_(
            "Check `flask cache stats` for the type that misses; make sure SIPUP_CACHE_URL (or SIPUP_REDIS_URL) "
            "points at a shared cache that answers, and raise that type's TTL if entries expire before reuse."
        ),
    ),
    Rule(
        "pending_jobs",
        N_("50 or more jobs waiting"),
        _pending_jobs,
        lambda v: v >= PENDING_JOBS_MAX,
        1,
        lambda v: kept(N_("%(n)s pending"), n=Figure(v)),
        N_(
            "Run `flask queue process --limit 50` every minute from cron, or start `flask queue worker` "
            "on the host (see cron/ and docs/cron.md)."
        ),
    ),
    Rule(
        "failed_jobs",
        N_("Failed jobs in the last 24 hours"),
        _failed_jobs,
        lambda v: v > 0,
        1,
        lambda v: kept(N_("%(n)s failed"), n=Figure(v)),
        N_(
            "Read the error in the Queue panel, fix the cause (mail settings, bad CSV lines), then "
            "`flask queue retry --failed` or the Retry button."
        ),
    ),
    Rule(
        "cron_capacity",
        N_("Cron processes fewer jobs than arrive"),
        _cron_capacity,
        lambda v: v[0] > v[1],
        30,
        lambda v: kept(
            N_(
                "%(arrive)s jobs/min arrive, %(processed)s/min processed at most; "
                "`--limit %(limit)s` every minute would keep up"
            ),
            arrive=Figure(v[0], 1),
            processed=Figure(v[1], 1),
            limit=cron_limit_needed(v[0]),
        ),
        N_(
            "Run `flask queue process` every minute with the `--limit` named here (cron runs it at most once a "
            "minute); above about 100 jobs a minute start `flask queue worker` instead (cron/sipup-worker.service)."
        ),
    ),
    Rule(
        "slow_statements",
        N_("Slow database statements"),
        _slow_statements,
        lambda v: v >= SLOW_STATEMENTS_MAX,
        100,
        lambda v: kept(N_("%(n)s slow executions in the last hour"), n=Figure(v)),
        N_(
            "Run `flask db optimize --report optimize.txt` (indexes, statistics) and read `flask db stats`; "
            "SIPUP_SLOW_QUERY_MS sets what counts as slow."
        ),
    ),
    Rule(
        "pool",
        N_("Connection pool near exhaustion"),
        _pool,
        lambda v: v[0] >= POOL_SHARE_MAX or v[1] > 0,
        1,
        lambda v: kept(N_("%(share)s in use, %(waits)s waits"), share=Figure(v[0], share=True), waits=Figure(v[1])),
        N_(
            "Raise SIPUP_DB_POOL_SIZE / SIPUP_DB_MAX_OVERFLOW (and the server's max_connections), or fewer "
            "SIPUP_THREADS per process."
        ),
    ),
    Rule(
        "connections",
        N_("Pools may ask for more connections than MariaDB allows"),
        _connections,
        lambda v: v[0] > v[1],
        1,
        lambda v: (
            kept(
                N_(
                    "%(processes)s process(es) holding pools may open %(needed)s connections for "
                    "max_connections %(max)s"
                ),
                processes=v[2],
                needed=v[0],
                max=v[1],
            )
            if v[4]
            else kept(
                N_("%(processes)s process(es) x %(each)s = %(needed)s for max_connections %(max)s"),
                processes=v[2],
                each=v[3],
                needed=v[0],
                max=v[1],
            )
        ),
        N_(
            "Each `flask serve` may open two connections per thread (SIPUP_THREADS), a worker two per "
            "SIPUP_QUEUE_WORKERS thread, none more than SIPUP_DB_POOL_SIZE + SIPUP_DB_MAX_OVERFLOW: use fewer "
            "threads or processes, or raise max_connections (`[mysqld] max_connections = 500` in the MariaDB "
            "configuration). Unused connections are freed, but a burst asks for all of them at once."
        ),
    ),
    Rule(
        "error_rate",
        N_("Server errors above 1%"),
        _error_rate,
        lambda v: v > ERROR_RATE_MAX,
        100,
        lambda v: kept(N_("%(share)s of requests"), share=Figure(v, 1, share=True)),
        N_("Read instance/logs/sipup.log for the tracebacks; the Traffic panel shows which page fails."),
    ),
    Rule(
        "latency",
        N_("p95 response time above 500 ms"),
        _p95,
        lambda v: v is not None and v > P95_MAX_MS,
        100,
        lambda v: kept(N_("no requests")) if v is None else kept(N_("p95 ≤ %(ms)s ms"), ms=Figure(v)),
        N_(
            "See the Database panel for slow statements, check the cache hit rate, and add waitress "
            "processes behind the load balancer (see docs/cluster.md)."
        ),
    ),
    Rule(
        "disk",
        N_("Disk almost full"),
        _disk,
        lambda v: v < DISK_FREE_MIN,
        1,
        lambda v: kept(N_("%(share)s free"), share=Figure(v, share=True)),
        N_(
            "Free space on the disk holding instance/: old backups in instance/backups/, logs in instance/logs/; "
            "lower the number of backups kept."
        ),
    ),
)


def evaluate(figures, counters, rules=RULES):
    """Each rule's state: firing, clear, waiting (too few samples) or unavailable; with value and since."""
    results = []
    for rule in rules:
        measured = rule.measure(figures)
        row = {"key": rule.key, "title": rule.title, "advice": rule.advice, "since": None, "value": None}
        row["kept"] = {"title": kept(rule.title), "advice": kept(rule.advice), "value": None}
        if measured is None:
            row["state"] = "unavailable"
        else:
            value, samples = measured
            shown = rule.show(value)
            if samples < rule.min_samples:
                row["state"] = "waiting"
                shown = kept(
                    N_("%(value)s (%(samples)s of %(needed)s samples needed)"),
                    value=shown,
                    samples=Figure(samples),
                    needed=Figure(rule.min_samples),
                )
            else:
                row["state"] = "firing" if rule.fires(value) else "clear"
            row["value"], row["kept"]["value"] = english(shown), shown
        # Any state but firing ends a run of firing: the next one starts its clock anew.
        since = counters.mark(f"rule:{rule.key}", row["state"] == "firing")
        row["since"] = since if row["state"] == "firing" else None
        results.append(row)
    order = {"firing": 0, "waiting": 1, "clear": 2, "unavailable": 3}
    results.sort(key=lambda r: order[r["state"]])
    return results
