"""`flask user` (create, invite, list, deactivate, set-password) and `flask company create`."""

import sys

import click
from flask import current_app
from flask.cli import AppGroup
from flask_babel import gettext

from sipup.exceptions import DomainError
from sipup.extensions import db
from sipup.i18n import role_name
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


def _who(user):
    """A user's role, e-mail and company as the CLI names them: buyer anna@example.com at Getränke Nord."""
    if user.company:
        return gettext(
            "%(role)s %(email)s at %(company)s", role=role_name(user.role), email=user.email, company=user.company.name
        )
    return f"{role_name(user.role)} {user.email}"
