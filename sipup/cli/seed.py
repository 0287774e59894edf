"""`flask seed`: demo or scale data in batches, with a progress bar."""

import os
import secrets

import click
from flask.cli import with_appcontext
from flask_babel import gettext

from sipup.cli.db import NO_TABLES, schema_present
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
