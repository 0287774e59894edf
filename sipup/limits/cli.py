"""`flask limits`: the limits, refusals and blocks in force; lift blocks."""

import time

import click
from flask.cli import AppGroup
from sqlalchemy import func, select

from sipup.extensions import db
from sipup.limits.limiter import blocks_in_force, status, unblock
from sipup.models import User

limits_cli = AppGroup(
    "limits",
    help=(
        "Rate limits per address and user: `status` prints the limits, refusals per minute, the most limited "
        "clients and the blocks in force; `unblock` lifts blocks."
    ),
)


def _user_emails(user_ids):
    ids = [int(i) for i in user_ids if i.isdigit()]
    if not ids:
        return {}
    return {str(i): e for i, e in db.session.execute(select(User.id, User.email).where(User.id.in_(ids)))}


def _name(who, emails):
    kind, _, key = who.partition(":")
    return f"user {emails.get(key, key)}" if kind == "user" else f"address {key}"


@limits_cli.command("status", short_help="Limits, refusals, top offenders and blocks.")
@click.option("--minutes", type=click.IntRange(1, 120), default=60, show_default=True, help="Time span.")
def limits_status(minutes):
    """Print the limits, refusals per minute, top limited addresses and users, and the blocks in force."""
    figures = status(minutes=minutes)
    fallback = ""
    if figures["fallback_active"] or not figures["storage_reachable"]:
        fallback = " (Redis unreachable: each process counts on its own in memory)"
    click.echo(
        f"Rate limits: {figures['strategy']} on {figures['storage']}{fallback}; blocks in {figures['blocks_store']}."
    )
    if figures["store_error"]:
        click.echo(f"  warning: statistics or blocks store unavailable: {figures['store_error']}")
    for name, limit in figures["limits"].items():
        click.echo(f"  {name:<28} {limit}")
    click.echo(
        f"\nLast {minutes} minutes: {figures['refused']:,} refused (429), {figures['refused_by_blocks']:,} "
        f"of them by blocks; {figures['blocks_started']:,} blocks started."
    )
    recent = [n for _start, n in figures["refused_per_minute"][-10:]]
    click.echo(f"  refused per minute, last 10: {' '.join(str(n) for n in recent)}")
    emails = _user_emails([who for who, _n in figures["top_users"]] + [b.who[5:] for b in figures["blocks"]])
    for title, rows, kind in (
        ("Top limited addresses", figures["top_addresses"], "addr"),
        ("Top limited users", figures["top_users"], "user"),
    ):
        click.echo(f"\n{title}:")
        for who, count in rows:
            click.echo(f"  {count:>8,}  {_name(f'{kind}:{who}', emails)}")
        if not rows:
            click.echo("  none")
    click.echo("\nBlocks in force:")
    for block in figures["blocks"]:
        until = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(block.until))
        click.echo(
            f"  {_name(block.who, emails):<40} until {until} ({block.seconds_left()} s, level {block.level}): "
            f"{block.why}"
        )
    if not figures["blocks"]:
        click.echo("  none")


def _who(text):
    """An address, a user's e-mail, or an "addr:"/"user:" key as listed, to the block list's key."""
    text = text.strip()
    if text.startswith(("addr:", "user:")):
        return text
    if "@" in text:
        user_id = db.session.scalar(select(User.id).where(func.lower(User.email) == text.lower()))
        if user_id is None:
            raise click.ClickException(f"No user with the e-mail {text}.")
        return f"user:{user_id}"
    return f"addr:{text}"


@limits_cli.command("unblock", short_help="Lift blocks of addresses or users (or --all).")
@click.argument("clients", nargs=-1)
@click.option("--all", "everyone", is_flag=True, help="Lift every block in force.")
def limits_unblock(clients, everyone):
    """Lift blocks: give addresses or users' e-mails (as `flask limits status` lists them), or --all."""
    if not clients and not everyone:
        raise click.UsageError("Name an address or a user's e-mail, or give --all.")
    keys = [b.who for b in blocks_in_force()] if everyone else [_who(c) for c in clients]
    missing = []
    for who in keys:
        try:
            lifted = unblock(who=who)
        except Exception as exc:  # the blocks store is down: say so, do not pretend
            raise click.ClickException(f"Could not lift the block on {who}: {exc}") from None
        (click.echo(f"Lifted the block on {who}.") if lifted else missing.append(who))
    if everyone and not keys:
        click.echo("No blocks in force.")
    if missing:
        raise click.ClickException("No block in force for " + ", ".join(missing) + " (its counters were reset).")
