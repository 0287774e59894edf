"""Command line: `flask serve`, `flask seed`, `flask user` and `flask company`, `flask db`, and the groups of
the ops packages (queue, cache, limits, storage, loadtest, import and export). Groups are nouns.

Modules: `serve` (flask serve and its start-up checks), `seed` (flask seed), `accounts` (flask user, flask
company), `db` (the `flask db` group: Flask-Migrate's migrations with sipup's stats and optimize).
register_cli() also makes `flask --help` introduce sipup: what sipup is, then one line per command and group;
Flask's development server (`flask run`) is hidden beside `flask serve`."""

import sys

import click

from sipup.cache.cli import cache_cli
from sipup.cli.accounts import company_cli, user_cli
from sipup.cli.db import DatabaseGroup
from sipup.cli.seed import seed
from sipup.cli.serve import serve
from sipup.imports_cli import export_cli, import_cli
from sipup.jobs.cli import queue_cli
from sipup.limits.cli import limits_cli
from sipup.loadtest.cli import loadtest
from sipup.storage.cli import storage_cli

# One line each in `flask --help`, in the order a new operator needs them.
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
