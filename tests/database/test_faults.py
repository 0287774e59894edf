"""Faults injected for real on a private MariaDB started once for this module: killed with `kill -9` under a
checkout, frozen with SIGSTOP. Each test asserts what the buyer sees and what the database kept."""

import logging
import re
import shutil
import threading
import time
from decimal import Decimal

import pytest
from flask import request_finished
from sqlalchemy import func, select, text
from sqlalchemy.exc import OperationalError

from sipup import create_app
from sipup.extensions import db
from sipup.jobs import enqueue
from sipup.jobs.worker import build_worker
from sipup.metrics.outages import Outage
from sipup.models import CheckoutKey, Job, Order, Product, utcnow
from sipup.services import cart
from tests.conftest import RequestScopedClient, _empty_tables, _overrides, login
from tests.servers import LocalMariaDB

pytestmark = pytest.mark.skipif(shutil.which("mariadbd") is None, reason="mariadbd is not installed")


@pytest.fixture(scope="module")
def mariadb(tmp_path_factory):
    """A private MariaDB with sipup's schema, for this module's tests to kill and freeze."""
    started = time.monotonic()
    server = LocalMariaDB(tmp_path_factory.mktemp("mariadb")).start()
    print(f"private MariaDB installed and started in {time.monotonic() - started:.2f}s")
    server.url = server.database_url("sipup_faults")
    app = create_app(_settings(server.url), instance_path=str(tmp_path_factory.mktemp("faults-schema")))
    with app.app_context():
        from sipup.cli.db import upgrade_schema

        upgrade_schema()
        db.engine.dispose()
    yield server
    server.stop()


def _settings(url, **extra):
    """The tests' usual settings, with small pools of their own."""
    return {
        **_overrides(url),
        "DB_POOL_SIZE": 2,
        "DB_MAX_OVERFLOW": 2,
        "RATELIMIT_ENABLED": False,
        **extra,
    }


@pytest.fixture
def app(mariadb, tmp_path):
    """The app on the private MariaDB (running again, tables empty afterwards)."""
    app = create_app(_settings(mariadb.url), instance_path=str(tmp_path))
    app.test_client_class = RequestScopedClient
    with app.app_context():
        yield app
        mariadb.resume()
        mariadb.start()
        _forget_dead_connection()
        db.session.remove()
        _empty_tables()
        db.engine.dispose()


@pytest.fixture
def buyer_with_cart(app, make_company, make_user, make_product):
    """A signed-in buyer's client with one line in the cart."""
    product = make_product(sku="LAGER-1", base_price=Decimal("10.00"), stock_on_hand=50)
    buyer = make_user("buyer", make_company())
    cart.add(buyer.id, product, 2)
    client = app.test_client()
    assert login(client, buyer).status_code == 302
    return client, buyer


def _checkout_key(page):
    return re.search(r'name="checkout_key" value="([^"]+)"', page).group(1)


def _forget_dead_connection():
    """The test's own session held a connection to the server that was killed: roll back past it."""
    try:
        db.session.rollback()
    except OperationalError:
        db.session.rollback()


def _orders_of(company_id):
    return db.session.scalar(select(func.count()).select_from(Order).where(Order.company_id == company_id))


@pytest.mark.real_servers
def test_an_order_committed_before_the_database_died_is_shown_not_a_500(app, mariadb, buyer_with_cart, caplog):
    client, buyer = buyer_with_cart
    form = client.get("/checkout")
    assert form.status_code == 200
    key = _checkout_key(form.get_data(as_text=True))
    address_id = buyer.company.addresses[0].id

    def kill_database(sender, response):
        mariadb.kill()  # after the order committed and the answer is made, before the session is closed

    with caplog.at_level(logging.WARNING, "sipup"), request_finished.connected_to(kill_database, app):
        placed = client.post("/checkout", data={"address_id": address_id, "checkout_key": key})
    assert placed.status_code == 302 and "/orders/" in placed.headers["Location"]
    # The checkout returns its connection at the commit, so the clean-up after the answer has nothing left to
    # close; where one does, its database error is one line (the test below).
    assert "Traceback" not in caplog.text

    mariadb.start()
    _forget_dead_connection()
    assert _orders_of(buyer.company_id) == 1
    number = placed.headers["Location"].rsplit("/", 1)[1]
    assert db.session.get(CheckoutKey, (buyer.company_id, key)).order_number == number

    # The buyer did not see the answer and sends the form again: the order is shown, nothing is placed twice.
    again = client.post("/checkout", data={"address_id": address_id, "checkout_key": key}, follow_redirects=True)
    assert again.status_code == 200
    page = again.get_data(as_text=True)
    assert f"Order {number} was already placed" in page and number in again.request.path
    db.session.rollback()
    assert _orders_of(buyer.company_id) == 1


@pytest.mark.real_servers
def test_a_database_error_in_a_clean_up_after_the_answer_is_one_line_not_a_500(app, caplog):
    @app.teardown_request
    def close_on_a_dead_server(_exc):
        raise OperationalError("ROLLBACK", None, ConnectionResetError("Lost connection to MySQL server"))

    with caplog.at_level(logging.WARNING, "sipup"):
        answer = app.test_client().get("/healthz")
    assert answer.status_code == 200
    assert "Database unavailable (clean-up" in caplog.text and "close_on_a_dead_server" in caplog.text
    assert "Traceback" not in caplog.text


@pytest.mark.real_servers
def test_the_checkout_page_made_before_the_database_died_is_answered(app, mariadb, buyer_with_cart):
    client, buyer = buyer_with_cart
    address_id = buyer.company.addresses[0].id

    def kill_database(sender, response):
        mariadb.kill()

    with request_finished.connected_to(kill_database, app):
        page = client.get("/checkout")
    assert page.status_code == 200 and "Place order" in page.get_data(as_text=True)
    # Placing the order finds no database: a 503 page, not a 500.
    down = client.post("/checkout", data={"address_id": address_id})
    assert down.status_code == 503 and "Back in a moment" in down.get_data(as_text=True)


@pytest.mark.real_servers
def test_a_double_submit_places_one_order(app, buyer_with_cart):
    client, buyer = buyer_with_cart
    key = _checkout_key(client.get("/checkout").get_data(as_text=True))
    data = {"address_id": buyer.company.addresses[0].id, "checkout_key": key}
    first, second = client.post("/checkout", data=data), client.post("/checkout", data=data)
    assert first.headers["Location"] == second.headers["Location"]
    db.session.rollback()
    assert _orders_of(buyer.company_id) == 1
    # A form without a key (an older page) still places an order.
    cart.add(buyer.id, db.session.scalar(select(Product).limit(1)), 1)
    assert client.post("/checkout", data={"address_id": data["address_id"]}).status_code == 302
    db.session.rollback()
    assert _orders_of(buyer.company_id) == 2


@pytest.mark.real_servers
def test_a_frozen_database_answers_503_within_seconds_and_recovers(app, mariadb, buyer_with_cart):
    client, buyer = buyer_with_cart
    address_id = buyer.company.addresses[0].id
    assert client.get("/checkout").status_code == 200  # the pool now holds a connection to the server
    mariadb.pause()
    try:
        started = time.monotonic()
        frozen = client.post("/checkout", data={"address_id": address_id})  # the order is placed in the database
        waited = time.monotonic() - started
    finally:
        mariadb.resume()
    assert frozen.status_code == 503 and "Back in a moment" in frozen.get_data(as_text=True)
    # Default limits: the pool's liveness check waits DB_READ_TIMEOUT (3 s), a new connection DB_CONNECT_TIMEOUT.
    assert waited < app.config["DB_READ_TIMEOUT"] + app.config["DB_CONNECT_TIMEOUT"] + 1.5, waited
    assert client.get("/checkout").status_code == 200


@pytest.mark.real_servers
def test_web_requests_have_a_statement_limit_and_the_worker_none(app, mariadb):
    with db.engine.connect() as conn:
        assert conn.execute(text("SELECT @@max_statement_time")).scalar() == 0
    with app.test_request_context("/"):
        with db.engine.connect() as conn:
            assert conn.execute(text("SELECT @@max_statement_time")).scalar() == app.config["DB_STATEMENT_TIMEOUT"]
            started = time.monotonic()
            with pytest.raises(OperationalError) as stopped:
                conn.execute(
                    text(f"SELECT COUNT(*) FROM {', '.join(f'information_schema.COLLATIONS c{n}' for n in range(5))}")
                )
            assert stopped.value.orig.args[0] == 1969  # max_statement_time exceeded
            assert time.monotonic() - started < app.config["DB_STATEMENT_TIMEOUT"] + 1
    with db.engine.connect() as conn:
        assert conn.execute(text("SELECT @@max_statement_time")).scalar() == 0


@pytest.mark.real_servers
def test_a_job_the_database_died_under_runs_again_when_it_returns(app, mariadb):
    """The worker runs a job, the database dies before the run is recorded: the worker holds the claim and gives
    it back at its once-a-minute housekeeping after the database returns, not after the 900 s lease."""
    queue = app.extensions["queue"]
    consumer = build_worker(app, 1)
    scheduler = consumer.scheduler_class(huey=consumer.huey, stop_flag=consumer.stop_flag, interval=1, periodic=True)
    job_id = enqueue("ping", 0.3).id
    db.session.commit()
    threading.Timer(0.1, mariadb.kill).start()  # while the job runs
    assert queue.huey.execute(queue.huey.dequeue()) == "skipped"
    assert list(queue.held) == [job_id]

    scheduler.enqueue_periodic_tasks(utcnow())  # the database is still down: it stays held
    assert list(queue.held) == [job_id]
    mariadb.start()
    scheduler.enqueue_periodic_tasks(utcnow())  # the next minute's housekeeping gives it back
    _forget_dead_connection()
    job = db.session.get(Job, job_id, populate_existing=True)
    assert (job.status, job.attempts, queue.held) == ("retrying", 0, {})
    assert job.dispatched_at is not None  # sent to the queue again
    assert queue.huey.execute(queue.huey.dequeue()) == "done"
    job = db.session.get(Job, job_id, populate_existing=True)
    assert (job.status, job.attempts, job.result) == ("done", 1, "pong")


def _warnings(caplog):
    return [r for r in caplog.records if r.levelno >= logging.WARNING and r.name.startswith(("sipup", "huey"))]


@pytest.mark.real_servers
def test_a_database_outage_logs_one_line_not_one_per_request(app, mariadb, buyer_with_cart, caplog):
    client, _ = buyer_with_cart
    mariadb.kill()
    with caplog.at_level(logging.WARNING):
        answers = {client.get("/checkout").status_code for _ in range(20)}
        assert answers == {503}
        lines = _warnings(caplog)
        assert [r.getMessage().split(":")[0] for r in lines] == ["Database unavailable on GET /checkout"]
        assert not any(r.exc_info for r in lines)  # no traceback for a database that is away
        mariadb.start()
        assert client.get("/checkout").status_code == 200
    assert _warnings(caplog)[-1].getMessage().startswith("Database answers again after")


@pytest.mark.real_servers
def test_a_redis_outage_logs_one_line_from_the_worker_not_one_per_poll(mariadb, local_redis, tmp_path, caplog):
    app = create_app(_settings(mariadb.url, REDIS_URL=local_redis.url), instance_path=str(tmp_path))
    consumer = build_worker(app, 2)
    scheduler = consumer.scheduler_class(huey=consumer.huey, stop_flag=consumer.stop_flag, interval=1, periodic=False)
    workers = [consumer.worker_class(consumer.huey, consumer.stop_flag, 0.01, 0.05, 1.15, None) for _ in range(2)]
    local_redis.stop()
    with caplog.at_level(logging.WARNING):
        for _ in range(5):  # Huey's own loops, as its threads run them: each poll fails (a traceback each before)
            for worker in workers:
                worker.loop()
        scheduler.loop()  # its read of the schedule fails too
        lines = [r.getMessage() for r in _warnings(caplog)]
        assert len(lines) == 1 and lines[0].startswith("Job queue store unavailable: "), lines
        local_redis.start()
        scheduler.loop()  # a second later it reads the schedule again
    lines = [r.getMessage() for r in _warnings(caplog)]
    assert len(lines) == 2 and lines[1].startswith("Job queue store answers again after"), lines
    assert "(11 failure(s) meanwhile)" in lines[1]


def test_an_outage_lasting_minutes_logs_a_count_each_minute():
    records = []
    now = [0.0]
    log = logging.getLogger("sipup.test-outage")
    log.addHandler(handler := logging.Handler())
    handler.emit = records.append
    try:
        away = Outage("Mail server", log, clock=lambda: now[0])
        for second in range(150):  # two and a half minutes, ten failures a second
            now[0] = float(second)
            for _ in range(10):
                away.failed(OSError("connection refused"))
        away.ok()
    finally:
        log.removeHandler(handler)
    assert [r.getMessage() for r in records] == [
        "Mail server unavailable: connection refused",
        "Mail server still unavailable after 60 s: 600 failure(s) in the last 60 s; the last: connection refused",
        "Mail server still unavailable after 120 s: 600 failure(s) in the last 60 s; the last: connection refused",
        "Mail server answers again after 149 s (1500 failure(s) meanwhile)",
    ]


@pytest.mark.real_servers
def test_cron_processing_while_the_database_is_away_prints_one_line(app, mariadb):
    mariadb.kill()
    result = app.test_cli_runner().invoke(args=["queue", "process"])
    assert result.exit_code == 1
    assert result.output.startswith("error: the database is unavailable: ") and result.output.count("\n") == 1
    assert "Traceback" not in result.output
