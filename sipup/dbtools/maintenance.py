"""The maintenance step: ANALYZE everywhere, OPTIMIZE/VACUUM where enough of a table is free space."""

from sipup.dbtools.partitions import PARTITIONED
from sipup.extensions import db

# OPTIMIZE (a rebuild) pays only when this much of a table or partition is free space.
REBUILD_FREE_SHARE, REBUILD_FREE_BYTES = 0.2, 64 * 1024 * 1024
VACUUM_FREE_SHARE = 0.1


class MaintenanceSteps:
    """The maintenance step of the Optimizer."""

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
