"""The load-test report's SVG charts (inline, no script): throughput and latency over the seconds of a run,
latency per page, and latency by percentile. Built of the chart primitives of sipup.charts (round axis steps,
the plot area and its scales, gridlines, lines broken at gaps, tooltips), which /monitor's charts use too."""

import html

from ..charts import Plot, axis_top, nice_step, polyline_points, segments, svg, tooltip
from .histogram import Histogram

CHART_W, CHART_H, PAD_L, PAD_R, PAD_T, PAD_B = 760, 220, 56, 16, 14, 30
MARGINS = (PAD_L, PAD_R, PAD_T, PAD_B)
COLORS = {"ok": "#2f7d5b", "fail": "#c8412b", "p50": "#2f6db5", "p95": "#d08a1e", "p99": "#8b3fa8", "cpu": "#777"}
STEPS = (1, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10)  # an axis of four steps of these: 0, 60, 120, 180, 240


def ms(value):
    """Milliseconds as the report shows them: 1 decimal from 10 ms, 2 below."""
    return f"{value:.1f}" if value >= 10 else f"{value:.2f}"


def _axis_max(value):
    """The top of an axis with four round steps that just holds value (0, 60, 120, 180, 240)."""
    return axis_top(value, factors=STEPS)


def _tick(value):
    """An axis label: whole numbers with thousands separators, else as few digits as say it."""
    return f"{int(value):,}" if value == int(value) else f"{value:,.3g}"


def _frame(y_max, y_label, seconds, unit=""):
    """Axes, grid lines and labels of a time chart; returns (svg parts, the plot: x(second), y(value))."""
    span = max(seconds, 1)
    plot = Plot(CHART_W, CHART_H, MARGINS, x_max=span, y_max=y_max)
    parts = _y_grid(plot, unit)
    step = max(1, nice_step(span / 8))
    t = 0
    while t <= span:
        parts.append(f'<text x="{plot.x(t):.1f}" y="{CHART_H - 10}" class="tick" text-anchor="middle">{t:g}s</text>')
        t += step
    parts.append(_y_label(plot, y_label))
    return parts, plot


def _y_grid(plot, unit=""):
    """Five horizontal grid lines from 0 to the plot's y_max with their values at the left."""
    parts = []
    for y, value in plot.gridlines():
        parts.append(f'<line x1="{plot.left}" x2="{plot.right}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>')
        parts.append(
            f'<text x="{plot.left - 6}" y="{y + 4:.1f}" class="tick" text-anchor="end">{_tick(value)}{unit}</text>'
        )
    return parts


def _y_label(plot, text):
    middle = f"{plot.top + plot.inner_h / 2:.0f}"
    return (
        f'<text x="12" y="{middle}" class="axis" transform="rotate(-90 12 {middle})" '
        f'text-anchor="middle">{html.escape(text)}</text>'
    )


def throughput_chart(series):
    """Requests per second as bars, failures stacked on top in red (a last, partial second as a rate too)."""
    seconds = len(series)
    rate = lambda row, n: n / row["span_s"] if row["span_s"] > 0 else 0  # noqa: E731
    y_max = _axis_max(max((rate(row, row["requests"]) for row in series), default=0) * 1.05)
    parts, plot = _frame(y_max, "requests / s", seconds)
    x, y = plot.x, plot.y
    full_bar = max(plot.inner_w / max(seconds, 1) - 1, 0.5)
    for row in series:
        bar = full_bar * min(1.0, row["span_s"])
        ok, total = rate(row, row["requests"] - row["failures"]), rate(row, row["requests"])
        left = x(row["second"]) + 0.5
        span = f"{row['second']}-{row['second'] + row['span_s']:g} s"
        tip = tooltip(f"{span}: {row['requests']:,} requests, {row['failures']:,} failed")
        if ok:
            parts.append(
                f'<rect x="{left:.1f}" y="{y(ok):.1f}" width="{bar:.1f}" height="{y(0) - y(ok):.1f}" '
                f'fill="{COLORS["ok"]}">{tip}</rect>'
            )
        if row["failures"]:
            parts.append(
                f'<rect x="{left:.1f}" y="{y(total):.1f}" width="{bar:.1f}" '
                f'height="{y(ok) - y(total):.1f}" fill="{COLORS["fail"]}">{tip}</rect>'
            )
    cpu = [(row["second"], row["cpu_percent"]) for row in series if row["cpu_percent"] is not None]
    if cpu:  # the generator's own CPU on a 0-100% scale at the right: is the generator the limit?
        percent = Plot(CHART_W, CHART_H, MARGINS, x_max=plot.x_max, y_max=100)
        points = polyline_points([(x(second + 0.5), percent.y(value)) for second, value in cpu])
        parts.append(
            f'<polyline points="{points}" fill="none" stroke="{COLORS["cpu"]}" stroke-width="1.5" '
            'stroke-dasharray="4 3"/>'
        )
        parts.append(f'<text x="{plot.right}" y="{PAD_T - 3}" class="tick" text-anchor="end">CPU 100%</text>')
    return svg(CHART_W, CHART_H, parts, "Throughput over time")


def pages_chart(pages):
    """p50 and p95 of each page as bars, slowest first."""
    rows = sorted((page for page in pages if page["requests"]), key=lambda page: -page["latency_ms"]["p95"])
    label_w, row_h, top = 230, 24, 8
    height = top + row_h * len(rows) + 26
    scale_max = _axis_max(max((page["latency_ms"]["p95"] for page in rows), default=0) * 1.05)
    plot = Plot(CHART_W, height, (label_w, PAD_R + 60, top, 22), x_max=scale_max)
    x = lambda v: plot.x(min(v, scale_max))  # noqa: E731
    parts = []
    for i in range(5):
        value = scale_max * i / 4
        parts.append(f'<line x1="{x(value):.1f}" x2="{x(value):.1f}" y1="{top}" y2="{plot.bottom}" class="grid"/>')
        parts.append(
            f'<text x="{x(value):.1f}" y="{height - 8}" class="tick" text-anchor="middle">{_tick(value)} ms</text>'
        )
    for n, page in enumerate(rows):
        y0 = top + n * row_h
        name = page["name"] if len(page["name"]) <= 34 else page["name"][:33] + "…"
        p50, p95 = page["latency_ms"]["p50"], page["latency_ms"]["p95"]
        tip = tooltip(f"{page['name']}: p50 {ms(p50)} ms, p95 {ms(p95)} ms, {page['requests']:,} requests")
        parts.append(f'<text x="{label_w - 8}" y="{y0 + 15}" class="tick" text-anchor="end">{html.escape(name)}</text>')
        parts.append(
            f'<rect x="{label_w}" y="{y0 + 4}" width="{x(p95) - label_w:.1f}" height="14" fill="{COLORS["p95"]}" '
            f'opacity="0.55">{tip}</rect>'
        )
        parts.append(
            f'<rect x="{label_w}" y="{y0 + 4}" width="{x(p50) - label_w:.1f}" height="14" fill="{COLORS["p50"]}">'
            f"{tip}</rect>"
        )
        parts.append(f'<text x="{x(p95) + 6:.1f}" y="{y0 + 15}" class="tick">{ms(p95)}</text>')
    return svg(CHART_W, height, parts, "Latency per page")


def latency_chart(series):
    """p50, p95 and p99 per second as lines."""
    seconds = len(series)
    y_max = _axis_max(max((row["p99_ms"] or 0 for row in series), default=0) * 1.05)
    parts, plot = _frame(y_max, "latency ms", seconds)
    for key in ("p99", "p95", "p50"):
        points = [row[f"{key}_ms"] for row in series]
        runs = segments(
            [
                None if value is None else (plot.x(row["second"] + 0.5), plot.y(value))
                for row, value in zip(series, points)
            ]
        )
        for run in runs:
            if len(run) == 1:
                ((cx, cy),) = run
                parts.append(f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="2" fill="{COLORS[key]}"/>')
            else:
                parts.append(
                    f'<polyline points="{polyline_points(run)}" fill="none" stroke="{COLORS[key]}" stroke-width="2"/>'
                )
    return svg(CHART_W, CHART_H, parts, "Latency over time")


def distribution_chart(histogram_data):
    """Latency by percentile on a 'nines' axis (50, 90, 99, 99.9, 99.99), as HdrHistogram plots it."""
    histogram = Histogram.from_dict(histogram_data)
    top_nines = 4
    plot = Plot(CHART_W, CHART_H, MARGINS, x_max=top_nines, y_max=_axis_max(histogram.max / 1000 * 1.05))
    parts = _y_grid(plot)
    for nines, label in enumerate(("0%", "90%", "99%", "99.9%", "99.99%")):
        anchor = "end" if nines == top_nines else "middle"
        parts.append(
            f'<text x="{plot.x(nines):.1f}" y="{CHART_H - 10}" class="tick" text-anchor="{anchor}">{label}</text>'
        )
    parts.append(_y_label(plot, "latency ms"))
    if histogram.count:
        steps = 120
        run = []
        for i in range(steps + 1):
            nines = top_nines * i / steps
            percentile = 100 * (1 - 10**-nines)
            run.append((plot.x(nines), plot.y(histogram.percentile(percentile) / 1000)))
        parts.append(
            f'<polyline points="{polyline_points(run)}" fill="none" stroke="{COLORS["p50"]}" stroke-width="2"/>'
        )
    return svg(CHART_W, CHART_H, parts, "Latency by percentile")
