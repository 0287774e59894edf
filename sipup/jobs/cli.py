"""`flask queue`: process jobs from cron, run a worker, show status, retry failed jobs, clean up history."""

import click
from flask import current_app
from flask.cli import AppGroup
from sqlalchemy.exc import DBAPIError

from sipup.database import is_unavailable
from sipup.extensions import db
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
        click.echo(f"error: the database is unavailable: {describe(exc)}", err=True)
        raise SystemExit(1) from None
    if verbose:
        periodic = summary["periodic"] or []
        click.echo(
            f"Ran {summary['run']} job(s), {summary['failed']} failed; reaped {summary['reaped'] or 0}, "
            f"lost and re-sent {summary['lost'] or 0}, resent {summary['resent'] or 0}, "
            f"released {summary['released'] or 0}, periodic: {', '.join(periodic) or 'none'}."
        )
    if summary["failed"]:
        click.echo(f"warning: {summary['failed']} job(s) failed in this run; see `flask queue status`.", err=True)
    for problem in summary["problems"]:
        click.echo(f"warning: {problem}", err=True)
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
        f"sipup queue worker on {current_app.extensions['queue'].backend} with {workers} thread(s); "
        f"Ctrl+C or SIGTERM stops it, letting running jobs finish for up to "
        f"{current_app.config['WORKER_STOP_SECONDS']} s."
    )
    run_worker(current_app._get_current_object(), workers)


@queue_cli.command("status", short_help="Job counts by status and priority, the processors' last runs.")
def status():
    """Print job counts by status and priority, the oldest waiting job's age and the last processor runs."""
    info = manage.queue_status()
    click.echo(
        f"Queue on {info['backend']}; oldest waiting job: {manage.describe_age(info['oldest_waiting_seconds'])}; "
        f"waiting to be sent to the queue: {info['outbox']}."
    )
    click.echo(f"  {'status':<9} " + " ".join(f"{name:>7}" for name in registry.PRIORITIES) + f" {'total':>7}")
    for state, by_priority in info["counts"].items():
        click.echo(
            f"  {state:<9} " + " ".join(f"{n:>7}" for n in by_priority.values()) + f" {sum(by_priority.values()):>7}"
        )
    if info["store_loss"]:
        loss = info["store_loss"]
        click.echo(
            f"warning: the queue store lost {loss['lost']} queued message(s), noticed at "
            f"{loss['at']:%Y-%m-%d %H:%M} UTC ({loss['times']} time(s) so far); they were re-sent. "
            "Give Redis persistence (docs/jobs.md, Redis for the queue)."
        )
    if info["paused"]:
        click.echo(f"Paused: {', '.join(info['paused'])} (`flask queue resume PRIORITY` lets them run again).")
    if info["huey"] is not None:
        click.echo(f"Huey: {info['huey']['pending']} message(s) queued, {info['huey']['scheduled']} scheduled.")
    else:
        click.echo(f"warning: queue store unreachable: {info['huey_error']}")
    if not info["runs"]:
        click.echo("No processor has run yet: add `flask queue process` to cron (see cron/).")
    for run in info["runs"]:
        end = f"{run['finished_at']:%Y-%m-%d %H:%M:%S}" if run["finished_at"] else "still running"
        click.echo(
            f"Last run of {run['processor']}: {run['started_at']:%Y-%m-%d %H:%M:%S} UTC to {end}, "
            f"{run['jobs_run']} job(s), {run['failures']} failure(s)."
        )


@queue_cli.command("retry", short_help="Queue a failed job, or every failed job, again.")
@click.argument("job_id", type=int, required=False)
@click.option("--failed", "all_failed", is_flag=True, help="Retry every failed job.")
def retry(job_id, all_failed):
    """Queue a failed job (ID) or every failed job (--failed) again with fresh attempts."""
    if all_failed == (job_id is not None):
        raise click.UsageError("Give a job ID or --failed.")
    if all_failed:
        click.echo(f"Queued {manage.retry_failed()} failed job(s) again.")
        return
    try:
        record = manage.retry_job(job_id)
    except (LookupError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"Queued job {record.id} ({record.name}) again.")


@queue_cli.command("pause", short_help="Stop running jobs of a priority until resumed.")
@click.argument("priority", type=click.Choice(list(registry.PRIORITIES)))
def pause(priority):
    """Stop every processor and worker from running jobs of PRIORITY; they wait in the jobs table until resumed."""
    manage.pause(priority)
    click.echo(f"Jobs of priority {priority} are paused.")


@queue_cli.command("resume", short_help="Let jobs of a paused priority run again.")
@click.argument("priority", type=click.Choice(list(registry.PRIORITIES)))
def resume(priority):
    """Let jobs of PRIORITY run again; those that waited go out with the next processor run."""
    manage.resume(priority)
    click.echo(f"Jobs of priority {priority} run again.")


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
    click.echo(f"Deleted {manage.cleanup(days)} finished job(s) older than {days} day(s).")


@queue_cli.command("enqueue", short_help="Queue one job by name with its arguments.")
@click.argument("name")
@click.argument("args", nargs=-1)
@click.option("--priority", type=click.Choice(list(registry.PRIORITIES)), default=None, help="Default: the job's own.")
def enqueue(name, args, priority):
    """Queue one job by name with its arguments, e.g. `flask queue enqueue nightly_backup --priority high`."""
    if name not in registry.JOBS:
        raise click.ClickException(f"Unknown job {name!r}; jobs: {', '.join(sorted(registry.JOBS))}.")
    record = registry.enqueue(name, *args, priority=priority)
    db.session.commit()
    click.echo(f"Queued job {record.id} ({name}, {registry.PRIORITY_NAMES[record.priority]}).")
