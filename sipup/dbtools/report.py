"""The optimizer's report: key queries timed before and after, slow statements, plans, sizes,
indexes, partitions, orphans; rendered as text."""

import os
import re
import time
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy.exc import OperationalError

from sipup.dbtools.partitions import PARTITIONED, month_start
from sipup.extensions import db
from sipup.metrics.pool import connection_budget, describe_budget
from sipup.metrics.processes import pool_holders
from sipup.metrics.statements import short_sql

ORPHAN_CHECK_SECONDS = 60
KEY_QUERY_SECONDS = 30
MAX_STATEMENT_TIME_EXCEEDED = 1969  # MariaDB's error when max_statement_time cuts a query off


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


class ReportSteps:
    """Key queries and the report sections of the Optimizer."""

    def key_queries(self):
        """The statements to time and explain: [(label, statement)] from the caller's `key_queries(conn, now)`
        (the business code knows which statements its pages run; this package knows none of them)."""
        return self.find_key_queries(self.conn, self.now) if self.find_key_queries else []

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
        budget = connection_budget(self.engine, self.config, pool_holders(self.app.extensions["counters"]))
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
