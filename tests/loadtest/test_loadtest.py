"""`flask loadtest` against real waitress servers: a small target site, and sipup itself under `flask serve`.

The runs are short (a few seconds); they check what the figures must satisfy (counts that add up,
failures in their groups, rates kept), not how fast this shared machine is.
"""

import json
import math
import os
import random
import re
import sqlite3
import subprocess
import sys
import time
import urllib.request
from contextlib import closing
from pathlib import Path

import click
import pytest

from sipup import create_app
from sipup.extensions import db
from sipup.loadtest.cli import read_logins
from sipup.loadtest.histogram import Histogram, bucket_bounds, bucket_of
from sipup.loadtest.thresholds import EXIT_THRESHOLDS, parse_threshold
from tests.servers import end, free_port

ROOT = Path(__file__).resolve().parents[2]


def _start(command, env, log_path, probe_url):
    """A server process, once probe_url answers."""
    with open(log_path, "wb") as log:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"server exited with {process.returncode}: {log_path.read_text(errors='replace')}")
        try:
            with urllib.request.urlopen(probe_url, timeout=2):
                return process
        except OSError:
            time.sleep(0.1)
    process.kill()
    pytest.fail(f"server did not answer {probe_url}: {log_path.read_text(errors='replace')}")


def _serve_target(tmp_path_factory, name, *options):
    """tests/loadtest/loadtest_target.py under waitress with these options on a free port; yields its base URL."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path_factory.mktemp(name) / "waitress.log"
    command = [sys.executable, "-m", "waitress", f"--listen=127.0.0.1:{port}", *options]
    process = _start([*command, "tests.loadtest.loadtest_target:app"], dict(os.environ), log, f"{url}/hits")
    yield url
    end(process, timeout=15)


@pytest.fixture(scope="module")
def target(tmp_path_factory):
    """The target site under waitress with 8 threads; yields its base URL."""
    yield from _serve_target(tmp_path_factory, "target", "--threads=8")


@pytest.fixture(scope="module")
def idle_closing_target(tmp_path_factory):
    """The target site under a waitress that closes connections idle for more than a second."""
    options = ("--threads=2", "--channel-timeout=1", "--cleanup-interval=1")
    yield from _serve_target(tmp_path_factory, "idle-target", *options)


def hits(url):
    with urllib.request.urlopen(f"{url}/hits") as response:
        return json.load(response)


def reset(url):
    urllib.request.urlopen(urllib.request.Request(f"{url}/reset", method="POST")).close()


@pytest.fixture(scope="module")
def cli(tmp_path_factory):
    """Invoke `flask loadtest ...` in this process; returns (result, figures from --json)."""
    instance = tmp_path_factory.mktemp("loadtest-cli")
    app = create_app(
        {"SECRET_KEY": "test", "DATABASE_URL": f"sqlite:///{instance / 'unused.db'}"}, instance_path=str(instance)
    )
    runner = app.test_cli_runner()
    counter = iter(range(1_000_000))

    def invoke(*args):
        report = instance / f"report-{next(counter)}.json"
        result = runner.invoke(args=["loadtest", *args, "--quiet", "--json", str(report)])
        figures = json.loads(report.read_text()) if report.exists() else None
        return result, figures

    return invoke


def page(figures, name):
    return next(row for row in figures["pages"] if row["name"] == name)


# --- histograms and thresholds, no server ----------------------------------------------------------


def test_histograms_merge_exactly():
    rng = random.Random(7)
    values = [int(rng.lognormvariate(8, 1.5)) for _ in range(20_000)]
    together, first, second = Histogram(), Histogram(), Histogram()
    for n, value in enumerate(values):
        together.record(value)
        (first if n % 3 else second).record(value)
    merged = first.copy().merge(second)
    assert merged.to_dict() == together.to_dict()
    assert Histogram.from_dict(json.loads(json.dumps(merged.to_dict()))).to_dict() == together.to_dict()
    ordered = sorted(values)
    for p in (50, 90, 99, 99.9):
        exact = ordered[math.ceil(len(ordered) * p / 100) - 1]
        assert abs(merged.percentile(p) - exact) <= max(1, exact / 128), p
    assert merged.percentile(100) == max(values) and merged.count == len(values)


def test_histogram_buckets_cover_every_value_once():
    for value in [*range(0, 2000), 10**6, 10**7 + 3, 2**40]:
        low, high = bucket_bounds(bucket_of(value))
        assert low <= value <= high
        assert high - low <= max(0, low // 128)


@pytest.mark.parametrize(
    "text, metric, page, limit",
    [
        ("p95<500ms", "p95", None, 500.0),
        ("p99.9 <= 2s", "p99.9", None, 2000.0),
        ("errors<1%", "errors", None, 0.01),
        ("errors<0.5", "errors", None, 0.5),
        ("rps>=100", "rps", None, 100.0),
        ("p99[GET /products]<1s", "p99", "GET /products", 1000.0),
        ("max<250", "max", None, 250.0),
    ],
)
def test_thresholds_are_read(text, metric, page, limit):
    threshold = parse_threshold(text)
    assert (threshold.metric, threshold.page, threshold.limit) == (metric, page, limit)


@pytest.mark.parametrize(
    "text, message",
    [
        ("p95 fast", "write it like"),
        ("p42<1s", "unknown metric"),
        ("p95<5%", "not %"),
        ("errors<5ms", "percent"),
        ("rps>5%", "plain number"),
        ("late[GET /]<1%", "whole run"),
    ],
)
def test_bad_thresholds_are_explained(text, message):
    with pytest.raises(ValueError, match=message):
        parse_threshold(text)


def test_a_busy_generator_is_named_as_the_limit():
    from types import SimpleNamespace

    from sipup.loadtest import report
    from sipup.loadtest.runner import RunOptions, RunOutcome
    from sipup.loadtest.scenarios import Pages
    from sipup.loadtest.stats import Result

    options = RunOptions(
        url="http://127.0.0.1:1",
        scenario=Pages,
        duration=10,
        scenario_options=SimpleNamespace(pages=[("/", 1)], logins=[], think=None, anonymous_share=0),
    )
    busy = RunOutcome(options=options, result=Result([]), started_at=0, window=10, cpu_seconds=9.5)
    idle = RunOutcome(options=options, result=Result([]), started_at=0, window=10, cpu_seconds=2)
    assert report.figures(busy)["generator"] == {
        **report.figures(busy)["generator"],
        "cpu_percent": 95.0,
        "limited": True,
    }
    assert any("load generator itself used 95%" in w for w in report.figures(busy)["warnings"])
    assert not report.figures(idle)["generator"]["limited"]
    assert not any("load generator" in w for w in report.figures(idle)["warnings"])


# --- against the target site ---------------------------------------------------------------------


def test_counts_add_up_with_the_server(cli, target):
    reset(target)
    result, figures = cli(
        target,
        "--scenario",
        "pages",
        "--page",
        "/ 3",
        "--page",
        "/slow?s=0.001 1",
        "--users",
        "4",
        "--duration",
        "30s",
        "--warmup",
        "0s",
        "--max-requests",
        "600",
    )
    assert result.exit_code == 0, result.output
    served = hits(target)
    total = figures["total"]
    assert total["requests"] == 600 == sum(served.values()) == sum(p["requests"] for p in figures["pages"])
    assert figures["stopped_by_budget"]
    assert page(figures, "GET /")["requests"] == served["/"]
    assert page(figures, "GET /slow?s=0.001")["requests"] == served["/slow?s=0.001"]
    assert 0.6 < served["/"] / 600 < 0.9  # weights 3:1
    assert total["histogram"]["count"] == 600 and total["failures"] == 0 and total["success_rate"] == 1
    merged = Histogram()
    for row in figures["pages"]:  # the report's histograms merge exactly into the total's
        merged.merge(Histogram.from_dict(row["histogram"]))
    assert merged.to_dict() == total["histogram"]
    assert "GET /" in result.output and "Total" in result.output  # the final table


def test_warm_up_is_left_out_but_counted(cli, target):
    reset(target)
    result, figures = cli(target, "--scenario", "pages", "--users", "2", "--duration", "2s", "--warmup", "1s")
    assert result.exit_code == 0, result.output
    assert figures["warmup_requests"] > 0
    assert figures["total"]["requests"] + figures["warmup_requests"] == hits(target)["/"]
    assert 0.9 < figures["measured_s"] < 1.3


def test_closed_model_ramps_up_and_thinks(cli, target):
    result, figures = cli(
        target,
        "--scenario",
        "pages",
        "--users",
        "4",
        "--ramp-up",
        "2s",
        "--think",
        "50ms",
        "--duration",
        "3s",
        "--warmup",
        "0s",
    )
    assert result.exit_code == 0, result.output
    first, _, third = (row["requests"] for row in figures["series"])
    assert first * 1.5 < third  # 1.5 users on average in the first second, 4 in the third
    assert figures["total"]["requests"] <= 4 * 3 / 0.05  # each user waits 50 ms after each answer
    assert figures["model"] == {"kind": "closed", "users": 4, "think_s": [0.05, 0.05], "ramp_up_s": 2.0}
    assert "closed model: 4 users, think 0.05 s, ramp-up 2 s" in result.output


def test_connections_the_server_closed_are_opened_again(cli, idle_closing_target):
    reset(idle_closing_target)
    result, figures = cli(
        idle_closing_target,
        "--scenario",
        "pages",
        "--users",
        "2",
        "--think",
        "2.5s",
        "--duration",
        "5.5s",
        "--warmup",
        "0s",
    )
    assert result.exit_code == 0, result.output
    assert figures["total"]["failures"] == 0, figures["failures"]
    assert figures["total"]["requests"] == 6 == hits(idle_closing_target)["/"]
    assert figures["generator"]["connections"] > 2  # the server closed idle ones; each request was sent again


def test_failures_are_grouped_by_status_and_error(cli, target):
    result, figures = cli(
        target,
        "--scenario",
        "pages",
        "--page",
        "/",
        "--page",
        "/status/404",
        "--page",
        "/status/500",
        "--page",
        "/status/429",
        "--page",
        "/slow?s=0.4",
        "--users",
        "2",
        "--timeout",
        "200ms",
        "--duration",
        "2s",
        "--warmup",
        "0s",
    )
    assert result.exit_code == 0, result.output
    assert page(figures, "GET /")["failures"] == 0
    for name, reason in [
        ("GET /status/404", "HTTP 404"),
        ("GET /status/500", "HTTP 500"),
        ("GET /status/429", "HTTP 429 (rate limited)"),
        ("GET /slow?s=0.4", "timeout"),
    ]:
        row = page(figures, name)
        assert row["requests"] > 0 and row["failures_by_reason"] == {reason: row["requests"]}, name
    assert figures["total"]["failures"] == sum(f["count"] for f in figures["failures"])
    assert any("SIPUP_RATELIMIT_IP" in warning for warning in figures["warnings"])
    assert "Failures:" in result.output and "HTTP 429 (rate limited)" in result.output


def test_thresholds_set_the_exit_code(cli, target):
    common = (
        "--scenario",
        "pages",
        "--page",
        "/",
        "--page",
        "/status/404",
        "--users",
        "2",
        "--duration",
        "1s",
        "--warmup",
        "0s",
    )
    passed, figures = cli(target, *common, "--threshold", "p95<10s", "--threshold", "rps>1")
    assert passed.exit_code == 0, passed.output
    assert figures["passed"] and [t["passed"] for t in figures["thresholds"]] == [True, True]
    failed, figures = cli(
        target, *common, "--threshold", "p95<10s", "--threshold", "errors<1%", "--threshold", "p50[GET /]<1us"
    )
    assert failed.exit_code == EXIT_THRESHOLDS, failed.output
    assert [t["passed"] for t in figures["thresholds"]] == [True, False, False]
    assert "FAIL  errors<1%" in failed.output


def test_open_model_keeps_its_rate(cli, target):
    result, figures = cli(
        target, "--scenario", "pages", "--rate", "100", "--users", "10", "--duration", "3s", "--warmup", "0s"
    )
    assert result.exit_code == 0, result.output
    arrivals = figures["open"]
    assert arrivals["scheduled"] in (299, 300, 301)
    assert arrivals["dropped"] == 0 and arrivals["reached"]
    assert 95 <= arrivals["achieved_rate"] <= 105
    assert figures["total"]["requests"] == arrivals["started"]
    assert figures["model"]["kind"] == "open" and "open model: 100 arrivals/s" in result.output


def test_open_model_counts_late_starts_when_the_server_is_slow(cli, target):
    # 4 users and 0.2 s answers serve 20 arrivals a second; 50 are asked for.
    result, figures = cli(
        target,
        "--scenario",
        "pages",
        "--page",
        "/slow?s=0.2",
        "--rate",
        "50",
        "--users",
        "4",
        "--duration",
        "3s",
        "--warmup",
        "0s",
        "--drop-after",
        "500ms",
    )
    assert result.exit_code == 0, result.output
    arrivals = figures["open"]
    assert arrivals["scheduled"] >= 149
    assert arrivals["late"] > 0 and arrivals["dropped"] > 0 and not arrivals["reached"]
    assert arrivals["achieved_rate"] < 30
    # Counted from the intended start: waiting for a free user shows in the latency.
    assert figures["total"]["latency_ms"]["p90"] > 300
    assert any("Target rate not reached" in warning for warning in figures["warnings"])


def test_open_model_keeps_each_class_of_users_to_its_share_when_the_server_slows(cli, target, tmp_path):
    # Half the users ask for a page answered at once, half for one that takes 0.2 s: the slow half can serve
    # 10 of its 20 arrivals a second. The quick half must not take the arrivals the slow half falls behind on.
    scenario = tmp_path / "two_kinds.py"
    scenario.write_text(
        "from sipup.loadtest import Scenario\n\n"
        "class TwoKinds(Scenario):\n"
        "    def __init__(self, *args):\n"
        "        super().__init__(*args)\n"
        "        self.arrival_class = 'slow' if self.number % 2 else 'quick'\n\n"
        "    def run_task(self):\n"
        "        if self.arrival_class == 'slow':\n"
        "            self.get('/slow?s=0.2', name='slow')\n"
        "        else:\n"
        "            self.get('/', name='quick')\n",
        encoding="utf-8",
    )
    options = "--rate 40 --users 4 --duration 3s --warmup 0s --drop-after 300ms".split()
    result, figures = cli(target, "--scenario", f"{scenario}:TwoKinds", *options)
    assert result.exit_code == 0, result.output
    arrivals = figures["open"]
    assert arrivals["scheduled"] in (119, 120, 121) and arrivals["dropped"] > 0
    # Every other arrival is the quick users': 60, however many of the slow users' were dropped.
    assert 58 <= page(figures, "quick")["requests"] <= 61
    assert page(figures, "slow")["requests"] <= 32


def test_custom_scenario_with_checks(cli, target, tmp_path):
    scenario = tmp_path / "my_scenario.py"
    scenario.write_text(
        "from sipup.loadtest import Scenario, task\n\n"
        "class HelloAndMissing(Scenario):\n"
        "    @task(1)\n"
        "    def hello(self):\n"
        "        response = self.get('/', name='hello')\n"
        "        self.check(response, response and b'Hello' in response.body, 'no greeting')\n\n"
        "    @task(1)\n"
        "    def wrong_text(self):\n"
        "        response = self.get('/', name='expects goodbye')\n"
        "        self.check(response, response and b'Goodbye' in response.body, 'no goodbye')\n\n"
        "    @task(1)\n"
        "    def refusal_as_expected(self):\n"
        "        self.get('/status/404', name='expected refusal', expect=(404,))\n\n"
        "    @task(1)\n"
        "    def refusal_judged_wrong(self):\n"
        "        response = self.get('/status/404', name='wrong refusal', expect=(404,))\n"
        "        if response is not None and response.status == 404:\n"
        "            self.recorder.fail_last('check: not the refusal wanted')\n",
        encoding="utf-8",
    )
    result, figures = cli(target, "--scenario", str(scenario), "--users", "2", "--duration", "1s", "--warmup", "0s")
    assert result.exit_code == 0, result.output
    assert figures["scenario"] == "HelloAndMissing"
    assert page(figures, "hello")["failures"] == 0
    wrong = page(figures, "expects goodbye")
    assert wrong["failures_by_reason"] == {"check: no goodbye": wrong["requests"]}
    # An error status the scenario expects is its to judge: not a failure unless its check says so.
    assert page(figures, "expected refusal")["requests"] > 0 and page(figures, "expected refusal")["failures"] == 0
    judged = page(figures, "wrong refusal")
    assert judged["failures_by_reason"] == {"check: not the refusal wanted": judged["requests"]}


def test_a_broken_scenario_is_reported_once(cli, target, tmp_path):
    scenario = tmp_path / "broken.py"
    scenario.write_text(
        "from sipup.loadtest import Scenario, task\n\n"
        "class Broken(Scenario):\n"
        "    @task\n"
        "    def divide(self):\n"
        "        self.get('/')\n"
        "        return 1 / 0\n",
        encoding="utf-8",
    )
    result, figures = cli(
        target, "--scenario", f"{scenario}:Broken", "--users", "3", "--duration", "1s", "--warmup", "0s"
    )
    assert result.exit_code == 0, result.output
    assert figures["errors"] == ["ZeroDivisionError in the scenario stopped a user: division by zero"]
    assert figures["total"]["requests"] == 3
    assert "Warning: Scenario error: ZeroDivisionError" in result.output


def test_progress_line_while_running(target, tmp_path):
    app = create_app(
        {"SECRET_KEY": "test", "DATABASE_URL": f"sqlite:///{tmp_path / 'unused.db'}"}, instance_path=str(tmp_path)
    )
    result = app.test_cli_runner().invoke(
        args=["loadtest", target, "--scenario", "pages", "--users", "1", "--duration", "2s", "--warmup", "1s"]
    )
    assert result.exit_code == 0, result.output
    assert re.search(r"\d+/2s (warm-up|measuring) +[\d,]+ requests +[\d,]+/s +0 failed +p95", result.output), (
        result.output
    )


def test_reports_in_csv_and_self_contained_html(cli, target, tmp_path):
    html_path, csv_path = tmp_path / "report.html", tmp_path / "report.csv"
    result, figures = cli(
        target,
        "--scenario",
        "pages",
        "--page",
        "/",
        "--page",
        "/status/500",
        "--users",
        "2",
        "--duration",
        "2s",
        "--warmup",
        "0s",
        "--html",
        str(html_path),
        "--csv",
        str(csv_path),
    )
    assert result.exit_code == 0, result.output
    html = html_path.read_text(encoding="utf-8")
    assert html.count("<svg") == 4 and "<polyline" in html and "<rect" in html
    assert "<script" not in html and "src=" not in html and "<link" not in html  # nothing fetched
    assert "GET /status/500" in html and "HTTP 500" in html
    rows = csv_path.read_text(encoding="utf-8").splitlines()
    assert rows[0].startswith("page,requests,failures,success_rate,rps,p50_ms")
    assert rows[-1].startswith(f"Total,{figures['total']['requests']},{figures['total']['failures']},")
    assert len(figures["series"]) == 2


def test_remote_targets_need_the_flag(cli):
    result, figures = cli("http://192.0.2.10:8080/", "--scenario", "pages")
    assert result.exit_code == 2 and figures is None
    assert "--allow-remote" in result.output


@pytest.mark.parametrize(
    "args, message",
    [
        (["--duration", "soon"], "not a duration"),
        (["--duration", "25h"], "at most 24h"),
        (["--warmup", "5s", "--duration", "5s"], "shorter than --duration"),
        (["--rate", "10", "--ramp-up", "2s"], "closed model"),
        (["--think", "2-1s"], "from low to high"),
        (["--threshold", "p95 < soon"], "write it like"),
        (["--page", "products"], "path from the site root"),
        (["--scenario", "no_such_file.py"], "does not exist"),
        (["--scenario", "storefront"], "--logins-file"),
        (["--login", "nobody"], "EMAIL:PASSWORD"),
        (["--users", "0"], "--users"),
        (["--html", "/no/such/folder/report.html"], "does not exist"),
    ],
)
def test_bad_options_get_clear_messages(cli, target, args, message):
    scenario = [] if "--scenario" in args else ["--scenario", "pages"]
    result, figures = cli(target, *scenario, *args)
    assert result.exit_code == 2, result.output
    assert message in result.output and figures is None


def test_a_logins_file_keeps_spaces_in_passwords_and_names_a_wrong_line(tmp_path):
    path = tmp_path / "logins.txt"
    path.write_text(
        "# buyers\nanna@a.example correct horse battery staple\nstaff\tops@shop.example\tx\n"
        "buyer\tben@b.example\tpass word\n",
        encoding="utf-8",
    )
    assert read_logins(path) == [("anna@a.example", "correct horse battery staple"), ("ben@b.example", "pass word")]
    for line, problem in (("anna@a.example", "no password after anna@a.example"), ("secret anna", "'secret'")):
        path.write_text(f"ok@a.example fine password\n{line}\n", encoding="utf-8")
        with pytest.raises(click.BadParameter, match=f"{path} line 2: {problem}"):
            read_logins(path)


def test_a_target_that_does_not_answer_is_explained(cli):
    result, _ = cli(f"http://127.0.0.1:{free_port()}/", "--scenario", "pages")
    assert result.exit_code == 1
    assert "nothing answers" in result.output and "flask serve" in result.output


# --- the storefront against sipup itself -----------------------------------------------------------


@pytest.fixture(scope="module")
def sipup_site(tmp_path_factory, demo_instance):
    """`flask serve` on the embedded database with the demo data, limits raised as a load test needs, and a
    buyer login per virtual user (users sharing a login share a cart, and race each other to check out)."""
    instance = demo_instance(tmp_path_factory.mktemp("loadtest-sipup"))
    database = instance / "sipup.db"
    # The logins are made in this process: `flask user create` itself is tested in tests/test_cli.py.
    maker = create_app({"SECRET_KEY": "test", "DATABASE_URL": f"sqlite:///{database}"}, instance_path=str(instance))
    runner = maker.test_cli_runner()
    logins = instance / "buyers.txt"
    lines = []
    for n, company in enumerate(
        ["Bar Centrale", "Café Centrale", "Hotel Centrale", "Kiosk Centrale", "Restaurant Centrale"]
    ):
        email = f"loadtest{n}@example.com"
        created = runner.invoke(
            args=["user", "create", email, "--role", "buyer", "--company", company, "--password-stdin"],
            input="load test password\n",
        )
        assert created.exit_code == 0, created.output
        lines.append(f"{email}\tload test password")
    logins.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with maker.app_context():
        db.engine.dispose()
    maker.extensions["sipup_cache"].close()
    port = free_port()
    env = {key: value for key, value in os.environ.items() if key != "SIPUP_DATABASE_URL"}
    # The load test measures the site, not its limits (which refuse quick orders past 20 a minute).
    env.update(SIPUP_INSTANCE_PATH=str(instance), SIPUP_RATELIMIT_ENABLED="false", FLASK_APP="wsgi.py")
    url = f"http://127.0.0.1:{port}"
    process = _start(
        [sys.executable, "-m", "flask", "serve", "--port", str(port)], env, instance / "serve.log", f"{url}/healthz"
    )
    yield url, logins, database
    end(process, timeout=15)


def test_storefront_signs_in_and_browses_in_the_closed_model(cli, sipup_site):
    url, logins, _ = sipup_site
    result, figures = cli(
        url,
        "--logins-file",
        str(logins),
        "--users",
        "4",
        "--think",
        "0",
        "--anonymous",
        "0.25",
        "--duration",
        "6s",
        "--warmup",
        "0s",
    )
    assert result.exit_code == 0, result.output
    assert figures["total"]["failures"] == 0, figures["failures"]
    names = {row["name"]: row for row in figures["pages"]}
    # One user in four browses without signing in; the others sign in, and again after each sign-out.
    signed_out = names["POST /logout"]["requests"]
    assert signed_out > 0 and 3 + signed_out - 1 <= names["POST /login"]["requests"] <= 3 + signed_out
    for name in (
        "GET /",
        "GET /products",
        "GET /products?q=",
        "GET /products/<sku>",
        "POST /cart/add",
        "GET /cart",
        "GET /login",
        "GET /products (anonymous)",
    ):
        assert names[name]["requests"] > 0, name
    assert (
        names.get("POST /checkout", {"requests": 0})["requests"]
        == names.get("GET /orders/<number>", {"requests": 0})["requests"]
    )


def test_storefront_checks_out_through_the_real_forms(cli, sipup_site, tmp_path):
    url, logins, database = sipup_site
    # The storefront with its rare tasks made common, as a developer's own scenario would do it.
    scenario = tmp_path / "checkout_often.py"
    scenario.write_text(
        "from sipup.loadtest import task\n"
        "from sipup.loadtest.scenarios import Storefront\n\n"
        "class CheckoutOften(Storefront):\n"
        "    @task(5)\n"
        "    def checkout(self):\n"
        "        super().checkout()\n\n"
        "    @task(5)\n"
        "    def quick_order(self):\n"
        "        super().quick_order()\n",
        encoding="utf-8",
    )
    before = _orders_from_load_tests(database)
    result, figures = cli(
        url,
        "--scenario",
        str(scenario),
        "--logins-file",
        str(logins),
        "--users",
        "3",
        "--anonymous",
        "0",
        "--think",
        "0",
        "--duration",
        "5s",
        "--warmup",
        "0s",
    )
    assert result.exit_code == 0, result.output
    assert figures["total"]["failures"] == 0, figures["failures"]
    names = {row["name"]: row for row in figures["pages"]}
    # An order placed is followed to its page. A checkout may also be refused because another buyer took the last
    # units since the form was shown (422, as the site should answer, not a failure): it places no order.
    placed = names["GET /orders/<number>"]["requests"]
    assert placed >= 1 and names["POST /checkout"]["requests"] >= placed
    assert names["POST /quick-order"]["requests"] > 0
    assert _orders_from_load_tests(database) - before == placed  # each checkout is an order in sipup's database


def _orders_from_load_tests(database):
    with closing(sqlite3.connect(database)) as connection:
        return connection.execute("SELECT count(*) FROM orders WHERE po_reference LIKE 'LOADTEST-%'").fetchone()[0]


def test_storefront_in_the_open_model(cli, sipup_site):
    url, logins, _ = sipup_site
    result, figures = cli(
        url,
        "--logins-file",
        str(logins),
        "--rate",
        "20",
        "--users",
        "6",
        "--duration",
        "4s",
        "--warmup",
        "1s",
        "--threshold",
        "errors<1%",
    )
    assert result.exit_code == 0, result.output
    assert figures["total"]["failures"] == 0
    assert figures["open"]["scheduled"] in (59, 60, 61) and figures["open"]["dropped"] == 0
    # The first sign-ins happened before the schedule started: the measured ones are those of new sessions (the
    # last sign-out's sign-in may fall after the end).
    names = {row["name"]: row["requests"] for row in figures["pages"]}
    assert names.get("POST /logout", 0) - 1 <= names.get("POST /login", 0) <= names.get("POST /logout", 0)
