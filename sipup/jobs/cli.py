"""`flask queue`: process jobs from cron, run a worker, show status, retry failed jobs, clean up history."""

import click
from flask import current_app
from flask.cli import AppGroup
from flask_babel import gettext
from sqlalchemy.exc import DBAPIError

from sipup.database import is_unavailable
from sipup.extensions import db
from sipup.i18n import job_status_name
from sipup.jobs import manage, registry
from sipup.jobs.worker import run_worker
from sipup.metrics.outages import describe

queue_cli = AppGroup(
    "queue",
    help=(
        "Background jobs (mail, reports, payments, stock files, backups, cleanup) on Huey, recorded in the jobs "
        "table. Cron runs `process` every minute; a busier host runs `worker` as a service instead, or beside it. "
        "`status` shows the queue, `retry` queues failed jobs again, `pause` and `resume` hold a priority back, "
        "`cleanup` trims the history and `enqueue` queues one job by hand."
    ),
)


@queue_cli.command("process", short_help="Run up to N ready jobs and the housekeeping, then exit (cron).")
@click.option(
    "--limit",
    type=click.IntRange(0, 100_000),
    default=None,
    help="Jobs to run at most (default SIPUP_QUEUE_BATCH, 10; 0 runs only the housekeeping).",
)
@click.option("-v", "--verbose", is_flag=True, help="Also print what the run did when all went well.")
def process(limit, verbose):
    """Run the ready jobs (highest priority first), release due retries and periodic jobs, then exit.

    Prints nothing when all went well (cron mails or logs any output), one line per real problem."""
    limit = current_app.config["QUEUE_BATCH"] if limit is None else limit
    try:
        summary = current_app.extensions["queue"].process(limit)
    except DBAPIError as exc:
        if not is_unavailable(exc):
            raise
        # One line in cron's log each minute while the database is away, not a traceback; jobs this run held
        # wait for their lease.
        click.echo(gettext("error: the database is unavailable: %(why)s", why=describe(exc)), err=True)
        raise SystemExit(1) from None
    if verbose:
        periodic = summary["periodic"] or []
        click.echo(
            gettext(
                "Ran %(run)s job(s), %(failed)s failed; reaped %(reaped)s, lost and re-sent %(lost)s, resent "
                "%(resent)s, released %(released)s, periodic: %(periodic)s.",
                run=summary["run"],
                failed=summary["failed"],
                reaped=summary["reaped"] or 0,
                lost=summary["lost"] or 0,
                resent=summary["resent"] or 0,
                released=summary["released"] or 0,
                periodic=", ".join(periodic) or gettext("none"),
            )
        )
    if summary["failed"]:
        click.echo(
            gettext(
                "warning: %(failed)s job(s) failed in this run; see `flask queue status`.", failed=summary["failed"]
            ),
            err=True,
        )
    for problem in summary["problems"]:
        click.echo(gettext("warning: %(problem)s", problem=problem), err=True)
    if "error" in summary:
        raise SystemExit(1)


@queue_cli.command("worker", short_help="Run jobs until stopped (SIGTERM/Ctrl+C finish running ones).")
@click.option(
    "--workers", type=click.IntRange(1, 64), default=None, help="Worker threads (default SIPUP_QUEUE_WORKERS, 2)."
)
def worker(workers):
    """Run Huey's consumer until stopped, for hosts that outgrow cron.

    SIGTERM, Ctrl+C or Ctrl+Break: take no new job, let running ones finish for up to
    SIPUP_WORKER_STOP_SECONDS (30), queue again what is still running, exit. A second signal stops at once."""
    workers = workers or current_app.config["QUEUE_WORKERS"]
    click.echo(
        gettext(
            "sipup queue worker on %(backend)s with %(workers)s thread(s); Ctrl+C or SIGTERM stops it, letting "
            "running jobs finish for up to %(seconds)s s.",
            backend=current_app.extensions["queue"].backend,
            workers=workers,
            seconds=current_app.config["WORKER_STOP_SECONDS"],
        )
    )
    run_worker(current_app._get_current_object(), workers)


@queue_cli.command("status", short_help="Job counts by status and priority, the processors' last runs.")
def status():
    """Print job counts by status and priority, the oldest waiting job's age and the last processor runs."""
    info = manage.queue_status()
    click.echo(
        gettext(
            "Queue on %(backend)s; oldest waiting job: %(age)s; waiting to be sent to the queue: %(outbox)s.",
            backend=info["backend"],
            age=manage.describe_age(info["oldest_waiting_seconds"]),
            outbox=info["outbox"],
        )
    )
    # The priorities keep their names: they are what `flask queue pause/resume` take.
    states = {state: job_status_name(state) for state in info["counts"]}
    width = max([len(gettext("status")), *map(len, states.values())])
    total = gettext("total")
    click.echo(
        f"  {gettext('status'):<{width}} " + " ".join(f"{name:>7}" for name in registry.PRIORITIES) + f" {total:>7}"
    )
    for state, by_priority in info["counts"].items():
        click.echo(
            f"  {states[state]:<{width}} "
            + " ".join(f"{n:>7}" for n in by_priority.values())
            + f" {sum(by_priority.values()):>7}"
        )
    if info["store_loss"]:
        loss = info["store_loss"]
        click.echo(
            gettext(
                "warning: the queue store lost %(lost)s queued message(s), noticed at %(at)s UTC (%(times)s time(s) "
                "so far); they were re-sent. Give Redis persistence (docs/jobs.md, Redis for the queue).",
                lost=loss["lost"],
                at=loss["at"].strftime("%Y-%m-%d %H:%M"),
                times=loss["times"],
            )
        )
    if info["paused"]:
        click.echo(
            gettext(
                "Paused: %(priorities)s (`flask queue resume PRIORITY` lets them run again).",
                priorities=", ".join(info["paused"]),
            )
        )
    if info["huey"] is not None:
        click.echo(
            gettext(
                "Huey: %(pending)s message(s) queued, %(scheduled)s scheduled.",
                pending=info["huey"]["pending"],
                scheduled=info["huey"]["scheduled"],
            )
        )
    else:
        click.echo(gettext("warning: queue store unreachable: %(why)s", why=info["huey_error"]))
    if not info["runs"]:
        click.echo(gettext("No processor has run yet: add `flask queue process` to cron (see cron/)."))
    for run in info["runs"]:
        end = f"{run['finished_at']:%Y-%m-%d %H:%M:%S}" if run["finished_at"] else gettext("still running")
        click.echo(
            gettext(
                "Last run of %(processor)s: %(start)s UTC to %(end)s, %(jobs)s job(s), %(failures)s failure(s).",
                processor=run["processor"],
                start=run["started_at"].strftime("%Y-%m-%d %H:%M:%S"),
                end=end,
                jobs=run["jobs_run"],
                failures=run["failures"],
            )
        )


@queue_cli.command("retry", short_help="Queue a failed job, or every failed job, again.")
@click.argument("job_id", type=int, required=False)
@click.option("--failed", "all_failed", is_flag=True, help="Retry every failed job.")
def retry(job_id, all_failed):
    """Queue a failed job (ID) or every failed job (--failed) again with fresh attempts."""
    if all_failed == (job_id is not None):
        raise click.UsageError(gettext("Give a job ID or --failed."))
    if all_failed:
        click.echo(gettext("Queued %(count)s failed job(s) again.", count=manage.retry_failed()))
        return
    try:
        record = manage.retry_job(job_id)
    except (LookupError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(gettext("Queued job %(id)s (%(name)s) again.", id=record.id, name=record.name))


@queue_cli.command("pause", short_help="Stop running jobs of a priority until resumed.")
@click.argument("priority", type=click.Choice(list(registry.PRIORITIES)))
def pause(priority):
    """Stop every processor and worker from running jobs of PRIORITY; they wait in the jobs table until resumed."""
    manage.pause(priority)
    click.echo(gettext("Jobs of priority %(priority)s are paused.", priority=priority))


@queue_cli.command("resume", short_help="Let jobs of a paused priority run again.")
@click.argument("priority", type=click.Choice(list(registry.PRIORITIES)))
def resume(priority):
    """Let jobs of PRIORITY run again; those that waited go out with the next processor run."""
    manage.resume(priority)
    click.echo(gettext("Jobs of priority %(priority)s run again.", priority=priority))


@queue_cli.command("cleanup", short_help="Delete finished jobs older than N days.")
@click.option(
    "--days",
    type=click.IntRange(1, 3650),
    default=None,
    help="Keep finished jobs this many days (default SIPUP_QUEUE_KEEP_DAYS, 30).",
)
def cleanup(days):
    """Delete finished jobs (done and failed) older than N days from the history."""
    days = days or current_app.config["QUEUE_KEEP_DAYS"]
    click.echo(
        gettext("Deleted %(count)s finished job(s) older than %(days)s day(s).", count=manage.cleanup(days), days=days)
    )


@queue_cli.command("enqueue", short_help="Queue one job by name with its arguments.")
@click.argument("name")
@click.argument("args", nargs=-1)
@click.option("--priority", type=click.Choice(list(registry.PRIORITIES)), default=None, help="Default: the job's own.")
def enqueue(name, args, priority):
    """Queue one job by name with its arguments, e.g. `flask queue enqueue nightly_backup --priority high`."""
    if name not in registry.JOBS:
        raise click.ClickException(
            gettext("Unknown job %(name)s; jobs: %(jobs)s.", name=repr(name), jobs=", ".join(sorted(registry.JOBS)))
        )
    record = registry.enqueue(name, *args, priority=priority)
    db.session.commit()
    click.echo(
        gettext(
            "Queued job %(id)s (%(name)s, %(priority)s).",
            id=record.id,
            name=name,
            priority=registry.PRIORITY_NAMES[record.priority],
        )
    )
