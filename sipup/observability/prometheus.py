"""`/metrics`: sipup's figures in the Prometheus text format, built with prometheus-client.

Counters (`_total`) and histograms are this host's own, the Prometheus way: the running totals of the
shared counters (sipup/metrics/counters.py) that every process of this host (servers, worker, cron
runs; SIPUP_HOST_NAME) adds to, so they are true monotonically increasing counters of the host whichever of
its processes answers the scrape. Scrape every host; `sum(rate(...))` over them is the site's rate, and
`by (instance)` shows each host (docs/metrics.md). `sipup_host_info` says which host a target is.

Gauges are levels read when scraped. Most are the site's, the same on every host (the queue by priority
and state, the blocks in force, each health check, the recommendations firing, requests of the last
hour): take `max` of them, not `sum`. The connection pool is this process's (label `process`).
"""

from collections import defaultdict

from flask import current_app
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

from sipup.cache.layer import EVENTS
from sipup.extensions import db
from sipup.jobs.manage import queue_status
from sipup.jobs.stats import RUN_BOUNDS_S
from sipup.limits import limiter as limits
from sipup.metrics.counters import PROCESS
from sipup.metrics.pool import pool_status
from sipup.metrics.query_stats import BOUNDS_MS as STATEMENT_BOUNDS_MS
from sipup.metrics.traffic import BOUNDS_MS as REQUEST_BOUNDS_MS
from sipup.observability import health
from sipup.observability.panels import panel

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"  # the text format prometheus-client writes


def _split(totals):
    """{"<key>|<field>": value} -> {key: {field: value}}."""
    rows = defaultdict(dict)
    for name, value in totals.items():
        key, _, field = name.rpartition("|")
        rows[key][field] = value
    return rows


def _counter(name, documentation, labels, rows, separator):
    """A counter family from per-key fields "<label 2><separator><label 3>" (other fields are not its)."""
    family = CounterMetricFamily(name, documentation, labels=labels)
    for key, fields in sorted(rows.items()):
        for field, value in sorted(fields.items()):
            second, found, third = field.partition(separator)
            if found:
                family.add_metric([key, second, third], value)
    return family


def _histogram(name, documentation, label, rows, bounds, unit_per_second, sum_field, sum_per_second):
    """A histogram family from per-key bins `h<i>` (not cumulative, bounds in units), `n` (the count) and
    `sum_field` (the sum, in 1/sum_per_second seconds)."""
    family = HistogramMetricFamily(name, documentation, labels=[label])
    for key, fields in sorted(rows.items()):
        if "n" not in fields:
            continue
        buckets, seen = [], 0
        for index, bound in enumerate(bounds):
            seen += fields.get(f"h{index}", 0)
            buckets.append((repr(bound / unit_per_second), seen))
        buckets.append(("+Inf", fields["n"]))
        family.add_metric([key], buckets, sum_value=fields.get(sum_field, 0) / sum_per_second)
    return family


class SipupCollector:
    """Yields every family from the shared store and the levels of the app it runs in (a request of it)."""

    def collect(self):
        counters = current_app.extensions["counters"]
        yield from self._requests(_split(counters.running_totals("traffic")))
        yield from self._cache(counters.running_totals("cache"))
        yield from self._jobs(_split(counters.running_totals("jobs")), counters.running_totals("queue"))
        yield from self._limits(counters.running_totals("limits"))
        yield from self._statements(_split(counters.running_totals("sql")), counters.running_totals("db"))
        yield from self._levels()

    def _requests(self, rows):
        yield _counter(
            "sipup_http_requests", "Requests answered by this host.", ["endpoint", "method", "status"], rows, " "
        )
        yield _histogram(
            "sipup_http_request_duration_seconds",
            "Time from the request's start to its response, this host.",
            "endpoint",
            rows,
            REQUEST_BOUNDS_MS,
            1000,
            "u",
            1_000_000,
        )

    def _cache(self, totals):
        events = CounterMetricFamily(
            "sipup_cache_events",
            f"Cache reads and writes by type and event ({', '.join(EVENTS)}), this host.",
            labels=["type", "event"],
        )
        for name, value in sorted(totals.items()):
            type_, _, event = name.partition(".")
            events.add_metric([type_, event], value)
        yield events

    def _jobs(self, rows, queue_totals):
        yield _counter(
            "sipup_jobs", "Job runs by outcome (done, failed, retried).", ["job", "priority", "outcome"], rows, ":"
        )
        yield _histogram("sipup_job_duration_seconds", "Run time of jobs.", "job", rows, RUN_BOUNDS_S, 1, "t", 1000)
        events = CounterMetricFamily(
            "sipup_queue_events", "Queue events (enqueued, deferred, run, done, failed, ...).", labels=["event"]
        )
        for event, value in sorted(queue_totals.items()):
            events.add_metric([event], value)
        yield events

    def _limits(self, totals):
        refused = CounterMetricFamily("sipup_rate_limited", "Requests refused with 429 by this host.")
        refused.add_metric([], totals.get("refused", 0))
        yield refused
        by_blocks = CounterMetricFamily("sipup_rate_limited_by_blocks", "Requests refused because of a block.")
        by_blocks.add_metric([], totals.get("refused.blocked", 0))
        yield by_blocks
        blocks = CounterMetricFamily("sipup_rate_limit_blocks", "Blocks started.")
        blocks.add_metric([], totals.get("blocks", 0))
        yield blocks

    def _statements(self, rows, db_totals):
        slow = CounterMetricFamily(
            "sipup_db_slow_statements", "Statements slower than SIPUP_SLOW_QUERY_MS, by kind.", labels=["kind"]
        )
        for kind, fields in sorted(rows.items()):
            slow.add_metric([kind], fields.get("s", 0))
        yield slow
        yield _histogram(
            "sipup_db_statement_duration_seconds",
            "Statement time by kind.",
            "kind",
            rows,
            STATEMENT_BOUNDS_MS,
            1000,
            "u",
            1_000_000,
        )
        for name, documentation in (
            ("pool_waits", "Checkouts that found every pooled connection busy and waited."),
            ("pool_timeouts", "Checkouts that gave up after the pool timeout."),
        ):
            family = CounterMetricFamily(f"sipup_db_{name}", documentation)
            family.add_metric([], db_totals.get(name, 0))
            yield family

    def _levels(self):
        host = GaugeMetricFamily("sipup_host_info", "The host whose counters this target exports.", labels=["host"])
        host.add_metric([current_app.config["HOST_NAME"]], 1)
        yield host
        queue = GaugeMetricFamily(
            "sipup_queue_jobs", "Jobs in the jobs table by state and priority.", labels=["state", "priority"]
        )
        for state, by_priority in sorted(queue_status()["counts"].items()):
            for priority, count in sorted(by_priority.items()):
                queue.add_metric([state, priority], count)
        yield queue
        pool = GaugeMetricFamily(
            "sipup_db_pool_connections", "This process's pooled connections by state.", labels=["process", "state"]
        )
        status = pool_status(db.engine)
        for state, key in (("in_use", "checkedout"), ("idle", "checkedin")):
            if status.get(key) is not None:
                pool.add_metric([PROCESS, state], status[key])
        yield pool
        if "limits" in current_app.extensions:
            blocks = GaugeMetricFamily("sipup_rate_limit_blocks_in_force", "Blocks in force now.")
            blocks.add_metric([], len(limits.blocks_in_force()))
            yield blocks
        yield from self._health()

    def _health(self):
        checks = panel("health")
        verdict = GaugeMetricFamily("sipup_health_verdict", "Overall health: 0 green, 1 amber, 2 red.")
        verdict.add_metric([], {"green": 0, "amber": 1, "red": 2}[checks["verdict"]])
        yield verdict
        parts = GaugeMetricFamily(
            "sipup_health_check", "Each health check: 0 ok or off, 1 warn, 2 bad.", labels=["check"]
        )
        for check in checks["checks"]:
            parts.add_metric([check["name"]], health.ORDER[check["state"]])
        yield parts
        traffic = panel("traffic")
        last_hour = GaugeMetricFamily(
            "sipup_requests_last_hour",
            "Requests in the last hour, all processes (as /monitor shows).",
            labels=["endpoint"],
        )
        for row in traffic["endpoints"] + [traffic["total"]]:
            last_hour.add_metric([row["endpoint"]], row["requests"])
        yield last_hour
        firing = GaugeMetricFamily("sipup_recommendations_firing", "Recommendations that currently fire.")
        firing.add_metric([], sum(rule["state"] == "firing" for rule in panel("recommendations")["rules"]))
        yield firing


_REGISTRY = CollectorRegistry(auto_describe=False)
_REGISTRY.register(SipupCollector())


def exposition():
    """The text /metrics answers with, for the current app (flushes this process's pending counts first)."""
    current_app.extensions["counters"].flush()
    return generate_latest(_REGISTRY)
