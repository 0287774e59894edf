"""The partitions step: the orders tables partitioned by month on MySQL/MariaDB, rolled forward, and
months past retention archived and dropped."""

import time
from datetime import date

from sqlalchemy import inspect

from sipup.dbtools.statements import StepFailed

# Tables partitioned by month of creation on MySQL/MariaDB. Order lines carry their order's created_at,
# so a month of orders and its lines live in partitions of the same name. Order events are not
# partitioned: an order's events span months (placed in one, paid in another), and they are few.
PARTITIONED = ("orders", "order_lines")
PARTITION_COLUMN = "created_at"
CATCH_ALL = "pmax"


def month_start(day, shift=0):
    """First day of the month `shift` months from day's month."""
    index = day.year * 12 + day.month - 1 + shift
    return date(index // 12, index % 12 + 1, 1)


def partition_name(first_day):
    return f"p{first_day:%Y%m}"


class PartitionSteps:
    """The partitions step of the Optimizer."""

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
