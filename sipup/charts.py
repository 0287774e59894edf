"""Server-rendered charts: the coordinates of small inline SVG line charts (no script, no CDN)."""
from datetime import datetime, timezone

WIDTH, HEIGHT, PAD = 320, 90, 4


def line_chart(starts, series, width=WIDTH, height=HEIGHT, percent=False):
    """starts: bucket start times; series: [(label, css class, [value or None per bucket])].

    Returns what the `chart` template macro draws: a polyline per series scaled to a shared maximum,
    with the maximum and the first and last times as labels. Missing values break nothing: they count 0.
    """
    values = [v or 0 for _, _, points in series for v in points]
    top = 1.0 if percent else max(values, default=0) or 1
    count = max(len(starts) - 1, 1)
    lines = []
    for label, css, points in series:
        coords = " ".join(
            f"{PAD + i * (width - 2 * PAD) / count:.1f},{height - PAD - (v or 0) / top * (height - 2 * PAD):.1f}"
            for i, v in enumerate(points)
        )
        lines.append({"label": label, "css": css, "points": coords, "last": points[-1] if points else None})
    return {
        "width": width, "height": height, "lines": lines,
        "top": "100%" if percent else f"{top:,.0f}",
        "first": _clock(starts[0]) if starts else "", "last": _clock(starts[-1]) if starts else "",
    }


def _clock(timestamp):
    return datetime.fromtimestamp(timestamp, timezone.utc).strftime("%H:%M UTC")
