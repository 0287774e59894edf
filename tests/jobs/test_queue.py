"""The job queue on Huey (SQLite file and real Redis): priorities, retries, the durable record, outages, the CLI."""

import json
import os
import threading
from datetime import timedelta

import pytest
from flask_babel import force_locale
from sqlalchemy import event, select

from sipup.extensions import db
from sipup.i18n import N_, kept, kept_parts, shown
from sipup.jobs import manage
from sipup.jobs.heartbeats import store_loss
from sipup.jobs.registry import PermanentError, _message_of, enqueue, job
from sipup.models import Job, QueueRun, utcnow
from tests.conftest import REDIS_URL, set_queue_clock

RUNS = []


@job(priority="normal")
def record_run(label):
    """Test job: note that it ran."""
    RUNS.append(label)
    return f"ran {label}"


@job()
def always_fails(label):
    """Test job: a failure that retrying might fix."""
    raise ConnectionError(f"server for {label} refused the connection")


@job()
def bad_data(label):
    """Test job: a failure that retrying cannot fix."""
    raise PermanentError(f"line 3 of {label}: “abc” is not an amount")


@pytest.fixture(params=["huey-sqlite", "huey-redis"])
def qapp(request, app, make_app):
    """An app whose queue runs on Huey's SQLite storage or on the shared Redis (a namespace of its own)."""
    if request.param == "huey-redis":
        namespace = request.getfixturevalue("redis_namespace")
        target = make_app(REDIS_URL=REDIS_URL, REDIS_NAMESPACE=namespace)
    else:
        target = app
    huey = target.extensions["queue"].huey
    huey.flush()
    RUNS.clear()
    with target.app_context():
        yield target
        db.session.remove()
    huey.flush()


@pytest.fixture
def clock(monkeypatch):
    """The queue's clock, moved by hand: retry delays are checked without waiting for them."""

    class Clock:
        now = utcnow().replace(microsecond=0)  # MySQL DATETIME keeps whole seconds

        def __call__(self):
            return self.now

        def advance(self, seconds):
            self.now += timedelta(seconds=seconds)

    fake = Clock()
    set_queue_clock(monkeypatch, fake)
    return fake


def process(app, limit=10):
    return app.extensions["queue"].process(limit)


def the_job(record):
    db.session.expire_all()
    return db.session.get(Job, record.id)


def test_priority_order_high_normal_low_fifo_within_one(qapp):
    for label, priority in [
        ("low1", "low"),
        ("normal1", "normal"),
        ("high1", "high"),
        ("low2", "low"),
        ("high2", "high"),
        ("normal2", "normal"),
    ]:
        enqueue(record_run, label, priority=priority)
    db.session.commit()
    summary = process(qapp, limit=4)
    assert RUNS == ["high1", "high2", "normal1", "normal2"]
    assert (summary["run"], summary["failed"]) == (4, 0)
    process(qapp)
    assert RUNS[4:] == ["low1", "low2"]
    assert {j.status for j in db.session.scalars(select(Job))} == {"done"}


def test_jobs_are_sent_only_when_the_transaction_commits(qapp):
    enqueue(record_run, "rolled back")
    db.session.rollback()
    assert db.session.scalar(select(Job)) is None
    assert qapp.extensions["queue"].huey.pending_count() == 0
    record = enqueue(record_run, "committed")
    db.session.commit()
    assert qapp.extensions["queue"].huey.pending_count() == 1
    process(qapp)
    assert RUNS == ["committed"]
    done = the_job(record)
    assert (done.status, done.attempts, done.result) == ("done", 1, "ran committed")
    assert done.started_at and done.finished_at


def test_retry_after_60_then_120_seconds_then_failed_with_its_error(qapp, clock):
    record = enqueue(always_fails, "smtp")
    db.session.commit()
    process(qapp)
    first = the_job(record)
    assert (first.status, first.attempts) == ("retrying", 1)
    assert first.run_at == clock.now + timedelta(seconds=60)
    assert "refused the connection" in first.error

    clock.advance(59)
    assert process(qapp)["run"] == 0  # not yet due: Huey keeps it in its schedule
    assert the_job(record).attempts == 1
    clock.advance(2)
    process(qapp)
    second = the_job(record)
    assert (second.status, second.attempts) == ("retrying", 2)
    assert second.run_at == clock.now + timedelta(seconds=120)

    clock.advance(121)
    summary = process(qapp)
    last = the_job(record)
    assert (last.status, last.attempts, summary["failed"]) == ("failed", 3, 1)
    assert "ConnectionError: server for smtp refused the connection" in last.error
    clock.advance(3600)
    process(qapp)  # a failed job stays failed and stays in the table
    assert the_job(record).status == "failed"


def test_bad_data_fails_at_once_with_its_reason(qapp):
    record = enqueue(bad_data, "payments.csv")
    db.session.commit()
    process(qapp)
    failed = the_job(record)
    assert (failed.status, failed.attempts) == ("failed", 1)
    assert failed.error == "line 3 of payments.csv: “abc” is not an amount"


def test_a_job_whose_process_died_is_retried_after_its_lease(qapp, clock):
    queue = qapp.extensions["queue"]
    record = enqueue(record_run, "interrupted")
    db.session.commit()
    # What a processor killed with -9 mid-run leaves behind: Huey's message gone, the row claimed.
    task = queue.huey.dequeue()
    assert queue._claim(int(task.id), task.name)[:2] == (1, 3)  # attempts, max attempts
    assert process(qapp)["run"] == 0 and RUNS == []
    clock.advance(qapp.config["QUEUE_LEASE_SECONDS"] + 1)
    summary = process(qapp)
    assert summary["reaped"] == 1 and summary["resent"] == 1
    assert RUNS == ["interrupted"]
    done = the_job(record)
    assert (done.status, done.attempts) == ("done", 2)


def test_a_job_that_died_on_its_last_attempt_is_shown_failed(qapp, clock):
    queue = qapp.extensions["queue"]
    record = enqueue(record_run, "doomed")
    db.session.commit()
    db.session.execute(Job.__table__.update().where(Job.id == record.id).values(attempts=2))
    db.session.commit()
    task = queue.huey.dequeue()
    queue._claim(int(task.id), task.name)
    clock.advance(qapp.config["QUEUE_LEASE_SECONDS"] + 1)
    process(qapp)
    failed = the_job(record)
    assert failed.status == "failed" and "process running it stopped" in failed.error
    assert RUNS == []


def test_overlapping_processors_never_run_a_job_twice(qapp):
    records = [enqueue(record_run, f"job{n}") for n in range(30)]
    db.session.commit()
    queue = qapp.extensions["queue"]
    for record in records[:10]:  # a re-sent message: two copies of the same job in Huey
        queue.send([_message_of(record)])
    errors = []

    def processor():
        try:
            with qapp.app_context():
                queue.process(100)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=processor) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    assert sorted(RUNS) == sorted(f"job{n}" for n in range(30))
    db.session.expire_all()
    assert all(j.status == "done" and j.attempts == 1 for j in db.session.scalars(select(Job)))


@pytest.mark.periodic_jobs
def test_periodic_jobs_are_enqueued_once_per_due_minute(qapp, clock):
    clock.now = clock.now.replace(hour=2, minute=30, second=5, microsecond=0)
    queue = qapp.extensions["queue"]
    first = queue.process(0)
    second = queue.process(0)  # an overlapping or repeated run in the same minute
    assert "nightly_backup" in first["periodic"] and "cache_cleanup" not in first["periodic"]
    assert second["periodic"] == []
    keys = db.session.scalars(select(Job.dedupe_key).where(Job.name == "nightly_backup")).all()
    assert keys == [f"periodic:nightly_backup@{clock.now:%Y-%m-%d}T02:30"]
    clock.advance(50 * 60)  # 03:20: the hourly cleanup (minute 15) was due while nobody ran
    assert "cache_cleanup" in queue.process(0)["periodic"]


def test_redis_down_at_enqueue_keeps_the_job_until_the_processor_sends_it(app, make_app, local_redis):
    target = make_app(REDIS_URL=local_redis.url, REDIS_NAMESPACE="outage")
    with target.app_context():
        local_redis.stop()
        record = enqueue(record_run, "during outage")
        db.session.commit()  # no error: the business change stands
        assert the_job(record).dispatched_at is None
        status = manage.queue_status()
        assert status["outbox"] == 1 and status["huey_error"]
        summary = process(target)
        assert summary["run"] == 0 and summary["resent"] is None
        assert any(problem.startswith("resent: failed") for problem in summary["problems"])
        assert the_job(record).status == "queued"
        local_redis.start()
        RUNS.clear()
        summary = process(target)
        assert summary["resent"] == 1 and RUNS == ["during outage"]
        assert the_job(record).status == "done"
        db.session.remove()
        target.extensions["counters"].flush()  # nothing left for the exit flush once the server is gone
        target.extensions["query_stats"].flush()


def test_cli_status_retry_and_cleanup(qapp, runner):
    runner = qapp.test_cli_runner()
    failed = enqueue(bad_data, "a.csv")
    enqueue(record_run, "waiting", priority="high")
    db.session.commit()
    process(qapp, limit=1)  # the high one runs first
    process(qapp)
    result = runner.invoke(args=["queue", "status"])
    assert result.exit_code == 0, result.output
    assert "failed" in result.output and "Last run of process" in result.output
    row = next(line for line in result.output.splitlines() if line.strip().startswith("failed"))
    assert row.split()[1:] == ["0", "1", "0", "1"]

    result = runner.invoke(args=["queue", "retry", str(failed.id)])
    assert result.exit_code == 0 and f"Queued job {failed.id}" in result.output
    assert the_job(failed).status == "queued"
    process(qapp)
    result = runner.invoke(args=["queue", "retry", "--failed"])
    assert "Queued 1 failed job(s) again." in result.output
    assert runner.invoke(args=["queue", "retry", "999999"]).exit_code == 1
    assert runner.invoke(args=["queue", "retry"]).exit_code == 2

    process(qapp)
    db.session.execute(Job.__table__.update().values(finished_at=utcnow() - timedelta(days=40)))
    db.session.commit()
    result = runner.invoke(args=["queue", "cleanup", "--days", "30"])
    assert "Deleted 2 finished job(s)" in result.output
    assert db.session.scalar(select(Job)) is None


def test_cli_process_limit_and_heartbeat(qapp):
    runner = qapp.test_cli_runner()
    counters = qapp.extensions["counters"]
    done_before = counters.totals("queue", "hour", 3).get("done", 0)
    for n in range(12):
        enqueue(record_run, n)
    db.session.commit()
    result = runner.invoke(args=["queue", "process"])
    assert result.exit_code == 0, result.output
    assert result.output == ""  # cron mails or logs any output: a run that went well says nothing
    result = runner.invoke(args=["queue", "process", "--limit", "1", "--verbose"])
    assert result.output.startswith("Ran 1 job(s), 0 failed")
    beat = db.session.get(QueueRun, "process")
    assert beat.jobs_run == 1 and beat.finished_at is not None
    assert counters.totals("queue", "hour", 3)["done"] - done_before == 11


def test_a_duplicate_dedupe_key_is_skipped_without_losing_the_transaction(qapp):
    assert enqueue(record_run, "first", dedupe_key="once") is not None
    db.session.commit()
    kept = enqueue(record_run, "same transaction")
    assert enqueue(record_run, "second", dedupe_key="once") is None
    db.session.commit()
    assert the_job(kept) is not None
    process(qapp)
    assert sorted(RUNS) == ["first", "same transaction"]


def test_a_key_new_to_the_transaction_is_stored_by_one_insert_and_still_dedupes(qapp):
    """new_key (the job names an object made in this transaction): no savepoint around the insert, the key kept."""
    statements = []

    def note(_conn, _cursor, statement, *_args):
        statements.append(statement.split(None, 1)[0].upper())

    event.listen(db.engine, "before_cursor_execute", note)
    try:
        assert enqueue(record_run, "first", dedupe_key="new-order", new_key=True) is not None
    finally:
        event.remove(db.engine, "before_cursor_execute", note)
    db.session.commit()
    assert statements == ["INSERT"]
    assert enqueue(record_run, "again", dedupe_key="new-order") is None
    db.session.commit()
    process(qapp)
    assert RUNS == ["first"]


def test_unknown_priority_is_refused(qapp):
    with pytest.raises(ValueError, match="high, normal or low"):
        enqueue(record_run, "x", priority="urgent")


def test_cli_enqueue_by_name(qapp):
    runner = qapp.test_cli_runner()
    result = runner.invoke(args=["queue", "enqueue", "record_run", "by hand", "--priority", "high"])
    assert result.exit_code == 0 and "(record_run, high)" in result.output
    assert runner.invoke(args=["queue", "enqueue", "nope"]).exit_code == 1
    process(qapp)
    assert RUNS == ["by hand"]


def test_checkout_succeeds_while_redis_is_down_and_its_mail_follows(
    app, make_app, local_redis, make_company, make_user, make_product
):
    from tests.conftest import login

    target = make_app(REDIS_URL=local_redis.url, REDIS_NAMESPACE="outage")
    with target.app_context():
        buyer = make_user("buyer", make_company())
        product = make_product()
        client = target.test_client()
        assert login(client, buyer).status_code == 302
        client.post("/cart/add", data={"sku": product.sku, "quantity": "2"})
        local_redis.stop()
        response = client.post("/checkout", data={"address_id": str(buyer.company.addresses[0].id)})
        assert response.status_code == 302 and "/orders/" in response.headers["Location"]
        record = db.session.scalar(select(Job).where(Job.name == "send_mail"))
        assert record.dispatched_at is None and record.status == "queued"
        local_redis.start()
        outbox = os.path.join(target.instance_path, "outbox")
        before = set(os.listdir(outbox)) if os.path.isdir(outbox) else set()
        assert process(target)["resent"] == 1
        assert the_job(record).status == "done"
        assert len(set(os.listdir(outbox)) - before) == 1
        db.session.remove()
        target.extensions["counters"].flush()
        target.extensions["query_stats"].flush()


def test_only_committed_jobs_count_as_arrived(qapp):
    counters = qapp.extensions["counters"]
    before = counters.totals("queue").get("enqueued", 0)
    enqueue("record_run", "kept")
    db.session.commit()
    enqueue("record_run", "rolled back")
    db.session.rollback()
    assert counters.totals("queue").get("enqueued", 0) == before + 1


def test_process_prints_one_line_per_real_problem(qapp):
    runner = qapp.test_cli_runner()
    enqueue(bad_data, "b.csv")
    db.session.commit()
    result = runner.invoke(args=["queue", "process"])
    assert result.exit_code == 0
    assert result.stdout == ""
    assert result.stderr.splitlines() == ["warning: 1 job(s) failed in this run; see `flask queue status`."]
    assert runner.invoke(args=["queue", "process"]).output == ""


def lose_the_store(app, store):
    """What a Redis restart without persistence (or a lost queue file) does to Huey's data."""
    if store is None:
        app.extensions["queue"].huey.flush()
    else:
        store.stop()
        store.start()


@pytest.mark.parametrize("where", ["huey-sqlite", "private-redis"])
def test_jobs_survive_a_queue_store_that_forgot_them(app, make_app, tmp_path, where):
    from sipup.observability.health import queue_processor
    from tests.servers import LocalRedis, local_server

    store = local_server(LocalRedis, tmp_path) if where == "private-redis" else None
    target = make_app(REDIS_URL=store.url, REDIS_NAMESPACE="loss") if store else app
    queue = target.extensions["queue"]
    queue.huey.flush()
    RUNS.clear()
    try:
        with target.app_context():
            assert process(target, limit=0)["lost"] == 0  # cron ran before: the store's epoch is recorded
            labels = [f"confirmation {n}" for n in range(100)]
            for label in labels:
                enqueue(record_run, label)
            enqueue(record_run, "retry later", delay=600)
            db.session.commit()
            assert queue.huey.pending_count() == 100 and queue.huey.scheduled_count() == 1
            lose_the_store(target, store)
            assert queue.huey.pending_count() == 0

            began = utcnow()
            result = target.test_cli_runner().invoke(args=["queue", "process", "--limit", "200"])
            assert result.exit_code == 0, result.output
            store_name = "Redis" if store else "The queue file"
            assert result.stdout == ""
            assert result.stderr.splitlines() in [  # the run may cross a minute
                [f"warning: {store_name} lost 101 queued message(s) at {moment:%H:%M} UTC; re-sent."]
                for moment in (began, utcnow())
            ]
            assert sorted(RUNS) == sorted(labels)  # every job ran, and once
            db.session.expire_all()
            jobs = db.session.scalars(select(Job).where(Job.name == "record_run")).all()
            assert sorted((j.status, j.attempts) for j in jobs) == [("done", 1)] * 100 + [("queued", 0)]
            assert queue.huey.scheduled_count() == 1  # the delayed one waits in the schedule again

            beat = queue_processor()
            assert beat["state"] == "warn" and f"{store_name} lost 101 queued message(s)" in beat["detail"]
            status = target.test_cli_runner().invoke(args=["queue", "status"]).output
            assert "warning: the queue store lost 101 queued message(s)" in status
            assert process(target)["lost"] == 0  # the next run finds the new epoch
            assert sorted(RUNS) == sorted(labels)
            db.session.remove()
            target.extensions["counters"].flush()
            target.extensions["query_stats"].flush()
    finally:
        if store:
            store.stop()


def test_a_first_run_resends_but_reports_no_loss(qapp):
    queue = qapp.extensions["queue"]
    enqueue(record_run, "before any processor")
    db.session.commit()
    queue.huey.flush()  # lost before the epoch was ever recorded
    summary = process(qapp)
    assert summary["lost"] == 0 and summary["problems"] == []
    assert RUNS == ["before any processor"]
    assert store_loss() is None


# --- Huey's idiom: calling the job -----------------------------------------------------------------


def _recorded(record):
    return (record.name, json.loads(record.args), record.priority, record.status, record.max_attempts)


def test_calling_a_job_records_it_exactly_as_enqueue_does(app):
    import tasks

    called, by_name = tasks.send_mail("order", 5), enqueue("send_mail", "order", 5)
    pinged = tasks.ping()
    urgent = tasks.ping(priority="high")
    assert _recorded(called) == _recorded(by_name) == ("send_mail", ["order", 5], 1, "queued", 3)
    assert _recorded(pinged)[:3] == ("ping", [], 0) and urgent.priority == 2
    db.session.commit()
    summary = app.extensions["queue"].process(10)
    db.session.expire_all()
    assert db.session.get(Job, pinged.id).status == "done" and summary["run"] >= 2


def test_schedule_delays_a_job_and_keyword_arguments_name_the_right_call(app):
    import tasks

    later = tasks.ping.schedule((1,), delay=120)
    assert json.loads(later.args) == [1]
    assert 110 <= (later.run_at - later.created_at).total_seconds() <= 130
    with pytest.raises(TypeError, match=r"ping\(\) takes its arguments by position.*ping\(seconds\)"):
        tasks.ping(seconds=1)
    db.session.rollback()


def test_a_job_retried_or_cancelled_by_hand_keeps_its_last_error_readable(qapp):
    short = kept(N_("No single company matches “%(company)s”."), company="Nobody Ltd")
    long = kept_parts(*[kept(N_("line %(line)s: %(problem)s"), line=n, problem="unknown SKU " * 20) for n in range(13)])
    assert 3800 < len(long) < 4000  # fits its column alone, no longer with the note around it
    for error in (short, long):
        record = enqueue(record_run, "retried")
        db.session.commit()
        record.status, record.error = "failed", str(error)  # as read back from the table
        db.session.commit()
        manage.retry_job(record.id)
        retried = the_job(record).error
        manage.cancel_job(record.id)
        text = the_job(record).error
        assert len(retried) <= 4000 and len(text) <= 4000
        with force_locale("de"):
            shown_text = shown(text)
        if error is short:  # short enough: kept as messages, each reader reads it in their language
            assert shown_text == (
                "(von Hand abgebrochen; letzter Fehler: (von Hand wiederholt; letzter Fehler: "
                "Auf „Nobody Ltd“ passt nicht genau eine Firma.))"
            )
        else:  # too long: kept in the shop's default language, then cut, rather than cut mid-message
            assert retried.startswith("(retried by hand; last error: line 0: unknown SKU") and shown(retried) == retried
            assert shown_text.startswith("(von Hand abgebrochen; letzter Fehler: (retried by hand; last error: line 0:")
            assert "i18n:" not in shown_text


def test_a_scratch_namespace_is_deleted_with_its_job_queue_and_nothing_else(make_app, redis_namespace):
    import redis

    from sipup import redisclient

    gone, kept_too = f"{redis_namespace}-gone", redis_namespace  # the fixture deletes the second afterwards
    client = redis.Redis.from_url(REDIS_URL)
    for namespace in (gone, kept_too):
        huey = make_app(REDIS_URL=REDIS_URL, REDIS_NAMESPACE=namespace).extensions["queue"].huey
        huey.put("mark", "x")  # Huey's own key-value store
        huey.storage.enqueue(b"message", 0)  # a message in the queue
        client.set(f"{namespace}:cache:x", "1")
    assert redisclient.delete_namespace(client, gone) == 3
    bare = gone.replace("-", "")
    assert not list(client.scan_iter(match=f"{gone}:*")) and not list(client.scan_iter(match=f"huey.*{bare}*"))
    kept_queue = list(client.scan_iter(match=f"huey.*.{kept_too.replace('-', '')}_queue"))
    assert client.get(f"{kept_too}:cache:x") == b"1" and len(kept_queue) == 2
    client.close()
