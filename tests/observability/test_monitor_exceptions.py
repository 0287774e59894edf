"""/monitor's Exceptions panel: 500s and failing jobs grouped by type and place, with a trace free of personal
data, from the shared counters store (SQLite file, or Redis where configured); one mail per new group."""

import time

import flask
import pytest
from sqlalchemy import select

from sipup.extensions import db
from sipup.jobs.registry import enqueue, job
from sipup.metrics import exceptions
from sipup.models import Job
from sipup.observability import alerts
from tests.conftest import REDIS_URL

STORES = ["sqlite"] + (["redis"] if REDIS_URL else [])


@job(priority="normal")
def exploding_report(label):
    """Test job: fails unexpectedly, as a bug does."""
    raise KeyError(f"no column {label}")


@pytest.fixture(params=STORES)
def app(request, own_app):
    """The app with its counters in the embedded SQLite file or in Redis (a namespace of this test's own)."""
    if request.param == "redis":
        from sipup.metrics.counter_stores import RedisCounterStore
        from sipup.metrics.counters import Counters

        namespace = request.getfixturevalue("redis_namespace")
        own_app.extensions["counters"] = Counters(RedisCounterStore(REDIS_URL, namespace))
    own_app.config["PROPAGATE_EXCEPTIONS"] = False

    @own_app.route("/explode", methods=["GET", "POST"])
    def explode():
        """Test view: fails with a message that carries what the form sent."""
        form, args = flask.request.form, flask.request.args
        raise ValueError(f"cannot parse password={form['password']} for token={args['token']}")

    return own_app


def test_a_failing_view_is_one_group_counted_twice_with_a_trace_free_of_form_values(app, admin_client):
    for _ in range(2):
        response = admin_client.post("/explode?token=abc123&email=buyer@example.com", data={"password": "Sup3rSecret!"})
        assert response.status_code == 500
    (group,) = exceptions.groups(app.extensions["counters"])
    assert group["count"] == 2 and group["type"] == "ValueError" and group["where"] == "/explode"
    assert (
        group["location"].startswith("tests/observability/test_monitor_exceptions.py:")
        and group["first"]
        and group["last"]
    )
    assert group["own_frames"] == [] or all(f["file"].startswith("sipup/") for f in group["own_frames"])
    page = admin_client.get("/monitor/panels/exceptions").get_data(as_text=True)
    assert "ValueError" in page and "2×" in page and "/explode" in page and "raise ValueError" in page
    assert "Sup3rSecret" not in page and "abc123" not in page and "buyer@example.com" not in page
    assert "password=***" in page
    assert "Exceptions" in admin_client.get("/monitor").get_data(as_text=True)


def test_a_job_that_fails_unexpectedly_shows_up_and_a_new_group_mails_the_admins_once(app, make_user):
    make_user("admin", email="ops@example.com")
    enqueue(exploding_report, "margin")
    db.session.commit()
    app.extensions["queue"].process(10)
    (group,) = exceptions.groups(app.extensions["counters"])
    assert group["type"] == "KeyError" and group["where"] == "job exploding_report" and group["count"] == 1
    assert group["location"].startswith("sipup/jobs/running.py:")  # where sipup calls the (test's) job
    assert any(f["function"] == "_run_claimed" and f["own"] for f in group["frames"])
    assert alerts.check_exceptions() == 1
    assert alerts.check_exceptions() == 0  # the same group: no second mail
    mail = db.session.scalars(select(Job).where(Job.name == "send_mail")).one()
    assert "KeyError at sipup/jobs/running.py:" in mail.args and "job exploding_report" in mail.args


def test_messages_are_cut_and_secrets_blanked():
    assert exceptions.scrub("bad password=hunter2 and token: 'x y' or api_key=k1&b=2") == (
        "bad password=*** and token: *** or api_key=***&b=2"
    )
    assert len(exceptions.scrub("x" * 1000)) == exceptions.MESSAGE_CHARS


def test_every_ranged_panel_offers_seven_days_kept_in_hour_buckets(app, admin_client):
    counters = app.extensions["counters"]
    counters.incr(exceptions.GROUP, "old-group", now=time.time() - 6 * 86400)  # six days ago
    assert exceptions.groups(counters, "hour", 7 * 24)[0]["count"] == 1
    assert exceptions.groups(counters, "hour", 24) == []
    for name in ("traffic", "database", "cache", "queue", "limits", "exceptions"):
        response = admin_client.get(f"/monitor/panels/{name}?range=week")
        body = response.get_data(as_text=True)
        assert response.status_code == 200 and 'class="active" aria-pressed="true"' in body, name
        assert "This panel could not be built" not in body, name
    assert "1</strong>" in admin_client.get("/monitor/panels/exceptions?range=week").get_data(as_text=True)
