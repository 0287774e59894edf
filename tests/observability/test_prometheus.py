"""/metrics the Prometheus way: counters that only grow, cumulative histograms, levels as gauges, one
Content-Type, totals that add up across processes, and promtool's approval."""

import json
import shutil
import subprocess
import time
import urllib.parse

import pytest
from prometheus_client.parser import text_string_to_metric_families

from sipup import create_app
from sipup.extensions import db
from sipup.jobs import enqueue
from tests.servers import SipupServer, free_port, request


def scrape(client):
    response = client.get("/metrics")
    assert response.status_code == 200
    return response, {family.name: family for family in text_string_to_metric_families(response.get_data(as_text=True))}


def value(families, family, sample_name=None, **labels):
    """The value of the one sample of `family` with these labels (0 when there is none yet)."""
    sample_name = sample_name or family
    found = [
        s.value
        for s in families[family].samples
        if s.name == sample_name and all(s.labels.get(k) == v for k, v in labels.items())
    ]
    assert len(found) <= 1, found
    return found[0] if found else 0


def test_content_type_is_the_text_format_once(client):
    response, _ = scrape(client)
    assert response.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert response.headers["Content-Type"].count("charset") == 1


def test_request_counters_grow_with_each_request_and_are_typed_counters(client):
    _, before = scrape(client)
    for _ in range(3):
        client.get("/healthz")
    client.get("/no-such-page")
    _, after = scrape(client)
    assert after["sipup_http_requests"].type == "counter"
    healthz = {"endpoint": "ops.healthz", "method": "GET", "status": "200"}
    grown = value(after, "sipup_http_requests", "sipup_http_requests_total", **healthz) - value(
        before, "sipup_http_requests", "sipup_http_requests_total", **healthz
    )
    assert grown == 3
    missing = {"endpoint": "(no route)", "method": "GET", "status": "404"}
    assert value(after, "sipup_http_requests", "sipup_http_requests_total", **missing) >= 1
    # The previous scrape counts too: /metrics is a request like any other.
    scrapes = {"endpoint": "monitor.metrics", "method": "GET", "status": "200"}
    assert value(after, "sipup_http_requests", "sipup_http_requests_total", **scrapes) >= 1


def test_latency_histogram_buckets_are_cumulative_and_end_at_the_count(client):
    for _ in range(2):
        client.get("/healthz")
    _, families = scrape(client)
    family = families["sipup_http_request_duration_seconds"]
    assert family.type == "histogram"
    samples = [s for s in family.samples if s.labels.get("endpoint") == "ops.healthz"]
    buckets = [(float(s.labels["le"]), s.value) for s in samples if s.name.endswith("_bucket")]
    count = next(s.value for s in samples if s.name.endswith("_count"))
    total = next(s.value for s in samples if s.name.endswith("_sum"))
    assert [le for le, _ in buckets] == sorted(le for le, _ in buckets) and buckets[-1][0] == float("inf")
    assert all(a <= b for (_, a), (_, b) in zip(buckets, buckets[1:]))
    assert buckets[-1][1] == count >= 2 and total > 0


def test_jobs_are_counted_by_name_priority_and_outcome(app, client):
    _, before = scrape(client)
    enqueue("ping")
    db.session.commit()
    app.extensions["queue"].process(10)
    _, after = scrape(client)
    done = {"job": "ping", "priority": "low", "outcome": "done"}
    assert (
        value(after, "sipup_jobs", "sipup_jobs_total", **done) - value(before, "sipup_jobs", "sipup_jobs_total", **done)
        == 1
    )
    runs = value(after, "sipup_job_duration_seconds", "sipup_job_duration_seconds_count", job="ping")
    assert runs - value(before, "sipup_job_duration_seconds", "sipup_job_duration_seconds_count", job="ping") == 1


def test_levels_are_gauges(client):
    _, families = scrape(client)
    for name in ("sipup_queue_jobs", "sipup_health_check", "sipup_health_verdict", "sipup_db_pool_connections"):
        assert families[name].type == "gauge", name
    states = {s.labels["state"] for s in families["sipup_queue_jobs"].samples}
    assert {"queued", "running", "failed"} <= states


def _site(folder, redis_url, host):
    app = create_app(
        {
            "DATABASE_URL": f"sqlite:///{folder / 'sipup.db'}",
            "REDIS_URL": redis_url,
            "REDIS_NAMESPACE": "metrics",
            "HOST_NAME": host,
        },
        instance_path=str(folder),
    )
    with app.app_context():
        db.create_all()
    return app


def test_each_host_exports_its_own_counters_which_its_processes_add_up(tmp_path, local_redis):
    """Each app is what one waitress process holds: two processes on host a, one on host b, one Redis."""
    sites = {}
    for name, host in (("a1", "a"), ("a2", "a"), ("b", "b")):
        (tmp_path / name).mkdir()
        sites[name] = _site(tmp_path / name, local_redis.url, host)
    for name, count in (("a1", 3), ("a2", 2), ("b", 4)):
        client = sites[name].test_client()
        for _ in range(count):
            client.get("/healthz")
        sites[name].extensions["counters"].flush()  # every FLUSH_SECONDS (a scrape flushes the answering one's)
    healthz = {"endpoint": "ops.healthz", "method": "GET", "status": "200"}
    seen = {}
    for name in ("a2", "b"):
        with sites[name].app_context():
            _, seen[name] = scrape(sites[name].test_client())
    assert value(seen["a2"], "sipup_http_requests", "sipup_http_requests_total", **healthz) == 5
    assert value(seen["b"], "sipup_http_requests", "sipup_http_requests_total", **healthz) == 4
    assert value(seen["a2"], "sipup_host_info", host="a") == 1 and value(seen["b"], "sipup_host_info", host="b") == 1
    count = "sipup_http_request_duration_seconds_count"
    assert value(seen["b"], "sipup_http_request_duration_seconds", count, endpoint="ops.healthz") == 4


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool (Debian package prometheus) is not installed")
def test_promtool_finds_nothing_to_complain_about(app, client):
    client.get("/healthz")
    enqueue("ping")
    db.session.commit()
    app.extensions["queue"].process(10)
    response, _ = scrape(client)
    checked = subprocess.run(
        ["promtool", "check", "metrics"], input=response.get_data(), capture_output=True, timeout=60
    )
    assert checked.returncode == 0 and checked.stdout == b"" and checked.stderr == b"", checked


@pytest.mark.skipif(
    shutil.which("prometheus") is None, reason="prometheus (Debian package prometheus) is not installed"
)
@pytest.mark.real_servers
def test_a_real_prometheus_computes_request_rate_and_p95_from_sipups_series(tmp_path, demo_instance):
    """sipup under waitress, scraped by Prometheus every second; the PromQL of docs/metrics.md answers with numbers."""
    site = SipupServer(demo_instance(tmp_path / "instance")).start()
    port = free_port()
    (tmp_path / "prometheus.yml").write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        "scrape_configs:\n"
        f"  - job_name: sipup\n    static_configs: [{{targets: ['127.0.0.1:{site.port}']}}]\n"
    )
    server = subprocess.Popen(
        [
            "prometheus",
            f"--config.file={tmp_path / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    queries = {
        "rate": "sum(rate(sipup_http_requests_total[10s]))",
        "p95": "histogram_quantile(0.95, sum by (le) (rate(sipup_http_request_duration_seconds_bucket[10s])))",
    }
    answers = {}
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(answers) < len(queries):
            for _ in range(5):
                request(site.port, "/healthz")
            time.sleep(0.5)
            for name, query in queries.items():
                status, body = request(port, f"/api/v1/query?query={urllib.parse.quote(query)}", quiet=True)
                result = json.loads(body)["data"]["result"] if status == 200 else []
                if result and result[0]["value"][1] not in ("NaN", "0"):
                    answers[name] = float(result[0]["value"][1])
    finally:
        server.terminate()
        server.wait(timeout=10)
        site.stop()
    assert answers.get("rate", 0) > 0, answers
    assert 0 < answers.get("p95", 0) <= 10, answers
