"""Query statistics: normalising statements, counting them per statement and kind, the slow query log,
the N+1 warning, the shared counters store they are kept in (Redis, the embedded SQLite file) and
`flask db stats`."""

import os
import re
import secrets
import subprocess
import sys
import textwrap
import time

import pytest
from sqlalchemy import text

import sipup.metrics.counters as counters_module
from sipup import create_app
from sipup.extensions import db
from sipup.metrics.counter_stores import SqliteCounterStore
from sipup.metrics.counters import Counters
from sipup.metrics.query_stats import GROUP, MAX_STATEMENTS, OTHER, Collector
from sipup.metrics.statements import CONNECT, PING, kind_of, normalise, short_sql
from tests.conftest import PASSWORD, SECRET_KEY

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
REDIS_URL = os.environ.get("SIPUP_TEST_REDIS_URL")


def tag():
    """A unique column alias, so a test finds its own statement among everything the store holds."""
    return "q_" + secrets.token_hex(4)


def row_for(summary, marker):
    rows = [r for r in summary["statements"] if marker in r["sql"]]
    assert len(rows) == 1, [r["sql"] for r in rows]
    return rows[0]


def log_tail(app, name):
    """A reader for what lands in instance/logs/<name> from now on."""
    path = os.path.join(app.instance_path, "logs", name)
    start = os.path.getsize(path) if os.path.exists(path) else 0

    def read():
        if not os.path.exists(path):
            return ""
        with open(path, encoding="utf-8") as handle:
            handle.seek(start)
            return handle.read()

    return read


def sign_in(client, user):
    response = client.post("/login", data={"email": user.email, "password": PASSWORD})
    assert response.status_code == 302
    return client


# --- normalise() and kind_of() ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "sql, expected",
    [
        (
            "SELECT * FROM t WHERE a = 'it''s' AND b = 42 AND c = -1.5",
            "SELECT * FROM t WHERE a = ? AND b = ? AND c = ?",
        ),
        (
            "SELECT * FROM t WHERE a = %(a_1)s AND b = %s AND c = :c AND d = ?",
            "SELECT * FROM t WHERE a = ? AND b = ? AND c = ? AND d = ?",
        ),
        ("SELECT * FROM t WHERE id IN (1, 2, 3)", "SELECT * FROM t WHERE id IN (?+)"),
        ("SELECT * FROM t WHERE id IN (%(id_1_1)s, %(id_1_2)s)", "SELECT * FROM t WHERE id IN (?+)"),
        ("SELECT * FROM t WHERE id IN (?)", "SELECT * FROM t WHERE id IN (?+)"),
        ("INSERT INTO t (a, b) VALUES (?, ?), (?, ?), (?, ?)", "INSERT INTO t (a, b) VALUES (?+)"),
        ("INSERT INTO t (a) VALUES (%s), (%s)", "INSERT INTO t (a) VALUES (?)"),
        ("SELECT  a,\n\tb\nFROM   t  ", "SELECT a, b FROM t"),
        (
            "SELECT t2.h0, t2.col1 FROM t2 JOIN h0 ON h0.id = t2.id LIMIT 10",
            "SELECT t2.h0, t2.col1 FROM t2 JOIN h0 ON h0.id = t2.id LIMIT ?",
        ),
        ("SELECT x FROM t WHERE y = 1e5 OR z = 0x1F", "SELECT x FROM t WHERE y = ? OR z = ?"),
    ],
)
def test_normalise(sql, expected):
    assert normalise(sql) == expected


def test_short_sql_shows_tables_instead_of_column_lists():
    sql = (
        "SELECT products.id, products.sku, products.name AS n, categories.id, categories.name, categories.slug "
        "FROM products JOIN categories ON categories.id = products.category_id WHERE products.sku = ?"
    )
    assert (
        short_sql(sql) == "SELECT products.*, categories.* FROM products JOIN categories "
        "ON categories.id = products.category_id WHERE products.sku = ?"
    )
    assert short_sql("SELECT t2.a, t2.b FROM t2") == "SELECT t2.a, t2.b FROM t2"


def test_the_same_statement_with_other_values_normalises_alike():
    assert normalise("SELECT * FROM t WHERE id IN (1, 2) AND n = 'a'") == normalise(
        "SELECT * FROM t  WHERE id IN (7, 8, 9, 10) AND n = 'bbb'"
    )


@pytest.mark.parametrize(
    "sql, kind",
    [
        ("SELECT 1", "select"),
        ("(SELECT 1) UNION (SELECT 2)", "select"),
        ("WITH x AS (SELECT 1) SELECT * FROM x", "select"),
        ("insert into t values (?)", "insert"),
        ("UPDATE t SET a = ?", "update"),
        ("DELETE FROM t", "delete"),
        ("SAVEPOINT sa_1", "transaction"),
        ("COMMIT", "transaction"),
        ("ROLLBACK", "transaction"),
        ("PRAGMA foreign_keys=ON", "other"),
        (CONNECT, "connection"),
        (PING, "connection"),
    ],
)
def test_kind_of(sql, kind):
    assert kind_of(sql) == kind


# --- counting through the app ------------------------------------------------------------------------


def test_statements_are_counted_per_normalised_statement_and_kind(app, make_product):
    stats = app.extensions["query_stats"]
    before = stats.summary("hour")["kinds"]
    marker = tag()
    for value in (1, 22, 333):
        db.session.execute(text(f"SELECT :v AS {marker}"), {"v": value})
    make_product()

    summary = stats.summary("hour")
    row = row_for(summary, marker)
    assert row["sql"] == f"SELECT ? AS {marker}"
    assert row["count"] == 3
    assert row["total_ms"] > 0
    assert row["total_ms"] / 3 <= row["max_ms"] <= row["total_ms"]
    assert row["avg_ms"] == pytest.approx(row["total_ms"] / 3)
    assert sum(row["hist"]) == 3
    assert summary["kinds"]["select"]["count"] >= before.get("select", {"count": 0})["count"] + 3
    assert summary["kinds"]["insert"]["count"] > before.get("insert", {"count": 0})["count"]
    assert summary["store"] == "sqlite" and summary["store_error"] is None

    day = stats.summary("day")
    assert day["window"] == "day"
    assert row_for(day, marker)["count"] == 3


def test_statements_are_counters_of_their_own_group_with_running_totals_per_kind_only(app):
    counters = app.extensions["counters"]
    selects_before = counters.running_totals("sql").get("select|n", 0)
    marker = tag()
    db.session.execute(text(f"SELECT 1 AS {marker}"))
    stats = app.extensions["query_stats"]
    stats.flush()
    assert stats.pending == {}  # handed to the counters, and by them to the store

    key = row_for(stats.summary(), marker)["key"]
    assert counters.totals(GROUP, "minute", 2)[f"{key}|n"] == 1
    assert counters.totals(GROUP, "hour", 1)[f"{key}|n"] == 1
    assert counters.maxima(GROUP, "minute", 2)[f"{key}|u"] == counters.totals(GROUP, "minute", 2)[f"{key}|u"]
    assert counters.descriptions(GROUP)[key] == f"SELECT ? AS {marker}"
    assert counters.running_totals(GROUP) == {}  # statements are unbounded: no totals kept forever
    assert counters.running_totals("sql")["select|n"] >= selects_before + 1


def test_commit_rollback_and_connection_set_up_are_counted(app, make_app, buyer, make_product):
    fresh = make_app()  # an engine of its own: its first request opens a new connection
    make_product()
    client = sign_in(fresh.test_client(), buyer)  # signing in writes (last login): a COMMIT
    assert client.get("/products").status_code == 200  # read only: the pool's ROLLBACK on return
    with fresh.app_context():
        summary = fresh.extensions["query_stats"].summary("hour")
        by_sql = {row["sql"]: row for row in summary["statements"]}
        assert by_sql["COMMIT"]["count"] >= 1 and by_sql["ROLLBACK"]["count"] >= 1
        assert by_sql[CONNECT]["count"] >= 1 and by_sql[CONNECT]["total_ms"] > 0
        assert summary["kinds"]["transaction"]["count"] >= 2
        assert summary["kinds"]["connection"]["count"] >= 1
        db.engine.dispose()


def test_the_end_of_a_burst_is_flushed_by_a_timer(app, tmp_path, backend, monkeypatch, buyer, make_product):
    monkeypatch.setattr(counters_module, "FLUSH_SECONDS", 1.0)  # longer than the burst: no request flushes it
    burst = create_app(
        {"DATABASE_URL": backend[1], "SECRET_KEY": SECRET_KEY, "TESTING": True, "WTF_CSRF_ENABLED": False},
        instance_path=str(tmp_path),
    )
    make_product()
    client = sign_in(burst.test_client(), buyer)
    for _ in range(7):
        assert client.get("/products").status_code == 200
    store = SqliteCounterStore(str(tmp_path / "metrics.db"))  # what `flask db stats` in another process reads

    def requests_stored():
        start = int(time.time() // 60 * 60)
        buckets = store.read(GROUP, "minute", [start, start - 60])
        return sum(bucket.get("@requests", 0) for bucket in buckets.values())

    deadline = time.monotonic() + 10
    while requests_stored() < 8 and time.monotonic() < deadline:
        time.sleep(0.1)  # no request comes after the burst: only the timer can flush it
    assert requests_stored() == 8
    with burst.app_context():
        db.engine.dispose()


def test_a_statement_past_the_last_histogram_bound_has_a_finite_p95(tmp_path):
    collector = Collector(Counters(SqliteCounterStore(str(tmp_path / "metrics.db"))), slow_ms=10_000, warn_queries=50)
    collector.record("SELECT SLEEP(3)", 3210.0, 0)
    row = collector.summary()["statements"][0]
    assert row["p95_ms"] == 3210.0  # the top bin has no upper bound: the slowest run is the honest one


def test_summary_refuses_an_unknown_window(app):
    with pytest.raises(ValueError, match="window"):
        app.extensions["query_stats"].summary("month")  # "week" is a window since the 7-day range


# --- slow query log ----------------------------------------------------------------------------------


def test_slow_statements_are_logged_with_endpoint_params_and_sql(app, make_app, buyer, make_product):
    make_product()
    slow_app = make_app(SLOW_QUERY_MS=0)
    read = log_tail(slow_app, "slow_queries.log")
    client = sign_in(slow_app.test_client(), buyer)
    assert client.get("/products").status_code == 200
    marker = tag()
    with slow_app.app_context():
        db.session.execute(text(f"SELECT :a AS {marker} WHERE :b = :c"), {"a": 1, "b": 2, "c": 2})

    written = read()
    catalog = [line for line in written.splitlines() if "endpoint=shop.products" in line]
    assert catalog and any("FROM products" in line for line in catalog)
    line = next(line for line in written.splitlines() if marker in line)
    assert " ms endpoint=cli params=3 sql=SELECT ? AS " + marker + " WHERE ? = ?" in line


def test_nothing_is_logged_below_the_threshold(app, make_app, buyer, make_product):
    make_product()
    calm_app = make_app(SLOW_QUERY_MS=10**9)
    read = log_tail(calm_app, "slow_queries.log")
    client = sign_in(calm_app.test_client(), buyer)
    assert client.get("/products").status_code == 200
    with calm_app.app_context():
        db.session.execute(text(f"SELECT 1 AS {tag()}"))
    assert read() == ""


# --- N+1 detector ------------------------------------------------------------------------------------


def test_a_request_over_the_query_limit_is_warned_about(app, make_app, buyer, make_product):
    make_product()
    strict_app = make_app(QUERY_WARN_PER_REQUEST=1)
    stats = strict_app.extensions["query_stats"]
    heavy_before = stats.summary()["heavy_requests"]
    read = log_tail(strict_app, "sipup.log")
    client = sign_in(strict_app.test_client(), buyer)
    assert client.get("/products").status_code == 200

    assert "Possible N+1: shop.products ran" in read()
    assert stats.summary()["heavy_requests"] >= heavy_before + 1


def test_a_normal_request_is_not_warned_about(app, client, buyer, make_product):
    make_product()
    stats = app.extensions["query_stats"]
    before = stats.summary()
    read = log_tail(app, "sipup.log")
    sign_in(client, buyer)
    assert client.get("/products").status_code == 200

    after = stats.summary()
    assert "Possible N+1" not in read()
    assert after["heavy_requests"] == before["heavy_requests"]
    assert after["requests"] >= before["requests"] + 2  # the sign-in and the catalog


# --- stores shared between processes -------------------------------------------------------------------


def run_statements(env, marker, times, processes=1):
    """Run one statement `times` times in each of `processes` fresh processes, all at once; each flushes its
    figures at exit."""
    code = textwrap.dedent(f"""
        from sqlalchemy import text
        from sipup import create_app
        from sipup.extensions import db

        app = create_app()
        with app.app_context():
            for n in range({times}):
                db.session.execute(text("SELECT :n AS {marker}"), {{"n": n}})
            db.session.remove()
            db.engine.dispose()
    """)
    clean = {k: v for k, v in os.environ.items() if not k.startswith("SIPUP_")}
    started = [
        subprocess.Popen(
            [sys.executable, "-c", code],
            cwd=ROOT,
            env={**clean, **env},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(processes)
    ]
    for process in started:
        _output, errors = process.communicate(timeout=60)
        assert process.returncode == 0, errors


def process_env(instance, **extra):
    return {
        "SIPUP_INSTANCE_PATH": str(instance),
        "SIPUP_DATABASE_URL": f"sqlite:///{instance / 'sipup.db'}",
        "SIPUP_SECRET_KEY": SECRET_KEY,
        **extra,
    }


def test_statistics_of_two_processes_add_up_in_redis(tmp_path, redis_namespace):
    marker, times = tag(), 7
    env = process_env(tmp_path, SIPUP_REDIS_URL=REDIS_URL, SIPUP_REDIS_NAMESPACE=redis_namespace)
    run_statements(env, marker, times, processes=2)

    reader = create_app(
        {
            "DATABASE_URL": env["SIPUP_DATABASE_URL"],
            "SECRET_KEY": SECRET_KEY,
            "REDIS_URL": REDIS_URL,
            "REDIS_NAMESPACE": redis_namespace,
        },
        instance_path=str(tmp_path),
    )
    stats = reader.extensions["query_stats"]
    try:
        for window in ("hour", "day"):
            summary = stats.summary(window)
            assert summary["store"] == "redis" and summary["store_error"] is None
            row = row_for(summary, marker)
            assert row["sql"] == f"SELECT ? AS {marker}"
            assert row["count"] == 2 * times
            assert sum(row["hist"]) == 2 * times
            assert summary["kinds"]["select"]["count"] >= 2 * times
    finally:
        reader.extensions["counters"].store.client.close()


def test_the_embedded_store_is_shared_between_processes(tmp_path):
    marker = tag()
    env = process_env(tmp_path)
    run_statements(env, marker, 5)
    assert os.path.exists(tmp_path / "metrics.db")

    reader = create_app(
        {"DATABASE_URL": env["SIPUP_DATABASE_URL"], "SECRET_KEY": SECRET_KEY}, instance_path=str(tmp_path)
    )
    summary = reader.extensions["query_stats"].summary()
    assert summary["store"] == "sqlite"
    assert row_for(summary, marker)["count"] == 5


def test_a_redis_that_is_down_does_not_break_requests(app, make_app, buyer, make_product):
    make_product()
    down_app = make_app(REDIS_URL="redis://127.0.0.1:1/0")
    client = sign_in(down_app.test_client(), buyer)
    assert client.get("/products").status_code == 200
    assert client.get("/").status_code == 200

    summary = down_app.extensions["query_stats"].summary()
    assert summary["store"] == "redis"
    assert summary["store_error"]
    # As every counter: what could not be saved is held in memory meanwhile (bounded) and shown from there.
    assert any("FROM products" in row["sql"] for row in summary["statements"])
    assert client.get("/products").status_code == 200
    counters = down_app.extensions["counters"]
    for pending in (down_app.extensions["query_stats"].pending, counters.pending, counters.pending_maxima):
        pending.clear()  # nothing left for the exit-time flush to try
    counters.store.client.close()


# --- flask db stats ------------------------------------------------------------------------------------


def test_db_stats_shows_the_statements_of_browsed_pages(app, client, runner, buyer, make_product):
    make_product()
    sign_in(client, buyer)
    for path in ("/", "/products", "/products?q=Product", "/cart"):
        assert client.get(path).status_code == 200, path

    result = runner.invoke(args=["db", "stats", "--top", "500"])
    assert result.exit_code == 0, result.output
    assert "Query statistics, last hour (from sqlite):" in result.output
    assert "Top statements by total time:" in result.output
    # Column lists are shortened to table.*, so the FROM and WHERE of each query show.
    assert "SELECT products.* FROM products WHERE" in result.output
    assert "FROM categories ORDER BY" in result.output
    assert re.search(
        r"requests [\d,]+, [\d.]+ queries each", result.output
    )  # 1,024 once the session has browsed a while
    assert re.search(
        r"\nPool: (\d+ in use of \d+ \(\+\d+ overflow\), \d+ idle, \d+ waits|\w+Pool \(no fixed size)", result.output
    )
    assert not re.search(r"\binf\b", result.output) and "{'class'" not in result.output

    day = runner.invoke(args=["db", "stats", "--window", "day", "--top", "500"])
    assert day.exit_code == 0, day.output
    assert "last day" in day.output and "FROM products WHERE" in day.output


def test_db_stats_refuses_a_bad_window(runner):
    result = runner.invoke(args=["db", "stats", "--window", "week"])
    assert result.exit_code == 2
    assert "Invalid value for '--window'" in result.output


# --- bounded memory -------------------------------------------------------------------------------------


def test_statements_beyond_the_limit_fold_into_other(tmp_path):
    stats = Collector(Counters(SqliteCounterStore(str(tmp_path / "metrics.db"))), slow_ms=10**9, warn_queries=50)
    extra = 10
    for n in range(MAX_STATEMENTS + extra):
        stats.record(f"SELECT a FROM t{n}", 1.0, 0)
    stats.record("DELETE FROM t0", 1.0, 0)  # a kind first seen once the bucket is full still counts as its kind

    for bucket in stats.pending.values():
        named = [key for key in bucket.statements if not key.startswith("kind:")]
        assert len(named) == MAX_STATEMENTS + 1  # and "other"
        assert bucket.statements[OTHER].count == extra + 1

    summary = stats.summary()
    assert len(summary["statements"]) == MAX_STATEMENTS + 1
    other = next(r for r in summary["statements"] if r["key"] == OTHER)
    assert other["count"] == extra + 1
    assert "other statements" in other["sql"]
    assert summary["kinds"]["select"]["count"] == MAX_STATEMENTS + extra
    assert summary["kinds"]["delete"]["count"] == 1
