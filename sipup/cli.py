"""Command line: serve, seed and user; `flask db` comes from Flask-Migrate. Groups are nouns.

register_cli() also makes `flask --help` introduce sipup: what sipup is, then one line per command and group;
Flask's development server (`flask run`) is hidden beside `flask serve`."""

import errno
import logging
import os
import secrets
import sys

import click
import redis
from flask import current_app
from flask.cli import AppGroup, ScriptInfo, with_appcontext
from flask_babel import gettext, lazy_gettext
from sqlalchemy import func, inspect, select
from waitress import create_server

from sipup import redisclient
from sipup.cache.cli import cache_cli
from sipup.dbtools.optimize import optimize
from sipup.jobs.cli import queue_cli
from sipup.limits.cli import limits_cli
from sipup.metrics.query_stats import describe_pool, pool_status
from sipup.storage import get_storage
from sipup.storage.cli import storage_cli

from . import serving
from .database import migrations
from .exceptions import DomainError
from .extensions import db
from .files import open_private
from .i18n import role_name
from .imports_cli import export_cli, import_cli
from .loadtest.cli import loadtest
from .models import LinkPurpose
from .services import accounts, backup, companies, links, users
from .services import seed as seeding
from .services.key_queries import key_queries
from .services.seed import seed_demo

# One line each in `flask --help`, in the order a new operator needs them.
NO_TABLES = lazy_gettext("The database has no sipup tables yet. Run `flask db upgrade` first.")
ONE_LINERS = {
    "serve": "Run the site under waitress (demo data if the database is new).",
    "queue": "Background jobs: process (cron), worker, status, retry...",
    "db": "The database: upgrade (migrations), stats, optimize.",
    "cache": "Cache statistics per type, and clearing.",
    "storage": "Shared file storage: migrate the instance folder's files.",
    "limits": "Rate limits: refusals, offenders, unblocking.",
    "user": "User accounts of staff and customers.",
    "import": "Products, prices, companies from CSV or XLSX.",
    "export": "Products, prices, companies as CSV or XLSX.",
    "seed": "Fill the database with demo or scale data.",
    "loadtest": "Load-test a sipup site and check thresholds.",
}
ABOUT = """\b
sipup: B2B ordering for a wholesaler. Customers order at /, staff work at /admin,
admins watch /monitor. Settings: SIPUP_* variables or instance/sipup.cfg
(docs/settings.md). Start with `flask serve`; cron runs `flask queue process`
every minute (cron/). `flask COMMAND --help` describes each command and group."""
DB_HELP = (
    "The database: schema migrations (`upgrade` applies them; the others are Flask-Migrate's tools for "
    "writing them), statement statistics (`stats`) and indexes, partitions and statistics (`optimize`)."
)


def register_cli(app):
    """Attach the command groups to `flask`, each with its line for `flask --help`."""
    app.cli.add_command(serve)
    app.cli.add_command(seed)
    app.cli.add_command(user_cli)
    app.cli.add_command(company_cli)
    app.cli.add_command(import_cli)
    app.cli.add_command(export_cli)
    app.cli.add_command(limits_cli)
    app.cli.add_command(queue_cli)
    app.cli.add_command(loadtest)
    app.cli.add_command(cache_cli)
    app.cli.add_command(storage_cli)

    app.cli.add_command(DatabaseGroup(app))
    for name, line in ONE_LINERS.items():
        app.cli.commands[name].short_help = line
    context = click.get_current_context(silent=True)
    root = context.find_root().command if context is not None else None
    for group in (app.cli, root):  # Flask-Limiter's own group (a plugin of `flask`); `flask limits` is sipup's
        if isinstance(group, click.Group) and "limiter" in group.commands:
            group.commands["limiter"].hidden = True
    if root is not None:  # loaded by `flask`: its help is sipup's, without Flask's development server
        root.help, root.epilog = ABOUT, None
        if "run" in root.commands:  # Flask's development server: left for developers, not offered to operators
            root.commands["run"].hidden = True
        if _root_help_requested(context):
            _show_sipup_help(context)


def _root_help_requested(context):
    """`flask --help` (or a bare `flask`): only options on the command line, a help option among them if any."""
    args = sys.argv[1:]
    return all(arg.startswith("-") for arg in args) and (not args or bool(set(args) & set(context.help_option_names)))


def _show_sipup_help(context):
    """Print `flask --help` anew, with sipup's text and commands, and stop. Flask writes the help's first paragraph
    (its own) before it loads the app, so a text set while loading it would come too late for this page."""
    root = context.find_root().command
    if getattr(root, "sipup_help_shown", False):  # printing it loads the app once more
        return
    root.sipup_help_shown = True
    click.echo(root.get_help(context.find_root()))
    raise SystemExit(0)  # not click's Exit: Flask reports an Exception raised while loading the app as a failure


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
            _warn_backup_verification()

    return click.Command(
        "upgrade",
        params=upgrade_command.params,
        callback=run,
        help=upgrade_command.help,
        short_help="Upgrade to a later version",
    )


def _warn_backup_verification():
    """One line on standard error when the nightly backup's verification is not allowed on this server."""
    problem = backup.verification_problem()
    if problem:
        click.echo(gettext("sipup: warning: %(problem)s", problem=problem), err=True)


def _is_embedded():
    return current_app.config["SQLALCHEMY_DATABASE_URI"].startswith("sqlite")


def _schema_present():
    return inspect(db.engine).has_table("orders")


def upgrade_schema():
    """Apply every migration (what `flask db upgrade` does)."""
    from flask_migrate import upgrade  # lazy: alembic takes 0.2 s to import; only migrations need it

    upgrade(directory=migrations(current_app).directory)


def _print_logins(logins):
    click.echo("\n" + gettext("Demo logins (also in instance/demo-logins.txt):"))
    for role, email, password in logins:
        click.echo(f"  {role_name(role):<9} {email:<40} {password}")
    path = os.path.join(current_app.instance_path, "demo-logins.txt")
    with open_private(path, "w", encoding="utf-8") as handle:
        handle.writelines(f"{role}\t{email}\t{password}\n" for role, email, password in logins)


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
    if _is_embedded():
        fresh = not _schema_present()
        upgrade_schema()
        if fresh or not db.session.scalar(select(func.count()).select_from(db.metadata.tables["users"])):
            click.echo(gettext("Empty database: creating demo data..."))
            _print_logins(seed_demo())
    elif not _schema_present():
        raise click.ClickException(str(NO_TABLES))
    else:
        _warn_backup_verification()


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


@click.command()
@click.option(
    "--companies", type=click.IntRange(0, 1_000_000), default=6, show_default=True, help="Customer companies."
)
@click.option("--products", type=click.IntRange(0, 1_000_000), default=33, show_default=True, help="Products.")
@click.option("--orders", type=click.IntRange(0, 50_000_000), default=60, show_default=True, help="Orders.")
@click.option("--months", type=click.IntRange(1, 120), default=6, show_default=True, help="Months the orders span.")
@with_appcontext
def seed(companies, products, orders, months):
    """Fill the database with demo or scale data in batches, with a progress bar."""
    if not _schema_present():
        raise click.ClickException(str(NO_TABLES))
    click.echo(gettext("Products: %(count)s added.", count=seeding.seed_catalog(products)))
    if companies:
        seeding.seed_companies(companies, _seed_password())
        click.echo(gettext("Companies: %(count)s added, each with an owner and a buyer.", count=companies))
    if orders:
        with click.progressbar(length=orders, label=gettext("Orders"), show_pos=True, show_eta=True) as bar:
            try:
                seeding.seed_orders(orders, months, progress=bar.update)
            except ValueError as exc:  # no companies or products to order with
                raise click.ClickException(str(exc)) from None
    click.echo(gettext("Done."))


def _seed_password():
    password = os.environ.get("SIPUP_SEED_PASSWORD")
    if password:
        return password

    password = secrets.token_urlsafe(9)
    click.echo(
        gettext(
            "Seeded customers sign in with the password %(password)s (set SIPUP_SEED_PASSWORD to choose it).",
            password=password,
        )
    )
    return password


user_cli = AppGroup("user", help="Manage users.")


@user_cli.command("create")
@click.argument("email")
@click.option(
    "--role", type=click.Choice(["admin", "staff", "owner", "buyer"]), required=True, help="What the user may do."
)
@click.option("--company", help="The customer company (owners and buyers only).")
@click.option("--name", default="", help="Display name.")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input instead of asking.")
def user_create(email, role, company, name, password_stdin):
    """Create a user; the password is asked for, or read from standard input."""
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = click.prompt(gettext("Password"), hide_input=True, confirmation_prompt=True)
    try:
        user = accounts.create_user(email, role, password, company, name)
    except DomainError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(gettext("Created %(who)s.", who=_who(user)))


def _user_or_fail(email):
    user = accounts.user_by_email(email)
    if user is None:
        raise click.ClickException(gettext("There is no user %(email)s.", email=email.strip()))
    return user


@user_cli.command("invite")
@click.argument("email")
@click.option(
    "--role", type=click.Choice(["admin", "staff", "owner", "buyer"]), required=True, help="What the user may do."
)
@click.option("--company", help="The customer company (owners and buyers only).")
@click.option("--name", default="", help="Display name.")
def user_invite(email, role, company, name):
    """Invite a user: they choose their password from a mailed link (printed when no mail server is set)."""
    try:
        found = accounts.find_company(company, role)
        if current_app.config["MAIL_URL"]:
            user = users.invite(email, name, role, found)
            click.echo(gettext("Invited %(who)s; the mail is queued.", who=_who(user)))
            return
        user = users.invite(email, name, role, found, mail=False)
        url = links.issue(links.prepare(user, LinkPurpose.INVITE))
        db.session.commit()
    except DomainError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(
        gettext(
            "Invited %(who)s. No mail server is set (SIPUP_MAIL_URL): send them this link, valid for %(hours)s "
            "hours: %(url)s",
            who=_who(user),
            hours=current_app.config["INVITE_HOURS"],
            url=url,
        )
    )


def _who(user):
    """A user's role, e-mail and company as the CLI names them: buyer anna@example.com at Getränke Nord."""
    if user.company:
        return gettext(
            "%(role)s %(email)s at %(company)s", role=role_name(user.role), email=user.email, company=user.company.name
        )
    return f"{role_name(user.role)} {user.email}"


@user_cli.command("list")
@click.option("--company", help="Only this company's users.")
def user_list(company):
    """List users with their role, company and state."""
    try:
        people = users.listing(company)
    except DomainError as exc:
        raise click.ClickException(str(exc)) from None
    if not people:
        click.echo(gettext("No users."))
    for user in people:
        state = (
            gettext("deactivated")
            if not user.active
            else gettext("invited")
            if not user.has_password
            else gettext("active")
        )
        click.echo(
            f"{user.email:<40} {role_name(user.role):<9} {state:<11} {user.company.name if user.company else '-'}"
        )


@user_cli.command("deactivate")
@click.argument("email")
def user_deactivate(email):
    """Stop a user signing in; every session they have ends at once."""
    user = _user_or_fail(email)
    try:
        users.set_active(user, False)
    except DomainError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(gettext("Deactivated %(email)s; their sessions have ended.", email=user.email))


@user_cli.command("set-password")
@click.argument("email")
@click.option("--password-stdin", is_flag=True, required=True, help="Read the new password from standard input.")
def user_set_password(email, password_stdin):
    """Set a user's password from standard input; every session they have ends."""
    user = _user_or_fail(email)
    password = sys.stdin.readline().rstrip("\r\n")
    try:
        users.set_password(user, password)
    except DomainError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(gettext("Password of %(email)s set; their sessions have ended.", email=user.email))


company_cli = AppGroup("company", help="Manage customer companies.")


@company_cli.command("create")
@click.argument("name")
@click.option("--vat", default="", help="VAT id.")
@click.option("--terms", default="30", show_default=True, help="Payment terms in days.")
@click.option("--credit", default="5000.00", show_default=True, help="Credit limit.")
@click.option("--price-list", default="", help="Price list by name (default: base prices).")
@click.option("--address", help='First delivery address: "STREET, POSTCODE CITY, COUNTRY".')
def company_create(name, vat, terms, credit, price_list, address):
    """Create a customer company, as the back office's New company form does."""
    fields = {
        "name": name,
        "vat_id": vat,
        "payment_terms_days": terms,
        "credit_limit": credit,
        "price_list": price_list,
    }
    try:
        if address is not None:
            fields.update(companies.parse_address_line(address))
        company = companies.create_company(fields, address_required=address is not None)
    except DomainError as exc:
        raise click.ClickException(str(exc)) from None
    where = (
        gettext("delivering to %(address)s", address=company.addresses[0].one_line())
        if company.addresses
        else gettext("no delivery address yet")
    )
    click.echo(
        gettext(
            "Created company %(name)s (id %(id)s): %(days)s days, credit %(credit)s, %(prices)s, %(where)s.",
            name=company.name,
            id=company.id,
            days=company.payment_terms_days,
            credit=company.credit_limit,
            prices=company.price_list.name if company.price_list else gettext("base prices"),
            where=where,
        )
    )


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
