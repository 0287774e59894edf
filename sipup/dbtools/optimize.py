"""`flask db optimize` (the command is in sipup/cli/db.py): indexes checked against the models, monthly partitions of
the orders tables, table maintenance and a performance report. Every step is idempotent, so it is safe to run
weekly. The key queries it times come from its caller (sipup.services.key_queries): this package knows no page.

The work runs on a connection of its own (no pool, autocommit, bounded lock waits), so its statements
neither count in the query statistics nor hold a transaction open across DDL. Each DDL statement is
atomic on its own; a failure stops the run at that statement and names it, and the next run picks up
from what is there.
"""

import click
from sqlalchemy import create_engine
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from sipup.dbtools.indexes import IndexSteps
from sipup.dbtools.maintenance import MaintenanceSteps
from sipup.dbtools.partitions import PartitionSteps
from sipup.dbtools.report import Outcome, ReportSteps, compare, render
from sipup.dbtools.statements import Statements
from sipup.models import utcnow


class Optimizer(Statements, IndexSteps, PartitionSteps, MaintenanceSteps, ReportSteps):
    """One run of `flask db optimize` over the app's database."""

    def __init__(self, app, now=None, dry_run=False, echo=click.echo, key_queries=None):
        self.app = app
        self.find_key_queries = key_queries  # (conn, now) -> [(label, statement)] to time and explain
        self.config = app.config
        self.now = now or utcnow()
        self.dry_run = dry_run
        self.echo = echo
        url = make_url(self.config["SQLALCHEMY_DATABASE_URI"])
        self.mysql = url.get_backend_name() in ("mysql", "mariadb")
        connect_args = dict(self.config["SQLALCHEMY_ENGINE_OPTIONS"].get("connect_args", {}))
        if self.mysql:  # a command: statements may run as long as SIPUP_DB_JOB_TIMEOUT (moving a month of orders)
            connect_args["read_timeout"] = self.config["DB_JOB_TIMEOUT"] or None
        self.engine = create_engine(url, poolclass=NullPool, connect_args=connect_args, isolation_level="AUTOCOMMIT")
        self.out = Outcome(dry_run, "MySQL/MariaDB" if self.mysql else "SQLite", self.now)
        self.step = "connect"
        self.conn = None

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


def partition_orders(app, now=None, echo=lambda _line: None):
    """Only the partitions step: the test fixtures run the suite on the partitioned production shape."""
    optimizer = Optimizer(app, now=now, echo=echo)
    with optimizer.engine.connect() as optimizer.conn:
        optimizer._bound_lock_waits()
        optimizer.partitions()
    optimizer.engine.dispose()
    return optimizer.out


def optimize(app, now=None, dry_run=False, echo=click.echo, key_queries=None):
    """Run every step and return (outcome, report text); key_queries(conn, now) names the statements to time."""
    outcome = Optimizer(app, now=now, dry_run=dry_run, echo=echo, key_queries=key_queries).run()
    return outcome, render(outcome)
