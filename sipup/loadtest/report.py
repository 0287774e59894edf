"""Turns a run into figures (one dict, the JSON report) and renders them: table, CSV and an HTML page.

The HTML report is one self-contained file: inline CSS and SVG charts, no script and nothing fetched,
so it can be mailed, archived or opened offline.
"""

import html
import io
import json
import math
import os
import platform
import sys
from datetime import datetime, timezone
from decimal import Decimal

from ..csvfiles import to_text
from .histogram import Histogram
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


def _ms(value):
    return f"{value:.1f}" if value >= 10 else f"{value:.2f}"


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
            + "".join(f" {_ms(row['latency_ms'][key]):>7}" for key in [*PERCENTILE_KEYS, "max"])
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

CHART_W, CHART_H, PAD_L, PAD_R, PAD_T, PAD_B = 760, 220, 56, 16, 14, 30
COLORS = {"ok": "#2f7d5b", "fail": "#c8412b", "p50": "#2f6db5", "p95": "#d08a1e", "p99": "#8b3fa8", "cpu": "#777"}


def _nice_max(value, steps=(1, 2, 2.5, 5, 10)):
    """The smallest 'round' number (1, 2, 2.5 or 5 times a power of ten) at or above value."""
    if value <= 0:
        return 1.0
    magnitude = 10 ** math.floor(math.log10(value))
    for step in steps:
        if value <= step * magnitude:
            return step * magnitude
    return 10 * magnitude


def _axis_max(value):
    """The top of an axis with four round steps that just holds value (0, 60, 120, 180, 240)."""
    return 4 * _nice_max(value / 4, (1, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10))


def _tick(value):
    """An axis label: whole numbers with thousands separators, else as few digits as say it."""
    return f"{int(value):,}" if value == int(value) else f"{value:,.3g}"


def _frame(y_max, y_label, seconds, unit=""):
    """Axes, grid lines and labels of a time chart; returns (svg parts, x(second), y(value))."""
    inner_w, inner_h = CHART_W - PAD_L - PAD_R, CHART_H - PAD_T - PAD_B
    span = max(seconds, 1)
    x = lambda s: PAD_L + inner_w * s / span  # noqa: E731
    y = lambda v: PAD_T + inner_h * (1 - min(v, y_max) / y_max)  # noqa: E731
    parts = []
    for i in range(5):
        value = y_max * i / 4
        parts.append(
            f'<line x1="{PAD_L}" x2="{CHART_W - PAD_R}" y1="{y(value):.1f}" y2="{y(value):.1f}" class="grid"/>'
        )
        parts.append(
            f'<text x="{PAD_L - 6}" y="{y(value) + 4:.1f}" class="tick" text-anchor="end">{_tick(value)}{unit}</text>'
        )
    step = max(1, _nice_max(span / 8))
    t = 0
    while t <= span:
        parts.append(f'<text x="{x(t):.1f}" y="{CHART_H - 10}" class="tick" text-anchor="middle">{t:g}s</text>')
        t += step
    parts.append(
        f'<text x="12" y="{PAD_T + inner_h / 2:.0f}" class="axis" transform="rotate(-90 12 {PAD_T + inner_h / 2:.0f})" '
        f'text-anchor="middle">{html.escape(y_label)}</text>'
    )
    return parts, x, y


def _svg(parts, title):
    return (
        f'<svg viewBox="0 0 {CHART_W} {CHART_H}" role="img" aria-label="{html.escape(title)}" '
        f'xmlns="http://www.w3.org/2000/svg">' + "".join(parts) + "</svg>"
    )


def throughput_chart(series):
    """Requests per second as bars, failures stacked on top in red (a last, partial second as a rate too)."""
    seconds = len(series)
    rate = lambda row, n: n / row["span_s"] if row["span_s"] > 0 else 0  # noqa: E731
    y_max = _axis_max(max((rate(row, row["requests"]) for row in series), default=0) * 1.05)
    parts, x, y = _frame(y_max, "requests / s", seconds)
    full_bar = max((CHART_W - PAD_L - PAD_R) / max(seconds, 1) - 1, 0.5)
    for row in series:
        bar = full_bar * min(1.0, row["span_s"])
        ok, total = rate(row, row["requests"] - row["failures"]), rate(row, row["requests"])
        left = x(row["second"]) + 0.5
        span = f"{row['second']}-{row['second'] + row['span_s']:g} s"
        tip = f"{span}: {row['requests']:,} requests, {row['failures']:,} failed"
        if ok:
            parts.append(
                f'<rect x="{left:.1f}" y="{y(ok):.1f}" width="{bar:.1f}" height="{y(0) - y(ok):.1f}" '
                f'fill="{COLORS["ok"]}"><title>{tip}</title></rect>'
            )
        if row["failures"]:
            parts.append(
                f'<rect x="{left:.1f}" y="{y(total):.1f}" width="{bar:.1f}" '
                f'height="{y(ok) - y(total):.1f}" fill="{COLORS["fail"]}"><title>{tip}</title></rect>'
            )
    cpu = [(row["second"], row["cpu_percent"]) for row in series if row["cpu_percent"] is not None]
    if cpu:  # the generator's own CPU on a 0-100% scale at the right: is the generator the limit?
        inner_h = CHART_H - PAD_T - PAD_B
        y_cpu = lambda v: PAD_T + inner_h * (1 - min(v, 100) / 100)  # noqa: E731
        points = " ".join(f"{x(second + 0.5):.1f},{y_cpu(value):.1f}" for second, value in cpu)
        parts.append(
            f'<polyline points="{points}" fill="none" stroke="{COLORS["cpu"]}" stroke-width="1.5" '
            'stroke-dasharray="4 3"/>'
        )
        parts.append(f'<text x="{CHART_W - PAD_R}" y="{PAD_T - 3}" class="tick" text-anchor="end">CPU 100%</text>')
    return _svg(parts, "Throughput over time")


def pages_chart(pages):
    """p50 and p95 of each page as bars, slowest first."""
    rows = sorted((page for page in pages if page["requests"]), key=lambda page: -page["latency_ms"]["p95"])
    label_w, row_h, top = 230, 24, 8
    height = top + row_h * len(rows) + 26
    scale_max = _axis_max(max((page["latency_ms"]["p95"] for page in rows), default=0) * 1.05)
    inner_w = CHART_W - label_w - PAD_R - 60
    x = lambda v: label_w + inner_w * min(v, scale_max) / scale_max  # noqa: E731
    parts = []
    for i in range(5):
        value = scale_max * i / 4
        parts.append(f'<line x1="{x(value):.1f}" x2="{x(value):.1f}" y1="{top}" y2="{height - 22}" class="grid"/>')
        parts.append(
            f'<text x="{x(value):.1f}" y="{height - 8}" class="tick" text-anchor="middle">{_tick(value)} ms</text>'
        )
    for n, page in enumerate(rows):
        y0 = top + n * row_h
        name = page["name"] if len(page["name"]) <= 34 else page["name"][:33] + "…"
        p50, p95 = page["latency_ms"]["p50"], page["latency_ms"]["p95"]
        tip = f"{page['name']}: p50 {_ms(p50)} ms, p95 {_ms(p95)} ms, {page['requests']:,} requests"
        parts.append(f'<text x="{label_w - 8}" y="{y0 + 15}" class="tick" text-anchor="end">{html.escape(name)}</text>')
        parts.append(
            f'<rect x="{label_w}" y="{y0 + 4}" width="{x(p95) - label_w:.1f}" height="14" fill="{COLORS["p95"]}" '
            f'opacity="0.55"><title>{html.escape(tip)}</title></rect>'
        )
        parts.append(
            f'<rect x="{label_w}" y="{y0 + 4}" width="{x(p50) - label_w:.1f}" height="14" fill="{COLORS["p50"]}">'
            f"<title>{html.escape(tip)}</title></rect>"
        )
        parts.append(f'<text x="{x(p95) + 6:.1f}" y="{y0 + 15}" class="tick">{_ms(p95)}</text>')
    return (
        f'<svg viewBox="0 0 {CHART_W} {height}" role="img" aria-label="Latency per page" '
        f'xmlns="http://www.w3.org/2000/svg">' + "".join(parts) + "</svg>"
    )


def latency_chart(series):
    """p50, p95 and p99 per second as lines."""
    seconds = len(series)
    y_max = _axis_max(max((row["p99_ms"] or 0 for row in series), default=0) * 1.05)
    parts, x, y = _frame(y_max, "latency ms", seconds)
    for key in ("p99", "p95", "p50"):
        points, path = [], []
        for row in series:
            value = row[f"{key}_ms"]
            if value is None:
                if points:
                    path.append(points)
                points = []
                continue
            points.append(f"{x(row['second'] + 0.5):.1f},{y(value):.1f}")
        if points:
            path.append(points)
        for segment in path:
            if len(segment) == 1:
                cx, cy = segment[0].split(",")
                parts.append(f'<circle cx="{cx}" cy="{cy}" r="2" fill="{COLORS[key]}"/>')
            else:
                parts.append(
                    f'<polyline points="{" ".join(segment)}" fill="none" stroke="{COLORS[key]}" stroke-width="2"/>'
                )
    return _svg(parts, "Latency over time")


def distribution_chart(histogram_data):
    """Latency by percentile on a 'nines' axis (50, 90, 99, 99.9, 99.99), as HdrHistogram plots it."""
    histogram = Histogram.from_dict(histogram_data)
    inner_w, inner_h = CHART_W - PAD_L - PAD_R, CHART_H - PAD_T - PAD_B
    top_nines = 4
    y_max = _axis_max(histogram.max / 1000 * 1.05)
    x = lambda nines: PAD_L + inner_w * nines / top_nines  # noqa: E731
    y = lambda v: PAD_T + inner_h * (1 - min(v, y_max) / y_max)  # noqa: E731
    parts = []
    for i in range(5):
        value = y_max * i / 4
        parts.append(
            f'<line x1="{PAD_L}" x2="{CHART_W - PAD_R}" y1="{y(value):.1f}" y2="{y(value):.1f}" class="grid"/>'
        )
        parts.append(
            f'<text x="{PAD_L - 6}" y="{y(value) + 4:.1f}" class="tick" text-anchor="end">{_tick(value)}</text>'
        )
    for nines, label in enumerate(("0%", "90%", "99%", "99.9%", "99.99%")):
        anchor = "end" if nines == top_nines else "middle"
        parts.append(f'<text x="{x(nines):.1f}" y="{CHART_H - 10}" class="tick" text-anchor="{anchor}">{label}</text>')
    parts.append(
        f'<text x="12" y="{PAD_T + inner_h / 2:.0f}" class="axis" transform="rotate(-90 12 {PAD_T + inner_h / 2:.0f})" '
        'text-anchor="middle">latency ms</text>'
    )
    if histogram.count:
        points = []
        steps = 120
        for i in range(steps + 1):
            nines = top_nines * i / steps
            percentile = 100 * (1 - 10**-nines)
            points.append(f"{x(nines):.1f},{y(histogram.percentile(percentile) / 1000):.1f}")
        parts.append(f'<polyline points="{" ".join(points)}" fill="none" stroke="{COLORS["p50"]}" stroke-width="2"/>')
    return _svg(parts, "Latency by percentile")


CSS = """
body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;background:#f5f6f4;color:#1d2320}
main{max-width:1100px;margin:0 auto;padding:24px}
h1{font-size:1.5rem;margin:0 0 4px}h2{font-size:1.1rem;margin:0 0 10px}
.muted{color:#5d6762}.small{font-size:.85rem}
.cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(160px,1fr));gap:12px;margin:18px 0}
.card{background:#fff;border:1px solid #dfe3df;border-radius:8px;padding:14px 16px;margin-bottom:16px}
.cards .card{margin:0}.big{font-size:1.6rem;font-weight:650}
.pass{color:#2f7d5b}.fail{color:#c8412b}
.warn{background:#fff6e5;border-color:#efc677}
table{border-collapse:collapse;width:100%;font-size:.9rem}
th,td{padding:5px 8px;border-bottom:1px solid #eceeec;text-align:left}
th{font-weight:600;color:#5d6762}td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
tr.total td{font-weight:650;border-top:2px solid #c9cfca}
svg{width:100%;height:auto}svg .grid{stroke:#e4e7e4;stroke-width:1}svg .tick{font-size:11px;fill:#5d6762}
svg .axis{font-size:11px;fill:#5d6762}
.legend span{display:inline-block;margin-right:14px;font-size:.85rem}
.legend i{display:inline-block;width:12px;height:4px;margin-right:5px;vertical-align:middle}
"""


def _legend(items):
    return (
        '<p class="legend">'
        + "".join(f'<span><i style="background:{color}"></i>{html.escape(label)}</span>' for label, color in items)
        + "</p>"
    )


def to_html(report):
    """One self-contained page: summary, charts over time, per-page table, failures, thresholds."""
    e = html.escape
    total = report["total"]
    success = "-" if total["success_rate"] is None else f"{total['success_rate'] * 100:.2f}%"
    verdict = ""
    if report["thresholds"]:
        verdict = (
            '<div class="card"><div class="muted small">Thresholds</div><div class="big pass">passed</div></div>'
            if report["passed"]
            else '<div class="card"><div class="muted small">Thresholds</div><div class="big fail">breached</div></div>'
        )
    cards = [
        ("Requests", f"{total['requests']:,}"),
        ("Throughput", f"{total['rps']:,.1f}/s"),
        ("Median", f"{_ms(total['latency_ms']['p50'])} ms"),
        ("p95", f"{_ms(total['latency_ms']['p95'])} ms"),
        ("p99", f"{_ms(total['latency_ms']['p99'])} ms"),
        ("Success", success),
    ]
    rows = []
    for row in [*report["pages"], total]:
        css = ' class="total"' if row is total else ""
        rate = "-" if row["success_rate"] is None else f"{row['success_rate'] * 100:.2f}%"
        rows.append(
            f"<tr{css}><td>{e(row['name'])}</td><td class=num>{row['requests']:,}</td><td "
            f"class=num>{row['failures']:,}</td>"
            f"<td class=num>{row['rps']:,.1f}</td>"
            + "".join(f"<td class=num>{_ms(row['latency_ms'][k])}</td>" for k in [*PERCENTILE_KEYS, "max"])
            + f"<td class=num>{rate}</td></tr>"
        )
    head = "".join(f"<th class=num>{k}</th>" for k in [*PERCENTILE_KEYS, "max"])
    parts = [
        "<!doctype html><html lang=en><head><meta charset=utf-8>",
        '<meta name="viewport" content="width=device-width,initial-scale=1">',
        f"<title>Load test: {e(report['scenario'])} against "
        f"{e(report['target'])}</title><style>{CSS}</style></head><body><main>",
        f"<h1>Load test: {e(report['scenario'])}</h1>",
        f"<p class=muted>{e(report['target'])} · {e(report['model_text'])} · started {e(report['started_at'])} · "
        f"measured {report['measured_s']:.1f} s after a {report['warmup_s']:g} s warm-up "
        f"({report['warmup_requests']:,} requests left out) · generator CPU "
        f"{report['generator']['cpu_percent']:.0f}% of one core</p>",
        '<div class="cards">'
        + "".join(
            f'<div class="card"><div class="muted small">{k}</div><div class="big">{v}</div></div>' for k, v in cards
        )
        + verdict
        + "</div>",
    ]
    for warning in report["warnings"]:
        parts.append(f'<div class="card warn">{e(warning)}</div>')
    parts += [
        '<section class="card"><h2>Throughput over time</h2>',
        throughput_chart(report["series"]),
        _legend(
            [
                ("answered", COLORS["ok"]),
                ("failed", COLORS["fail"]),
                ("generator CPU, % of one core (0-100% scale)", COLORS["cpu"]),
            ]
        ),
        "</section>",
        '<section class="card"><h2>Latency over time</h2>',
        latency_chart(report["series"]),
        _legend([("p50", COLORS["p50"]), ("p95", COLORS["p95"]), ("p99", COLORS["p99"])]),
        '<p class="muted small">'
        + (
            "Counted from when each request should have been sent (open model)."
            if report["open"]
            else "Counted from when each request was sent (closed model)."
        )
        + "</p></section>",
        '<section class="card"><h2>Latency by percentile</h2>',
        distribution_chart(report["total"]["histogram"]),
        "</section>",
        '<section class="card"><h2>Latency per page</h2>',
        pages_chart(report["pages"]),
        _legend([("p50", COLORS["p50"]), ("p95", COLORS["p95"])]),
        "</section>",
        '<section class="card"><h2>Pages</h2><table><thead><tr><th>page</th><th class=num>requests</th><th '
        "class=num>failed</th>"
        f"<th class=num>req/s</th>{head}<th class=num>success</th></tr></thead><tbody>{''.join(rows)}</tbody></table>"
        '<p class="muted small">Latency in milliseconds.</p></section>',
    ]
    if report["failures"]:
        parts.append(
            '<section class="card"><h2>Failures</h2><table><thead><tr><th '
            "class=num>count</th><th>reason</th><th>page</th>"
            "</tr></thead><tbody>"
            + "".join(
                f"<tr><td class=num>{row['count']:,}</td><td>{e(row['reason'])}</td><td>{e(row['page'])}</td></tr>"
                for row in report["failures"]
            )
            + "</tbody></table></section>"
        )
    if report["open"]:
        o = report["open"]
        parts.append(
            f'<section class="card"><h2>Arrivals</h2><p>{o["scheduled"]:,} scheduled at {o["target_rate"]:g}/s; '
            f"{o['started']:,} started ({o['achieved_rate']:.1f}/s); {o['late']:,} late; {o['dropped']:,} "
            "dropped.</p></section>"
        )
    if report["thresholds"]:
        parts.append(
            '<section class="card"><h2>Thresholds</h2><table><tbody>'
            + "".join(
                f'<tr><td class="{"pass" if row["passed"] else "fail"}">{"pass" if row["passed"] else "FAIL"}</td>'
                f"<td>{e(row['threshold'])}</td><td>measured {e(row['measured'])}</td></tr>"
                for row in report["thresholds"]
            )
            + "</tbody></table></section>"
        )
    parts.append(
        f'<p class="muted small">sipup loadtest · Python {e(report["generator"]["python"])} on '
        f"{e(report['generator']['platform'])} · {report['generator']['cpu_count']} CPU cores</p></main></body></html>"
    )
    return "\n".join(parts)
