"""`flask import products|prices|companies FILE` and `flask export products|prices|companies [FILE]`.

The command line twin of /admin/imports: the same checks and preview, then (after a yes, or with --yes) the
same batches, applied in this process with a progress bar instead of by a job."""

import sys

import click
from flask.cli import AppGroup
from flask_babel import gettext, lazy_gettext

from .exceptions import DomainError
from .files import open_private
from .services import bulk_import

SHOWN = 20
ACTIONS = {"create": lazy_gettext("create"), "change": lazy_gettext("change")}
# What --help names (click's help is English, as every command's docstring).
WHAT = {"products": "products", "prices": "price tiers", "companies": "customer companies"}

import_cli = AppGroup(
    "import",
    help=(
        "Bulk imports of products, price tiers and customer companies from CSV (either Excel dialect) or XLSX: "
        "each line is checked and previewed before anything is written; the same file twice changes nothing."
    ),
)
export_cli = AppGroup(
    "export",
    help="Every product, price tier or customer company as CSV or XLSX, in the format `flask import` reads back.",
)


def _print_preview(items, refused):
    counts = {action: sum(1 for i in items if i["action"] == action) for action in ("create", "change", "same")}
    click.echo(
        gettext(
            "%(create)s to create, %(change)s to change, %(same)s already as in the file, %(refused)s line(s) refused.",
            refused=len({r[0] for r in refused}),
            **counts,
        )
    )
    for action in bulk_import.APPLIES:
        for item in [i for i in items if i["action"] == action][:SHOWN]:
            click.echo(
                "  "
                + gettext(
                    "line %(line)s: %(action)s %(key)s: %(changes)s",
                    line=item["line"],
                    action=ACTIONS[action],
                    key=item["key"],
                    changes="; ".join(item["changes"]),
                )
            )
    for line, column, why in refused:
        click.echo("  " + gettext("line %(line)s, %(column)s: %(why)s", line=line, column=column, why=why), err=True)
    return counts


def _import(kind, file, yes, dry_run):
    try:
        data = file.read()
        items, refused = bulk_import.check(kind, data)
    except DomainError as exc:
        raise click.ClickException(str(exc)) from None
    counts = _print_preview(items, refused)
    todo = counts["create"] + counts["change"]
    if dry_run or not todo:
        click.echo(gettext("Nothing was written.") if dry_run else gettext("Nothing to apply."))
        return
    if not yes:
        click.confirm(gettext("Apply %(count)s line(s)?", count=todo), abort=True)
    with click.progressbar(length=todo, label=gettext("Applying")) as bar:
        done = [0]

        def report(state):
            bar.update(state["done"] - done[0])
            done[0] = state["done"]

        try:
            state = bulk_import.apply_file(kind, data, source=getattr(file, "name", kind), report=report)
        except DomainError as exc:
            raise click.ClickException(
                gettext("%(error)s Batches applied before stay; run the command again.", error=exc)
            ) from None
    click.echo(gettext("Done: %(summary)s.", summary=bulk_import.describe(state)))


def _import_command(kind):
    @import_cli.command(kind, short_help=f"Import {WHAT[kind]} from a CSV or XLSX file.")
    @click.argument("file", type=click.File("rb"))
    @click.option("--yes", is_flag=True, help="Apply without asking, after the preview is printed.")
    @click.option("--dry-run", is_flag=True, help="Print the preview only; write nothing.")
    def command(file, yes, dry_run):
        _import(kind, file, yes, dry_run)

    command.help = (
        f"Check FILE line by line, print what it creates, changes and refuses, then apply it in batches. "
        f"Columns: {', '.join(bulk_import.KINDS[kind].COLUMNS)}."
    )
    return command


def _export_command(kind):
    @export_cli.command(kind, short_help=f"Export {WHAT[kind]} as CSV or XLSX.")
    @click.argument("file", type=click.Path(dir_okay=False, writable=True), required=False)
    @click.option(
        "--format", "fmt", type=click.Choice(bulk_import.FORMATS), help="Default: from FILE's extension, else csv."
    )
    @click.option("--dialect", type=click.Choice(["excel", "excel-eu"]), help="CSV only; default SIPUP_CSV_DIALECT.")
    def command(file, fmt, dialect):
        fmt = fmt or ("xlsx" if (file or "").lower().endswith(".xlsx") else "csv")
        data, _mimetype, _name = bulk_import.export(kind, fmt, dialect)
        if file:
            with open_private(file, "wb") as handle:  # customers' addresses and prices: the service account's only
                handle.write(data)
            click.echo(gettext("Wrote %(file)s.", file=file))
        else:
            sys.stdout.buffer.write(data)

    command.help = f"Write every row to FILE (standard output without it), ready for `flask import {kind}`."
    return command


for _kind in bulk_import.KINDS:
    _import_command(_kind)
    _export_command(_kind)
