"""Turns a run into figures (one dict, the JSON report) and renders them: table, CSV and an HTML page.

The HTML report is one self-contained file: inline CSS and SVG charts, no script and nothing fetched,
so it can be mailed, archived or opened offline.
"""

import io
import json
import math
import os
import platform
import sys
from datetime import datetime, timezone
from decimal import Decimal

import jinja2
from markupsafe import Markup

from ..csvfiles import to_text
from . import charts
from .charts import ms
from .stats import PERCENTILES, RATE_LIMITED

GENERATOR_BUSY = 85.0  # percent of one core: Python runs the generator's threads on one core
PERCENTILE_KEYS = [f"p{p:g}" for p in PERCENTILES]


def _latency(histogram):
    figures = {key: histogram.percentile(p) / 1000 for key, p in zip(PERCENTILE_KEYS, PERCENTILES)}
    figures["max"] = histogram.max / 1000
    figures["min"] = (histogram.min or 0) / 1000
    figures["mean"] = histogram.mean() / 1000
    return figures


def _page_figures(name, stats, window):
    return {
        "name": name,
        "requests": stats.requests,
        "failures": stats.failed,
        "success_rate": (1 - stats.failed / stats.requests) if stats.requests else None,
        "rps": stats.requests / window,
        "latency_ms": _latency(stats.histogram),
        "failures_by_reason": dict(sorted(stats.failures.items(), key=lambda item: -item[1])),
        "histogram": stats.histogram.to_dict(),  # buckets merge exactly with other runs' (Histogram.from_dict)
    }


def describe_model(options):
    """The workload model in words, as printed at the top of every report."""
    if options.model == "open":
        return f"open model: {options.rate:g} arrivals/s served by {options.users} users"
    low, high = options.scenario_options.think or options.scenario.think_time
    think = "no think time" if high <= 0 else (f"think {low:g} s" if high <= low else f"think {low:g}-{high:g} s")
    ramp = f", ramp-up {options.ramp_up:g} s" if options.ramp_up else ""
    return f"closed model: {options.users} users, {think}{ramp}"


def figures(outcome, thresholds=()):
    """Everything the run measured, as plain data (the --json report)."""
    options, result, window = outcome.options, outcome.result, outcome.window
    total = result.total()
    pages = [_page_figures(name, stats, window) for name, stats in sorted(result.pages.items())]
    failures = sorted(
        (
            {"page": page["name"], "reason": reason, "count": n}
            for page in pages
            for reason, n in page["failures_by_reason"].items()
        ),
        key=lambda row: (-row["count"], row["page"]),
    )
    cpu_percent = 100 * outcome.cpu_seconds / window
    series = []
    cpu_by_second = dict(outcome.cpu_series)
    for second in range(0, math.ceil(window - 1e-6)):
        data = result.seconds.get(second)
        row = {
            "second": second,
            "span_s": round(min(1.0, window - second), 3),
            "requests": 0,
            "failures": 0,
            "p50_ms": None,
            "p95_ms": None,
            "p99_ms": None,
            "max_ms": None,
            "cpu_percent": cpu_by_second.get(second + 1),
        }
        if data is not None and data.requests:
            row.update(
                requests=data.requests,
                failures=data.failures,
                p50_ms=data.histogram.percentile(50) / 1000,
                p95_ms=data.histogram.percentile(95) / 1000,
                p99_ms=data.histogram.percentile(99) / 1000,
                max_ms=data.histogram.max / 1000,
            )
        series.append(row)
    report = {
        "tool": "sipup loadtest",
        "target": options.url,
        "scenario": options.scenario.name if options.scenario.name != "custom" else options.scenario.__name__,
        "model": _model_figures(outcome),
        "model_text": describe_model(options),
        "started_at": datetime.fromtimestamp(outcome.started_at, timezone.utc).isoformat(timespec="seconds"),
        "duration_s": options.duration,
        "warmup_s": options.warmup,
        "measured_s": round(window, 3),
        "warmup_requests": result.warmup_requests,
        "max_requests": options.max_requests,
        "stopped_by_budget": outcome.budget_spent,
        "interrupted": outcome.interrupted,
        "total": _page_figures("Total", total, window),
        "pages": pages,
        "failures": failures,
        "open": _open_figures(outcome) if options.model == "open" else None,
        "generator": {
            "cpu_percent": round(cpu_percent, 1),
            "cpu_count": os.cpu_count(),
            "connections": outcome.connections,
            "limited": cpu_percent >= GENERATOR_BUSY,
            "python": platform.python_version(),
            "platform": sys.platform,
        },
        "series": series,
        "errors": outcome.setup_errors,
    }
    report["warnings"] = _warnings(report)
    checked = []
    for threshold in thresholds:
        value, ok = threshold.check(report)
        checked.append(
            {"threshold": threshold.expression, "value": value, "measured": threshold.describe(value), "passed": ok}
        )
    report["thresholds"] = checked
    report["passed"] = all(row["passed"] for row in checked)
    return report


def _model_figures(outcome):
    options = outcome.options
    if options.model == "open":
        return {
            "kind": "open",
            "rate": options.rate,
            "users": options.users,
            "late_after_ms": options.late_after * 1000,
            "drop_after_s": options.drop_after,
        }
    low, high = options.scenario_options.think or options.scenario.think_time
    return {"kind": "closed", "users": options.users, "think_s": [low, high], "ramp_up_s": options.ramp_up}


def _open_figures(outcome):
    result, options = outcome.result, outcome.options
    expected = max(outcome.expected_arrivals, result.scheduled)
    not_started = expected - result.scheduled
    dropped = result.dropped + not_started
    started = expected - dropped
    achieved = started / outcome.window
    return {
        "target_rate": options.rate,
        "scheduled": expected,
        "started": started,
        "achieved_rate": achieved,
        "late": result.late,
        "dropped": dropped,
        "reached": dropped == 0 and achieved >= 0.95 * options.rate,
    }


def _warnings(report):
    warnings = []
    generator = report["generator"]
    if generator["limited"]:
        warnings.append(
            f"The load generator itself used {generator['cpu_percent']:.0f}% of a CPU core (Python runs its threads on "
            "one core), so it, not the server, may be what limits these figures. Use fewer users or a lower rate, "
            "or run more generators on other cores or machines."
        )
    open_model = report["open"]
    if open_model and not open_model["reached"]:
        warnings.append(
            f"Target rate not reached: {open_model['target_rate']:g}/s asked, {open_model['achieved_rate']:.1f}/s "
            "started "
            f"({open_model['dropped']:,} dropped, {open_model['late']:,} late). "
            + (
                "The generator was busy (see its CPU)."
                if generator["limited"]
                else f"All {report['model']['users']} users were busy: the server did not keep up, or it has room "
                "for more --users."
            )
        )
    limited = sum(row["count"] for row in report["failures"] if row["reason"] == RATE_LIMITED)
    if limited:
        warnings.append(
            f"{limited:,} answers were 429 (rate limited): the server's per-IP limit stopped part of this test. To "
            "measure "
            "capacity, start the server with SIPUP_RATELIMIT_IP raised (e.g. SIPUP_RATELIMIT_IP='1000000 per minute')."
        )
    if not report["total"]["requests"]:
        warnings.append("No request was measured (was the run shorter than its warm-up?).")
    for error in report["errors"]:
        warnings.append(f"Scenario error: {error}")
    if report["stopped_by_budget"]:
        warnings.append(f"Stopped early: the request budget (--max-requests {report['max_requests']:,}) was spent.")
    if report["interrupted"]:
        warnings.append("Interrupted: these figures cover the run until Ctrl+C.")
    return warnings


# --- text --------------------------------------------------------------------------------------


def table(report):
    """The final table printed after a run."""
    out = io.StringIO()
    write = lambda line="": out.write(line + "\n")  # noqa: E731
    write(f"sipup loadtest: {report['scenario']} against {report['target']} ({report['model_text']})")
    write(
        f"Measured {report['measured_s']:.1f} s after a {report['warmup_s']:g} s warm-up "
        f"({report['warmup_requests']:,} warm-up requests left out). "
        f"Generator CPU: {report['generator']['cpu_percent']:.0f}% of one core."
    )
    write()
    rows = report["pages"] + [report["total"]]
    width = max(24, *(len(row["name"]) for row in rows))
    header = (
        f"{'page':<{width}} {'requests':>9} {'failed':>7} {'req/s':>8}"
        + "".join(f" {key:>7}" for key in [*PERCENTILE_KEYS, "max"])
        + f" {'success':>8}"
    )
    write(header)
    write("-" * len(header))
    for row in rows:
        if row is report["total"]:
            write("-" * len(header))
        success = "-" if row["success_rate"] is None else f"{row['success_rate'] * 100:.2f}%"
        write(
            f"{row['name']:<{width}} {row['requests']:>9,} {row['failures']:>7,} {row['rps']:>8.1f}"
            + "".join(f" {ms(row['latency_ms'][key]):>7}" for key in [*PERCENTILE_KEYS, "max"])
            + f" {success:>8}"
        )
    write(f"(latency in ms{', counted from the intended send time' if report['open'] else ''})")
    if report["failures"]:
        write("\nFailures:")
        for row in report["failures"]:
            write(f"  {row['count']:>8,}  {row['reason']:<32} {row['page']}")
    if report["open"]:
        o = report["open"]
        write(
            f"\nArrivals: {o['scheduled']:,} scheduled at {o['target_rate']:g}/s, {o['started']:,} started "
            f"({o['achieved_rate']:.1f}/s), {o['late']:,} late (> {report['model']['late_after_ms']:g} ms), "
            f"{o['dropped']:,} dropped (> {report['model']['drop_after_s']:g} s behind)."
        )
    for warning in report["warnings"]:
        write(f"\nWarning: {warning}")
    if report["thresholds"]:
        write("\nThresholds:")
        for row in report["thresholds"]:
            write(f"  {'pass' if row['passed'] else 'FAIL'}  {row['threshold']:<28} measured {row['measured']}")
    return out.getvalue()


def to_json(report):
    return json.dumps(report, indent=2)


def to_csv(report):
    """One row per page and one for the total."""
    keys = [*PERCENTILE_KEYS, "max", "mean"]
    header = ["page", "requests", "failures", "success_rate", "rps", *(f"{k}_ms" for k in keys)]
    rows = []
    for row in [*report["pages"], report["total"]]:
        success = None if row["success_rate"] is None else Decimal(f"{row['success_rate']:.6f}")
        rows.append(
            [
                row["name"],
                row["requests"],
                row["failures"],
                success,
                Decimal(f"{row['rps']:.3f}"),
                *(Decimal(f"{row['latency_ms'][k]:.3f}") for k in keys),
            ]
        )
    return to_text(header, rows)


# --- HTML ----------------------------------------------------------------------------------------

TEMPLATES = jinja2.Environment(
    loader=jinja2.PackageLoader("sipup", "templates"), autoescape=True, trim_blocks=True, lstrip_blocks=True
)
TEMPLATES.filters.update(
    ms=ms,
    thousands="{:,}".format,
    per_second="{:,.1f}".format,
    rate=lambda value: "-" if value is None else f"{value * 100:.2f}%",
)


def to_html(report):
    """One self-contained page (templates/loadtest/report.html): summary, charts over time, per-page table,
    failures, thresholds."""
    return TEMPLATES.get_template("loadtest/report.html").render(
        report=report,
        total=report["total"],
        percentile_keys=[*PERCENTILE_KEYS, "max"],
        colors=charts.COLORS,
        charts={
            "throughput": Markup(charts.throughput_chart(report["series"])),
            "latency": Markup(charts.latency_chart(report["series"])),
            "distribution": Markup(charts.distribution_chart(report["total"]["histogram"])),
            "pages": Markup(charts.pages_chart(report["pages"])),
        },
    )
