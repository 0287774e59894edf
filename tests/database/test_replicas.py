"""Read replicas against a real MariaDB primary and a GTID replica of it, both private servers on free ports:
catalog reads land on the replica, a buyer's checkout and order page stay on the primary, and a replica that
stops replicating or dies is skipped (the buyer sees nothing of it, /monitor does).

Statements are counted on each server (SHOW GLOBAL STATUS's Com_select), not by sipup itself."""

import logging
import re
import shutil
import time
from decimal import Decimal

import pytest
from sqlalchemy.engine import make_url

from sipup import create_app
from sipup.cli.db import upgrade_schema
from sipup.config import ConfigError
from sipup.extensions import db
from sipup.models import Product
from sipup.replicas import LAGGING, OTHER_PRIMARY, REPLICATING, judge
from sipup.services import cart
from tests.conftest import RequestScopedClient, _empty_tables, _overrides, login
from tests.servers import LocalMariaDB, replication_options

pytestmark = pytest.mark.skipif(shutil.which("mariadbd") is None, reason="mariadbd is not installed")


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    """A primary and a GTID replica of it (MASTER_USE_GTID=slave_pos), sipup's schema made on the primary."""
    started = time.monotonic()
    primary = LocalMariaDB(tmp_path_factory.mktemp("primary"), options=replication_options(1))
    replica = LocalMariaDB(tmp_path_factory.mktemp("replica"), options=[*replication_options(2), "--read-only"])
    try:
        yield from _replicating(primary, replica, tmp_path_factory, started)
    finally:
        replica.stop()
        primary.stop()


def _replicating(primary, replica, tmp_path_factory, started):
    primary.start()
    replica.start().replicate_from(primary)
    primary.url = primary.database_url("sipup_replicas")
    replica.url = make_url(primary.url).set(port=replica.port).render_as_string(hide_password=False)
    app = create_app(_settings(primary.url), instance_path=str(tmp_path_factory.mktemp("schema")))
    with app.app_context():
        upgrade_schema()
        db.engine.dispose()
    caught_up(primary, replica)
    print(f"primary and replica started, schema replicated in {time.monotonic() - started:.2f}s")
    yield primary, replica


def caught_up(primary, replica, timeout=20):
    """Wait until the replica has applied everything the primary has written."""
    position = primary.query("SELECT @@gtid_binlog_pos AS p")[0]["p"]
    waited = replica.query(f"SELECT MASTER_GTID_WAIT('{position}', {timeout}) AS w")[0]["w"]
    assert waited == 0, f"the replica did not catch up within {timeout}s:\n{replica.log()}"


def _settings(url, **extra):
    """The tests' usual settings, with small pools of their own."""
    return {
        **_overrides(url),
        "DB_POOL_SIZE": 2,
        "DB_MAX_OVERFLOW": 2,
        "MONITOR_PANEL_SECONDS": 0,
        "SLOW_QUERY_MS": 60_000,  # the migrations on a busy machine would open a slow log nobody closes
        "RATELIMIT_ENABLED": False,
        "CACHE_URL": "none://",  # with a cache, its fills read the primary: counted here are the reads themselves
        **extra,
    }


@pytest.fixture
def app(servers, tmp_path):
    """The app on the primary with the replica for reads; the replica replicating again afterwards."""
    primary, replica = servers
    app = create_app(_settings(primary.url, DATABASE_REPLICA_URLS=replica.url), instance_path=str(tmp_path))
    app.test_client_class = RequestScopedClient
    with app.app_context():
        yield app
        db.session.remove()
        replica.start()
        if replica.query("SHOW SLAVE STATUS")[0]["Slave_SQL_Running"] != "Yes":
            replica.query("START SLAVE")
        _empty_tables()
        caught_up(primary, replica)
        db.engine.dispose()
        for engine in (r.engine for r in app.extensions["sipup_replicas"].replicas):
            engine.dispose()


@pytest.fixture
def buyer(app, servers, make_company, make_user, make_product):
    """A signed-in buyer's client, two products, everything replicated; the browser's own writes (signing in)
    as if a few seconds ago, so its reads may use the replica."""
    make_product(sku="LAGER-1", name="Lager", base_price=Decimal("10.00"), stock_on_hand=50)
    make_product(sku="CIDER-1", name="Cider", base_price=Decimal("12.00"), stock_on_hand=50)
    user = make_user("buyer", make_company())
    client = app.test_client()
    assert login(client, user).status_code == 302
    caught_up(*servers)
    _seconds_later(client)
    replicas = app.extensions["sipup_replicas"]
    replicas.check()
    replicas.check_seconds = 3600  # checked now and not again: their statements stay out of the counts
    assert [r.state for r in replicas.replicas] == [REPLICATING]
    client.get("/products")  # the replica's pool has connected (the dialect's first queries are not counted)
    return client, user


def _seconds_later(client):
    """The browser's read-your-writes window over: what it holds after SIPUP_REPLICA_MAX_LAG + 2.5 s."""
    with client.session_transaction() as session:
        session.pop("primary_until", None)


def selects(servers, request):
    """(SELECTs on the primary, on the replica) while request() runs, and its answer."""
    primary, replica = servers
    before = primary.status("Com_select"), replica.status("Com_select")
    response = request()
    after = primary.status("Com_select"), replica.status("Com_select")
    return (after[0] - before[0], after[1] - before[1]), response


@pytest.mark.real_servers
def test_catalog_reads_land_on_the_replica_and_a_checkout_then_its_order_page_read_the_primary(app, servers, buyer):
    client, user = buyer
    (on_primary, on_replica), page = selects(servers, lambda: client.get("/products?q=lager"))
    assert page.status_code == 200 and "LAGER-1" in page.get_data(as_text=True)
    print(f"catalog search: {on_primary} SELECTs on the primary, {on_replica} on the replica")
    assert on_replica >= 3 and on_primary <= 3  # the signed-in user, their company and sessions only
    (on_primary, on_replica), page = selects(servers, lambda: client.get("/products/CIDER-1"))
    assert page.status_code == 200 and on_replica >= 1
    print(f"product page: {on_primary} SELECTs on the primary, {on_replica} on the replica")

    cart.add(user.id, db.session.get(Product, db.session.scalar(db.select(Product.id).filter_by(sku="LAGER-1"))), 3)
    form = client.get("/checkout").get_data(as_text=True)
    key = re.search(r'name="checkout_key" value="([^"]+)"', form).group(1)
    placed = client.post("/checkout", data={"address_id": user.company.addresses[0].id, "checkout_key": key})
    assert placed.status_code == 302 and "/orders/" in placed.headers["Location"]
    with client.session_transaction() as session:  # the buyer's reads stay on the primary for a few seconds
        assert 0 < session["primary_until"] - time.time() <= app.config["REPLICA_MAX_LAG"] + 2.5 + 1  # whole seconds

    number = placed.headers["Location"].rsplit("/", 1)[1]
    (on_primary, on_replica), page = selects(servers, lambda: client.get(f"/orders/{number}"))
    assert page.status_code == 200 and number in page.get_data(as_text=True)
    print(f"order page after checkout: {on_primary} SELECTs on the primary, {on_replica} on the replica")
    assert on_replica == 0 and on_primary >= 3


@pytest.mark.real_servers
def test_a_replica_that_stops_replicating_or_dies_is_skipped_and_shown_on_monitor(
    app, servers, buyer, make_user, caplog
):
    client, _ = buyer
    primary, replica = servers
    replicas = app.extensions["sipup_replicas"]
    admin = app.test_client()
    assert login(admin, make_user("admin")).status_code == 302

    replica.query("STOP SLAVE")
    primary.query("UPDATE sipup_replicas.products SET name = 'Lager Fresh' WHERE sku = 'LAGER-1'")
    with caplog.at_level(logging.WARNING, "sipup"):
        replicas.check()
    assert "Read replica" in caplog.text and "replication stopped" in caplog.text
    (on_primary, on_replica), page = selects(servers, lambda: client.get("/products?q=lager"))
    assert page.status_code == 200 and "Lager Fresh" in page.get_data(as_text=True)  # only the primary has it
    assert on_replica == 0 and on_primary >= 3
    panel = admin.get("/monitor/panels/database").get_data(as_text=True)
    assert "replication stopped" in panel and "IO thread No, SQL thread No" in panel
    health = admin.get("/monitor/panels/health").get_data(as_text=True)
    assert "Read replicas" in health and "0 of 1 fit" in health

    replica.kill()
    replicas.check()
    page = client.get("/products/LAGER-1")
    assert page.status_code == 200 and "Lager Fresh" in page.get_data(as_text=True)
    assert "down" in admin.get("/monitor/panels/database").get_data(as_text=True)
    assert replicas.fallbacks >= 2

    replica.start()
    replica.query("START SLAVE")
    caught_up(primary, replica)
    with caplog.at_level(logging.WARNING, "sipup"):
        replicas.check()
    assert "answers again" in caplog.text
    (_, on_replica), page = selects(servers, lambda: client.get("/products?q=lager"))
    assert "Lager Fresh" in page.get_data(as_text=True) and on_replica >= 3


@pytest.mark.real_servers
def test_a_replica_url_of_another_database_or_server_is_named_not_used(app, servers):
    primary, replica = servers
    replica.query("CREATE DATABASE IF NOT EXISTS sipup_elsewhere")  # on the replica only: no sipup schema
    elsewhere = make_url(replica.url).set(database="sipup_elsewhere").render_as_string(hide_password=False)
    not_a_replica = primary.database_url("sipup_replicas_copy")
    other = create_app(
        _settings(primary.url, DATABASE_REPLICA_URLS=f"{elsewhere}, {not_a_replica}"), instance_path=app.instance_path
    )
    with other.app_context():
        problems = other.extensions["sipup_replicas"].problems()
        db.engine.dispose()
    assert len(problems) == 2
    assert "sipup_elsewhere (SIPUP_DATABASE_REPLICA_URLS) is another database:" in problems[0]
    assert "is not a replica: SHOW REPLICA STATUS is empty" in problems[1]
    assert all("\n" not in line and "reads go to the primary" in line for line in problems)

    with pytest.raises(ConfigError, match=r"^SIPUP_DATABASE_REPLICA_URLS: 'postgresql://u:\*\*\*@db/x' is not a MySQL"):
        create_app(_settings(primary.url, DATABASE_REPLICA_URLS="postgresql://u:pw@db/x"))
    with pytest.raises(ConfigError, match="is SIPUP_DATABASE_URL itself"):
        create_app(_settings(primary.url, DATABASE_REPLICA_URLS=primary.url))


def test_lag_and_the_server_replicated_are_judged_from_mariadb_and_mysql_columns():
    mariadb = {"Slave_IO_Running": "Yes", "Slave_SQL_Running": "Yes", "Seconds_Behind_Master": 9, "Master_Server_Id": 1}
    assert judge(mariadb, "v1", 1, "v1", 5)[0] == LAGGING
    mysql = {
        "Replica_IO_Running": "Yes",
        "Replica_SQL_Running": "Yes",
        "Seconds_Behind_Source": 2,
        "Source_Server_Id": 7,
    }
    assert judge(mysql, "v1", 7, "v1", 5) == (REPLICATING, 2, "2 s behind the primary")
    state, _, detail = judge(mysql, "v1", 1, "v1", 5)
    assert state == OTHER_PRIMARY and detail == "it replicates server_id 7; the primary is server_id 1"
