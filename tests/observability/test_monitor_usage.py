"""/monitor's "Running now", "Wait per priority" and "Usage" panels, from real runs and requests."""

import time
from datetime import timedelta

import pytest

from sipup.extensions import db
from sipup.jobs.manage import running_now
from sipup.jobs.marks import RUNNING, running_marks
from sipup.jobs.registry import enqueue, job
from sipup.jobs.stats import wait_stats
from sipup.models import Job, JobStatus, utcnow
from tests.conftest import login

SEEN_WHILE_RUNNING = []


@job(priority="high")
def watched_export(label):
    """Test job: notes what "Running now" says while it runs."""
    SEEN_WHILE_RUNNING.append(running_now())
    return label


@job(priority="low")
def idle_export(label):
    """Test job: succeeds."""
    return label


@pytest.fixture
def app(own_app):
    return own_app


def test_a_running_job_shows_with_its_host_and_goes_when_done(app, admin_client):
    SEEN_WHILE_RUNNING.clear()
    record = enqueue(watched_export, "prices.csv")
    db.session.commit()
    assert app.extensions["queue"].process(5)["run"] == 1
    [seen] = SEEN_WHILE_RUNNING
    [row] = [r for r in seen if r["id"] == record.id]
    assert row["name"] == "watched_export" and row["priority"] == "high" and row["attempt"] == 1
    assert row["host"] == app.config["HOST_NAME"] and row["pid"].isdigit() and 0 <= row["seconds"] < 60
    assert running_marks(app.extensions["counters"]) == {}  # the mark went with the run
    page = admin_client.get("/monitor/panels/running").get_data(as_text=True)
    assert "No job is running at this moment." in page


def test_the_panel_lists_what_runs_elsewhere_and_the_reaper_takes_back_a_dead_runs_mark(app, admin_client):
    counters = app.extensions["counters"]
    now = utcnow()

    def running(started, lease):
        """A run of idle_export that began `started` ago and holds its lease until `lease` from now."""
        fields = dict(name="idle_export", args="[]", priority=0, status=JobStatus.RUNNING, attempts=1, run_at=now)
        return Job(**fields, started_at=now - started, lease_until=now + lease)

    alive = running(timedelta(seconds=200), timedelta(hours=1))
    dead = running(timedelta(hours=2), -timedelta(minutes=1))
    db.session.add_all([alive, dead])
    db.session.commit()
    # A mark left by a worker that stopped while the job ran, before another claimed it: the newest one counts.
    counters.mark(f"{RUNNING}{alive.id}|worker-gone|1", True, now=time.time() - 500)
    counters.mark(f"{RUNNING}{alive.id}|worker-b|4242", True)
    counters.mark(f"{RUNNING}{dead.id}|worker-c|77", True)
    page = admin_client.get("/monitor/panels/running").get_data(as_text=True)
    assert f"#{alive.id} idle_export" in page and "worker-b" in page and "pid 4242" in page
    assert f"#{dead.id} idle_export" in page and "worker-c" in page
    app.extensions["queue"].reap()
    assert set(running_marks(counters)) == {alive.id}
    page = admin_client.get("/monitor/panels/running").get_data(as_text=True)
    assert "worker-b" in page and "worker-c" not in page and "worker-gone" not in page
    alive.status = JobStatus.DONE
    db.session.commit()
    app.extensions["queue"].forget_finished_runs()
    assert running_marks(counters) == {}


def test_waits_are_counted_per_priority_from_due_to_start(app, admin_client):
    enqueue(watched_export, "a")
    enqueue(idle_export, "b")
    late = enqueue(idle_export, "c")
    db.session.commit()
    # One low job waited about ten minutes (its due time set back as if no processor had run).
    db.session.query(Job).filter_by(id=late.id).update({"run_at": utcnow() - timedelta(minutes=10)})
    db.session.commit()
    app.extensions["queue"].process(10)
    waits = {w["priority"]: w for w in wait_stats(app.extensions["counters"])}
    assert waits["high"]["started"] == 1 and waits["high"]["p95_s"] <= 2
    assert waits["low"]["started"] == 2 and waits["low"]["p50_s"] <= 2 and waits["low"]["p95_s"] == 900
    assert waits["normal"] == {"priority": "normal", "started": 0, "p50_s": None, "p95_s": None}
    page = admin_client.get("/monitor/panels/waits?range=day").get_data(as_text=True)
    assert "≤ 15 min" in page and 'data-range="day"' in page


def test_usage_counts_signed_in_requests_by_company_and_user_for_admins_only(
    app, admin_client, make_company, make_user
):
    heavy, light = make_company(name="Kiosk Heavy"), make_company(name="Bar Light")
    buyer, other = make_user("buyer", heavy), make_user("buyer", light)
    for user, pages in ((buyer, 5), (other, 1)):
        client = app.test_client()
        assert login(client, user).status_code == 302
        for _ in range(pages):
            assert client.get("/products").status_code == 200
    assert app.test_client().get("/products").status_code in (200, 302)  # nobody signed in: counts nowhere
    page = admin_client.get("/monitor/panels/usage").get_data(as_text=True)
    by_requests = page.split("Companies by requests")[1].split("Companies by server time")[0]
    assert by_requests.index("Kiosk Heavy") < by_requests.index("Bar Light")
    assert f'href="/admin/companies/{heavy.id}"' in by_requests
    users = page.split("Users by requests")[1]
    assert buyer.email in users and other.email in users
    assert "</a>" in users.split(buyer.email)[1].split("</tr>")[0]  # the user's company, linked
    buyer_client = app.test_client()
    assert login(buyer_client, buyer).status_code == 302
    assert buyer_client.get("/monitor/panels/usage").status_code in (302, 403)
