"""Alerts: admins (who can open /monitor) get one mail when sipup's health turns red or a recommendation
stays red, one when it clears, and one for each new group of unexpected exceptions.

The periodic job `monitor_alerts` (sipup/tasks.py) runs `run()` every minute, from cron's `flask queue
process` or the worker (SIPUP_MONITOR_ALERTS=false turns it off). An incident lasts while
the health verdict is red or a recommendation has fired for ALERT_AFTER_MINUTES; its start is kept as
a mark in the shared counters store, and the mails' dedupe keys carry that start, so overlapping
processors and several hosts send at most one mail per incident and one when it ends. A new exception
group (first seen in the last NEW_EXCEPTION_MINUTES) is mailed once: its dedupe key is the group's.
"""

import json
import time

from flask import current_app

from sipup.extensions import db
from sipup.i18n import N_, english, kept
from sipup.jobs import enqueue
from sipup.jobs.names import SEND_MAIL
from sipup.metrics import exceptions
from sipup.observability import health, recommendations
from sipup.observability import panels as monitor

ALERT_AFTER_MINUTES = 15  # a firing recommendation becomes an incident after this long; red health at once
NEW_EXCEPTION_MINUTES = 10  # new exception groups are looked for this far back (the job runs every minute)


def current_problems():
    """(red health checks, recommendations firing for long enough), from fresh figures."""
    counters = current_app.extensions["counters"]
    checks = health.run_checks()
    rules = recommendations.evaluate(monitor.figures(), counters)
    now = time.time()
    red = [c for c in checks["checks"] if c["state"] == "bad"]
    lasting = [
        r for r in rules if r["state"] == "firing" and r["since"] and now - r["since"] >= ALERT_AFTER_MINUTES * 60
    ]
    return red, lasting


def run():
    """The minutely job's work: check() unless SIPUP_MONITOR_ALERTS is off."""
    if not current_app.config["MONITOR_ALERTS"]:
        return "off"
    result = check()
    mailed = check_exceptions()
    return result + (f"; {mailed} new exception group(s) mailed" if mailed else "")


def check_exceptions(now=None):
    """Queue one mail to the admins per exception group first seen lately; returns how many were queued."""
    counters = current_app.extensions["counters"]
    now = time.time() if now is None else now
    fresh = exceptions.new_groups(counters, now - NEW_EXCEPTION_MINUTES * 60)
    if not fresh:
        return 0
    rows = {row["key"]: row for row in exceptions.groups(counters, "minute", NEW_EXCEPTION_MINUTES + 1)}
    queued = 0
    for key, first in fresh.items():
        row = rows.get(key, {})
        incident = {
            "state": "opened",
            "start": int(first),
            "red": [
                _row(
                    name=kept(N_("New exception")),
                    value=kept(
                        N_("%(type)s at %(location)s"), type=row.get("type", "?"), location=row.get("location", "?")
                    ),
                    detail=kept(
                        N_("Last on %(host)s: %(error)s"),
                        host=row.get("where") or "?",
                        error=row.get("message", ""),
                    ),
                )
            ],
            "lasting": [],
        }
        mail = enqueue(
            SEND_MAIL, "monitor_alert", json.dumps(incident), priority="high", dedupe_key=f"mail:exception:{key}"
        )
        queued += mail is not None
    db.session.commit()
    return queued


def _form(row, field):
    """A check's or rule's field as kept (to be shown in the recipient's language), or as it is when not kept."""
    return (row.get("kept") or {}).get(field) or row.get(field)


def _row(**fields):
    """A line of the alert mail: each field in English (logs, a mail read without the product) and kept, so the
    mail is written in its recipient's language (`|shown_field`)."""
    return {**{name: english(text) for name, text in fields.items()}, "kept": fields}


def check():
    """Open or close the incident and queue its mail; returns what happened, for the job's history."""
    red, lasting = current_problems()
    active = bool(red or lasting)
    since = current_app.extensions["counters"].mark("incident", active)
    if since is None:
        return "all clear"
    state = "opened" if active else "cleared"
    # The mail says what was wrong when the incident was seen, not what the state is when it is sent.
    incident = {
        "state": state,
        "start": int(since),
        "red": [_row(**{field: _form(c, field) for field in ("name", "value", "detail")}) for c in red],
        "lasting": [_row(**{field: _form(r, field) for field in ("title", "value", "advice")}) for r in lasting],
    }
    queued = enqueue(
        SEND_MAIL,
        "monitor_alert",
        json.dumps(incident),
        priority="high",
        dedupe_key=f"mail:monitor_alert:{state}:{int(since)}",
    )
    db.session.commit()
    what = ", ".join([c["name"] for c in red] + [r["title"] for r in lasting])
    result = f"incident since {int(since)}: {what}" if active else f"incident since {int(since)} cleared"
    return result + ("; staff mailed" if queued is not None else "")  # the admins among them
