"""The optimizer's own connection: statements run, planned (a dry run) or timed, and the error that
stops a step."""

import threading
import time

import click
from sqlalchemy import text


class StepFailed(click.ClickException):
    """A step could not finish; what ran before it stays done and consistent."""


class Statements:
    """Running statements on the optimizer's connection (self.conn), recorded in its outcome (self.out)."""

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
