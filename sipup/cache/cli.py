"""`flask cache`: hit rates per type, and clearing every cached value everywhere."""

import time

import click
from flask.cli import AppGroup

from sipup.cache.layer import EVENTS, TYPES, hit_rate, layer

cache_cli = AppGroup(
    "cache",
    help=(
        "The cache of products, prices, users, orders and the dashboard: `stats` prints hits, misses and errors "
        "per type; `clear` makes every cached value (or one type's) stale in every process and host."
    ),
)


@cache_cli.command("stats", short_help="State, and hits, misses, errors per type.")
@click.option("--window", type=click.Choice(["hour", "day"]), default="hour", show_default=True, help="Time span.")
def cache_stats(window):
    """Print the cache's state and hits, misses, sets, errors and fallbacks per type."""
    cache = layer()
    status = cache.status()
    res, count = ("minute", 60) if window == "hour" else ("hour", 24)
    totals = cache.counters.totals("cache", res, count)
    state = "primary"
    if status["state"] == "degraded":
        since = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(status["degraded_since"]))
        state = f"DEGRADED since {since}: {status['last_error']} (serving from the local fallback)"
    click.echo(f"Cache: {status['driver']} ({status['where']}), {state}")
    click.echo(f"Statistics from the {cache.counters.status()['store']} store, last {window}:")
    click.echo(f"  {'type':<10}" + "".join(f"{e:>9}" for e in EVENTS) + f"{'hit rate':>10}")
    for type_ in TYPES + ("all",):
        row = {e: totals.get(f"{type_}.{e}", 0) for e in EVENTS}
        if type_ == "all" and not any(row.values()):
            continue
        rate = hit_rate({f"x.{e}": row[e] for e in ("hit", "miss")})
        click.echo(
            f"  {type_:<10}"
            + "".join(f"{row[e]:>9,}" for e in EVENTS)
            + f"{'–' if rate is None else f'{rate:.1%}':>10}"
        )
    overall = hit_rate(totals)
    click.echo(f"  overall hit rate: {'no reads yet' if overall is None else f'{overall:.1%}'}")
    series = cache.counters.series("cache", "hour", 6)
    rates = [hit_rate(values) for _start, values in series]
    click.echo("  hourly hit rate, oldest first: " + " ".join("–" if r is None else f"{r:.0%}" for r in rates))


@cache_cli.command("clear", short_help="Make cached values stale everywhere.")
@click.option("--type", "type_", type=click.Choice(TYPES), help="Only this type of cached value.")
def cache_clear(type_):
    """Make every cached value (or one type's) stale in every process and host."""
    if layer().clear(type_):
        click.echo(f"Cleared {'all cached values' if not type_ else f'cached {type_}'}.")
    else:
        raise click.ClickException(
            f"The cache store did not answer ({layer().last_error}); values there expire on their own."
        )
