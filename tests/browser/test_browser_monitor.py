"""/monitor in a real browser with real data from two servers, a queue processor and failing jobs.

Two `flask serve` hosts (host-a, host-b) share one instance folder and, where SIPUP_TEST_REDIS_URL is set,
one Redis (else the embedded metrics.db); a `flask queue process` run on a third host name (worker-b)
runs a job that fails for good, one whose mail server refuses (an unexpected exception, retried) and a
long one. An admin on host-a watches every panel fill in: hosts, exceptions, queue, the run on worker-b
while it lasts, waits per priority and a buyer's usage on host-b; at a desktop and a 390 px phone width.
"""

import os
import re
import secrets
import subprocess
import sys
import time

import pytest

from tests.browser.test_browser import (
    CARDS_WIDER_THAN_THEMSELVES,
    CHROMIUM,
    DESKTOP,
    PHONE,
    ROOT,
    _wait_until_healthy,
    expect,
    shot,
    sign_in,
)
from tests.servers import end_all, flask_in_process, free_port

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"no system Chromium at {CHROMIUM}"),
]
REDIS_URL = os.environ.get("SIPUP_TEST_REDIS_URL")
LONG_JOB_SECONDS = 12  # long enough for the page to see it run, short enough for CI

ENQUEUED = (  # `flask queue enqueue` with worker-b's settings, in the test process; the processor there runs them
    ("send_mail", "low_stock", "1"),  # the mail server refuses: unexpected, retried
    ("build_report", "sales_by_product", "31.02.2026"),  # not a date: fails for good
    ("ping", str(LONG_JOB_SECONDS)),
)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, demo_instance):
    """Two servers on one instance folder (and one Redis where there is one): (URL of host-a, of host-b,
    demo logins, the environment a processor on worker-b runs with). The folder is a copy of the session's
    demo database: the first start's demo data is not what the panels test (tests/browser/test_browser.py
    starts on an empty one)."""
    instance = demo_instance(tmp_path_factory.mktemp("monitor-cluster"))
    env = {key: value for key, value in os.environ.items() if not key.startswith("SIPUP_")}
    namespace = f"sipuptest-{secrets.token_hex(6)}"
    env.update(
        SIPUP_INSTANCE_PATH=str(instance),
        SIPUP_RATELIMIT_IP="10000 per minute",
        SIPUP_MONITOR_REFRESH_SECONDS="2",  # the panels' 30 s, shortened so the test sees refreshes
        SIPUP_MONITOR_PANEL_SECONDS="0",
        SIPUP_MONITOR_ALERTS="0",
        SIPUP_PROCESSES="1",
    )
    if REDIS_URL:
        env.update(SIPUP_REDIS_URL=REDIS_URL, SIPUP_REDIS_NAMESPACE=namespace)
    processes, logs, urls = [], [], []
    try:
        for host in ("host-a", "host-b"):  # one after the other: the first brings the schema up to date
            port = free_port()
            log_path = instance / f"{host}.log"
            logs.append(open(log_path, "wb"))
            processes.append(
                subprocess.Popen(
                    [sys.executable, "-m", "flask", "serve", "--port", str(port)],
                    cwd=ROOT,
                    env={**env, "SIPUP_HOST_NAME": host},
                    stdout=logs[-1],
                    stderr=subprocess.STDOUT,
                )
            )
            urls.append(f"http://127.0.0.1:{port}")
            _wait_until_healthy(urls[-1], processes[-1], log_path)
        logins = {}
        for line in (instance / "demo-logins.txt").read_text(encoding="utf-8").splitlines():
            role, email, password = line.split("\t")
            logins[role] = (email, password)
        # The processor's mail server is a port nobody listens on: its mails fail as an outage would.
        worker = {
            **env,
            "SIPUP_HOST_NAME": "worker-b",
            "SIPUP_MAIL_URL": f"smtp://127.0.0.1:{free_port()}",
            "SIPUP_MAIL_FROM": "orders@example.com",  # a mail server's URL needs the shop's sender
        }
        yield urls[0], urls[1], logins, worker
    finally:
        end_all(processes, timeout=20)
        for log in logs:
            log.close()
        if REDIS_URL:
            import redis

            client = redis.Redis.from_url(REDIS_URL)
            # The counters' and cache's keys, and Huey's (its name without the hyphen).
            keys = [
                key
                for pattern in (namespace, namespace.replace("-", ""))
                for key in client.scan_iter(match=f"*{pattern}*")
            ]
            if keys:
                client.delete(*keys)
            client.close()


def test_every_panel_shows_two_hosts_a_failing_job_a_run_in_progress_and_usage(cluster, browser):
    url_a, url_b, logins, worker = cluster
    # A buyer shops on host-b: usage under their company and user.
    buyer, shop = sign_in(browser, url_b, *logins["buyer"])
    expect(shop).not_to_have_url(re.compile(r"/login"))
    for _ in range(4):
        shop.goto("/products")
    buyer.close()

    queued = [flask_in_process(worker, "queue", "enqueue", *job) for job in ENQUEUED]
    _mail_id, report_id, ping_id = (re.search(r"Queued job (\d+)", line).group(1) for line in queued)
    started = time.monotonic()
    admin, page = sign_in(browser, url_a, *logins["admin"])
    page.goto("/monitor")
    (ROOT / "test-artifacts").mkdir(exist_ok=True)
    with open(ROOT / "test-artifacts" / "monitor-processor.log", "wb") as log:
        processor = subprocess.Popen(
            [sys.executable, "-m", "flask", "queue", "process"], cwd=ROOT, env=worker, stdout=log, stderr=log
        )
    try:
        running = page.locator("#panel-running")
        expect(running).to_contain_text(f"#{ping_id} ping", timeout=30_000)
        row = running.locator("tr", has_text=f"#{ping_id} ping")
        expect(row.locator("td[data-label='Host · process']")).to_contain_text("worker-b")
        expect(row.locator("td[data-label='Priority']")).to_have_text("low")
        hosts = page.locator("#panel-hosts")
        for host in ("host-a", "host-b", "worker-b"):
            expect(hosts).to_contain_text(host, timeout=15_000)
        expect(page.locator("#panel-exceptions")).to_contain_text("ConnectionRefusedError")
        expect(page.locator("#panel-exceptions")).to_contain_text("job send_mail")
        expect(page.locator("#panel-queue .failed-jobs")).to_contain_text(f"#{report_id} build_report")
        usage = page.locator("#panel-usage")
        expect(usage).to_contain_text(logins["buyer"][0])
        company_link = usage.locator("a[href^='/admin/companies/']").first
        expect(company_link).to_be_visible()
        shot(page, "24-monitor-running")
        processor.wait(timeout=LONG_JOB_SECONDS + 60)
        assert processor.returncode == 0
        # The run ended: the list empties at its next refresh; the waits of every run are counted.
        expect(running).to_contain_text("No job is running at this moment.", timeout=15_000)
        # Low: the report and the ping (and a periodic clean-up that fell due); normal: the mail.
        waits = page.locator("#panel-waits tbody tr")
        expect(waits.filter(has_text="low").locator("td[data-label='Started']")).to_have_text(re.compile(r"^[2-9]$"))
        expect(waits.filter(has_text="normal").locator("td[data-label='Started']")).to_have_text("1")
        expect(waits.filter(has_text="low").locator("td[data-label='Wait p95']")).to_contain_text("≤")
        for viewport in (PHONE, DESKTOP):
            page.set_viewport_size(viewport)
            page.wait_for_timeout(300)
            assert page.evaluate(CARDS_WIDER_THAN_THEMSELVES) == [], viewport
        # The company link leads to the company in the back office.
        company_link.click()
        expect(page).to_have_url(re.compile(r"/admin/companies/\d+$"))
        admin.close()
    finally:
        if processor.poll() is None:
            processor.kill()
            processor.wait(timeout=10)
    print(f"monitor browser test: {time.monotonic() - started:.1f} s after the servers were up")
