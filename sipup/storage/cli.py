"""`flask storage migrate`: copy the files of the instance folder into the storage SIPUP_STORAGE_URL names."""

import click
from flask import current_app
from flask.cli import AppGroup

from sipup.storage import folder_storage, get_storage
from sipup.storage.base import Missing, StorageUnavailable, content_type_of

AREAS = ("images", "reports", "imports")  # pictures and renditions, reports, stock files and their problems

storage_cli = AppGroup(
    "storage",
    help=(
        "Where pictures, reports and uploaded files are kept (SIPUP_STORAGE_URL): `migrate` copies the files "
        "of the instance folder (images, reports, imports) into the configured storage."
    ),
)


@storage_cli.command("migrate", short_help="Copy the instance folder's files into the storage.")
def storage_migrate():
    """Copy pictures, reports and stock files from the instance folder into SIPUP_STORAGE_URL; files there
    already are skipped, so it is safe to run again. The instance folder keeps its copies."""
    target = get_storage()
    if target.name == "folder":
        click.echo("Storage is the instance folder (SIPUP_STORAGE_URL is unset): there is nothing to move.")
        return
    source = folder_storage(current_app)
    click.echo(f"Copying files from {source.where} to {target.name}: {target.where}")
    totals = {"copied": 0, "skipped": 0}
    try:
        for area in AREAS:
            files = sorted(source.list(area))
            copied = skipped = 0
            with click.progressbar(files, label=f"  {area:<8}", show_pos=True) as bar:
                for info in bar:
                    if target.exists(info.key):
                        skipped += 1
                        continue
                    try:
                        data = source.get(info.key)
                    except Missing:  # removed while we copied
                        continue
                    target.put(info.key, data, content_type_of(info.key))
                    copied += 1
            click.echo(f"  {area}: {copied} copied, {skipped} already there")
            totals["copied"] += copied
            totals["skipped"] += skipped
    except StorageUnavailable as exc:
        raise click.ClickException(f"{exc} Files copied so far stay; run the command again to go on.") from None
    click.echo(
        f"Done: {totals['copied']} file(s) copied, {totals['skipped']} already there. The instance folder keeps "
        "its copies; delete them once every host uses SIPUP_STORAGE_URL."
    )
