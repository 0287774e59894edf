"""`flask user` (create, invite, list, deactivate, set-password) and `flask company create`."""

import sys

import click
from flask import current_app
from flask.cli import AppGroup

from sipup.exceptions import DomainError
from sipup.extensions import db
from sipup.models import LinkPurpose
from sipup.services import accounts, companies, links, users

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
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    try:
        user = accounts.create_user(email, role, password, company, name)
    except DomainError as exc:
        raise click.ClickException(str(exc)) from None
    where = f" at {user.company.name}" if user.company else ""
    click.echo(f"Created {user.role} {user.email}{where}.")


def _user_or_fail(email):
    user = accounts.user_by_email(email)
    if user is None:
        raise click.ClickException(f"There is no user {email.strip()}.")
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
            click.echo(f"Invited {user.role} {user.email}{_at(user)}; the mail is queued.")
            return
        user = users.invite(email, name, role, found, mail=False)
        url = links.issue(links.prepare(user, LinkPurpose.INVITE))
        db.session.commit()
    except DomainError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(
        f"Invited {user.role} {user.email}{_at(user)}. No mail server is set (SIPUP_MAIL_URL): "
        f"send them this link, valid for {current_app.config['INVITE_HOURS']} hours: {url}"
    )


def _at(user):
    return f" at {user.company.name}" if user.company else ""


@user_cli.command("list")
@click.option("--company", help="Only this company's users.")
def user_list(company):
    """List users with their role, company and state."""
    try:
        people = users.listing(company)
    except DomainError as exc:
        raise click.ClickException(str(exc)) from None
    if not people:
        click.echo("No users.")
    for user in people:
        state = "deactivated" if not user.active else ("invited" if not user.has_password else "active")
        click.echo(f"{user.email:<40} {user.role:<6} {state:<11} {user.company.name if user.company else '-'}")


@user_cli.command("deactivate")
@click.argument("email")
def user_deactivate(email):
    """Stop a user signing in; every session they have ends at once."""
    user = _user_or_fail(email)
    try:
        users.set_active(user, False)
    except DomainError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"Deactivated {user.email}; their sessions have ended.")


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
    click.echo(f"Password of {user.email} set; their sessions have ended.")


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
    where = f", delivering to {company.addresses[0].one_line()}" if company.addresses else ", no delivery address yet"
    click.echo(
        f"Created company {company.name} (id {company.id}): {company.payment_terms_days} days, credit "
        f"{company.credit_limit}, {company.price_list.name if company.price_list else 'base prices'}{where}."
    )
