"""Redis Sentinel for real: a primary, a replica and three sentinels (Debian's redis-sentinel) on free ports,
sipup under light load (checkouts and cached pages) while the primary is killed with kill -9; Sentinel
promotes the replica and sipup goes on without a restart. Also: the sentinel URL's form, checked at start-up."""

import json
import shutil
import threading
import time
from decimal import Decimal
from pathlib import Path

import pytest
import redis
from sqlalchemy import select

from sipup import create_app, redisclient
from sipup.cache.layer import CacheLayer
from sipup.cli.serve import _redis_problem
from sipup.config import ConfigError
from sipup.extensions import db
from sipup.jobs.heartbeats import store_loss
from sipup.models import Job, JobStatus, Order
from sipup.observability import health
from tests.conftest import BACKENDS, PASSWORD, RequestScopedClient, _empty_tables, _overrides
from tests.servers import LocalRedis, LocalReplica, LocalSentinel, free_port

NAMESPACE = "sentineltest"
needs_sentinel = pytest.mark.skipif(
    shutil.which("redis-sentinel") is None, reason="redis-sentinel is not installed (Debian: redis-sentinel)"
)


def _wait(what, condition, timeout=15, every=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        time.sleep(every)
    raise AssertionError(f"{what}: not within {timeout} s")


def _sentinel_view(sentinel):
    client = redis.Redis(port=sentinel.port, decode_responses=True)
    try:
        return client.sentinel_master(LocalSentinel.MASTER)
    finally:
        client.close()


@pytest.fixture(scope="module")
def sentinels(tmp_path_factory):
    """Primary, replica and three sentinels that know each other and the replica; stopped afterwards."""
    folder = tmp_path_factory.mktemp("sentinel")
    primary = LocalRedis(folder).start()
    replica = LocalReplica(folder, primary).start()
    watchers = []
    try:
        replica_client = redis.Redis(port=replica.port, decode_responses=True)
        _wait("the replica follows", lambda: replica_client.info("replication")["master_link_status"] == "up")
        watchers = [LocalSentinel(folder, primary).start() for _ in range(3)]
        for sentinel in watchers:
            _wait(
                "the sentinels know each other and the replica",
                lambda s=sentinel: (
                    _sentinel_view(s)["num-other-sentinels"] == 2 and _sentinel_view(s)["num-slaves"] == 1
                ),
            )
        hosts = ",".join(f"127.0.0.1:{s.port}" for s in watchers)
        yield primary, replica, watchers, f"redis+sentinel://{hosts}/{LocalSentinel.MASTER}/0"
        replica_client.close()
    finally:
        for server in (*watchers, replica, primary):
            server.stop()


# --- the URL's form: one line naming the setting -------------------------------------------------------


@pytest.mark.parametrize(
    "url, says",
    [
        ("redis+sentinel://10.0.0.1:26379,10.0.0.2:26379", "must name the master"),
        ("redis+sentinel:///sipup/0", "must name at least one sentinel"),
        ("redis+sentinel://10.0.0.1:26379,10.0.0.2:port/sipup/0", "must give each sentinel a port"),
        ("redis+sentinel://10.0.0.1:70000/sipup/0", "must give each sentinel a port"),
        ("redis+sentinel://:secret@10.0.0.1:26379/sipup/first", "must end with the database number"),
    ],
)
def test_a_sentinel_url_of_the_wrong_form_stops_start_up_naming_it(tmp_path, url, says):
    with pytest.raises(ConfigError) as raised:
        create_app({"REDIS_URL": url}, instance_path=str(tmp_path))
    line = str(raised.value)
    assert line.startswith("SIPUP_REDIS_URL=") and says in line and "\n" not in line
    assert "secret" not in line


def test_a_sentinel_url_is_taken_apart_for_each_user():
    url = "redis+sentinel://:pw@10.0.0.1:26379,10.0.0.2:26380/shop/3"
    uri, options = redisclient.limits_storage(url, timeout=0.5)
    assert uri == "redis+sentinel://10.0.0.1:26379,10.0.0.2:26380/shop"
    assert options["db"] == 3 and options["password"] == "pw" and options["sentinel_kwargs"]["password"] is None
    assert redisclient.describe(url) == "master 'shop' of the sentinels 10.0.0.1:26379,10.0.0.2:26380"


def test_sentinels_that_do_not_answer_are_one_line_at_start():
    port = free_port()  # nothing listens there
    line = _redis_problem(f"redis+sentinel://127.0.0.1:{port}/sipup/0")
    assert line.startswith(
        f"Redis Sentinel (SIPUP_REDIS_URL): no sentinel of 127.0.0.1:{port} answers; starting degraded"
    )
    assert "\n" not in line


@pytest.mark.real_servers
@needs_sentinel
def test_a_master_name_the_sentinels_do_not_know_is_one_line_at_start(sentinels):
    *_servers, url = sentinels
    line = _redis_problem(url.replace(LocalSentinel.MASTER, "no-such-master"))
    assert "know no master named 'no-such-master'" in line and "get-master-addr-by-name" in line
    assert "\n" not in line
    assert _redis_problem(url) is None


# --- the failover under load ---------------------------------------------------------------------------


class Load:
    """Checkouts by one buyer and product pages for another, each in a thread, every answer kept with its time."""

    def __init__(self, app, checkout_buyer, page_buyer, sku, address_id):
        self.app, self.sku, self.address_id = app, sku, address_id
        self.stop = threading.Event()
        self.checkouts, self.pages, self.errors = [], [], []
        self.threads = [
            threading.Thread(target=self._run, args=(self._checkout, checkout_buyer), daemon=True),
            threading.Thread(target=self._run, args=(self._page, page_buyer), daemon=True),
        ]

    def start(self):
        for thread in self.threads:
            thread.start()

    def finish(self):
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=30)

    def _run(self, step, user):  # user: an e-mail address (the ORM object belongs to the test's thread)
        client = self.app.test_client()
        signed_in = client.post("/login", data={"email": user, "password": PASSWORD})
        if signed_in.status_code != 302:
            self.errors.append(f"sign-in: {signed_in.status_code} {signed_in.get_data(as_text=True)[:300]}")
            return
        while not self.stop.is_set():
            try:
                step(client)
            except Exception as exc:  # kept for the assertion: a request that raised is a failure
                self.errors.append(repr(exc))
            time.sleep(0.1)

    def _checkout(self, client):
        added = client.post("/cart/add", data={"sku": self.sku, "quantity": "1"})
        placed = client.post("/checkout", data={"address_id": self.address_id})
        acknowledged = placed.status_code == 302 and "/orders/" in placed.headers.get("Location", "")
        self.checkouts.append((time.monotonic(), added.status_code, placed.status_code, acknowledged))

    def _page(self, client):
        self.pages.append((time.monotonic(), client.get(f"/products/{self.sku}").status_code))


@pytest.fixture
def app(backend, tmp_path, sentinels):
    """sipup on the sentinel URL (instance folder of its own, so its outbox holds only this test's mails)."""
    *_servers, url = sentinels
    settings = {
        **_overrides(backend[1]),
        "REDIS_URL": url,
        "REDIS_NAMESPACE": NAMESPACE,
        "CACHE_RETRY_SECONDS": 1,
        # Counted, never reached: the load comes from one address at a few requests a second.
        "RATELIMIT_IP": "100000 per minute",
        "RATELIMIT_ENDPOINTS": {"POST shop.checkout": "100000 per minute"},
    }
    app = create_app(settings, instance_path=str(tmp_path))
    app.test_client_class = RequestScopedClient
    with app.app_context():
        yield app
        db.session.remove()
        _empty_tables()
        db.engine.dispose()
        app.extensions["sipup_cache"].close()


def _limit_counts(client):
    """{key: count} of the rate-limit windows in a Redis."""
    keys = list(client.scan_iter(match=f"{NAMESPACE}:limits:*"))
    values = client.mget(keys) if keys else []
    return {k: int(v) for k, v in zip(keys, values) if v is not None and v.isdigit()}


@pytest.mark.real_servers
@needs_sentinel
@pytest.mark.parametrize("backend", [BACKENDS[-1]], indirect=True)  # one database: the Redis side is tested
def test_sipup_rides_out_a_failover_without_a_restart(
    app, sentinels, make_company, make_user, make_product, monkeypatch
):
    primary, replica, watchers, url = sentinels
    product = make_product(sku="SENT-1", base_price=Decimal("4.00"), stock_on_hand=100_000)
    company = make_company(credit_limit="10000000.00")
    buyer, reader = make_user("buyer", company), make_user("buyer", company)
    queue = app.extensions["queue"]
    assert queue.process(limit=10)["problems"] == []  # the first run writes the store's epoch token

    cache_events = []  # (time, event) of every cache count: the first hit after the kill is on the new primary
    count = CacheLayer._count
    monkeypatch.setattr(
        CacheLayer, "_count", lambda self, t, e, n=1: (cache_events.append((time.monotonic(), e)), count(self, t, e, n))
    )
    load = Load(app, buyer.email, reader.email, product.sku, company.addresses[0].id)
    load.start()
    _wait("orders before the kill", lambda: sum(c[3] for c in load.checkouts) >= 5 or load.errors)
    assert load.errors == []

    # What the primary wrote last never reached the replica (asynchronous replication can lose it): the queue
    # store's epoch token and the waiting messages are missing on the replica that is about to be promoted.
    on_replica = redis.Redis(port=replica.port, decode_responses=True)
    huey_keys = list(on_replica.scan_iter(match=f"huey.*{NAMESPACE}*"))
    assert huey_keys, "the queue lives in the sentinels' Redis"
    on_replica.delete(*huey_keys)
    killed = time.monotonic()
    primary.process.kill()  # kill -9
    primary.process.wait()

    def promoted():
        for sentinel in watchers:
            view = _sentinel_view(sentinel)
            if int(view["port"]) == replica.port and "s_down" not in view["flags"]:
                return time.monotonic()
        return None

    promoted_at = _wait("Sentinel promotes the replica", promoted, timeout=20)
    first_checkout = _wait(
        "a checkout after the promotion",
        lambda: next((c[0] for c in load.checkouts if c[0] > promoted_at and c[3]), None),
    )

    def hit_on_new_primary():
        errors = [t for t, e in cache_events if e == "error" and t > killed]
        return errors and next((t for t, e in cache_events if e == "hit" and t > errors[0]), None)

    first_hit = _wait("a cache hit on the new primary", hit_on_new_primary)

    # Rate limits count in the new primary again (Flask-Limiter's fallback checks back after 1, 2, 4... s).
    before = _limit_counts(on_replica)
    limits_back = _wait(
        "rate limits counting in the new primary",
        lambda: (
            not app.extensions["limits"].fallback_active
            and any(v > before.get(k, 0) for k, v in _limit_counts(on_replica).items())
            and time.monotonic()
        ),
        timeout=20,
        every=0.2,
    )
    load.finish()
    print(
        f"\nSentinel failover: kill -> promoted {promoted_at - killed:.2f} s, -> first checkout after it "
        f"{first_checkout - killed:.2f} s, -> first cache hit on the new primary {first_hit - killed:.2f} s, "
        f"-> rate limits counting there {limits_back - killed:.2f} s"
    )

    # Every request was answered: checkouts acknowledged, pages served, degraded meanwhile, never a 500.
    assert load.errors == []
    assert all(c[1] == 302 and c[2] == 302 and c[3] for c in load.checkouts), load.checkouts
    assert all(status == 200 for _t, status in load.pages)
    acknowledged = sum(c[3] for c in load.checkouts)
    during = sum(1 for c in load.checkouts if killed < c[0] < promoted_at)
    assert acknowledged >= 10

    # 0 acknowledged orders lost.
    db.session.rollback()
    orders = db.session.scalars(select(Order).where(Order.company_id == company.id)).all()
    assert len(orders) == acknowledged

    # The processor notices the new primary lacks the epoch, re-sends from the job record; each mail once.
    runs = [queue.process(limit=1000) for _ in range(2)]
    assert store_loss() is not None, runs[0]
    db.session.rollback()
    mails = db.session.scalars(select(Job).where(Job.name == "send_mail")).all()
    confirmations = {tuple(json.loads(job.args)) for job in mails}
    assert confirmations == {("order_confirmation", order.id) for order in orders}
    assert all(job.status == JobStatus.DONE and job.attempts == 1 for job in mails)
    written = [path.read_bytes() for path in Path(app.instance_path, "outbox").iterdir()]
    for order in orders:
        assert sum(order.number.encode() in mail for mail in written) == 1, order.number
    assert len(written) == len(orders)

    # /monitor's Redis row: Sentinel in use, and the promoted replica as the primary.
    row = health.redis_server()
    assert row["state"] == "ok" and f"Sentinel, primary 127.0.0.1:{replica.port}" in row["detail"]
    on_replica.close()
    print(f"{acknowledged} orders acknowledged ({during} while no primary was known), {len(written)} mails")
