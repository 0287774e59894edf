"""/monitor's charts: the geometry of inline SVG line charts over time buckets, with axes, gridlines and a
tooltip per bucket (an SVG <title>), drawn by the `chart` macro in templates/monitor/_charts.html, and the
time ranges a panel offers. Built of the chart primitives of sipup.charts, which the load-test report's
charts (sipup.loadtest.charts) are built of too. No script, no CDN.

A value of None is a bucket without data (no request, no cache read): the line stops there and starts again
after it, so an idle night is a gap, not a fall to zero.
"""

from datetime import datetime, timezone

from babel.dates import format_datetime
from flask import has_app_context
from flask_babel import gettext, lazy_gettext
from flask_babel.speaklater import LazyString

from sipup.charts import Plot, axis_top, path_d, segments
from sipup.i18n import current_language

WIDTH, HEIGHT = 480, 150
LEFT, RIGHT, TOP, BOTTOM = 52, 10, 10, 22  # room for the y labels on the left and the times below
# The time ranges a panel offers: bucket resolution of the shared counters, how many buckets, the words. Words and
# labels are lazy: a panel's data is remembered for every reader, each reads it in their language when it is shown.
RANGES = {
    "hour": ("minute", 60, lazy_gettext("last hour")),
    "day": ("hour", 24, lazy_gettext("last 24 hours")),
    "week": ("hour", 7 * 24, lazy_gettext("last 7 days")),
}
BUCKET_WORDS = {"minute": lazy_gettext("minute"), "hour": lazy_gettext("hour")}  # "… per minute", "… per hour"
RANGE_LABELS = {"hour": "1 h", "day": "24 h", "week": "7 d"}  # the range switch's buttons and short captions
DEFAULT_RANGE = "hour"


def pick_range(value):
    """A range name from the query string, or the default for anything else."""
    return value if value in RANGES else DEFAULT_RANGE


def line_chart(starts, series, percent=False, unit="", show=None):
    """starts: bucket start times (UTC seconds); series: [(label, css class, [value or None per bucket])].

    percent: values are shares (0-1) drawn on a 0-100% axis; unit: added to values in labels and tooltips;
    show: formats one value for the tooltips (default: whole numbers, or percent).
    """
    show = show or (_percent if percent else (lambda v: f"{v:,.0f}{unit}"))
    known = [v for _, _, points in series for v in points if v is not None]
    ticks = 4
    # Counts step by whole numbers at least, so a quiet range shows 0-4, not fractions of a request.
    top = 1.0 if percent else axis_top(max(known, default=0), ticks, whole=not unit)
    buckets = max(len(starts), 1)
    plot = Plot(WIDTH, HEIGHT, (LEFT, RIGHT, TOP, BOTTOM), y_max=top)

    def x(i):
        return plot.bucket(i + 0.5, buckets)[0]  # each value sits in the middle of its bucket

    lines = []
    for label, css, points in series:
        runs = segments([None if value is None else (x(i), plot.y(value)) for i, value in enumerate(points)])
        lines.append(
            {
                "label": label,
                "css": css,
                "paths": [path_d(run) for run in runs if len(run) > 1],
                "dots": [run[0] for run in runs if len(run) == 1],  # a lone bucket with data between gaps
            }
        )
    return {
        "width": plot.width,
        "height": plot.height,
        "left": plot.left,
        "right": plot.right,
        "top": plot.top,
        "bottom": plot.bottom,
        "yticks": [(y, _percent(value) if percent else _number(value) + unit) for y, value in plot.gridlines(ticks)],
        "xticks": [
            (x(i), LazyString(_day, start) if _days(starts) else _clock(start)) for i, start in _time_ticks(starts)
        ],
        "lines": lines,
        "columns": [
            {"x": x, "width": width, "title": LazyString(_tooltip, start, series, i, show, starts)}
            for i, start in enumerate(starts)
            for x, width in [plot.bucket(i, buckets)]
        ],
        "empty": not known,
    }


def _number(value):
    if value >= 10_000:
        return f"{value / 1000:,.0f}k"
    if value >= 1000:
        return f"{value / 1000:,.1f}k".replace(".0k", "k")
    return f"{value:,.0f}" if value == int(value) or value >= 10 else f"{value:.1f}"


def _percent(value):
    return f"{value:.0%}"


def _time_ticks(starts):
    """(index, start) of the buckets on a round time: about five labels whatever the range."""
    if len(starts) < 2:
        return list(enumerate(starts))
    seconds = starts[1] - starts[0]
    span = seconds * len(starts)
    every = next(
        e for e in (60, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400, 172800, 1 << 40) if span / e <= 6
    )
    return [(i, start) for i, start in enumerate(starts) if start % every == 0]


def _tooltip(start, series, index, show, starts):
    """A bucket's tooltip, in the language of the reader it is shown to (made when shown, see line_chart)."""
    seconds = starts[1] - starts[0] if len(starts) > 1 else 60
    when = f"{_day(start) + ' ' if _days(starts) else ''}{_clock(start)}–{_clock(start + seconds)} UTC"
    none = gettext("no data") if has_app_context() else "no data"
    parts = [f"{label} {none if points[index] is None else show(points[index])}" for label, _, points in series]
    return f"{when}: " + ", ".join(parts)


def _days(starts):
    """Whether a chart spans more than a day, so its times need their day."""
    return len(starts) > 1 and starts[-1] - starts[0] > 86400


def _day(timestamp):
    """A bucket's weekday and day of the month, for charts longer than a day, in the reader's language ("Sat 16",
    "Sa. 16"; made when shown, see line_chart)."""
    moment = datetime.fromtimestamp(timestamp, timezone.utc)
    if not has_app_context():
        return moment.strftime("%a %d")
    return format_datetime(moment, "EEE dd", tzinfo=timezone.utc, locale=current_language())


def _clock(timestamp):
    return datetime.fromtimestamp(timestamp, timezone.utc).strftime("%H:%M")
