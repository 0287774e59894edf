"""flask db optimize: indexes, monthly partitions (MariaDB), maintenance, report, dry run and safety."""

import os
import re
import time
from datetime import datetime
from decimal import Decimal

import pytest
from sqlalchemy import func, inspect, select, text

from sipup import create_app
from sipup.database import scratch_database
from sipup.dbtools.optimize import Optimizer, optimize, partition_orders
from sipup.extensions import db
from sipup.models import Order, OrderEvent, OrderLine
from sipup.services.key_queries import key_queries
from sipup.services.orders import order_number
from tests.conftest import SECRET_KEY

QUIET = dict(echo=lambda _line: None, key_queries=key_queries)


def drop_index(name, table):
    sql = f"DROP INDEX {name} ON {table}" if db.engine.dialect.name != "sqlite" else f"DROP INDEX {name}"
    with db.engine.begin() as conn:
        conn.execute(text(sql))


def index_names(table):
    return {ix["name"] for ix in inspect(db.engine).get_indexes(table)}


def add_orders(*dates, company_id=1):
    """One order with a line and an event per date, numbered as checkout numbers them."""
    for created in dates:
        order = Order(
            company_id=company_id, status="paid", total=Decimal("10.00"), created_at=created, updated_at=created
        )
        db.session.add(order)
        db.session.flush()
        order.number = order_number(order.id, created)
        db.session.add(
            OrderLine(
                order_id=order.id,
                created_at=created,
                product_id=1,
                sku="A",
                name="A",
                sell_unit="case",
                quantity=1,
                unit_price=Decimal("10.00"),
                unit_deposit=Decimal("0.00"),
                line_total=Decimal("10.00"),
            )
        )
        db.session.add(OrderEvent(order_id=order.id, status="placed", created_at=created))
    db.session.commit()


# --- both backends ---------------------------------------------------------------------------------


def test_a_missing_index_is_created_and_a_second_run_changes_nothing(app):
    drop_index("ix_orders_po_reference", "orders")
    assert "ix_orders_po_reference" not in index_names("orders")

    first, _report = optimize(app, **QUIET)
    assert not first.failed
    assert any("ix_orders_po_reference" in sql for _step, sql, _s in first.statements)
    assert "ix_orders_po_reference" in index_names("orders")

    second, report = optimize(app, **QUIET)
    assert second.changes == 0, second.statements
    assert "0 schema changes" in report


def test_dry_run_prints_the_statement_and_changes_nothing(app):
    drop_index("ix_orders_po_reference", "orders")
    try:
        outcome, report = optimize(app, dry_run=True, **QUIET)
        assert "ix_orders_po_reference" not in index_names("orders")
        assert "CREATE INDEX ix_orders_po_reference ON orders (po_reference)" in report
        assert "dry run: nothing was changed" in report
        assert all(seconds is None for _step, _sql, seconds in outcome.statements)
    finally:
        optimize(app, **QUIET)
    assert "ix_orders_po_reference" in index_names("orders")


def test_undeclared_and_redundant_indexes_are_reported_not_dropped(app):
    with db.engine.begin() as conn:
        conn.execute(text("CREATE INDEX ix_extra_company ON orders (company_id)"))
    try:
        _outcome, report = optimize(app, dry_run=True, **QUIET)
        assert "orders.ix_extra_company ('company_id',) is not declared with the models" in report
        assert "orders.ix_extra_company ('company_id',) is redundant: ix_orders_company" in report
        assert "ix_extra_company" in index_names("orders")
    finally:
        drop_index("ix_extra_company", "orders")


def test_report_names_real_tables_statements_and_plans(backend, tmp_path):
    from tests.conftest import _overrides

    # An instance folder of its own: its statistics and slow log hold only what this test runs.
    app = create_app({**_overrides(backend[1]), "SLOW_QUERY_MS": 0}, instance_path=str(tmp_path))
    path = tmp_path / "report.txt"
    with app.app_context():
        try:
            add_orders(datetime(2026, 10, 5, 12), datetime(2026, 11, 2, 8))
            db.session.scalars(select(Order).where(Order.company_id == 1)).all()
            result = app.test_cli_runner().invoke(args=["db", "optimize", "--report", str(path)])
        finally:
            db.session.execute(text("DELETE FROM orders"))
            db.session.execute(text("DELETE FROM order_lines"))
            db.session.execute(text("DELETE FROM order_events"))
            db.session.commit()
            db.session.remove()
            db.engine.dispose()
    assert result.exit_code == 0, result.output
    report = path.read_text(encoding="utf-8")
    assert report in result.output
    for expected in (
        "Tables:",
        "order_lines",
        "ix_orders_company_history",
        "Orphan check",
        "order lines without an order of the same month: 0",
        "Key queries sipup runs",
        "a company's order history",
        "FROM orders WHERE orders.company_id = 1",
    ):
        assert expected in report, expected
    # the statement the test ran, from the query statistics and from the slow log, each with a plan
    statistics, slow_log = report.split("Slowest statements")[1].split("slow query log")[:2]
    for part in (statistics, slow_log):
        assert "FROM orders WHERE orders.company_id = ?" in part
        assert "plan with sample values" in part
    plan_word = "partitions=p20" if backend[0] == "mariadb" else "USING INDEX"
    assert plan_word in report.split("Key queries and their plans:")[1]


def test_orphaned_order_lines_are_reported(app):
    add_orders(datetime(2026, 10, 5, 12))
    db.session.execute(text("DELETE FROM orders"))
    db.session.commit()
    _outcome, report = optimize(app, dry_run=True, **QUIET)
    assert "order lines without an order of the same month: 1 (check them)" in report
    assert "order events without an order: 1" in report


def test_sqlite_says_what_it_skips(app):
    if app.backend != "sqlite":
        pytest.skip("SQLite only")
    _outcome, report = optimize(app, **QUIET)
    assert "SQLite has no table partitions" in report
    assert "ANALYZE" in report and "PRAGMA optimize" in report
    assert "SQLite keeps no index usage statistics" in report


def test_sqlite_vacuums_when_much_of_the_file_is_free(app):
    if app.backend != "sqlite":
        pytest.skip("SQLite only")
    add_orders(*[datetime(2026, 10, 1 + n % 28) for n in range(300)])
    db.session.execute(text("UPDATE orders SET note = :n"), {"n": "x" * 900})
    db.session.commit()
    db.session.execute(text("DELETE FROM orders"))
    db.session.commit()
    outcome, _report = optimize(app, **QUIET)
    assert ("maintenance", "VACUUM") in [(step, sql) for step, sql, _s in outcome.statements]


# --- partitions on MariaDB -------------------------------------------------------------------------


@pytest.fixture
def maria(backend):
    """An app on a scratch MariaDB database of its own, migrated but not partitioned."""
    if backend[0] != "mariadb":
        pytest.skip("partitions are MySQL/MariaDB only")
    url, drop = scratch_database(os.environ["SIPUP_TEST_DATABASE_URL"])
    app = create_app(
        {"TESTING": True, "DATABASE_URL": url, "SECRET_KEY": SECRET_KEY, "DB_POOL_SIZE": 2}, instance_path=backend[2]
    )
    with app.app_context():
        from sipup.cli.db import upgrade_schema

        upgrade_schema()
        yield app
        db.session.remove()
        db.engine.dispose()
    drop()


def partition(app, now):
    """partition_orders after ending the test's transaction, which would hold DDL off until the lock wait ends."""
    db.session.commit()
    return partition_orders(app, now=now)


def layout(app, table="orders"):
    optimizer = Optimizer(app, **QUIET)
    with optimizer.engine.connect() as optimizer.conn:
        found = optimizer.partition_layout(table)
    optimizer.engine.dispose()
    return [(name, str(bound) if bound else None) for name, bound, _rows in found]


def count(model):
    return db.session.scalar(select(func.count()).select_from(model))


def test_a_filled_table_is_partitioned_rolled_forward_and_keeps_its_rows(maria):
    add_orders(
        datetime(2025, 9, 14, 10), datetime(2026, 3, 31, 23, 59, 59), datetime(2026, 4, 1), datetime(2026, 11, 20)
    )
    outcome = partition(maria, datetime(2026, 11, 26))
    assert any("converted orders (about" in w for w in outcome.warnings)
    parts = layout(maria)
    # from the oldest row's month through November plus three months ahead, then the catch-all
    assert parts[0] == ("p202509", "2025-10-01")
    assert parts[-2:] == [("p202702", "2027-03-01"), ("pmax", None)]
    assert len(parts) == 19
    assert layout(maria, "order_lines") == parts
    assert count(Order) == count(OrderLine) == 4

    assert partition(maria, datetime(2026, 11, 30)).statements == []  # nothing to do

    rolled = partition(maria, datetime(2027, 1, 3))  # the clock moves on two months
    assert [sql for _s, sql, _t in rolled.statements] == [
        f"ALTER TABLE {t} REORGANIZE PARTITION pmax INTO (PARTITION p202703 VALUES LESS THAN ('2027-04-01'), "
        "PARTITION p202704 VALUES LESS THAN ('2027-05-01'), PARTITION pmax VALUES LESS THAN (MAXVALUE))"
        for t in ("orders", "order_lines")
    ]
    assert layout(maria)[-3:] == [("p202703", "2027-04-01"), ("p202704", "2027-05-01"), ("pmax", None)]
    assert count(Order) == count(OrderLine) == 4
    # the month boundary holds: the last second of March is in March, and found by its number
    march = db.session.execute(text("SELECT number FROM orders PARTITION (p202603)")).scalars().all()
    assert march == [order_number(2, datetime(2026, 3, 31))]
    from sipup.services.orders import get_order

    assert get_order(march[0]).id == 2


def test_explain_shows_a_lookup_by_number_reads_one_partition(maria):
    add_orders(datetime(2026, 10, 5), datetime(2026, 11, 20))
    partition(maria, datetime(2026, 11, 26))
    from sipup.services.orders import order_query

    number = db.session.scalar(select(Order.number).order_by(Order.id.desc()))
    optimizer = Optimizer(maria, **QUIET)
    with optimizer.engine.connect() as optimizer.conn:
        by_number = optimizer.explain(optimizer.literal_sql(order_query(number)))
        by_id = optimizer.explain("SELECT * FROM orders WHERE id = 2")
    optimizer.engine.dispose()
    assert "partitions=p202611 " in by_number[0]
    assert by_id[0].count(",p20") >= 13  # a lookup by id alone probes every month


def test_rows_in_the_catch_all_are_warned_about_and_moved_into_their_month(maria):
    partition(maria, datetime(2026, 11, 26))
    add_orders(datetime(2027, 5, 10))  # beyond the months created ahead: lands in pmax
    outcome = partition(maria, datetime(2027, 3, 1))
    assert any("orders.pmax holds 1 rows" in w for w in outcome.warnings)
    assert db.session.execute(text("SELECT COUNT(*) FROM orders PARTITION (p202705)")).scalar() == 1
    assert db.session.execute(text("SELECT COUNT(*) FROM orders PARTITION (pmax)")).scalar() == 0


@pytest.mark.parametrize("policy", ["keep", "archive", "drop"])
def test_expired_months_are_kept_unless_configured(maria, policy):
    add_orders(datetime(2025, 1, 10), datetime(2025, 2, 10), datetime(2026, 11, 1))
    maria.config["DB_PARTITION_EXPIRED"] = policy
    outcome = partition(maria, datetime(2026, 11, 26))
    names = [name for name, _b in layout(maria)]
    if policy == "keep":
        assert names[:2] == ["p202501", "p202502"]
        assert count(Order) == 3 and count(OrderEvent) == 3
        assert any("kept (p202501" in w for w in outcome.warnings)
        return
    # 13 months kept: November 2025 to November 2026; the two months of 2025 before that went
    assert names[0] == "p202511"
    assert count(Order) == count(OrderLine) == count(OrderEvent) == 1
    if policy == "archive":
        archived = db.session.execute(text("SELECT COUNT(*) FROM orders_p202501")).scalar()
        lines = db.session.execute(text("SELECT COUNT(*) FROM order_lines_p202502")).scalar()
        events = db.session.execute(text("SELECT COUNT(*) FROM order_events_archive")).scalar()
        assert (archived, lines, events) == (1, 1, 2)
    assert partition(maria, datetime(2026, 11, 26)).statements == []


def test_a_foreign_key_stops_the_run_before_any_change_and_says_where(maria):
    add_orders(datetime(2026, 10, 5))
    with db.engine.begin() as conn:
        conn.execute(text("SET SESSION foreign_key_checks = 0"))  # the test's line names no real product
        conn.execute(
            text(
                "ALTER TABLE order_lines ADD CONSTRAINT fk_lines_product FOREIGN KEY (product_id) "
                "REFERENCES products (id)"
            )
        )
    result = maria.test_cli_runner().invoke(args=["db", "optimize"])
    assert result.exit_code == 1
    assert "stopped in step 'partitions'" in result.output
    assert "order_lines.fk_lines_product" in result.output
    assert layout(maria) == [] and layout(maria, "order_lines") == []  # neither table half-converted
    assert count(Order) == 1


def test_a_lock_wait_is_bounded_and_the_run_says_where_it_stopped(maria):
    partition(maria, datetime(2026, 11, 26))
    maria.config["DB_OPTIMIZE_LOCK_WAIT"] = 1
    with db.engine.connect() as other:
        other.execute(text("SELECT COUNT(*) FROM orders")).scalar()  # an open transaction holds orders' metadata lock
        started = time.perf_counter()
        outcome, _report = optimize(maria, now=datetime(2027, 2, 1), **QUIET)  # wants to add a month
        waited = time.perf_counter() - started
        other.rollback()
    assert "stopped in step 'partitions'" in outcome.failed and "Lock wait timeout" in outcome.failed
    assert waited < 10
    assert layout(maria)[-2] == ("p202702", "2027-03-01")  # unchanged; the next run adds the month
    assert partition(maria, datetime(2027, 2, 1)).statements


def test_a_slow_key_query_is_cut_off_not_waited_for(maria, monkeypatch):
    import sipup.dbtools.report

    add_orders(datetime(2026, 10, 5), datetime(2026, 11, 20))
    db.session.commit()
    monkeypatch.setattr(sipup.dbtools.report, "KEY_QUERY_SECONDS", 0.000001)
    optimizer = Optimizer(maria, **QUIET)
    with optimizer.engine.connect() as optimizer.conn:
        timings = optimizer.time_key_queries()
        assert optimizer.scalar("SELECT @@max_statement_time") == 0  # the session limit is lifted again
    optimizer.engine.dispose()
    assert None in [timing["ms"] for timing in timings.values()]


def test_a_dry_run_plans_the_conversion_and_changes_nothing(maria):
    add_orders(datetime(2026, 10, 5))
    db.session.commit()
    outcome, report = optimize(maria, now=datetime(2026, 11, 26), dry_run=True, **QUIET)
    planned = [sql for step, sql, _s in outcome.statements if step == "partitions"]
    assert [sql.split(" (")[0] for sql in planned] == [
        "ALTER TABLE orders PARTITION BY RANGE COLUMNS(created_at)",
        "ALTER TABLE order_lines PARTITION BY RANGE COLUMNS(created_at)",
    ]
    assert "would" in report and "dry run: nothing was changed" in report
    assert layout(maria) == [] and layout(maria, "order_lines") == []


def test_invoices_of_orders_moved_out_still_list(app, client, buyer, login_as):
    """After SIPUP_DB_PARTITION_EXPIRED=archive or drop an invoice can outlive its order online."""
    from sipup.models import Invoice

    db.session.add(
        Invoice(
            number="INV-2024-000001",
            order_id=999_999,
            company_id=buyer.company_id,
            amount=Decimal("10.00"),
            due_date=datetime(2024, 2, 1).date(),
        )
    )
    db.session.commit()
    response = login_as(buyer).get("/invoices")
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert "INV-2024-000001" in page and "archived" in page  # no link to an order that is not online


# --- an honest report ---------------------------------------------------------------------------------


def key_query_lines(report):
    section = report.split("Key queries sipup runs", 1)[1].split("\n\n", 1)[0]
    return section.splitlines()[1:]


def test_the_report_times_the_queries_sipup_runs_and_a_run_that_changes_nothing_claims_no_speed_up(app, make_product):
    make_product()
    add_orders(datetime(2026, 10, 5, 12), datetime(2026, 11, 2, 8))
    optimize(app, **QUIET)
    outcome, report = optimize(app, **QUIET)  # everything is in place now
    assert outcome.changes == 0 and outcome.timings_after == {}
    lines = key_query_lines(report)
    assert lines[0].strip() == "no schema change in this run: timed once, nothing to compare"
    labels = [label for label in outcome.timings_before]
    for wanted in (
        "storefront: catalog page, all products",
        "storefront: search",
        "storefront: a company's order history",
        "storefront: an order by number",
        "checkout: credit check",
        "back office: placed orders",
        "back office: counts per status",
        "report sales_by_period (2026-10)",
        "report sales_by_customer (2026-10)",
        "report sales_by_product (2026-10)",
        "report receivables_ageing",
    ):
        assert any(label.startswith(wanted) for label in labels), wanted
    assert "top products" not in report  # no query of the report's own that no page runs
    assert not any("->" in line or re.search(r"\d\.\dx", line) for line in lines)
    connections = report.split("\nConnections:\n", 1)[1].split("\n\n", 1)[0]
    if app.backend == "sqlite":
        assert "SQLite: no connection limit" in connections
    else:
        assert re.search(
            r"\d+ process\(es\) x 30 connections .* (fits|does NOT fit) in max_connections \d+", connections
        )


def test_a_change_is_compared_within_the_noise():
    from sipup.dbtools.report import compare

    assert compare(10.0, 4.0) == "2.5x" and compare(10.0, 11.0) == "same" and compare(0.4, 0.8) == "same"
    assert compare(10.0, 20.0) == "slower" and compare(None, 3.0) == ""


def test_the_sales_by_product_report_reads_only_its_months(app):
    if app.backend != "mariadb":
        pytest.skip("partitions are MySQL/MariaDB only")
    from datetime import date

    from sipup.services.reports import report_query

    add_orders(datetime(2026, 9, 3), datetime(2026, 10, 5, 12), datetime(2026, 11, 2, 8))
    optimizer = Optimizer(app, **QUIET)
    with optimizer.engine.connect() as optimizer.conn:
        read = optimizer.partitions_read(report_query("sales_by_product", date(2026, 10, 1), date(2026, 10, 31)))
        total = len(optimizer.partition_layout("orders"))
    optimizer.engine.dispose()
    assert read == f"order_lines 1/{total}, orders 1/{total}"
