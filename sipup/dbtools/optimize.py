"""`flask db optimize`: indexes checked against the models, monthly partitions of the orders tables,
table maintenance and a performance report. Every step is idempotent, so it is safe to run weekly.

The work runs on a connection of its own (no pool, autocommit, bounded lock waits), so its statements
neither count in the query statistics nor hold a transaction open across DDL. Each DDL statement is
atomic on its own; a failure stops the run at that statement and names it, and the next run picks up
from what is there.
"""

import os
import re
import threading
import time
from dataclasses import dataclass, field
from datetime import date, datetime

import click
from flask import current_app
from flask.cli import with_appcontext
from sqlalchemy import create_engine, inspect, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.pool import NullPool
from sqlalchemy.schema import CreateIndex

from sipup.extensions import db
from sipup.models import Order, OrderStatus, Product, utcnow
from sipup.observability.counters import live_processes
from sipup.observability.query_stats import (
    connection_budget,
    describe_budget,
    short_sql,
)
from sipup.services.backoffice import orders_query, status_counts_query
from sipup.services.catalog import search_query
from sipup.services.orders import history_query, order_query, uninvoiced_query
from sipup.services.reports import KINDS, ageing_query, report_query

# Tables partitioned by month of creation on MySQL/MariaDB. Order lines carry their order's created_at,
# so a month of orders and its lines live in partitions of the same name. Order events are not
# partitioned: an order's events span months (placed in one, paid in another), and they are few.
PARTITIONED = ("orders", "order_lines")
PARTITION_COLUMN = "created_at"
CATCH_ALL = "pmax"
# OPTIMIZE (a rebuild) pays only when this much of a table or partition is free space.
REBUILD_FREE_SHARE, REBUILD_FREE_BYTES = 0.2, 64 * 1024 * 1024
VACUUM_FREE_SHARE = 0.1
ORPHAN_CHECK_SECONDS = 60
KEY_QUERY_SECONDS = 30
MAX_STATEMENT_TIME_EXCEEDED = 1969  # MariaDB's error when max_statement_time cuts a query off


class StepFailed(click.ClickException):
    """A step could not finish; what ran before it stays done and consistent."""


def month_start(day, shift=0):
    """First day of the month `shift` months from day's month."""
    index = day.year * 12 + day.month - 1 + shift
    return date(index // 12, index % 12 + 1, 1)


def partition_name(first_day):
    return f"p{first_day:%Y%m}"


@dataclass
class Outcome:
    """What a run did, planned and found; rendered as the report."""

    dry_run: bool
    backend: str
    started: datetime
    statements: list = field(default_factory=list)  # (step, sql, seconds or None when planned)
    warnings: list = field(default_factory=list)
    skipped: list = field(default_factory=list)
    sections: list = field(default_factory=list)  # (title, lines)
    timings_before: dict = field(default_factory=dict)
    timings_after: dict = field(default_factory=dict)
    failed: str = ""

    @property
    def changes(self):
        """Statements that change the schema (indexes, partitions); maintenance is not counted."""
        return sum(1 for step, _sql, _s in self.statements if step != "maintenance")


class Optimizer:
    """One run of `flask db optimize` over the app's database."""

    def __init__(self, app, now=None, dry_run=False, echo=click.echo):
        self.app = app
        self.config = app.config
        self.now = now or utcnow()
        self.dry_run = dry_run
        self.echo = echo
        url = make_url(self.config["SQLALCHEMY_DATABASE_URI"])
        self.mysql = url.get_backend_name() in ("mysql", "mariadb")
        connect_args = dict(self.config["SQLALCHEMY_ENGINE_OPTIONS"].get("connect_args", {}))
        self.engine = create_engine(url, poolclass=NullPool, connect_args=connect_args, isolation_level="AUTOCOMMIT")
        self.out = Outcome(dry_run, "MySQL/MariaDB" if self.mysql else "SQLite", self.now)
        self.step = "connect"
        self.conn = None

    # --- running statements ----------------------------------------------------------------------

    def rows(self, sql, **params):
        return self.conn.execute(text(sql), params).all()

    def scalar(self, sql, **params):
        return self.conn.execute(text(sql), params).scalar()

    def change(self, sql, long=False):
        """Run one statement that changes the database (or print it on a dry run)."""
        if self.dry_run:
            self.out.statements.append((self.step, sql, None))
            self.echo(f"  would run: {sql}")
            return None
        self.echo(f"  {sql}")
        started = time.perf_counter()
        result = self._with_progress(sql) if long and self.mysql else self.conn.exec_driver_sql(sql)
        seconds = time.perf_counter() - started
        self.out.statements.append((self.step, sql, seconds))
        if seconds >= 1:
            self.echo(f"    done in {seconds:.1f} s")
        return result

    def _with_progress(self, sql):
        """Run a long ALTER, printing MariaDB's own progress figure every few seconds from a second connection."""
        connection_id = self.scalar("SELECT CONNECTION_ID()")
        done = threading.Event()
        started = time.perf_counter()

        def watch():
            with self.engine.connect() as watcher:
                while not done.wait(5):
                    try:
                        row = watcher.execute(
                            text("SELECT STATE, PROGRESS FROM information_schema.PROCESSLIST WHERE ID = :id"),
                            {"id": connection_id},
                        ).first()
                    except Exception as exc:  # MySQL has no PROGRESS column: time alone then
                        row = None
                        if "PROGRESS" not in str(exc):
                            raise
                    where = f", {row[0] or 'working'}, {float(row[1]):.0f}%" if row else ""
                    self.echo(f"    ... {time.perf_counter() - started:.0f} s{where}")

        thread = threading.Thread(target=watch, daemon=True)
        thread.start()
        try:
            return self.conn.exec_driver_sql(sql)
        finally:
            done.set()
            thread.join(timeout=10)

    # --- the run ---------------------------------------------------------------------------------

    def run(self):
        """All steps in order; returns the Outcome (its `failed` names the step that stopped it)."""
        with self.engine.connect() as self.conn:
            self._bound_lock_waits()
            self.out.sections.append(("Slowest statements (query statistics, last day)", self._slow_statements()))
            steps = [
                ("indexes", self.check_indexes),
                ("partitions", self.partitions),
                ("maintenance", self.maintenance),
            ]
            self.out.timings_before = self.time_key_queries()
            for self.step, work in steps:
                self.echo(f"== {self.step}")
                try:
                    work()
                except Exception as exc:
                    message = str(getattr(exc, "orig", None) or exc).splitlines()[0]
                    self.out.failed = (
                        f"stopped in step '{self.step}': {message}. Steps before it are complete; "
                        "every step is idempotent, so run it again once the cause is fixed."
                    )
                    self.echo(self.out.failed)
                    break
            if not self.dry_run and not self.out.failed and self.out.changes:
                self.out.timings_after = self.time_key_queries()
                self._name_slower_queries()
            self.step = "report"
            self.report_sections()
        self.engine.dispose()
        return self.out

    def _name_slower_queries(self):
        for label, before in self.out.timings_before.items():
            after = self.out.timings_after.get(label, {}).get("ms")
            if compare(before["ms"], after) == "slower":
                self.out.warnings.append(f"slower after this run: {label} ({before['ms']:.2f} -> {after:.2f} ms)")

    def _bound_lock_waits(self):
        seconds = self.config["DB_OPTIMIZE_LOCK_WAIT"]
        if self.mysql:
            # Metadata locks (DDL waiting for running transactions) and row locks alike give up after this.
            self.conn.exec_driver_sql(
                f"SET SESSION lock_wait_timeout = {seconds}, innodb_lock_wait_timeout = {seconds}"
            )
        else:
            self.conn.exec_driver_sql(f"PRAGMA busy_timeout = {seconds * 1000}")

    # --- indexes ---------------------------------------------------------------------------------

    def live_indexes(self, table):
        """{name: (columns, unique)} as the database has them, the primary key included."""
        inspector = inspect(self.conn)
        found = {ix["name"]: (tuple(ix["column_names"]), bool(ix["unique"])) for ix in inspector.get_indexes(table)}
        for uq in inspector.get_unique_constraints(table):
            found.setdefault(uq["name"], (tuple(uq["column_names"]), True))
        pk = inspector.get_pk_constraint(table)
        if pk["constrained_columns"]:
            found["PRIMARY"] = (tuple(pk["constrained_columns"]), True)
        return found

    def check_indexes(self):
        """Create the indexes the models declare and the database lacks; report odd and redundant ones."""
        inspector = inspect(self.conn)
        missing_tables = [t.name for t in db.metadata.sorted_tables if not inspector.has_table(t.name)]
        if missing_tables:
            raise StepFailed(f"tables missing: {', '.join(missing_tables)}; run `flask db upgrade` first")
        lines = []
        for table in db.metadata.sorted_tables:
            live = self.live_indexes(table.name)
            declared = {ix.name: ix for ix in table.indexes}
            for name, index in sorted(declared.items()):
                columns = tuple(c.name for c in index.columns)
                if name not in live:
                    self.echo(f"  {table.name}: {name} {columns} is missing")
                    self.change(str(CreateIndex(index).compile(dialect=self.engine.dialect)).strip())
                elif live[name][0] != columns:
                    self.out.warnings.append(
                        f"{table.name}.{name} is on {live[name][0]} but the models say "
                        f"{columns}: drop it and run again to rebuild it"
                    )
            known = set(declared) | {c.name for c in table.constraints if c.name}
            for name, (columns, _unique) in live.items():
                if name != "PRIMARY" and name not in known and not self._constraint_index(table, columns):
                    lines.append(f"{table.name}.{name} {columns} is not declared with the models")
            lines.extend(self._redundant(table.name, live))
        lines.extend(self._unused())
        self.out.sections.append(("Index check", lines or ["every declared index exists; none redundant"]))

    @staticmethod
    def _constraint_index(table, columns):
        """MySQL indexes a foreign key by itself when no index starts with its columns."""
        return any(tuple(c.parent.name for c in fk.elements) == columns for fk in table.foreign_key_constraints)

    @staticmethod
    def _redundant(table, live):
        """Non-unique indexes whose columns begin another index: the longer one serves their queries."""
        found = []
        for name, (columns, unique) in live.items():
            if unique:
                continue
            for other, (other_columns, _u) in live.items():
                if (
                    other != name
                    and other_columns[: len(columns)] == columns
                    and (len(other_columns) > len(columns) or other < name)
                ):
                    found.append(f"{table}.{name} {columns} is redundant: {other} {other_columns} covers it")
                    break
        return found

    def _unused(self):
        if not self.mysql:
            return ["unused indexes: SQLite keeps no index usage statistics (skipped)"]
        variables = dict(self.rows("SHOW VARIABLES WHERE Variable_name IN ('userstat', 'performance_schema')"))
        tables = [t.name for t in db.metadata.sorted_tables]
        if variables.get("userstat") == "ON":
            used = {
                (t, i)
                for t, i in self.rows(
                    "SELECT TABLE_NAME, INDEX_NAME FROM information_schema.INDEX_STATISTICS WHERE TABLE_SCHEMA = "
                    "DATABASE()"
                )
            }
            source = "userstat, since the server started or statistics were flushed"
        elif variables.get("performance_schema") == "ON":
            used = {
                (t, i)
                for t, i in self.rows(
                    "SELECT OBJECT_NAME, INDEX_NAME FROM performance_schema.table_io_waits_summary_by_index_usage "
                    "WHERE OBJECT_SCHEMA = DATABASE() AND INDEX_NAME IS NOT NULL AND COUNT_STAR > 0"
                )
            }
            source = "performance_schema, since the server started"
        else:
            return [
                "unused indexes: the server does not track index use (userstat and performance_schema are "
                "OFF; set userstat=1 in the server configuration to have it reported)"
            ]
        unused = [f"{t}.{i}" for t in tables for i in self.live_indexes(t) if i != "PRIMARY" and (t, i) not in used]
        return [f"unused indexes ({source}): {', '.join(unused) or 'none'}"]

    # --- partitions ------------------------------------------------------------------------------

    def partitions(self):
        """Partition the orders tables by month, roll months forward, and deal with expired ones as configured."""
        if not self.mysql:
            self.out.skipped.append(
                "partitions: SQLite has no table partitions; the created_at indexes serve the monthly queries instead"
            )
            self.echo("  skipped: SQLite has no partitions")
            return
        for table in PARTITIONED:
            self._check_partitionable(table)
        layouts = {table: self.partition_layout(table) for table in PARTITIONED}
        if not all(layouts.values()):
            self._convert([t for t in PARTITIONED if not layouts[t]])
            layouts = {table: self.partition_layout(table) for table in PARTITIONED}
        for table in PARTITIONED:
            self._roll_forward(table, layouts[table])
        self._expire()

    def _check_partitionable(self, table):
        """What InnoDB demands of a partitioned table, checked before any ALTER so none fails halfway."""
        for name, (columns, unique) in self.live_indexes(table).items():
            if unique and PARTITION_COLUMN not in columns:
                raise StepFailed(
                    f"{table}.{name} {columns} is unique without {PARTITION_COLUMN} (InnoDB error 1503); "
                    "run `flask db upgrade` (migration 0002 makes the primary key (id, created_at))"
                )
        foreign = self.rows(
            "SELECT CONSTRAINT_NAME, TABLE_NAME FROM information_schema.REFERENTIAL_CONSTRAINTS "
            "WHERE CONSTRAINT_SCHEMA = DATABASE() AND (TABLE_NAME = :t OR REFERENCED_TABLE_NAME = :t)",
            t=table,
        )
        if foreign:
            names = ", ".join(f"{t}.{c}" for c, t in foreign)
            raise StepFailed(
                f"{table} has or is the target of foreign keys ({names}); partitioned tables can do "
                "neither (InnoDB errors 1506 and 150): drop them first"
            )
        kind = self.scalar(
            "SELECT DATA_TYPE FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() "
            "AND TABLE_NAME = :t AND COLUMN_NAME = :c",
            t=table,
            c=PARTITION_COLUMN,
        )
        if kind not in ("date", "datetime"):
            raise StepFailed(f"{table}.{PARTITION_COLUMN} is {kind}; RANGE COLUMNS needs DATE or DATETIME (error 1659)")

    def partition_layout(self, table):
        """[(name, upper bound as date or None for the catch-all, estimated rows)], or [] when not partitioned."""
        rows = self.rows(
            "SELECT PARTITION_NAME, PARTITION_METHOD, PARTITION_EXPRESSION, PARTITION_DESCRIPTION, TABLE_ROWS "
            "FROM information_schema.PARTITIONS WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = :t "
            "ORDER BY PARTITION_ORDINAL_POSITION",
            t=table,
        )
        if not rows or rows[0][0] is None:
            return []
        method, expression = rows[0][1], (rows[0][2] or "").strip("`")
        if method != "RANGE COLUMNS" or expression != PARTITION_COLUMN:
            raise StepFailed(
                f"{table} is partitioned by {method} ({expression}), not by month of "
                f"{PARTITION_COLUMN}; leaving it alone"
            )
        layout = []
        for name, _m, _e, description, estimate in rows:
            bound = None if description == "MAXVALUE" else date.fromisoformat(description.strip("'")[:10])
            layout.append((name, bound, estimate or 0))
        return layout

    def wanted_until(self):
        """Upper bound of the last month that must exist: this month plus the months created ahead."""
        return month_start(self.now, self.config["DB_PARTITION_AHEAD"] + 1)

    def _month_bounds(self, first, until):
        bounds, bound = [], month_start(first, 1)
        while bound <= until:
            bounds.append(bound)
            bound = month_start(bound, 1)
        return bounds

    @staticmethod
    def _definitions(bounds, catch_all=True):
        parts = [f"PARTITION {partition_name(month_start(b, -1))} VALUES LESS THAN ('{b:%Y-%m-%d}')" for b in bounds]
        if catch_all:
            parts.append(f"PARTITION {CATCH_ALL} VALUES LESS THAN (MAXVALUE)")
        return ", ".join(parts)

    def _convert(self, tables):
        """Partition filled or empty tables: a month from the oldest row (both tables alike) to the months ahead."""
        oldest = [self.scalar(f"SELECT MIN({PARTITION_COLUMN}) FROM {t}") for t in tables]
        oldest = [o for o in oldest if o is not None]
        window_start = month_start(self.now, 1 - self.config["DB_PARTITION_MONTHS"])
        first = min([month_start(o) for o in oldest] + [window_start])
        bounds = self._month_bounds(first, self.wanted_until())
        for table in tables:
            estimate = (
                self.scalar(
                    "SELECT TABLE_ROWS FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() "
                    "AND TABLE_NAME = :t",
                    t=table,
                )
                or 0
            )
            self.echo(
                f"  converting {table} (about {estimate:,} rows) to {len(bounds)} monthly partitions "
                f"and {CATCH_ALL}; the table is read-only while it is copied"
            )
            started = time.perf_counter()
            self.change(
                f"ALTER TABLE {table} PARTITION BY RANGE COLUMNS({PARTITION_COLUMN}) ({self._definitions(bounds)})",
                long=True,
            )
            if not self.dry_run:
                self.out.warnings.append(
                    f"converted {table} (about {estimate:,} rows) to monthly partitions "
                    f"in {time.perf_counter() - started:.1f} s"
                )

    def _roll_forward(self, table, layout):
        """Split the months ahead off the catch-all; warn when rows already sit in it."""
        if not layout:  # a dry run planned the conversion: nothing to roll yet
            return
        in_catch_all = 0
        if layout[-1][1] is None:
            in_catch_all = self.scalar(f"SELECT COUNT(*) FROM {table} PARTITION ({layout[-1][0]})")
            if in_catch_all:
                self.out.warnings.append(
                    f"{table}.{layout[-1][0]} holds {in_catch_all:,} rows: months were not created far enough "
                    "ahead (raise SIPUP_DB_PARTITION_AHEAD or run weekly); splitting it copies those rows"
                )
        last_bound = max(b for _n, b, _r in layout if b is not None)
        bounds = self._month_bounds(last_bound, self.wanted_until())
        if not bounds:
            return
        if layout[-1][1] is None:
            self.change(
                f"ALTER TABLE {table} REORGANIZE PARTITION {layout[-1][0]} INTO ({self._definitions(bounds)})",
                long=bool(in_catch_all),
            )
        else:
            self.change(f"ALTER TABLE {table} ADD PARTITION ({self._definitions(bounds)})")

    def _expire(self):
        """Months older than the ones kept online: kept (and reported), archived or dropped, as configured."""
        policy = self.config["DB_PARTITION_EXPIRED"]
        keep_from = month_start(self.now, 1 - self.config["DB_PARTITION_MONTHS"])
        for table in PARTITIONED:
            layout = self.partition_layout(table)
            # A partition is expired when its upper bound is at or before the first month kept.
            expired = [(n, b, r) for n, b, r in layout if b is not None and b <= keep_from]
            if not expired:
                continue
            names = ", ".join(n for n, _b, _r in expired)
            if policy == "keep":
                self.out.warnings.append(
                    f"{table}: {len(expired)} partitions older than {self.config['DB_PARTITION_MONTHS']} months "
                    f"kept ({names}); set SIPUP_DB_PARTITION_EXPIRED=archive or drop to move them out"
                )
                continue
            for name, _bound, _rows in expired:
                if policy == "archive":
                    self._archive(table, name)
                else:
                    self.change(f"ALTER TABLE {table} DROP PARTITION {name}")
        if policy != "keep":
            self._expire_events(policy)

    def _archive(self, table, name):
        """Swap a month into a table of its own (instant), then drop the emptied partition."""
        archive = f"{table}_{name}"
        exists = inspect(self.conn).has_table(archive)
        in_partition = self.scalar(f"SELECT COUNT(*) FROM {table} PARTITION ({name})")
        in_archive = self.scalar(f"SELECT COUNT(*) FROM {archive}") if exists else 0
        if in_partition and in_archive:
            raise StepFailed(
                f"{table} partition {name} and the archive table {archive} both hold rows; "
                "move or drop one of them by hand"
            )
        if in_partition:
            if not exists:
                self.change(f"CREATE TABLE {archive} LIKE {table}")
                self.change(f"ALTER TABLE {archive} REMOVE PARTITIONING")
            self.change(f"ALTER TABLE {table} EXCHANGE PARTITION {name} WITH TABLE {archive}")
        self.change(f"ALTER TABLE {table} DROP PARTITION {name}")

    def _expire_events(self, policy):
        """Events of orders no longer online (ids below the oldest order left) follow their orders out."""
        oldest = self.scalar("SELECT MIN(id) FROM orders")
        where = f"order_id < {int(oldest)}" if oldest is not None else "1 = 1"
        if not self.scalar(f"SELECT COUNT(*) FROM order_events WHERE {where}"):
            return
        if policy == "archive":
            self.change("CREATE TABLE IF NOT EXISTS order_events_archive LIKE order_events")
            # IGNORE: a run stopped between these two statements copies again without duplicates.
            self.change(f"INSERT IGNORE INTO order_events_archive SELECT * FROM order_events WHERE {where}")
        self.change(f"DELETE FROM order_events WHERE {where}")

    # --- maintenance -----------------------------------------------------------------------------

    def maintenance(self):
        """Fresh statistics for the planner, and a rebuild where much of a table is free space."""
        tables = [t.name for t in db.metadata.sorted_tables]
        if not self.mysql:
            return self._sqlite_maintenance()
        self.change(f"ANALYZE TABLE {', '.join(tables)}", long=True)
        sizes = self.rows(
            "SELECT TABLE_NAME, DATA_LENGTH + INDEX_LENGTH, DATA_FREE FROM information_schema.TABLES "
            "WHERE TABLE_SCHEMA = DATABASE()"
        )
        for table, used, free in sizes:
            if table not in tables or not self._worth_rebuilding(used, free):
                continue
            parts = [
                n
                for n, used_p, free_p in self.rows(
                    "SELECT PARTITION_NAME, DATA_LENGTH + INDEX_LENGTH, DATA_FREE FROM information_schema.PARTITIONS "
                    "WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = :t AND PARTITION_NAME IS NOT NULL",
                    t=table,
                )
                if self._worth_rebuilding(used_p, free_p)
            ]
            if table in PARTITIONED and self.partition_layout(table):
                # OPTIMIZE on a partitioned InnoDB table rebuilds it whole: rebuild just the loose partitions.
                if parts:
                    self.change(f"ALTER TABLE {table} REBUILD PARTITION {', '.join(parts)}", long=True)
            else:
                self.change(f"OPTIMIZE TABLE {table}", long=True)

    @staticmethod
    def _worth_rebuilding(used, free):
        return free >= REBUILD_FREE_BYTES and free >= REBUILD_FREE_SHARE * (used + free)

    def _sqlite_maintenance(self):
        self.change("ANALYZE")
        self.change("PRAGMA optimize")
        pages, free = self.scalar("PRAGMA page_count"), self.scalar("PRAGMA freelist_count")
        if pages and free / pages >= VACUUM_FREE_SHARE:
            self.echo(f"  {free:,} of {pages:,} pages are free: VACUUM rewrites the file (writers wait meanwhile)")
            self.change("VACUUM", long=True)
        else:
            share = free / pages if pages else 0
            self.out.skipped.append(
                f"VACUUM: only {share:.0%} of the file is free pages (worthwhile from {VACUUM_FREE_SHARE:.0%})"
            )
        self.out.skipped.append("OPTIMIZE TABLE and partitions: MySQL/MariaDB only")

    # --- key queries -----------------------------------------------------------------------------

    def key_queries(self):
        """The statements sipup's busiest pages and its reports run, built by the same service functions
        and with real values from the data: [(label, statement)]."""
        latest = self.conn.execute(
            select(Order.number, Order.company_id, Order.created_at).order_by(Order.id.desc()).limit(1)
        ).first()
        if latest is None:
            return []
        number, company_id, created = latest
        first, until = month_start(created, -1), month_start(created)  # the last full month, as cron asks
        last = date.fromordinal(until.toordinal() - 1)
        word = self.conn.execute(
            select(Product.name).where(Product.active.is_(True)).order_by(Product.id).limit(1)
        ).scalar()
        queries = [("storefront: catalog page, all products", search_query().limit(24))]
        if word:
            queries.append((f"storefront: search “{word.split()[0]}”", search_query(word.split()[0]).limit(24)))
        queries += [
            ("storefront: a company's order history, newest 20", history_query(company_id).limit(20)),
            ("storefront: an order by number", order_query(number)),
            ("checkout: credit check (orders not yet invoiced)", uninvoiced_query(company_id)),
            ("back office: placed orders, newest 30", orders_query(OrderStatus.PLACED).limit(30)),
            ("back office: counts per status", status_counts_query()),
        ]
        queries += [
            (f"report {kind} ({first:%Y-%m})", report_query(kind, first, last))
            for kind in KINDS
            if kind != "receivables_ageing"
        ]
        queries.append(("report receivables_ageing", ageing_query(self.now.date())))
        return queries

    def literal_sql(self, statement):
        return str(statement.compile(dialect=self.engine.dialect, compile_kwargs={"literal_binds": True}))

    def time_key_queries(self, rounds=3):
        """{label: {"ms": best of up to `rounds` runs (one run when it takes over a second), "partitions":
        text}} for each key query.

        On MariaDB a run is cut off after KEY_QUERY_SECONDS and recorded as None: on a large table that is
        not yet partitioned one report query can take minutes, and the weekly run must not."""
        timings, bounded, queries = {}, self._mariadb(), self.key_queries()
        if bounded:
            self.conn.exec_driver_sql(f"SET SESSION max_statement_time = {KEY_QUERY_SECONDS}")
        try:
            for label, statement in queries:
                best = None
                for _ in range(rounds):
                    started = time.perf_counter()
                    try:
                        self.conn.execute(statement).all()
                    except OperationalError as exc:
                        if not bounded or exc.orig is None or exc.orig.args[0] != MAX_STATEMENT_TIME_EXCEEDED:
                            raise
                        best = None
                        break
                    elapsed = (time.perf_counter() - started) * 1000
                    best = elapsed if best is None else min(best, elapsed)
                    if elapsed > 1000:
                        break
                timings[label] = {"ms": best}
        finally:
            if bounded:
                self.conn.exec_driver_sql("SET SESSION max_statement_time = 0")
        for label, statement in queries:  # plans are quick: not bounded, so a cut-off query still shows its reach
            timings[label]["partitions"] = self.partitions_read(statement)
        return timings

    def partitions_read(self, statement):
        """Which share of each partitioned table's months a statement reads, from EXPLAIN PARTITIONS:
        "orders 1/17, order_lines 1/17"; "" where no partitioned table is read or on SQLite."""
        if not self.mysql:
            return ""
        result = self.conn.exec_driver_sql("EXPLAIN PARTITIONS " + self.literal_sql(statement))
        keys = list(result.keys())
        if "partitions" not in keys:
            return ""
        read = {}
        for row in result:
            table, names = row[keys.index("table")], row[keys.index("partitions")]
            if table in PARTITIONED and names:
                read[table] = read.get(table, set()) | set(names.split(","))
        totals = {table: len(self.partition_layout(table)) for table in read}
        return ", ".join(f"{table} {len(names)}/{totals[table]}" for table, names in sorted(read.items()))

    def explain(self, sql):
        """The plan of a statement as lines: EXPLAIN PARTITIONS on MariaDB, EXPLAIN QUERY PLAN on SQLite."""
        if not self.mysql:
            return [f"{detail}" for *_ids, detail in self.rows("EXPLAIN QUERY PLAN " + sql)]
        try:
            result = self.conn.exec_driver_sql("EXPLAIN PARTITIONS " + sql)
        except Exception:  # MySQL 8 shows partitions in plain EXPLAIN and rejects the keyword
            result = self.conn.exec_driver_sql("EXPLAIN " + sql)
        keys = list(result.keys())
        wanted = [k for k in ("table", "partitions", "type", "key", "rows", "Extra") if k in keys]
        return ["  ".join(f"{k}={row[keys.index(k)]}" for k in wanted) for row in result]

    # --- report ----------------------------------------------------------------------------------

    def _slow_statements(self, top=5):
        """The statements that took most time, from the query statistics and the slow query log."""
        summary = self.app.extensions["query_stats"].summary("day")
        found = [
            (r["total_ms"], r["count"], r["max_ms"], r["sql"])
            for r in summary["statements"]
            if r["sql"].lower().startswith("select")
        ][:top]
        lines = [
            f"from {summary['store']}" + (f" (unavailable: {summary['store_error']})" if summary["store_error"] else "")
        ]
        slow_log = self._slow_log(top)
        for total, count, maximum, sql in found:
            lines.append(f"{total:,.0f} ms total, {count:,} runs, max {maximum:,.0f} ms: {short_sql(sql)[:300]}")
            lines.extend("    " + p for p in self._explain_normalised(sql))
        if not found:
            lines.append("no statements recorded in the last day")
        lines.append(
            f"slow query log ({len(slow_log)} distinct queries at or above {self.config['SLOW_QUERY_MS']} ms):"
        )
        for sql, ms in slow_log:
            lines.append(f"  {ms:,.0f} ms: {short_sql(sql)[:300]}")
            lines.extend("    " + p for p in self._explain_normalised(sql))
        return lines

    def _slow_log(self, top):
        path = os.path.join(self.app.instance_path, "logs", "slow_queries.log")
        worst = {}
        if os.path.exists(path):
            with open(path, encoding="utf-8", errors="replace") as handle:
                for line in handle:
                    match = re.search(r"\] ([\d.]+) ms .* sql=(.*)$", line)
                    # Queries only, as from the statistics above: they are what a plan and an index can help.
                    if match and match.group(2).lower().startswith("select"):
                        sql, ms = match.group(2).strip(), float(match.group(1))
                        worst[sql] = max(ms, worst.get(sql, 0))
        return sorted(worst.items(), key=lambda item: item[1], reverse=True)[:top]

    def _explain_normalised(self, sql):
        """Plan of a normalised statement (literals are ?): numbers for LIMIT/OFFSET, '1' for the rest."""
        if not sql.lower().startswith("select"):
            return []
        sample = re.sub(r"(LIMIT|OFFSET) \?", r"\1 10", sql, flags=re.IGNORECASE)
        sample = sample.replace("(?+)", "('1')").replace("?", "'1'")
        try:
            return ["plan with sample values:"] + self.explain(sample)
        except Exception as exc:
            return [f"no plan: {str(getattr(exc, 'orig', None) or exc).splitlines()[0]}"]

    def report_sections(self):
        """Sizes, indexes, partitions, orphans and plans; a section that cannot be read says why."""
        parts = [("Tables", self._tables), ("Indexes", self._indexes)]
        if self.mysql:
            parts.append(("Partitions", self._partition_lines))
        parts += [
            ("Orphan check (no foreign keys on the orders tables)", self._orphans),
            ("Connections", self._connections),
            ("Key queries and their plans", self._plans),
        ]
        for title, build in parts:
            try:
                lines = build()
            except Exception as exc:
                lines = [f"could not be read: {str(getattr(exc, 'orig', None) or exc).splitlines()[0]}"]
            self.out.sections.append((title, lines))

    def _connections(self):
        budget = connection_budget(self.engine, self.config, live_processes(self.app.extensions["counters"]))
        lines = [describe_budget(budget)]
        if budget and budget["needed"] > budget["max_connections"]:
            lines.append(
                f"lower SIPUP_DB_POOL_SIZE / SIPUP_DB_MAX_OVERFLOW (room for {budget['fit']} process(es) at "
                f"{budget['per_process']} each) or raise max_connections in the MariaDB configuration"
            )
            self.out.warnings.append(
                "connection pools may ask for more connections than max_connections allows (see Connections)"
            )
        return lines

    def _plans(self):
        plans = []
        for label, statement in self.key_queries():
            sql = self.literal_sql(statement)
            plans.append(f"{label}: {' '.join(sql.split())[:400]}")
            plans.extend("    " + p for p in self.explain(sql))
        return plans or ["no orders yet"]

    def _tables(self):
        names = [t.name for t in db.metadata.sorted_tables]
        if self.mysql:
            rows = self.rows(
                "SELECT TABLE_NAME, TABLE_ROWS, DATA_LENGTH, INDEX_LENGTH, DATA_FREE "
                "FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() ORDER BY "
                "DATA_LENGTH + INDEX_LENGTH DESC"
            )
            return [
                f"{t:<24} ~{r or 0:>12,} rows  data {_mb(d)}  indexes {_mb(i)}  free {_mb(f)}"
                for t, r, d, i, f in rows
                if t in names
            ]
        sizes = {}  # SQLite built without the dbstat table: sizes of the whole file only
        if self.scalar("SELECT COUNT(*) FROM pragma_module_list WHERE name = 'dbstat'"):
            sizes = dict(self.rows("SELECT name, SUM(pgsize) FROM dbstat GROUP BY name"))
        lines = []
        for table in db.metadata.sorted_tables:
            count = self.scalar(f"SELECT COUNT(*) FROM {table.name}")
            index_bytes = sum(sizes.get(ix.name, 0) for ix in table.indexes)
            size = f"  data {_mb(sizes.get(table.name, 0))}  indexes {_mb(index_bytes)}" if sizes else ""
            lines.append(f"{table.name:<24} {count:>13,} rows{size}")
        pages, page_size = self.scalar("PRAGMA page_count"), self.scalar("PRAGMA page_size")
        lines.append(f"file: {_mb(pages * page_size)}, {self.scalar('PRAGMA freelist_count'):,} free pages")
        return lines

    def _indexes(self):
        names = {t.name for t in db.metadata.sorted_tables}
        lines = []
        if self.mysql:
            rows = self.rows(
                "SELECT TABLE_NAME, INDEX_NAME, GROUP_CONCAT(COLUMN_NAME ORDER BY SEQ_IN_INDEX), "
                "MAX(CARDINALITY), MIN(NON_UNIQUE) FROM information_schema.STATISTICS "
                "WHERE TABLE_SCHEMA = DATABASE() GROUP BY TABLE_NAME, INDEX_NAME ORDER BY 1, 2"
            )
            for table, name, columns, cardinality, non_unique in rows:
                if table in names:
                    kind = "" if non_unique else " unique"
                    lines.append(f"{table}.{name} ({columns}){kind}: cardinality {cardinality or 0:,}")
            return lines
        stats = {}  # no sqlite_stat1 before the first ANALYZE (a dry run on a fresh file)
        if self.scalar("SELECT COUNT(*) FROM sqlite_master WHERE name = 'sqlite_stat1'"):
            stats = {idx: stat for _tbl, idx, stat in self.rows("SELECT tbl, idx, stat FROM sqlite_stat1")}
        for table in db.metadata.sorted_tables:
            for name, (columns, unique) in sorted(self.live_indexes(table.name).items()):
                stat = stats.get(name, "").split()
                # sqlite_stat1: total rows, then rows per distinct value of the first column, ...
                cardinality = f"{int(stat[0]) // max(int(stat[1]), 1):,}" if len(stat) > 1 else "unknown (no ANALYZE)"
                lines.append(
                    f"{table.name}.{name} ({', '.join(columns)}){' unique' if unique else ''}: "
                    f"cardinality {cardinality}"
                )
        return lines

    def _partition_lines(self):
        lines = []
        keep_from = month_start(self.now, 1 - self.config["DB_PARTITION_MONTHS"])
        for table in PARTITIONED:
            layout = self.partition_layout(table)
            if not layout:
                lines.append(f"{table}: not partitioned")
                continue
            for index, (name, bound, estimate) in enumerate(layout):
                if bound is None:
                    span = "catch-all"
                else:
                    start = "everything older" if index == 0 else f"from {month_start(bound, -1)}"
                    span = f"{start} to {bound}" + (" (expired)" if bound <= keep_from else "")
                lines.append(f"{table}.{name:<8} ~{estimate:>11,} rows  {span}")
        return lines

    def _orphans(self):
        """Rows pointing at an order that is not there (no foreign key stops it), bounded in time on MariaDB."""
        checks = [
            (
                "order lines without an order of the same month",
                "SELECT COUNT(*) FROM order_lines l WHERE NOT EXISTS "
                "(SELECT 1 FROM orders o WHERE o.id = l.order_id AND o.created_at = l.created_at)",
            ),
            (
                "order events without an order",
                "SELECT COUNT(*) FROM order_events e WHERE NOT EXISTS (SELECT 1 FROM orders o WHERE o.id = e.order_id)",
            ),
            (
                "invoices without an order",
                "SELECT COUNT(*) FROM invoices i WHERE NOT EXISTS (SELECT 1 FROM orders o WHERE o.id = i.order_id)",
            ),
        ]
        lines = []
        for label, sql in checks:
            bounded = f"SET STATEMENT max_statement_time = {ORPHAN_CHECK_SECONDS} FOR {sql}" if self._mariadb() else sql
            started = time.perf_counter()
            try:
                count = self.scalar(bounded)
            except Exception as exc:
                lines.append(f"{label}: not checked ({str(getattr(exc, 'orig', None) or exc).splitlines()[0]})")
                continue
            lines.append(
                f"{label}: {count:,}"
                + (" (check them)" if count else "")
                + f"  [{time.perf_counter() - started:.1f} s]"
            )
        return lines

    def _mariadb(self):
        return self.mysql and "mariadb" in (self.scalar("SELECT VERSION()") or "").lower()


NOISE_MS, NOISE_RATIO = 0.5, 1.25  # differences within these are measurement noise, not a change


def compare(before, after):
    """How much faster ("2.1x"), "slower" or "same" (within the noise); "" when either was not measured."""
    if before is None or after is None:
        return ""
    if abs(after - before) < NOISE_MS or 1 / NOISE_RATIO <= after / before <= NOISE_RATIO:
        return "same"
    return f"{before / after:.1f}x" if after < before else "slower"


def _ms(value):
    return f"{value:9.2f}" if value is not None else f"{'cut off':>9}"


def _mb(size):
    return f"{(size or 0) / 1048576:,.1f} MB"


def render(out):
    """The report as text."""
    mode = (
        "dry run: nothing was changed"
        if out.dry_run
        else f"{out.changes} schema changes, {len(out.statements) - out.changes} maintenance statements"
    )
    lines = [f"sipup database report, {out.started:%Y-%m-%d %H:%M} UTC, {out.backend} ({mode})"]
    if out.failed:
        lines.append(f"FAILED: {out.failed}")
    lines.append("")
    lines.append("Statements" + (" that would run:" if out.dry_run else ":"))
    for step, sql, seconds in out.statements:
        took = "" if seconds is None else f" [{seconds:.2f} s]"
        lines.append(f"  {step}: {sql}{took}")
    if not out.statements:
        lines.append("  none: the database already matches (nothing to do)")
    for title, items in (("Warnings", out.warnings), ("Skipped", out.skipped)):
        if items:
            lines.append(f"\n{title}:")
            lines.extend(f"  {item}" for item in items)
    if out.timings_before:
        lines.append(
            f"\nKey queries sipup runs (ms, best of 3; cut off after {KEY_QUERY_SECONDS} s; partitions read "
            "of the partitioned tables):"
        )
        if not out.timings_after:
            lines.append(
                "  "
                + ("a dry run" if out.dry_run else "no schema change in this run")
                + ": timed once, nothing to compare"
            )
        for label, before in out.timings_before.items():
            after = out.timings_after.get(label)
            shown = _ms(before["ms"])
            if out.timings_after:
                change = compare(before["ms"], after and after["ms"])
                shown += f" -> {_ms(after['ms']) if after else 'not measured'}  {change:>7}"
            where = (after or before)["partitions"]
            lines.append(f"  {shown}  {label}" + (f"  [{where}]" if where else ""))
    for title, items in out.sections:
        lines.append(f"\n{title}:")
        lines.extend(f"  {item}" for item in items)
    return "\n".join(lines) + "\n"


def partition_orders(app, now=None, echo=lambda _line: None):
    """Only the partitions step: the test fixtures run the suite on the partitioned production shape."""
    optimizer = Optimizer(app, now=now, echo=echo)
    with optimizer.engine.connect() as optimizer.conn:
        optimizer._bound_lock_waits()
        optimizer.partitions()
    optimizer.engine.dispose()
    return optimizer.out


def optimize(app, now=None, dry_run=False, echo=click.echo):
    """Run every step and return (outcome, report text)."""
    outcome = Optimizer(app, now=now, dry_run=dry_run, echo=echo).run()
    return outcome, render(outcome)


@click.command("optimize", short_help="Indexes, monthly partitions, ANALYZE; a report of timings.")
@click.option("--dry-run", is_flag=True, help="Print the statements that would run; change nothing.")
@click.option("--report", "report_path", type=click.Path(dir_okay=False), help="Also write the report to this file.")
@with_appcontext
def db_optimize(dry_run, report_path):
    """Check indexes, roll monthly partitions forward, analyse tables, and report sizes, plans and timings."""
    outcome, report = optimize(current_app._get_current_object(), dry_run=dry_run)
    click.echo("")
    click.echo(report, nl=False)
    if report_path:
        try:
            with open(report_path, "w", encoding="utf-8") as handle:
                handle.write(report)
        except OSError as exc:
            raise click.ClickException(f"The report could not be written to {report_path}: {exc.strerror}.") from None
        click.echo(f"Report written to {report_path}.")
    if outcome.failed:
        raise click.ClickException(outcome.failed)
