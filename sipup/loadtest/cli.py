"""`flask loadtest [URL]`: options, safety checks, the live progress line and the reports."""

import ipaddress
import os
import re
import socket
import sys
import time
from types import SimpleNamespace
from urllib.parse import urlsplit

import click
from flask import current_app
from flask.cli import with_appcontext

from . import report as reports
from .histogram import Histogram
from .runner import Runner, RunOptions
from .scenarios import ScenarioError, load_scenario
from .thresholds import EXIT_THRESHOLDS, parse_threshold

MAX_DURATION = 24 * 3600
UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "": 1.0}
DURATION = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*(ms|s|m|h)?\s*$")


def parse_seconds(text, what):
    """'30s', '2m', '500ms', '1.5' (seconds) -> float seconds; click.BadParameter naming `what` otherwise."""
    match = DURATION.match(str(text))
    if not match:
        raise click.BadParameter(f"{text!r} is not a duration; write e.g. 30s, 2m, 500ms or 1h", param_hint=what)
    return float(match.group(1)) * UNITS[match.group(2) or ""]


def parse_think(text):
    """'0', '1s' or '0.5-2s' (uniform between) -> (low, high) seconds."""
    if text is None:
        return None
    low, sep, high = text.partition("-")
    unit = re.sub(r"^[0-9.\s]+", "", high or low)
    low_s = parse_seconds(low if re.search(r"[a-z]$", low) else low + unit, "--think")
    high_s = parse_seconds(high, "--think") if sep else low_s
    if high_s < low_s:
        raise click.BadParameter(f"{text!r}: the range must go from low to high", param_hint="--think")
    return low_s, high_s


def parse_page(text):
    """'PATH' or 'PATH WEIGHT' -> (path, weight)."""
    parts = text.split()
    if not parts or not parts[0].startswith("/") or len(parts) > 2:
        raise click.BadParameter(
            f"{text!r}: write a path from the site root, optionally a weight: '/products 3'", param_hint="--page"
        )
    weight = 1.0
    if len(parts) == 2:
        try:
            weight = float(parts[1])
        except ValueError:
            weight = -1
        if not weight > 0:
            raise click.BadParameter(f"{text!r}: the weight must be a number above 0", param_hint="--page")
    return parts[0], weight


def read_logins(path):
    """Logins from a file of 'EMAIL PASSWORD' lines (the password is the rest of the line, spaces and all), or
    flask serve's 'role<TAB>email<TAB>password' lines (staff and admin lines are skipped there: the storefront
    is for buyers)."""
    logins = []
    try:
        with open(path, encoding="utf-8") as handle:
            lines = handle.read().splitlines()
    except OSError as exc:
        raise click.BadParameter(f"cannot read {path}: {exc.strerror}", param_hint="--logins-file") from None
    for number, line in enumerate(lines, 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        fields = line.split("\t") if "\t" in line else line.strip().split(None, 1)
        if len(fields) == 3:
            if fields[0].strip() in ("admin", "staff"):
                continue
            fields = fields[1:]
        problem = _login_problem(fields)
        if problem:
            raise click.BadParameter(
                f"{path} line {number}: {problem}; expected 'EMAIL PASSWORD' or 'role<TAB>email<TAB>password'",
                param_hint="--logins-file",
            )
        logins.append((fields[0].strip(), fields[1].strip()))
    if not logins:
        raise click.BadParameter(f"{path} holds no buyer logins", param_hint="--logins-file")
    return logins


def _login_problem(fields):
    """What is wrong with a line's (email, password) fields, or None."""
    if len(fields) > 2:
        return f"{len(fields)} tab-separated fields"
    if "@" not in fields[0]:
        return f"{fields[0].strip()!r} is not an e-mail address"
    if len(fields) < 2 or not fields[1].strip():
        return f"no password after {fields[0].strip()}"
    return None


def check_target(url, allow_remote):
    """The URL as http://host:port with a path; loopback only unless allowed; something must listen."""
    parts = urlsplit(url if "://" in url else f"http://{url}")
    if parts.scheme != "http":
        raise click.BadParameter(
            f"{url}: only http:// is supported (test the app itself, behind any TLS proxy)", param_hint="URL"
        )
    if not parts.hostname:
        raise click.BadParameter(f"{url}: no host", param_hint="URL")
    try:
        port = parts.port or 80
    except ValueError:
        raise click.BadParameter(f"{url}: bad port", param_hint="URL") from None
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(parts.hostname, port, proto=socket.IPPROTO_TCP)}
    except socket.gaierror as exc:
        raise click.BadParameter(f"cannot resolve {parts.hostname}: {exc.strerror}", param_hint="URL") from None
    remote = [a for a in addresses if not ipaddress.ip_address(a.split("%")[0]).is_loopback]
    if remote and not allow_remote:
        raise click.UsageError(
            f"{parts.hostname} is not this machine ({', '.join(sorted(remote))}). A load test of another host needs "
            "--allow-remote, and the permission of whoever runs it."
        )
    try:
        socket.create_connection((parts.hostname, port), timeout=5).close()
    except OSError as exc:
        raise click.ClickException(
            f"nothing answers at {parts.hostname}:{port} ({exc.strerror or exc}); start the app first, e.g. `flask "
            "serve`."
        )
    base = f"http://{parts.netloc}"
    return base, parts.path or "/", parts.query


def _default_logins():
    path = os.path.join(current_app.instance_path, "demo-logins.txt")
    return read_logins(path) if os.path.exists(path) else []


class Progress:
    """The live progress line: on a terminal it rewrites itself every second, elsewhere a line every 5 s."""

    def __init__(self, options, stream):
        self.options, self.stream = options, stream
        self.tty = stream.isatty()
        self.last = (0, time.perf_counter())
        self.printed = -5.0  # the first line comes after the first second

    def __call__(self, runner, now):
        requests, failures = runner.snapshot()
        elapsed = now - runner.clock.start
        previous, then = self.last
        rps = (requests - previous) / max(now - then, 1e-6)
        self.last = (requests, now)
        phase = "warm-up" if now < runner.clock.measure_from else "measuring"
        second, last_second = int(now - runner.clock.measure_from) - 1, Histogram()
        for recorder in list(runner.recorders):
            data = recorder.seconds.get(second)
            if data is not None:
                last_second.merge(data.histogram)
        p95 = last_second.percentile(95) / 1000
        line = (
            f"{elapsed:5.0f}/{self.options.duration:g}s {phase:<9} {requests:>9,} requests {rps:>8,.0f}/s "
            f"{failures:>7,} failed  p95 {p95:7.1f} ms  users {len(runner.threads)}"
        )
        if self.tty:
            self.stream.write("\r" + line.ljust(100))
            self.stream.flush()
        elif elapsed - self.printed >= 5:
            self.printed = elapsed
            self.stream.write(line + "\n")
            self.stream.flush()

    def done(self):
        if self.tty:
            self.stream.write("\r" + " " * 100 + "\r")
            self.stream.flush()


def _write(path, text):
    if path == "-":
        click.echo(text)
        return
    try:
        with open(path, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)
    except OSError as exc:
        raise click.ClickException(f"cannot write {path}: {exc.strerror}") from None
    click.echo(f"Wrote {path}", err=True)


@click.command("loadtest")
@click.argument("url", required=False, default="http://127.0.0.1:8080/")
@click.option(
    "--scenario",
    default="storefront",
    show_default=True,
    help="storefront, pages, or your own: file.py[:Class] or module:Class (a sipup.loadtest.Scenario).",
)
@click.option(
    "--users",
    type=click.IntRange(1, 2000),
    help="Closed model: virtual users (default 10). "
    "With --rate: users that serve the schedule, all signed in before it starts (default 50).",
)
@click.option(
    "--rate",
    type=click.FloatRange(0.1, 100_000),
    help="Open model: arrivals per second at a constant rate "
    "(one arrival is one task; for the pages scenario, one request).",
)
@click.option("--duration", default="30s", show_default=True, help="How long to run (at most 24h), e.g. 30s, 5m.")
@click.option(
    "--warmup", default=None, help="Left out of the figures at the start (default 5s, at most a quarter of the run)."
)
@click.option("--ramp-up", default="0s", show_default=True, help="Closed model: start the users spread over this time.")
@click.option(
    "--think",
    help="Closed model: pause between a user's tasks, e.g. 0, 1s or 0.5-2s "
    "(default: the scenario's; storefront 0.5-2s, pages 0).",
)
@click.option(
    "--max-requests",
    type=click.IntRange(1, 100_000_000),
    default=1_000_000,
    show_default=True,
    help="Stop after this many requests, whatever the duration.",
)
@click.option(
    "--timeout", default="10s", show_default=True, help="A request without an answer by then fails as a timeout."
)
@click.option(
    "--late-after",
    default="10ms",
    show_default=True,
    help="Open model: a start this far behind schedule counts as late.",
)
@click.option(
    "--drop-after",
    default="1s",
    show_default=True,
    help="Open model: an arrival this far behind is dropped and counted.",
)
@click.option(
    "--page", "pages", multiple=True, help="pages scenario: 'PATH [WEIGHT]', repeatable (default: the URL's path)."
)
@click.option("--pages-file", type=click.Path(dir_okay=False), help="pages scenario: a file of 'PATH [WEIGHT]' lines.")
@click.option(
    "--login", "logins", multiple=True, help="EMAIL:PASSWORD of a buyer, repeatable; users take them in turn."
)
@click.option(
    "--logins-file",
    type=click.Path(dir_okay=False),
    help="A file of 'EMAIL PASSWORD' lines or flask serve's "
    "demo-logins.txt (default: instance/demo-logins.txt when it exists).",
)
@click.option(
    "--anonymous",
    type=click.FloatRange(0, 1),
    default=0.2,
    show_default=True,
    help="storefront: share of users who browse without signing in.",
)
@click.option(
    "--threshold",
    "thresholds",
    multiple=True,
    help="Pass/fail, e.g. 'p95<500ms', 'errors<1%', 'rps>100', "
    f"'p99[GET /products]<1s'; a breach exits with {EXIT_THRESHOLDS}.",
)
@click.option("--json", "json_path", help="Write the figures as JSON to this file (- for standard output).")
@click.option("--csv", "csv_path", help="Write the per-page table as CSV to this file (- for standard output).")
@click.option("--html", "html_path", help="Write a self-contained HTML report with charts to this file.")
@click.option("--allow-remote", is_flag=True, help="Allow a target that is not this machine.")
@click.option("--quiet", is_flag=True, help="No progress line.")
@with_appcontext
def loadtest(
    url,
    scenario,
    users,
    rate,
    duration,
    warmup,
    ramp_up,
    think,
    max_requests,
    timeout,
    late_after,
    drop_after,
    pages,
    pages_file,
    logins,
    logins_file,
    anonymous,
    thresholds,
    json_path,
    csv_path,
    html_path,
    allow_remote,
    quiet,
):
    """Load-test a sipup site (default the local one): closed or open model, figures per page, thresholds."""
    timing = _timing(duration, warmup, ramp_up, timeout, late_after, drop_after, rate, think)
    try:
        parsed_thresholds = [parse_threshold(text) for text in thresholds]
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--threshold") from None
    try:
        scenario_class = load_scenario(scenario)
    except ScenarioError as exc:
        raise click.BadParameter(str(exc), param_hint="--scenario") from None
    for option, path_ in (("--json", json_path), ("--csv", csv_path), ("--html", html_path)):
        if path_ and path_ != "-" and not os.path.isdir(os.path.dirname(os.path.abspath(path_))):
            raise click.BadParameter(f"the folder of {path_} does not exist", param_hint=option)

    base, path, query = check_target(url, allow_remote)
    login_list = _logins(logins, logins_file, scenario_class)
    scenario_options = SimpleNamespace(
        pages=_pages(pages, pages_file, path, query),
        logins=login_list,
        think=parse_think(think),
        anonymous_share=anonymous,
    )
    try:
        scenario_class.check_options(scenario_options)
    except ScenarioError as exc:
        raise click.UsageError(str(exc)) from None
    options = RunOptions(
        url=base,
        scenario=scenario_class,
        scenario_options=scenario_options,
        users=users or (50 if rate else 10),
        rate=rate,
        max_requests=max_requests,
        **timing,
    )
    name = scenario_class.name if scenario_class.name != "custom" else scenario_class.__name__
    click.echo(
        f"Load test: {name} against {base} ({reports.describe_model(options)}), {options.duration:g} s with "
        f"{options.warmup:g} s warm-up." + (f" Starting the {options.users} users first." if rate else ""),
        err=True,
    )
    progress = None if quiet else Progress(options, sys.stderr)
    outcome = Runner(options, progress=progress).run()
    if progress:
        progress.done()
    report = reports.figures(outcome, parsed_thresholds)
    click.echo(reports.table(report), err="-" in (json_path, csv_path))  # keep standard output parseable
    for path_, render in ((json_path, reports.to_json), (csv_path, reports.to_csv), (html_path, reports.to_html)):
        if path_:
            _write(path_, render(report))
    if not report["passed"]:
        click.get_current_context().exit(EXIT_THRESHOLDS)


def _timing(duration, warmup, ramp_up, timeout, late_after, drop_after, rate, think):
    """The run's durations in seconds, checked against each other."""
    duration_s = parse_seconds(duration, "--duration")
    if not 0 < duration_s <= MAX_DURATION:
        raise click.BadParameter("must be above 0 and at most 24h", param_hint="--duration")
    warmup_s = min(5.0, duration_s / 4) if warmup is None else parse_seconds(warmup, "--warmup")
    if warmup_s >= duration_s:
        raise click.BadParameter("must be shorter than --duration", param_hint="--warmup")
    ramp_s = parse_seconds(ramp_up, "--ramp-up")
    if ramp_s >= duration_s:
        raise click.BadParameter("must be shorter than --duration", param_hint="--ramp-up")
    if rate and ramp_s:
        raise click.UsageError(
            "--ramp-up belongs to the closed model (--users); the open model (--rate) starts at its rate."
        )
    if rate and think:
        raise click.UsageError("--think belongs to the closed model; with --rate the schedule sets the pace.")
    timeout_s = parse_seconds(timeout, "--timeout")
    if not 0 < timeout_s <= 600:
        raise click.BadParameter("must be above 0 and at most 10m", param_hint="--timeout")
    return dict(
        duration=duration_s,
        warmup=warmup_s,
        ramp_up=ramp_s,
        timeout=timeout_s,
        late_after=parse_seconds(late_after, "--late-after"),
        drop_after=parse_seconds(drop_after, "--drop-after"),
    )


def _pages(pages, pages_file, path, query):
    """(path, weight) pairs from --page and --pages-file, else the URL's own path."""
    page_list = [parse_page(text) for text in pages]
    if pages_file:
        try:
            with open(pages_file, encoding="utf-8") as handle:
                page_list += [parse_page(line) for line in handle if line.strip() and not line.lstrip().startswith("#")]
        except OSError as exc:
            raise click.BadParameter(f"cannot read {pages_file}: {exc.strerror}", param_hint="--pages-file") from None
    return page_list or [(path + (f"?{query}" if query else ""), 1.0)]


def _logins(logins, logins_file, scenario_class):
    """(email, password) pairs from --login and --logins-file; the storefront falls back to demo-logins.txt."""
    login_list = []
    for text in logins:
        email, sep, password = text.partition(":")
        if not sep or not email or not password:
            raise click.BadParameter(f"{text!r}: write EMAIL:PASSWORD", param_hint="--login")
        login_list.append((email, password))
    if logins_file:
        login_list += read_logins(logins_file)
    if not login_list and scenario_class.name == "storefront":
        login_list = _default_logins()
    return login_list
