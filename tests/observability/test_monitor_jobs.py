"""/monitor/jobs: the job browser's filters, paging, a job's detail and its retry, cancel and delete
(CSRF on), and the per-type figures of the last 24 hours."""

import re

import pytest
from sqlalchemy import select

from sipup.extensions import db
from sipup.jobs.registry import PermanentError, enqueue, job
from sipup.models import Job, JobStatus
from tests.conftest import PASSWORD, login


@job(priority="high")
def flaky_export(label):
    """Test job: fails at once, as bad data does."""
    raise PermanentError(f"row 7 of {label}: no such customer")


@job(priority="low")
def quiet_export(label):
    """Test job: succeeds."""
    return f"exported {label}"


@pytest.fixture
def app(own_app):
    return own_app


@pytest.fixture
def csrf_app(make_app):
    """The same database with CSRF protection on, as in production."""
    return make_app(WTF_CSRF_ENABLED=True)


def token_of(html):
    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)


def jobs_made(app):
    failed = enqueue(flaky_export, "customers.csv")
    done = enqueue(quiet_export, "prices.csv")
    waiting = enqueue(quiet_export, "later.csv", delay=3600)
    db.session.commit()
    app.extensions["queue"].process(10)
    return failed.id, done.id, waiting.id


def test_the_job_browser_filters_by_state_type_and_priority(app, admin_client):
    failed, done, waiting = jobs_made(app)
    page = admin_client.get("/monitor/jobs").get_data(as_text=True)
    assert "3 jobs" in page and f"/monitor/jobs/{failed}" in page and f"/monitor/jobs/{waiting}" in page
    assert "row 7 of customers.csv" in page  # the last error, in the list
    only_failed = admin_client.get("/monitor/jobs?state=failed").get_data(as_text=True)
    assert "1 job " in only_failed and f'/monitor/jobs/{failed}"' in only_failed
    assert f'/monitor/jobs/{done}"' not in only_failed
    by_type = admin_client.get("/monitor/jobs?name=quiet_export&priority=low").get_data(as_text=True)
    assert "2 jobs" in by_type and f'/monitor/jobs/{failed}"' not in by_type
    assert "0 jobs" in admin_client.get("/monitor/jobs?name=quiet_export&priority=high").get_data(as_text=True)
    bogus = admin_client.get("/monitor/jobs?state=<script>&priority=urgent&page=-3")
    assert (
        bogus.status_code == 200
        and "3 jobs" in bogus.get_data(as_text=True)
        and "<script>" not in bogus.get_data(as_text=True)
    )


def test_a_filter_change_through_htmx_renders_the_list_alone(app, admin_client):
    jobs_made(app)
    response = admin_client.get("/monitor/jobs?state=done", headers={"HX-Request": "true", "HX-Target": "job-list"})
    body = response.get_data(as_text=True)
    assert body.lstrip().startswith("{#") is False and body.lstrip().startswith('<section class="card" id="job-list"')
    assert "<html" not in body and "1 job " in body


def test_the_list_comes_in_pages(app, admin_client):
    for n in range(55):
        enqueue(quiet_export, f"file{n}.csv", delay=3600)
    db.session.commit()
    first = admin_client.get("/monitor/jobs").get_data(as_text=True)
    assert "Page 1 of 2" in first and first.count('href="/monitor/jobs/') == 50
    second = admin_client.get("/monitor/jobs?page=2").get_data(as_text=True)
    assert "Page 2 of 2" in second and second.count('href="/monitor/jobs/') == 5
    past = admin_client.get("/monitor/jobs?page=99").get_data(as_text=True)
    assert "Page 2 of 2" in past and past.count('href="/monitor/jobs/') == 5  # past the last: the last
    huge = admin_client.get("/monitor/jobs?page=9223372036854775807")
    assert huge.status_code == 200 and "Page 1 of 2" in huge.get_data(as_text=True)
    assert "Page “9223372036854775807” is not a page number; showing page 1." in huge.get_data(as_text=True)


def test_a_jobs_detail_shows_arguments_attempts_error_duration_and_result(app, admin_client):
    failed, done, waiting = jobs_made(app)
    page = admin_client.get(f"/monitor/jobs/{failed}").get_data(as_text=True)
    assert "customers.csv" in page and "1 of 3" in page and "row 7 of customers.csv: no such customer" in page
    assert "Retry" in page and "Delete" in page and ">Cancel<" not in page
    finished = admin_client.get(f"/monitor/jobs/{done}").get_data(as_text=True)
    assert "exported prices.csv" in finished and re.search(
        r"<dt>Duration</dt><dd>\d+ m?s</dd>", finished
    )  # whole seconds on MariaDB
    assert ">Cancel<" in admin_client.get(f"/monitor/jobs/{waiting}").get_data(as_text=True)
    assert admin_client.get("/monitor/jobs/999999").status_code == 404


def test_retry_cancel_and_delete_need_the_csrf_token(app, csrf_app, make_user):
    with csrf_app.app_context():
        failed, done, waiting = jobs_made(csrf_app)
        client = csrf_app.test_client()
        admin_user = make_user("admin")
        signed_in = client.post(
            "/login",
            data={
                "email": admin_user.email,
                "password": PASSWORD,
                "csrf_token": token_of(client.get("/login").get_data(as_text=True)),
            },
        )
        assert signed_in.status_code == 302
        for action, job_id in (("retry", failed), ("cancel", waiting), ("delete", done)):
            assert client.post(f"/monitor/jobs/{job_id}/{action}").status_code == 400, action
        token = token_of(client.get(f"/monitor/jobs/{failed}").get_data(as_text=True))
        here = f"/monitor/jobs/{failed}"
        response = client.post(f"/monitor/jobs/{failed}/retry", data={"csrf_token": token, "next": here})
        assert response.status_code == 302 and response.headers["Location"] == here
        assert f"Job {failed} (flaky_export) is queued again." in client.get(here).get_data(as_text=True)
        response = client.post(
            f"/monitor/jobs/{waiting}/cancel", data={"csrf_token": token, "next": f"/monitor/jobs/{waiting}"}
        )
        assert response.status_code == 302
        response = client.post(
            f"/monitor/jobs/{done}/delete", data={"csrf_token": token, "next": f"/monitor/jobs/{done}"}
        )
        assert response.headers["Location"] == "/monitor/jobs"  # its own page is gone
        assert "is deleted" in client.get("/monitor/jobs").get_data(as_text=True)
        away = client.post(
            f"/monitor/jobs/{failed}/cancel", data={"csrf_token": token, "next": "https://evil.example/"}
        )
        assert away.headers["Location"].endswith("/monitor#panel-queue")
        db.session.expire_all()
        states = dict(db.session.execute(select(Job.id, Job.status)).all())
        assert states == {failed: JobStatus.CANCELLED, waiting: JobStatus.CANCELLED}


def test_actions_that_do_not_apply_say_why(app, admin_client):
    failed, done, waiting = jobs_made(app)
    admin_client.post(f"/monitor/jobs/{done}/cancel", data={"next": f"/monitor/jobs/{done}"})
    assert f"Job {done} is done; only queued and retrying jobs can be cancelled." in admin_client.get(
        f"/monitor/jobs/{done}"
    ).get_data(as_text=True)
    admin_client.post(f"/monitor/jobs/{waiting}/retry", data={"next": "/monitor/jobs"})
    assert "only failed and cancelled jobs can be retried" in admin_client.get("/monitor/jobs").get_data(as_text=True)
    admin_client.post("/monitor/jobs/999999/delete", data={"next": "/monitor/jobs"})
    assert "There is no job 999999." in admin_client.get("/monitor/jobs").get_data(as_text=True)


def test_a_cancelled_job_does_not_run_when_its_message_comes(app, admin_client):
    record = enqueue(quiet_export, "never.csv")
    db.session.commit()
    admin_client.post(f"/monitor/jobs/{record.id}/cancel")
    assert app.extensions["queue"].process(10)["run"] == 0
    db.session.expire_all()
    assert db.session.get(Job, record.id).status == JobStatus.CANCELLED


def test_job_types_show_runs_failures_and_p95_over_24_hours(app, admin_client):
    jobs_made(app)
    page = admin_client.get("/monitor/jobs").get_data(as_text=True)
    table = page.split("Job types, last 24 hours", 1)[1]
    row = re.search(r"<code>flaky_export</code>.*?</tr>", table, re.S).group(0)
    assert re.findall(r'data-label="(?:Runs|Failed|Retried)">(?:<span[^>]*>)?(\d+)', row) == ["1", "1", "0"]
    assert re.search(r'data-label="p95 run time">≤ \d+ ms', row)


def test_only_admins_browse_jobs(app, client, make_user):
    assert client.get("/monitor/jobs").status_code == 302
    staff = app.test_client()
    login(staff, make_user("staff"))
    assert staff.get("/monitor/jobs").status_code == 403
    assert staff.post("/monitor/jobs/1/delete").status_code == 403


@pytest.mark.parametrize("action", ["", "/retry", "/cancel", "/delete"])
def test_a_job_id_past_the_database_is_not_found_not_a_failure(app, admin_client, action):
    path = f"/monitor/jobs/{2**63}{action}"
    response = admin_client.post(path) if action else admin_client.get(path)
    assert response.status_code == 404


def test_failed_jobs_are_retried_or_deleted_in_bulk_after_a_confirmation(app, csrf_app, make_user):
    with csrf_app.app_context():
        ids = [enqueue(flaky_export, f"file{n}.csv").id for n in range(3)]
        kept = enqueue(quiet_export, "later.csv", delay=3600).id
        db.session.commit()
        csrf_app.extensions["queue"].process(10)
        client = csrf_app.test_client()
        user = make_user("admin")
        token = token_of(client.get("/login").get_data(as_text=True))
        client.post("/login", data={"email": user.email, "password": PASSWORD, "csrf_token": token})
        assert "Retry all 3 failed" in client.get("/monitor/jobs").get_data(as_text=True)
        question = client.get("/monitor/jobs/failed/retry").get_data(as_text=True)
        assert "Retry 3 failed jobs?" in question and f'name="upto" value="{max(ids)}"' in question
        assert client.post("/monitor/jobs/failed/retry", data={"upto": max(ids)}).status_code == 400  # no token
        later = enqueue(flaky_export, "after-the-question.csv").id  # fails after the question: left alone
        db.session.commit()
        csrf_app.extensions["queue"].process(10)
        token = token_of(question)
        answer = client.post("/monitor/jobs/failed/retry", data={"upto": max(ids), "csrf_token": token})
        assert answer.status_code == 302 and answer.headers["Location"] == "/monitor/jobs?state=failed"
        assert "3 failed jobs queued again." in client.get("/monitor/jobs?state=failed").get_data(as_text=True)
        db.session.expire_all()
        states = dict(db.session.execute(select(Job.id, Job.status)).all())
        assert [states[i] for i in ids] == [JobStatus.QUEUED] * 3 and states[later] == JobStatus.FAILED
        question = client.get("/monitor/jobs/failed/delete").get_data(as_text=True)
        assert "Delete 1 failed job?" in question
        client.post("/monitor/jobs/failed/delete", data={"upto": later, "csrf_token": token})
        db.session.expire_all()
        assert db.session.get(Job, later) is None and db.session.get(Job, kept) is not None
        assert "nothing to delete" in client.get("/monitor/jobs/failed/delete").get_data(as_text=True)
        assert client.get("/monitor/jobs/failed/explode").status_code == 404


def test_a_paused_priority_is_not_processed_until_resumed(app, admin_client, runner):
    low = enqueue(quiet_export, "low.csv").id
    db.session.commit()
    response = admin_client.post("/monitor/queue/low/pause", headers={"HX-Request": "true"})
    assert "Jobs of priority low are paused" in response.get_data(as_text=True) and "Resume low" in response.text
    assert app.extensions["queue"].process(10)["run"] == 0
    assert app.extensions["queue"].process(10)["run"] == 0  # waiting in the table, not sent again and again
    db.session.expire_all()
    assert db.session.get(Job, low).status == JobStatus.QUEUED
    assert "paused" in admin_client.get("/monitor/panels/queue").get_data(as_text=True)
    assert "Paused: low" in runner.invoke(args=["queue", "status"]).output
    assert "no priority" in admin_client.post("/monitor/queue/urgent/pause", headers={"HX-Request": "true"}).text
    admin_client.post("/monitor/queue/low/resume")
    assert app.extensions["queue"].process(10)["run"] == 1
    db.session.expire_all()
    assert db.session.get(Job, low).status == JobStatus.DONE
    assert runner.invoke(args=["queue", "pause", "high"]).exit_code == 0
    assert runner.invoke(args=["queue", "resume", "high"]).output == "Jobs of priority high run again.\n"
