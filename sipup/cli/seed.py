"""`flask seed`: demo or scale data in batches, with a progress bar."""

import os
import secrets

import click
from flask.cli import with_appcontext

from sipup.cli.db import schema_present
from sipup.services import seed as seeding


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
    if not schema_present():
        raise click.ClickException("The database has no sipup tables yet. Run `flask db upgrade` first.")
    click.echo(f"Products: {seeding.seed_catalog(products)} added.")
    if companies:
        seeding.seed_companies(companies, _seed_password())
        click.echo(f"Companies: {companies} added, each with an owner and a buyer.")
    if orders:
        with click.progressbar(length=orders, label="Orders", show_pos=True, show_eta=True) as bar:
            try:
                seeding.seed_orders(orders, months, progress=bar.update)
            except ValueError as exc:  # no companies or products to order with
                raise click.ClickException(str(exc)) from None
    click.echo("Done.")


def _seed_password():
    password = os.environ.get("SIPUP_SEED_PASSWORD")
    if password:
        return password

    password = secrets.token_urlsafe(9)
    click.echo(f"Seeded customers sign in with the password {password} (set SIPUP_SEED_PASSWORD to choose it).")
    return password
