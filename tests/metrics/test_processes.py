"""The processes that hold a database pool, registered in the shared store: the connection budget counts them
(not short commands as full pools), and mails link to the address `flask serve` listens on."""

from sqlalchemy import text

from sipup import create_app
from sipup.config import DEFAULTS
from sipup.extensions import db
from sipup.metrics import processes
from sipup.metrics.pool import describe_budget
from sipup.observability import panels as monitor
from sipup.services import links
from tests.conftest import _overrides

MARIADB_DEFAULT_MAX_CONNECTIONS = 151


def test_the_default_pool_of_a_server_and_a_worker_fits_mariadbs_default_max_connections():
    serve = processes.connections_needed(DEFAULTS, DEFAULTS["THREADS"])
    worker = processes.connections_needed(DEFAULTS, DEFAULTS["QUEUE_WORKERS"] + 1)
    assert (DEFAULTS["DB_POOL_SIZE"], DEFAULTS["DB_MAX_OVERFLOW"]) == (50, 50)
    assert (serve, worker) == (16, 6) and serve + worker <= MARIADB_DEFAULT_MAX_CONNECTIONS
    assert processes.connections_needed(DEFAULTS, 200) == 100  # never more than the pool and its overflow


def test_the_budget_counts_serve_and_the_worker_not_short_commands(own_app):
    runner = own_app.test_cli_runner()
    assert runner.invoke(args=["queue", "process"]).exit_code == 0  # a cron run writes figures, holds no pool
    counters = own_app.extensions["counters"]
    assert processes.pool_holders(counters) == {}
    stopped = processes.register(own_app, 8, url="http://127.0.0.1:8080")
    assert list(processes.pool_holders(counters).values()) == [16]
    stopped()  # what a normal exit says: it holds no pool any more
    assert processes.pool_holders(counters) == {}
    processes.register(own_app, 8)
    assert list(processes.pool_holders(counters).values()) == [16]

    budget = monitor.panel("database")["connections"]
    rules = {r["key"]: r for r in monitor.panel("recommendations")["rules"]}
    if own_app.backend == "sqlite":
        assert budget is None
        return
    limit = db.session.execute(text("SELECT @@max_connections")).scalar()
    assert budget["needed"] == 16 and budget["processes"] == 1 and budget["max_connections"] == limit
    assert rules["connections"]["state"] == ("firing" if limit < 16 else "clear")
    assert "1 process(es) x 30 connections (SIPUP_DB_POOL_SIZE + SIPUP_DB_MAX_OVERFLOW) at most, 16 by their " in (
        describe_budget(budget)
    )


def test_mails_link_to_the_port_flask_serve_listens_on_in_every_process(own_app, tmp_path):
    assert links.public_url("auth.login") == "http://127.0.0.1:8080/login"  # nothing served yet: the settings
    processes.register(own_app, 8, url=processes.served_address("127.0.0.1", 9123))

    cron = create_app({**_overrides(own_app.config["DATABASE_URL"])}, instance_path=str(tmp_path))
    with cron.app_context():  # another process on the same host: `flask queue process` writing the mail
        assert links.public_url("auth.login") == "http://127.0.0.1:9123/login"
        db.engine.dispose()
    public = create_app(
        {**_overrides(own_app.config["DATABASE_URL"]), "PUBLIC_URL": "https://shop.example.com"},
        instance_path=str(tmp_path),
    )
    with public.app_context():
        assert links.public_url("auth.login") == "https://shop.example.com/login"
        db.engine.dispose()
    assert processes.served_address("0.0.0.0", 8080).endswith(":8080")
    assert "0.0.0.0" not in processes.served_address("0.0.0.0", 8080)
