"""Chart primitives for the server-rendered SVG charts (no script, no CDN) of /monitor
(sipup.observability.charts and templates/monitor/_charts.html) and of `flask loadtest`'s report
(sipup.loadtest.charts): round axis steps, the plot area and its scales, the gridlines' values, lines broken
at gaps, and the <svg> wrapper with its tooltips.

A value of None is a point without data: a line stops there and starts again after it, and a lone point
between gaps is a dot.
"""

import math
from html import escape

NICE = (1, 2, 2.5, 5, 10)


def nice_step(value, whole=False, factors=NICE):
    """The smallest of factors x 10^k at or above value (1, 2, 2.5, 5 by default; at least 1 when whole), so
    gridlines fall on round numbers."""
    if value <= 0 or (whole and value <= 1):
        return 1
    magnitude = 10 ** math.floor(math.log10(value))
    for factor in factors:
        if value <= factor * magnitude and not (whole and factor * magnitude != int(factor * magnitude)):
            return factor * magnitude
    return 10 * magnitude


def axis_top(value, ticks=4, whole=False, factors=NICE):
    """The top of an axis of `ticks` round steps that just holds value."""
    return ticks * nice_step(value / ticks, whole=whole, factors=factors)


class Plot:
    """The plot area of a chart of width x height: the box inside its margins, and the scales that place a
    value in it (x from 0 to x_max left to right, y from 0 to y_max bottom to top, capped at the top)."""

    def __init__(self, width, height, margins, x_max=1, y_max=1):
        left, right, top, bottom = margins
        self.width, self.height = width, height
        self.left, self.right, self.top, self.bottom = left, width - right, top, height - bottom
        self.inner_w, self.inner_h = width - left - right, height - top - bottom
        self.x_max, self.y_max = x_max, y_max

    def x(self, value):
        return self.left + self.inner_w * value / self.x_max

    def bucket(self, index, count):
        """(x, width) of bucket `index` (fractions place a point inside it) of `count` equal ones across the plot."""
        width = self.inner_w / count
        return self.left + width * index, width

    def y(self, value):
        return self.top + self.inner_h * (1 - min(value, self.y_max) / self.y_max)

    def gridlines(self, ticks=4):
        """(y, value) of ticks + 1 gridlines evenly from 0 to y_max, bottom first."""
        return [(self.y(self.y_max * n / ticks), self.y_max * n / ticks) for n in range(ticks + 1)]


def segments(points):
    """Runs of (x, y) between gaps: points are (x, y), or None where there is no data."""
    runs, current = [], []
    for point in points:
        if point is None:
            if current:
                runs.append(current)
            current = []
        else:
            current.append(point)
    if current:
        runs.append(current)
    return runs


def path_d(run):
    """An SVG path's d for a run of (x, y)."""
    return " ".join(f"{'M' if n == 0 else 'L'}{x:.1f},{y:.1f}" for n, (x, y) in enumerate(run))


def polyline_points(run):
    """An SVG polyline's points for a run of (x, y)."""
    return " ".join(f"{x:.1f},{y:.1f}" for x, y in run)


def tooltip(text):
    """A tooltip: the <title> of the SVG element it is placed in."""
    return f"<title>{escape(text)}</title>"


def svg(width, height, parts, title):
    """A self-contained <svg> of these parts, scaled by its viewBox, its title read by screen readers."""
    return (
        f'<svg viewBox="0 0 {width} {height}" role="img" aria-label="{escape(title)}" '
        f'xmlns="http://www.w3.org/2000/svg">' + "".join(parts) + "</svg>"
    )
