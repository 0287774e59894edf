"""The rate-limit settings: limits such as "100 per minute", the window strategy, and the endpoint rules
("POST auth.login by account") that sipup.limits applies."""

import json

from limits import parse_many

from .defaults import ENDPOINT_LIMITS

LIMIT_BY = ("address", "account", "user")  # whose budget an endpoint rule counts
HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
WINDOW_STRATEGIES = ("sliding-window-counter", "moving-window", "fixed-window")


def parse_limit(value):
    check_limit(value)
    return str(value)


def parse_strategy(value):
    if value not in WINDOW_STRATEGIES:
        raise ValueError("must be one of " + ", ".join(WINDOW_STRATEGIES))
    return value


def parse_endpoint_limits(value):
    """The per-endpoint map over ENDPOINT_LIMITS: a dict (sipup.cfg) or a JSON object (environment)."""
    if isinstance(value, str):
        try:
            value = json.loads(value or "{}")
        except ValueError:
            raise ValueError('must be a JSON object such as {"POST auth.login": "10 per minute"}') from None
    if not isinstance(value, dict):
        raise ValueError('must be a mapping such as {"POST auth.login": "10 per minute"}')
    merged = {**ENDPOINT_LIMITS, **value}
    for rule, limit in merged.items():
        parse_endpoint_rule(rule, limit)  # raises ValueError naming the entry
    return {rule: limit for rule, limit in merged.items() if limit}


def parse_endpoint_rule(rule, limit):
    """("POST auth.login by account", "5 per minute") -> (["POST"], "auth.login", "account"); ValueError says why."""
    words = str(rule).split()
    methods = None
    if words and words[0].isupper():
        methods = words.pop(0).split(",")
    by = "address"
    if len(words) == 3 and words[1] == "by":
        by = words.pop()
        words.pop()
    if len(words) != 1 or by not in LIMIT_BY or not set(methods or ()) <= HTTP_METHODS:
        raise ValueError(f'must have entries like "POST auth.login by account", not {rule!r}')
    if limit:
        try:
            check_limit(limit)
        except ValueError as exc:
            raise ValueError(f"{exc}, not {limit!r} for {rule!r}") from None
    return methods, words[0], by


def check_limit(text):
    """The parsed limits of a setting such as "100 per minute; 1000 per hour"; ValueError says what is wrong,
    including a limit of 0, which would refuse every request."""
    try:
        items = parse_many(str(text))
    except ValueError:
        raise ValueError('must read like "100 per minute" or "1000/hour"') from None
    for item in items:
        if item.amount < 1:
            raise ValueError(
                f'must allow at least 1 request ({str(text)!r} would refuse every one), e.g. "100 per minute"'
            )
    return items
