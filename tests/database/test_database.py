"""The database layer: pool and connection settings, recovery from dropped connections, deadlock
retries, a full pool and a missing database answered with 503 pages, and the batch helpers."""

import logging
import secrets
import sqlite3
import threading
from decimal import Decimal

import pymysql
import pytest
from sqlalchemy import create_engine, func, select, text, update
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError, OperationalError

from sipup.database import check_database, run_in_transaction
from sipup.dbtools.batch import bulk_insert, bulk_update
from sipup.extensions import db
from sipup.metrics.pool import POOL_TIMEOUTS, POOL_WAITS, pool_status
from sipup.models import Category, Product

MARIADB_ONLY = "needs MariaDB: SQLite has no server to drop connections, no row locks and no connection pool limits"


def mariadb_only(app):
    if app.backend == "sqlite":
        pytest.skip(MARIADB_ONLY)


def _connection_id(conn):
    return conn.execute(text("SELECT CONNECTION_ID()")).scalar_one()


def _kill(url, ids):
    """KILL the given connections from a connection of its own."""
    killer = create_engine(url, poolclass=None)
    try:
        with killer.connect() as conn:
            for connection_id in ids:
                conn.execute(text(f"KILL {int(connection_id)}"))
    finally:
        killer.dispose()


# --- settings -------------------------------------------------------------------------------------


def test_pool_settings_come_from_the_configuration(make_app, app):
    mariadb_only(app)
    tuned = make_app(DB_POOL_SIZE=7, DB_MAX_OVERFLOW=3, DB_POOL_TIMEOUT=4, DB_POOL_RECYCLE=600)
    with tuned.app_context():
        pool = db.engine.pool
        assert pool.size() == 7
        assert pool._max_overflow == 3
        assert pool._timeout == 4
        assert pool._recycle == 600
        assert pool._pre_ping is True


def test_mariadb_connections_read_committed(app):
    mariadb_only(app)
    with db.engine.connect() as conn:
        assert conn.get_isolation_level() == "READ COMMITTED"
        level = conn.execute(text("SELECT @@SESSION.tx_isolation")).scalar_one()
        assert level == "READ-COMMITTED"


def test_sqlite_connections_get_the_pragmas(app):
    if app.backend != "sqlite":
        pytest.skip("SQLite pragmas apply to SQLite connections only")
    with db.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar_one() == "wal"
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar_one() == 30000
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar_one() == 1


def test_a_connection_goes_back_to_the_pool_rolled_back_only_when_a_statement_ran_since_its_commit(app, monkeypatch):
    mariadb_only(app)
    rollbacks = []
    real = pymysql.connections.Connection.rollback
    monkeypatch.setattr(pymysql.connections.Connection, "rollback", lambda conn: rollbacks.append(1) or real(conn))
    table = f"reset_probe_{secrets.token_hex(4)}"
    with db.engine.connect() as conn:
        conn.execute(text(f"CREATE TABLE {table} (id INT PRIMARY KEY)"))
    try:
        rollbacks.clear()
        with db.engine.connect() as conn:  # a write: its commit ended the transaction
            conn.execute(text(f"INSERT INTO {table} VALUES (1)"))
            conn.commit()
        with db.engine.connect():  # nothing ran
            pass
        assert rollbacks == []
        with db.engine.connect() as conn:  # a read: its transaction is ended on return
            assert conn.execute(text(f"SELECT COUNT(*) FROM {table}")).scalar_one() == 1
        assert rollbacks == [1]
    finally:
        # Another session changes the table at once: no connection in the pool holds a lock on it.
        dropper = create_engine(db.engine.url, poolclass=None)
        try:
            with dropper.connect() as conn:
                conn.execute(text("SET SESSION lock_wait_timeout = 2"))
                conn.execute(text(f"DROP TABLE {table}"))
        finally:
            dropper.dispose()


def test_a_new_sqlite_file_another_process_is_writing_is_put_in_wal_mode_when_it_is_done(tmp_path):
    """Switching to WAL needs the file to itself, and SQLite answers "database is locked" at once, without its
    busy wait, while another connection holds a write: the switch is tried again until the write is done."""
    path = tmp_path / "new.db"
    writer = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    writer.execute("CREATE TABLE t (id INTEGER)")
    writer.execute("BEGIN IMMEDIATE")
    writer.execute("INSERT INTO t VALUES (1)")
    done = threading.Timer(0.3, writer.execute, ["COMMIT"])
    done.start()
    engine = create_engine(f"sqlite:///{path}", connect_args={"timeout": 30})
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar_one() == "wal"
            assert conn.exec_driver_sql("SELECT COUNT(*) FROM t").scalar_one() == 1
    finally:
        done.join()
        engine.dispose()
        writer.close()


# --- connections dropped by the server --------------------------------------------------------------


def test_pre_ping_replaces_connections_the_server_dropped(app, client, buyer, login_as, make_product, caplog):
    mariadb_only(app)
    make_product(name="Still here")
    login_as(buyer)
    db.session.remove()
    db.engine.dispose()  # the pool now holds exactly the connections checked out below
    held = [db.engine.connect() for _ in range(3)]
    killed = {_connection_id(conn) for conn in held}
    for conn in held:
        conn.close()
    assert db.engine.pool.checkedin() == 3
    _kill(db.engine.url, killed)

    with caplog.at_level(logging.ERROR):
        response = client.get("/products")
        assert response.status_code == 200
        assert "Still here" in response.get_data(as_text=True)
        with db.engine.connect() as conn:
            assert _connection_id(conn) not in killed
        assert db.session.scalar(select(func.count(Product.id))) == 1
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_without_pre_ping_a_dropped_connection_fails(app):
    """The control for the test above: the KILL really breaks a pooled connection."""
    mariadb_only(app)
    engine = create_engine(db.engine.url, pool_size=1, max_overflow=0, pool_pre_ping=False)
    try:
        with engine.connect() as conn:
            connection_id = _connection_id(conn)
        _kill(db.engine.url, [connection_id])
        with pytest.raises(OperationalError), engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    finally:
        engine.dispose()


# --- run_in_transaction ---------------------------------------------------------------------------


def _two_products(make_product):
    return make_product(stock_on_hand=100).id, make_product(stock_on_hand=100).id


def _stock(*ids):
    db.session.expire_all()
    return [db.session.get(Product, i).stock_on_hand for i in ids]


def test_deadlock_victim_is_retried_and_both_units_apply_once(app, make_product, caplog):
    mariadb_only(app)
    first, second = _two_products(make_product)
    barrier = threading.Barrier(2, timeout=30)
    calls = []
    errors = []

    def unit(lock_first, lock_second, amount):
        calls.append(amount)
        db.session.execute(
            update(Product).where(Product.id == lock_first).values(stock_on_hand=Product.stock_on_hand + amount)
        )
        if calls.count(amount) == 1:
            barrier.wait()  # both hold their first row before either asks for its second
        db.session.execute(
            update(Product).where(Product.id == lock_second).values(stock_on_hand=Product.stock_on_hand + amount)
        )

    def run(lock_first, lock_second, amount):
        try:
            with app.app_context():
                run_in_transaction(unit, lock_first, lock_second, amount)
        except Exception as exc:  # reported below, a thread cannot fail the test itself
            errors.append(exc)

    threads = [
        threading.Thread(target=run, args=(first, second, 1)),
        threading.Thread(target=run, args=(second, first, 10)),
    ]
    with caplog.at_level(logging.WARNING, logger="sipup.database"):
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
    assert errors == []
    assert sorted(calls) == [1, 1, 10] or sorted(calls) == [1, 10, 10]  # exactly one victim, run twice
    assert any("1213" in r.getMessage() for r in caplog.records), "MariaDB should have picked a deadlock victim"
    assert _stock(first, second) == [111, 111]


def test_a_deadlock_error_is_retried_on_every_backend(app, make_product):
    product_id = make_product(stock_on_hand=100).id
    calls = []

    def unit():
        calls.append(1)
        db.session.execute(
            update(Product).where(Product.id == product_id).values(stock_on_hand=Product.stock_on_hand + 1)
        )
        if len(calls) == 1:
            raise OperationalError("UPDATE products", {}, Exception(1213, "Deadlock found when trying to get lock"))
        return "done"

    assert run_in_transaction(unit) == "done"
    assert len(calls) == 2
    assert _stock(product_id) == [101]


def test_retries_stop_after_the_last_attempt(app, make_product):
    product_id = make_product(stock_on_hand=100).id
    calls = []

    def unit():
        calls.append(1)
        db.session.execute(update(Product).where(Product.id == product_id).values(stock_on_hand=0))
        raise OperationalError("UPDATE products", {}, Exception(1205, "Lock wait timeout exceeded"))

    with pytest.raises(OperationalError):
        run_in_transaction(unit, attempts=3)
    assert len(calls) == 3
    assert _stock(product_id) == [100]


def test_a_unique_key_error_is_not_retried_and_leaves_nothing(app, make_product):
    product = make_product(sku="TAKEN", stock_on_hand=100)
    product_id, category_id = product.id, product.category_id
    calls = []

    def unit():
        calls.append(1)
        db.session.execute(update(Product).where(Product.id == product_id).values(stock_on_hand=0))
        bulk_insert(Product, [_product_row(category_id, "NEW-1"), _product_row(category_id, "TAKEN")])

    with pytest.raises(IntegrityError):
        run_in_transaction(unit)
    assert len(calls) == 1
    assert _stock(product_id) == [100]
    assert db.session.scalar(select(func.count(Product.id))) == 1


def test_a_non_retryable_operational_error_is_not_retried(app, make_product):
    product_id = make_product(stock_on_hand=100).id
    calls = []

    def unit():
        calls.append(1)
        db.session.execute(update(Product).where(Product.id == product_id).values(stock_on_hand=0))
        if app.backend == "sqlite":
            db.session.execute(text("SELECT * FROM no_such_table"))  # sqlite3.OperationalError
        else:
            db.session.execute(text("SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'not today'"))

    with pytest.raises(OperationalError):
        run_in_transaction(unit)
    assert len(calls) == 1
    assert _stock(product_id) == [100]


# --- a full pool, a missing database -----------------------------------------------------------------


def test_full_pool_gives_a_503_page_and_counts_the_timeout(make_app, app, buyer, login_as):
    mariadb_only(app)
    signed_in = login_as(buyer).get_cookie("session").value
    tight = make_app(DB_POOL_SIZE=1, DB_MAX_OVERFLOW=0, DB_POOL_TIMEOUT=1, PROPAGATE_EXCEPTIONS=False)
    anonymous, client, email = tight.test_client(), tight.test_client(), buyer.email
    client.set_cookie("session", signed_in)
    with tight.app_context():
        only = db.engine.connect()  # the pool's single connection, held by the test
        try:
            for request in (
                lambda: anonymous.post("/login", data={"email": email, "password": "whatever it is"}),
                lambda: client.get("/products"),
            ):
                before = POOL_TIMEOUTS.value
                response = request()
                body = response.get_data(as_text=True)
                assert response.status_code == 503
                assert "Back in a moment" in body
                assert "Traceback" not in body and "QueuePool" not in body
                assert POOL_TIMEOUTS.value > before
        finally:
            only.close()
        assert client.get("/products").status_code == 200  # the connection is back: the pool serves again


def test_a_checkout_that_waits_for_a_busy_pool_is_counted(make_app, app):
    mariadb_only(app)
    tight = make_app(DB_POOL_SIZE=1, DB_MAX_OVERFLOW=0, DB_POOL_TIMEOUT=5)
    with tight.app_context():
        held = db.engine.connect()
        release = threading.Timer(0.3, held.close)  # the busy connection comes back after 300 ms
        before = POOL_WAITS.value, POOL_WAITS.total_ms
        shared_before = tight.extensions["counters"].totals("db").get("pool_waits", 0)
        release.start()
        with db.engine.connect() as conn:
            assert conn.execute(text("SELECT 1")).scalar() == 1
        release.join()
        status = pool_status(db.engine)
        assert status["waits"] == before[0] + 1
        assert POOL_WAITS.total_ms - before[1] >= 200
        assert tight.extensions["counters"].totals("db")["pool_waits"] == shared_before + 1  # for /monitor
        assert status["size"] == 1 and status["max"] == 1 and status["checkedout"] == 0
        with db.engine.connect():  # a free connection: no wait counted
            pass
        assert POOL_WAITS.value == before[0] + 1


def _unreachable_urls(app, tmp_path):
    if app.backend == "sqlite":
        return {"missing folder": (f"sqlite:///{tmp_path}/missing/dir/x.db", "unable to open database file")}
    url = make_url(db.engine.url)
    return {
        "nothing listening": (
            url.set(port=1).render_as_string(hide_password=False),
            "nothing answers at 127.0.0.1:1: is MySQL/MariaDB running there",
        ),
        "unknown database": (
            url.set(database="sipup_no_such_db").render_as_string(hide_password=False),
            "database 'sipup_no_such_db' does not exist on",
        ),
        "unknown user": (
            url.set(username="sipup_nobody", password="wrong").render_as_string(hide_password=False),
            "the server refused user 'sipup_nobody': check the user name and password.",
        ),
    }


def test_missing_database_gives_503_pages(make_app, app, tmp_path, buyer, login_as):
    signed_in = login_as(buyer).get_cookie("session").value  # same secret key: the session cookie carries over
    for problem, (url, _message) in _unreachable_urls(app, tmp_path).items():
        down = make_app(DATABASE_URL=url, PROPAGATE_EXCEPTIONS=False)
        anonymous, client = down.test_client(), down.test_client()
        client.set_cookie("session", signed_in)
        for response in (
            client.get("/products"),
            anonymous.post("/login", data={"email": buyer.email, "password": "x"}),
        ):
            body = response.get_data(as_text=True)
            assert response.status_code == 503, problem
            assert "Back in a moment" in body, problem
            assert "Traceback" not in body, problem


def test_check_database_names_the_problem_in_one_line(make_app, app, tmp_path):
    assert check_database(app) is None
    for problem, (url, message) in _unreachable_urls(app, tmp_path).items():
        line = check_database(make_app(DATABASE_URL=url))
        assert line.startswith("SIPUP_DATABASE_URL ("), problem
        assert message in line, problem
        assert "\n" not in line, problem
        assert "wrong@" not in line, "the password must not be shown"


# --- batch helpers ----------------------------------------------------------------------------------


def _category_id():
    category = Category(name="Bulk", slug="bulk")
    db.session.add(category)
    db.session.commit()
    return category.id


def _product_row(category_id, sku):
    return dict(
        sku=sku,
        name=f"Bulk {sku}",
        description="",
        category_id=category_id,
        sell_unit="case",
        base_price=Decimal("1.00"),
        min_qty=1,
        qty_step=1,
        deposit=Decimal("0.00"),
        stock_on_hand=0,
        stock_reserved=0,
        backorder_allowed=False,
        low_stock_threshold=5,
        active=True,
    )


def test_bulk_insert_and_update_thousands_of_rows(app):
    category_id = _category_id()
    sizes = []
    rows = (_product_row(category_id, f"B-{n:05d}") for n in range(12_000))  # a generator works too
    assert bulk_insert(Product, rows, batch_size=5000, progress=sizes.append) == 12_000
    db.session.commit()
    assert sizes == [5000, 5000, 2000]
    assert db.session.scalar(select(func.count(Product.id))) == 12_000

    ids = db.session.scalars(select(Product.id).order_by(Product.id)).all()
    sizes.clear()
    changes = [{"id": product_id, "stock_on_hand": n, "name": f"Renamed {n}"} for n, product_id in enumerate(ids)]
    assert bulk_update(Product, changes, batch_size=4000, progress=sizes.append) == 12_000
    db.session.commit()
    assert sizes == [4000, 4000, 4000]
    assert db.session.scalar(select(func.sum(Product.stock_on_hand))) == sum(range(12_000))
    assert db.session.scalar(select(Product.name).where(Product.id == ids[-1])) == "Renamed 11999"

    # By another key, and rows that set different columns.
    bulk_update(Product, [{"sku": "B-00000", "stock_on_hand": 7}, {"sku": "B-00001", "active": False}], key="sku")
    db.session.commit()
    first, second = db.session.scalars(
        select(Product).where(Product.sku.in_(["B-00000", "B-00001"])).order_by(Product.sku)
    )
    assert (first.stock_on_hand, first.active, second.stock_on_hand, second.active) == (7, True, 1, False)


def test_a_failing_last_batch_leaves_nothing_after_rollback(app):
    category_id = _category_id()
    rows = [_product_row(category_id, f"F-{n:05d}") for n in range(10_500)]
    rows[-1]["sku"] = "F-00000"  # a duplicate unique key in the last batch
    sizes = []
    with pytest.raises(IntegrityError):
        bulk_insert(Product, rows, batch_size=5000, progress=sizes.append)
    db.session.rollback()
    assert sizes == [5000, 5000]  # two batches went in before the third failed
    assert db.session.scalar(select(func.count(Product.id))) == 0


def test_a_failing_update_batch_leaves_nothing_after_rollback(app):
    category_id = _category_id()
    bulk_insert(Product, [_product_row(category_id, f"U-{n:05d}") for n in range(6000)])
    db.session.commit()
    ids = db.session.scalars(select(Product.id).order_by(Product.id)).all()
    changes = [{"id": product_id, "stock_on_hand": 5} for product_id in ids]
    changes[-1] = {"id": ids[-1], "sku": "U-00000"}  # collides with the first product's sku
    with pytest.raises(IntegrityError):
        bulk_update(Product, changes, batch_size=2500)
    db.session.rollback()
    assert db.session.scalar(select(func.sum(Product.stock_on_hand))) == 0


def test_batch_size_must_be_positive(app):
    with pytest.raises(ValueError):
        bulk_insert(Product, [{"sku": "x"}], batch_size=0)
