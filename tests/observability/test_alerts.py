"""Alerts: one mail to the admins when health turns red or a recommendation stays red, one when it clears."""

import email
import email.policy
import os
import time
from datetime import timedelta

import pytest

from sipup.extensions import db
from sipup.models import QueueRun, utcnow
from sipup.observability import alerts

# The alert check is the periodic job monitor_alerts: a processor run enqueues it when due.
pytestmark = pytest.mark.periodic_jobs


@pytest.fixture
def app(own_app):
    own_app.config["MONITOR_ALERTS"] = True
    own_app.config["SITE_NAME"] = "Getränke Nord"  # the subject names the site, among others an admin runs
    return own_app


def outbox(app):
    folder = app.instance_path + "/outbox"

    if not os.path.isdir(folder):
        return []
    messages = []
    for name in sorted(os.listdir(folder)):
        with open(os.path.join(folder, name), "rb") as handle:
            messages.append(email.message_from_binary_file(handle, policy=email.policy.default))
    return messages


def heartbeat(minutes_ago):
    at = utcnow() - timedelta(minutes=minutes_ago)
    db.session.merge(QueueRun(processor="process", started_at=at, finished_at=at, jobs_run=0, failures=0))
    db.session.commit()


def process(app):
    """One cron run of `flask queue process`: queued mail goes out, and the alerts are checked."""
    app.extensions["queue"].process(10)


def test_one_mail_when_health_turns_red_and_one_when_it_clears(app, make_user):
    make_user("admin", email="ops@example.com")
    make_user("staff", email="packer@example.com")  # staff cannot open /monitor: no alert for them
    heartbeat(minutes_ago=45)  # cron stopped: the queue processor check turns red
    first = alerts.check()
    assert first.startswith("incident since") and "Queue processor" in first and first.endswith("staff mailed")
    assert alerts.check().endswith("Queue processor")  # still red: no second mail for the same incident

    # Cron runs again: its heartbeat clears the incident, and its alert check says so.
    process(app)
    process(app)
    mails = {m["Subject"]: m for m in outbox(app)}  # written in the same second: file order is not time order
    assert sorted(mails) == ["Getränke Nord is back to normal", "Getränke Nord needs attention: Queue processor"]
    assert {m["To"] for m in mails.values()} == {"ops@example.com"}
    body = mails["Getränke Nord needs attention: Queue processor"].get_body(("plain",)).get_content()
    assert "Queue processor:" in body and "check cron" in body  # what was wrong when it was seen
    assert alerts.check() == "all clear"


def test_a_recommendation_becomes_an_incident_only_after_it_has_fired_for_a_while(app, make_user):
    from sipup.jobs.registry import enqueue

    make_user("admin", email="boss@example.com")
    heartbeat(minutes_ago=0)
    record = enqueue("send_mail", "order_confirmation", 999_999)  # no such order: fails for good at once
    db.session.commit()
    process(app)
    assert alerts.check() == "all clear"  # the failed-jobs rule fires, but only just begun
    counters = app.extensions["counters"]
    counters.mark("rule:failed_jobs", False)
    counters.mark("rule:failed_jobs", True, now=time.time() - (alerts.ALERT_AFTER_MINUTES + 1) * 60)
    result = alerts.check()
    assert "Failed jobs in the last 24 hours" in result and result.endswith("staff mailed")
    process(app)
    mail = next(m for m in outbox(app) if "attention" in m["Subject"])
    assert "flask queue retry --failed" in mail.get_body(("plain",)).get_content()
    assert record.id


def test_the_alert_mail_is_written_in_the_admins_language(app, make_user):
    make_user("admin", email="leitung@example.com", language="de")
    heartbeat(minutes_ago=45)  # cron stopped: the queue processor check turns red
    assert alerts.check().endswith("Queue processor; staff mailed")  # the job's history stays English
    process(app)
    # The same run's alert check may see the heartbeat and send the cleared mail too: file order is not time order.
    mails = {m["Subject"]: m for m in outbox(app)}
    assert set(mails) - {"Getränke Nord läuft wieder normal"}, sorted(mails)
    mail = next(m for subject, m in mails.items() if subject != "Getränke Nord läuft wieder normal")
    assert mail["Subject"].endswith(": Warteschlangen-Verarbeitung"), mail["Subject"]
    assert '<html lang="de">' in mail.get_body(("html",)).get_content()
    for body in (mail.get_body(("plain",)).get_content(), mail.get_body(("html",)).get_content()):
        assert "Warteschlangen-Verarbeitung" in body and "Jobs warten; Cron (cron/crontab)" in body
        assert "vor 45 min" in body and "zuletzt gelaufen vor 45 min" in body
        assert "Queue processor" not in body and "check cron" not in body and "never ran" not in body
