"""Pass/fail conditions such as `p95<500ms`, `errors<1%`, `rps>=200` or `p99[GET /products]<1s`.

A metric, optionally a page in brackets, a comparison and a value with its unit. Latencies take
us, ms or s (a bare number is milliseconds); `errors`, `late` and `dropped` take a percent or a
fraction; `rps` and `requests` take plain numbers. A breach makes `flask loadtest` exit with
EXIT_THRESHOLDS, distinct from a usage error (2) or a run that could not start (1).
"""

import operator
import re
from dataclasses import dataclass

EXIT_THRESHOLDS = 3

LATENCY = {"p50": 50, "p90": 90, "p95": 95, "p99": 99, "p99.9": 99.9, "max": 100, "median": 50, "mean": None}
RATIOS = ("errors", "late", "dropped")
COUNTS = ("rps", "requests")
OPERATORS = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}
PATTERN = re.compile(
    r"^\s*(?P<metric>[a-z0-9.]+)\s*(?:\[(?P<page>[^\]]+)\])?\s*(?P<op><=|>=|<|>)\s*"
    r"(?P<value>[0-9]+(?:\.[0-9]+)?)\s*(?P<unit>us|ms|s|%)?\s*$"
)
LATENCY_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, None: 1.0}


@dataclass
class Threshold:
    expression: str
    metric: str
    page: str
    op: str
    limit: float  # milliseconds for latencies, a fraction for ratios

    def measure(self, figures):
        """The measured value this threshold compares, from summary figures (see report.figures)."""
        if self.page:
            pages = {page["name"]: page for page in figures["pages"]}
            if self.page not in pages:
                return None
            scope = pages[self.page]
        else:
            scope = figures["total"]
        if self.metric in LATENCY:
            key = "mean" if self.metric == "mean" else ("max" if self.metric == "max" else _pkey(LATENCY[self.metric]))
            return scope["latency_ms"][key]
        if self.metric == "errors":
            return scope["failures"] / scope["requests"] if scope["requests"] else 0.0
        if self.metric in ("late", "dropped"):
            open_model = figures.get("open") or {}
            scheduled = open_model.get("scheduled") or 0
            return (open_model.get(self.metric, 0) / scheduled) if scheduled else 0.0
        return scope[self.metric]

    def check(self, figures):
        """(measured value or None, passed)."""
        value = self.measure(figures)
        if value is None:
            return None, False
        return value, OPERATORS[self.op](value, self.limit)

    def describe(self, value):
        if value is None:
            return "not measured" + (f" (no page named {self.page!r})" if self.page else "")
        if self.metric in RATIOS:
            return f"{value * 100:.2f}%"
        if self.metric in LATENCY:
            return f"{value:.2f} ms"
        return f"{value:,.1f}"


def _pkey(p):
    return f"p{p:g}"


def parse_threshold(text):
    """A Threshold from its text; ValueError with a message a user can act on."""
    match = PATTERN.match(
        text.lower() if "[" not in text else text[: text.index("[")].lower() + text[text.index("[") :]
    )
    if not match:
        raise ValueError(
            f"cannot read threshold {text!r}: write it like p95<500ms, errors<1%, rps>100 or p99[GET /products]<1s"
        )
    metric, page, op, value, unit = match.group("metric", "page", "op", "value", "unit")
    number = float(value)
    if metric in LATENCY:
        if unit == "%":
            raise ValueError(f"threshold {text!r}: a latency takes us, ms or s, not %")
        limit = number * LATENCY_UNITS[unit]
    elif metric in RATIOS:
        if unit in ("us", "ms", "s"):
            raise ValueError(f"threshold {text!r}: {metric} takes a percent (1%) or a fraction (0.01)")
        limit = number / 100 if unit == "%" else number
    elif metric in COUNTS:
        if unit:
            raise ValueError(f"threshold {text!r}: {metric} takes a plain number")
        limit = number
    else:
        known = ", ".join([*LATENCY, *RATIOS, *COUNTS])
        raise ValueError(f"threshold {text!r}: unknown metric {metric!r} (known: {known})")
    if page and metric in ("late", "dropped"):
        raise ValueError(f"threshold {text!r}: {metric} is counted for the whole run, not per page")
    return Threshold(text.strip(), metric, page.strip() if page else None, op, limit)
