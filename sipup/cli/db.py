"""`flask db`: Flask-Migrate's schema migrations, imported only when one of them runs, with the backup check
after `upgrade`; sipup's `stats` (statement statistics, the pool) and `optimize`; and the schema checks
`flask serve` and `flask seed` make."""

import click
from flask import current_app
from flask.cli import AppGroup, with_appcontext
from flask_babel import gettext, lazy_gettext
from sqlalchemy import inspect

from sipup.database import migrations
from sipup.dbtools.optimize import optimize
from sipup.extensions import db
from sipup.metrics.pool import describe_pool, pool_status
from sipup.services import backup
from sipup.services.key_queries import key_queries

DB_HELP = (
    "The database: schema migrations (`upgrade` applies them; the others are Flask-Migrate's tools for "
    "writing them), statement statistics (`stats`) and indexes, partitions and statistics (`optimize`)."
)

NO_TABLES = lazy_gettext("The database has no sipup tables yet. Run `flask db upgrade` first.")


class DatabaseGroup(AppGroup):
    """`flask db`: sipup's commands, and Flask-Migrate's, whose group is imported when one of them is asked for
    (it imports alembic: 0.2 s that every other command, `flask queue process` each minute, need not pay)."""

    def __init__(self, app):
        options = [  # Flask-Migrate's group options, handed to its group when one of its commands runs
            click.Option(
                ["-d", "--directory"], default=None, help='Migration script directory (default is "migrations")'
            ),
            click.Option(
                ["-x", "--x-arg"], multiple=True, help="Additional arguments consumed by custom env.py scripts"
            ),
        ]
        super().__init__("db", help=DB_HELP, params=options, callback=self._migrate_options)
        self.app = app
        self.add_command(db_stats)
        self.add_command(db_optimize)

    def _migrate_group(self):
        from flask_migrate.cli import db as migrate_group  # lazy: alembic takes 0.2 s to import

        migrations(self.app)
        return migrate_group

    def _migrate_commands(self):
        return self._migrate_group().commands

    def _migrate_options(self, directory, x_arg):
        if click.get_current_context().invoked_subcommand not in self.commands:  # one of Flask-Migrate's
            self._migrate_group().callback(directory=directory, x_arg=x_arg)

    def list_commands(self, ctx):
        return sorted({*super().list_commands(ctx), *self._migrate_commands()})

    def get_command(self, ctx, name):
        command = super().get_command(ctx, name)
        if command is None:
            command = self._migrate_commands().get(name)
            if name == "upgrade":  # Flask-Migrate's, with the backup check after it
                command = _upgrade_then_check(command)
        return command


def _upgrade_then_check(upgrade_command):
    """`flask db upgrade` as Flask-Migrate has it, then one line on what the nightly backup lacks, if anything."""

    @click.pass_context
    def run(ctx, **options):
        ctx.invoke(upgrade_command, **options)
        if not options.get("sql"):  # --sql only prints the statements
            warn_backup_verification()

    return click.Command(
        "upgrade",
        params=upgrade_command.params,
        callback=run,
        help=upgrade_command.help,
        short_help="Upgrade to a later version",
    )


def warn_backup_verification():
    """One line on standard error when the nightly backup's verification is not allowed on this server."""
    problem = backup.verification_problem()
    if problem:
        click.echo(gettext("sipup: warning: %(problem)s", problem=problem), err=True)


def is_embedded():
    return current_app.config["SQLALCHEMY_DATABASE_URI"].startswith("sqlite")


def schema_present():
    return inspect(db.engine).has_table("orders")


def upgrade_schema():
    """Apply every migration (what `flask db upgrade` does)."""
    from flask_migrate import upgrade  # lazy: alembic takes 0.2 s to import; only migrations need it

    upgrade(directory=migrations(current_app).directory)


@click.command("stats", short_help="Top statements by time, slow ones, the pool.")
@click.option("--window", type=click.Choice(["hour", "day"]), default="hour", show_default=True, help="Time span.")
@click.option("--top", type=click.IntRange(1, 500), default=10, show_default=True, help="Statements to list.")
@with_appcontext
def db_stats(window, top):
    """Print the top statements by total time, the slow ones, and the connection pool."""
    summary = current_app.extensions["query_stats"].summary(window)
    click.echo(f"Query statistics, last {window} (from {summary['store']}):")
    if summary["store_error"]:
        click.echo(f"  warning: statistics store unavailable: {summary['store_error']}")
    kinds = ", ".join(f"{k} {v['count']:,} ({v['avg_ms']:.1f} ms avg)" for k, v in sorted(summary["kinds"].items()))
    click.echo(f"  {kinds or 'no statements yet'}")
    click.echo(
        f"  requests {summary['requests']:,}, {summary['queries_per_request']:.1f} queries each, "
        f"{summary['heavy_requests']:,} over {current_app.config['QUERY_WARN_PER_REQUEST']} (possible N+1)"
    )
    header = f"  {'count':>8} {'total ms':>10} {'avg ms':>8} {'p95 ms':>7} {'max ms':>8} {'slow':>5}  statement"
    for title, rows in (
        ("Top statements by total time", summary["statements"][:top]),
        (
            f"Slow statements (>= {current_app.config['SLOW_QUERY_MS']} ms)",
            [r for r in summary["statements"] if r["slow"]][:top],
        ),
    ):
        click.echo(f"\n{title}:")
        if not rows:
            click.echo("  none")
            continue
        click.echo(header)
        for r in rows:
            click.echo(
                f"  {r['count']:>8,} {r['total_ms']:>10,.1f} {r['avg_ms']:>8.2f} {r['p95_ms']:>7,.0f} "
                f"{r['max_ms']:>8.1f} {r['slow']:>5}  {r['short'][:110]}"
            )
    click.echo(f"\nPool: {describe_pool(pool_status(db.engine))}")


@click.command("optimize", short_help="Indexes, monthly partitions, ANALYZE; a report of timings.")
@click.option("--dry-run", is_flag=True, help="Print the statements that would run; change nothing.")
@click.option("--report", "report_path", type=click.Path(dir_okay=False), help="Also write the report to this file.")
@with_appcontext
def db_optimize(dry_run, report_path):
    """Check indexes, roll monthly partitions forward, analyse tables, and report sizes, plans and timings."""
    outcome, report = optimize(current_app._get_current_object(), dry_run=dry_run, key_queries=key_queries)
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
