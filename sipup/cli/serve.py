"""`flask serve`: sipup under waitress, one process or several on one port, after its start-up checks (the port,
Redis, the file storage, the replicas) and, on an empty embedded database, demo data."""

import errno
import logging
import os
import sys

import click
import redis
from flask import current_app
from flask.cli import ScriptInfo, with_appcontext
from flask_babel import gettext
from sqlalchemy import func, select
from waitress import create_server

from sipup import redisclient, serving
from sipup.cli.db import NO_TABLES, is_embedded, schema_present, upgrade_schema, warn_backup_verification
from sipup.extensions import db
from sipup.files import open_private
from sipup.i18n import role_name
from sipup.services.seed import seed_demo
from sipup.storage import get_storage


@click.command()
@click.option("--host", help="Address to listen on (default SIPUP_HOST, 127.0.0.1).")
@click.option("--port", type=click.IntRange(1, 65535), help="Port (default SIPUP_PORT, 8080).")
@click.option("--threads", type=click.IntRange(1, 512), help="Worker threads per process (default SIPUP_THREADS, 8).")
@click.option(
    "--processes",
    metavar="N",
    help="Processes on the one port (default SIPUP_PROCESSES, else the number of cores with Redis, 1 without).",
)
@with_appcontext
def serve(host, port, threads, processes):
    """Run sipup under waitress; on an empty embedded database, create it with demo data first."""
    # The port is taken first: a port in use should not wait for the demo data to be made.
    config = current_app.config
    host, port, threads = host or config["HOST"], port or config["PORT"], threads or config["THREADS"]
    processes = _processes_option(processes) or serving.process_count(config)
    logging.basicConfig()  # what waitress.serve() does: log records (waitress's and ours) show on the console
    redis_problem = _redis_problem(config["REDIS_URL"])
    if redis_problem:
        click.echo(gettext("sipup: warning: %(problem)s", problem=redis_problem), err=True)
    if processes > 1 and not config["REDIS_URL"]:
        click.echo(
            gettext(
                "sipup: warning: %(processes)s processes without Redis (SIPUP_REDIS_URL): each keeps its own "
                "rate-limit budgets, so a client may make %(processes)sx SIPUP_RATELIMIT_IP; set SIPUP_REDIS_URL to "
                "share them.",
                processes=processes,
            ),
            err=True,
        )
    storage_problem = _storage_problem()
    if storage_problem:
        click.echo(gettext("sipup: warning: %(problem)s", problem=storage_problem), err=True)
    replicas = current_app.extensions.get("sipup_replicas")
    for problem in replicas.problems() if replicas else ():
        click.echo(gettext("sipup: warning: %(problem)s", problem=problem), err=True)
    app = current_app._get_current_object()
    try:
        if processes == 1:
            listening = [create_server(app, host=host, port=port, **serving.server_options(config, threads))]
        else:
            listening = serving.listening_sockets(host, port)
    except OSError as exc:
        problem = _port_problem(exc, host, port)
        if problem is None:
            raise
        raise click.ClickException(problem) from None
    try:
        _prepare_database()
    except BaseException:
        for listener in listening:
            listener.close()
        raise
    url = f"http://{host}:{port}/"
    if processes == 1:
        click.echo(
            gettext(
                "sipup listening on %(url)s with %(threads)s threads (Ctrl+C stops).",
                url=url,
                threads=threads,
            )
        )
        sys.stdout.flush()
        serving.run(app, listening[0], threads, host, port)
        return
    db.engine.dispose()  # the processes open connections of their own
    click.echo(
        gettext(
            "sipup listening on %(url)s with %(processes)s processes of %(threads)s threads (Ctrl+C stops).",
            url=url,
            processes=processes,
            threads=threads,
        )
    )
    sys.stdout.flush()
    app_path = click.get_current_context().find_object(ScriptInfo).app_import_path
    supervisor = serving.Supervisor(listening, processes, threads, config["DRAIN_SECONDS"], app_path)
    sys.exit(supervisor.run())


def _processes_option(text):
    """--processes as a number above 0 (None when not given); anything else stops with one line."""
    if text is None:
        return None
    try:
        number = int(text)
    except ValueError:
        number = 0
    if number < 1:
        raise click.ClickException(
            gettext(
                "--processes %(value)s: must be a whole number above 0 (leave it out: the number of cores with "
                "Redis, 1 without).",
                value=text,
            )
        )
    return number


def _port_problem(exc, host, port):
    """The one line for a port that cannot be listened on; None for other errors."""
    reason = {
        errno.EADDRINUSE: gettext("Port %(port)s on %(host)s is in use by another program (XAMPP's Tomcat takes 8080)"),
        errno.EACCES: gettext("Port %(port)s on %(host)s may not be opened by this account"),
        errno.EADDRNOTAVAIL: gettext("Port %(port)s on %(host)s is on an address this host does not have"),
    }.get(exc.errno)
    if reason is None:
        return None
    return gettext(
        "%(problem)s: start with another port, e.g. flask serve --port %(other)s, or set SIPUP_PORT.",
        problem=reason % {"port": port, "host": host},
        other=port + 1 if port < 65535 else 8081,
    )


def _prepare_database():
    """On the embedded default, create or update the schema and fill an empty one with demo data; elsewhere
    insist on a migrated database."""
    if is_embedded():
        fresh = not schema_present()
        upgrade_schema()
        if fresh or not db.session.scalar(select(func.count()).select_from(db.metadata.tables["users"])):
            click.echo(gettext("Empty database: creating demo data..."))
            _print_logins(seed_demo())
    elif not schema_present():
        raise click.ClickException(str(NO_TABLES))
    else:
        warn_backup_verification()


def _redis_problem(url):
    """One line on a configured Redis that does not answer now (sipup starts degraded and retries), else None."""
    if not url:
        return None

    degraded = gettext("rate limits and statistics count per process and the cache is skipped until it answers.")
    problem = redisclient.master_problem(url)
    if problem:
        return gettext(
            "Redis Sentinel (SIPUP_REDIS_URL): %(problem)s; starting degraded: %(degraded)s",
            problem=problem,
            degraded=degraded,
        )
    client = redisclient.connect(url, timeout=1)
    try:
        client.ping()
    except redis.RedisError as exc:
        if isinstance(exc, redis.ResponseError) and "DB index is out of range" in str(exc):
            index = client.connection_pool.connection_kwargs.get("db")
            raise click.ClickException(
                gettext(
                    "SIPUP_REDIS_URL names database %(index)s, but the DB index is out of range on the Redis at "
                    "%(where)s (it has databases 0 to 15 unless its `databases` setting says more): use one of "
                    "those, e.g. redis://host:6379/0.",
                    index=index,
                    where=redisclient.describe(url),
                )
            ) from None
        return gettext(
            "Redis at %(where)s (SIPUP_REDIS_URL) does not answer (%(error)s); starting degraded: %(degraded)s",
            where=redisclient.describe(url),
            error=type(exc).__name__,
            degraded=degraded,
        )
    finally:
        client.close()
    return None


def _storage_problem():
    """One line on a shared file storage that cannot be used now (no answer, refused key, no bucket), else None:
    pages still answer, and pictures, reports and uploads work once it does."""
    storage = get_storage()
    if storage.name == "database":  # its table comes with the schema, which is checked next
        return None
    problem = storage.problem()
    if problem is None:
        return None
    return gettext(
        "file storage %(where)s (SIPUP_STORAGE_URL): %(problem)s; starting anyway: pictures, reports and uploads "
        "fail with a message until it works.",
        where=storage.where,
        problem=problem,
    )


def _print_logins(logins):
    click.echo("\n" + gettext("Demo logins (also in instance/demo-logins.txt):"))
    for role, email, password in logins:
        click.echo(f"  {role_name(role):<9} {email:<40} {password}")
    path = os.path.join(current_app.instance_path, "demo-logins.txt")
    with open_private(path, "w", encoding="utf-8") as handle:
        handle.writelines(f"{role}\t{email}\t{password}\n" for role, email, password in logins)
