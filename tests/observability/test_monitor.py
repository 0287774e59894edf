"""/monitor and /metrics: access, panels alone and together, figures from the shared counters, rules."""

import re
import time

import pytest
from prometheus_client.parser import text_string_to_metric_families

from sipup import create_app
from sipup.config import ConfigError
from sipup.extensions import db
from sipup.jobs.registry import PermanentError, enqueue, job
from sipup.metrics.counter_stores import SqliteCounterStore
from sipup.metrics.counters import Counters
from sipup.models import Job, JobStatus
from sipup.observability import panels as monitor
from sipup.observability.recommendations import RULES, evaluate
from tests.conftest import PASSWORD, RequestScopedClient, _empty_tables, _overrides, login, signed_in_id

PANEL_NAMES = ["health", "traffic", "database", "cache", "queue", "limits", "recommendations"]


@job()
def broken_import(label):
    """Test job: fails at once, as bad data does."""
    raise PermanentError(f"line 3 of {label}: “abc” is not an amount")


@pytest.fixture
def app(own_app):
    return own_app


def test_anonymous_visitors_are_sent_to_sign_in(client):
    response = client.get("/monitor")
    assert response.status_code == 302 and "/login" in response.headers["Location"]
    polled = client.get("/monitor/panels/health", headers={"HX-Request": "true"})
    assert polled.status_code == 401
    assert polled.headers["HX-Redirect"].startswith("/login")
    assert "<form" not in polled.get_data(as_text=True)


@pytest.mark.parametrize("role", ["buyer", "staff"])
def test_only_admins_may_look(client, make_user, make_company, role):
    user = make_user(role, make_company() if role == "buyer" else None)
    login(client, user, PASSWORD)
    assert client.get("/monitor").status_code == 403
    assert client.get("/monitor/panels/health").status_code == 403


def test_the_page_holds_every_panel_polling_every_30_seconds(admin_client):
    response = admin_client.get("/monitor")
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    for name in PANEL_NAMES:
        section = re.search(rf'<section[^>]*id="panel-{name}"[^>]*>', html)
        assert section, name
        assert re.search(rf'hx-get="/monitor/panels/{name}(\?range=hour)?"', section.group(0)), name
        assert 'hx-trigger="every 30s, refresh"' in section.group(0)
    assert "monitor.js" in html


@pytest.mark.parametrize("name", PANEL_NAMES)
def test_each_panel_renders_alone(admin_client, name):
    response = admin_client.get(f"/monitor/panels/{name}", headers={"HX-Request": "true"})
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    assert "<html" not in html and html.lstrip().startswith("<section")
    assert f'id="panel-{name}"' in html and "as of " in html


def test_recommendations_go_on_without_a_failing_part(app, admin_client, monkeypatch):
    def broken(range_):
        raise RuntimeError("jobs table unreadable")

    monkeypatch.setitem(monitor.PANELS, "queue", ("Queue", broken, True))
    rules = {r["key"]: r["state"] for r in monitor.panel("recommendations")["rules"]}
    assert rules["pending_jobs"] == "unavailable" and rules["disk"] in ("clear", "firing")


def test_unknown_panel_is_404(admin_client):
    assert admin_client.get("/monitor/panels/nope").status_code == 404


def test_traffic_panel_counts_requests_per_page(admin_client, make_product):
    make_product()
    for _ in range(3):
        admin_client.get("/healthz")
    admin_client.get("/no-such-page")
    html = admin_client.get("/monitor/panels/traffic").get_data(as_text=True)
    row = re.search(r"<code>ops\.healthz</code></td><td[^>]*>(\d+)</td>", html)
    assert row and int(row.group(1)) == 3
    assert "(no route)" in html  # the 404 is counted too


def test_a_failing_panel_shows_its_error_and_the_others_still_render(app, admin_client, monkeypatch):
    def broken(range_):
        raise RuntimeError("statistics store on fire")

    monkeypatch.setitem(monitor.PANELS, "broken", ("Broken", broken, False))
    html = admin_client.get("/monitor").get_data(as_text=True)
    assert "This panel could not be built." in html and "statistics store on fire" in html
    assert 'id="panel-health"' in html and 'id="panel-traffic"' in html
    alone = admin_client.get("/monitor/panels/broken")
    assert alone.status_code == 200 and 'role="alert"' in alone.get_data(as_text=True)


def test_database_panel_agrees_with_db_stats(app, admin_client, runner, make_product):
    make_product()
    app.extensions["query_stats"].flush()
    data = monitor.panel("database")
    summary = app.extensions["query_stats"].summary("hour")
    assert sum(k["count"] for k in data["summary"]["kinds"].values()) == sum(
        k["count"] for k in summary["kinds"].values()
    )
    html = admin_client.get("/monitor/panels/database").get_data(as_text=True)
    assert "Queries / min" in html and "Pool in use" in html


def _failed_job(app):
    record = enqueue("broken_import", "stock.csv")
    db.session.commit()
    app.extensions["queue"].process(10)
    db.session.expire_all()
    assert db.session.get(Job, record.id).status == JobStatus.FAILED
    return record.id


def test_queue_panel_shows_a_failed_job_and_retry_queues_it_again(app, admin_client):
    job_id = _failed_job(app)
    html = admin_client.get("/monitor/panels/queue").get_data(as_text=True)
    assert f"#{job_id} broken_import" in html and "is not an amount" in html
    assert f'hx-post="/monitor/jobs/{job_id}/retry"' in html

    response = admin_client.post(f"/monitor/jobs/{job_id}/retry", headers={"HX-Request": "true"})
    body = response.get_data(as_text=True)
    assert response.status_code == 200 and body.lstrip().startswith("<section") and "<html" not in body
    assert f"Job {job_id} (broken_import) is queued again." in body
    db.session.expire_all()
    assert db.session.get(Job, job_id).status == JobStatus.QUEUED

    again = admin_client.post(f"/monitor/jobs/{job_id}/retry")  # a plain form post goes back to the page
    assert again.status_code == 302 and again.headers["Location"].endswith("/monitor#panel-queue")
    page = admin_client.get("/monitor").get_data(as_text=True)
    assert "only failed and cancelled jobs can be retried" in page


def test_health_shows_the_queue_processor_heartbeat(app, admin_client):
    def processor_row():
        return next(c for c in monitor.panel("health")["checks"] if c["name"] == "Queue processor")

    assert processor_row()["state"] == "warn" and processor_row()["value"] == "never ran"
    app.extensions["queue"].process(10)
    assert processor_row()["state"] == "ok"


def test_limits_panel_lists_a_block_and_unblock_lifts_it(app, admin_client):
    app.extensions["limits"].blocks.block("addr:203.0.113.7", "over 100 per minute")
    html = admin_client.get("/monitor/panels/limits").get_data(as_text=True)
    assert "addr:203.0.113.7" in html and "over 100 per minute" in html
    response = admin_client.post(
        "/monitor/blocks/unblock", data={"who": "addr:203.0.113.7"}, headers={"HX-Request": "true"}
    )
    body = response.get_data(as_text=True)
    assert "addr:203.0.113.7 is unblocked" in body and "No client is blocked." in body
    assert app.extensions["limits"].blocks.in_force() == []
    bad = admin_client.post("/monitor/blocks/unblock", data={"who": "everyone"}, headers={"HX-Request": "true"})
    assert "Name a block as addr:" in bad.get_data(as_text=True)


def test_actions_need_an_admin_and_a_csrf_token(backend, tmp_path, make_user):
    app = create_app({**_overrides(backend[1]), "WTF_CSRF_ENABLED": True}, instance_path=str(tmp_path))
    app.test_client_class = RequestScopedClient
    with app.app_context():
        try:
            client = app.test_client()
            assert client.post("/monitor/blocks/unblock", data={"who": "addr:1.2.3.4"}).status_code in (302, 400)
            admin = make_user("admin")
            client.get("/login")
            with client.session_transaction() as session:
                session["_user_id"], session["_fresh"] = signed_in_id(admin), True
            refused = client.post("/monitor/blocks/unblock", data={"who": "addr:1.2.3.4"})
            assert refused.status_code == 400  # no CSRF token
            staff = make_user("staff")
            with client.session_transaction() as session:
                session["_user_id"] = signed_in_id(staff)
            page = client.get("/monitor")
            assert page.status_code == 403
        finally:
            db.session.remove()
            _empty_tables()
            db.engine.dispose()


# --- recommendations ---------------------------------------------------------------------------


@pytest.fixture
def counters(tmp_path):
    """Counters of this test's own, so the marks of when a rule started firing start empty."""
    return Counters(SqliteCounterStore(str(tmp_path / "metrics.db")))


def _rule(key, state):
    return next(r for r in state if r["key"] == key)


def test_a_rule_waits_for_enough_samples_then_fires_and_clears(counters):
    few = {"cache": {"total": {"hits": 10, "misses": 40}}}
    assert _rule("cache_hit_rate", evaluate(few, counters))["state"] == "waiting"

    bad = {"cache": {"total": {"hits": 100, "misses": 200}}}
    fired = _rule("cache_hit_rate", evaluate(bad, counters))
    assert fired["state"] == "firing" and fired["value"] == "33% of lookups hit"
    assert "flask cache stats" in fired["advice"]
    first_since = fired["since"]
    assert first_since and abs(first_since - time.time()) < 5
    assert _rule("cache_hit_rate", evaluate(bad, counters))["since"] == first_since  # held, not restarted

    good = {"cache": {"total": {"hits": 800, "misses": 200}}}
    cleared = _rule("cache_hit_rate", evaluate(good, counters))
    assert cleared["state"] == "clear" and cleared["since"] is None
    assert _rule("cache_hit_rate", evaluate(bad, counters))["since"] >= first_since  # a new incident


def test_a_rule_that_stops_firing_for_want_of_samples_starts_its_clock_anew(counters):
    bad = {"cache": {"total": {"hits": 100, "misses": 200}}}
    assert evaluate(bad, counters) and counters.mark("rule:cache_hit_rate", True) is not None
    counters.mark("rule:cache_hit_rate", False)
    counters.mark("rule:cache_hit_rate", True, now=time.time() - 86400)  # firing since yesterday
    few = {"cache": {"total": {"hits": 1, "misses": 2}}}
    assert _rule("cache_hit_rate", evaluate(few, counters))["state"] == "waiting"
    assert time.time() - _rule("cache_hit_rate", evaluate(bad, counters))["since"] < 5  # not "for 1 day"


def test_rules_of_parts_without_figures_say_so(counters):
    states = evaluate({}, counters)
    assert {r["state"] for r in states} == {"unavailable"}
    assert len(states) == len(RULES)


@pytest.mark.parametrize(
    "figures, key, state",
    [
        ({"queue": {"pending": 50}}, "pending_jobs", "firing"),
        ({"queue": {"pending": 49}}, "pending_jobs", "clear"),
        ({"queue": {"failed_24h": 1}}, "failed_jobs", "firing"),
        ({"queue": {"failed_24h": 0}}, "failed_jobs", "clear"),
        (
            {"queue": {"arrivals_per_minute": 12.0, "capacity_per_minute": 10.0, "arrival_samples": 60}},
            "cron_capacity",
            "firing",
        ),
        (
            {"queue": {"arrivals_per_minute": 2.0, "capacity_per_minute": 10.0, "arrival_samples": 60}},
            "cron_capacity",
            "clear",
        ),
        ({"database": {"statements": [{"slow": 12, "count": 500}]}}, "slow_statements", "firing"),
        ({"database": {"statements": [{"slow": 12, "count": 50}]}}, "slow_statements", "waiting"),
        ({"pool": {"checkedout": 90, "max": 100, "waits": 0}}, "pool", "firing"),
        ({"pool": {"checkedout": 2, "max": 100}, "database": {"pool_shared": {"pool_waits": 3}}}, "pool", "firing"),
        ({"pool": {"checkedout": 2, "max": 100, "waits": 0}}, "pool", "clear"),
        ({"traffic": {"total": {"error_rate": 0.02, "requests": 500, "p95_ms": 50.0}}}, "error_rate", "firing"),
        ({"traffic": {"total": {"error_rate": 0.0, "requests": 500, "p95_ms": 1000.0}}}, "latency", "firing"),
        ({"traffic": {"total": {"error_rate": 0.0, "requests": 500, "p95_ms": 250.0}}}, "latency", "clear"),
        ({"disk_free": 0.05}, "disk", "firing"),
        ({"disk_free": 0.5}, "disk", "clear"),
    ],
)
def test_rules_fire_on_the_right_figures(counters, figures, key, state):
    assert _rule(key, evaluate(figures, counters))["state"] == state


def test_recommendations_fire_on_the_live_figures(app, admin_client):
    _failed_job(app)
    data = monitor.panel("recommendations")
    rule = _rule("failed_jobs", data["rules"])
    assert rule["state"] == "firing" and rule["value"] == "1 failed"
    assert data["rules"][0]["state"] == "firing"  # firing rules come first
    html = admin_client.get("/monitor/panels/recommendations").get_data(as_text=True)
    assert "Failed jobs in the last 24 hours" in html and "<code>flask queue retry --failed</code>" in html


def test_the_advisor_says_cron_cannot_keep_up_with_a_busy_shop(app, admin_client):
    """An hour of 5 orders a second (300 mails a minute) against the documented `--limit 10` once a minute: this
    minute for real, the 58 before as the counters would hold them (59 minutes in all, so a minute that turns
    during the test keeps every one of them in the hour's window)."""
    counters = app.extensions["counters"]
    for minute in range(1, 59):
        counters.incr("queue", "enqueued", 300, now=time.time() - 60 * minute)
        counters.incr("queue", "capacity", 10, now=time.time() - 60 * minute)
    for _ in range(300):
        enqueue("ping")
    db.session.commit()
    app.extensions["queue"].process(10)  # cron's run this minute
    counters.flush()
    rule = _rule("cron_capacity", monitor.panel("recommendations")["rules"])
    assert rule["state"] == "firing", rule
    assert rule["value"] == (
        "295.0 jobs/min arrive, 9.8/min processed at most; `--limit 443` every minute would keep up"
    )
    html = admin_client.get("/monitor/panels/recommendations").get_data(as_text=True)
    assert "Cron processes fewer jobs than arrive" in html and "flask queue worker" in html


# --- /metrics ----------------------------------------------------------------------------------


def test_metrics_for_allowed_addresses_in_prometheus_format(client):
    client.get("/healthz")
    response = client.get("/metrics")
    body = response.get_data(as_text=True)
    assert response.status_code == 200 and response.mimetype == "text/plain"
    assert "# TYPE sipup_health_verdict gauge" in body
    families = {family.name: family for family in text_string_to_metric_families(body)}
    last_hour = {s.labels["endpoint"]: s.value for s in families["sipup_requests_last_hour"].samples}
    assert last_hour["ops.healthz"] == 1
    for line in body.splitlines():
        assert line.startswith("#") or re.match(r"^[a-z0-9_]+(\{[^}]*\})? (-?[0-9.e+-]+|\+Inf)$", line), line


def test_metrics_refuse_other_addresses_unless_they_bring_the_token(make_app):
    client = make_app(METRICS_TOKEN="s3cret-token").test_client()
    outside = {"REMOTE_ADDR": "203.0.113.9"}
    assert client.get("/metrics", environ_base=outside).status_code == 403
    assert client.get("/metrics", environ_base=outside, headers={"Authorization": "Bearer wrong"}).status_code == 403
    assert (
        client.get("/metrics", environ_base=outside, headers={"Authorization": "Bearer s3cret-token"}).status_code
        == 200
    )
    allowed = make_app(METRICS_ALLOW="203.0.113.0/24").test_client()
    assert allowed.get("/metrics", environ_base=outside).status_code == 200


def test_metrics_through_an_untrusted_proxy_never_pass_by_the_proxys_address(make_app):
    client = make_app(METRICS_TOKEN="s3cret-token").test_client()
    loopback, forwarded = {"REMOTE_ADDR": "127.0.0.1"}, {"X-Forwarded-For": "203.0.113.9"}
    assert client.get("/metrics", environ_base=loopback).status_code == 200
    assert client.get("/metrics", environ_base=loopback, headers=forwarded).status_code == 403
    token = {**forwarded, "Authorization": "Bearer s3cret-token"}
    assert client.get("/metrics", environ_base=loopback, headers=token).status_code == 200


def test_the_hosts_panel_has_a_row_per_host_with_its_requests_and_load(app, admin_client):
    for host, count in (("app-a", 3), ("app-b", 1)):
        # another host's process, writing to the same shared figures
        other = create_app({**_overrides(app.config["DATABASE_URL"]), "HOST_NAME": host}, app.instance_path)
        client = other.test_client()
        for _ in range(count):
            client.get("/healthz")
        client.get("/no-such-page")
        other.extensions["counters"].flush()
        with other.app_context():
            db.engine.dispose()
    page = admin_client.get("/monitor/panels/hosts")
    assert page.status_code == 200
    with admin_client.application.app_context():
        rows = {row["host"]: row for row in monitor.panel("hosts")["hosts"]}
    assert rows["app-a"]["requests"] == 4 and rows["app-b"]["requests"] == 2
    assert rows["app-a"]["server_errors"] == 0 and rows["app-a"]["p95_ms"] is not None
    assert 0 <= rows["app-a"]["cpu"] <= 100 and 0 < rows["app-a"]["memory"] <= 100
    assert rows["app-a"]["minutes_ago"] in (0, 1)  # seen this minute (or the last, at a minute's turn)
    html = page.get_data(as_text=True)
    assert "<code>app-a</code>" in html and "<code>app-b</code>" in html
    assert html.index("app-a") < html.index("app-b"), "busiest first"


def test_a_bad_metrics_allow_list_stops_start_up(make_app):
    with pytest.raises(ConfigError, match="SIPUP_METRICS_ALLOW.*'10.0.0.300' is neither"):
        make_app(METRICS_ALLOW="127.0.0.1, 10.0.0.300")


def test_cache_panel_agrees_with_cache_stats(app, admin_client, runner, make_product):
    make_product()
    buyer_pages = app.test_client()
    for _ in range(3):
        buyer_pages.get("/")  # anonymous: not cached, but the signed-in admin's own pages are
    admin_client.get("/monitor")
    data = monitor.panel("cache")
    app.extensions["counters"].flush()
    printed = runner.invoke(args=["cache", "stats"]).output
    overall = re.search(r"overall hit rate: ([\d.]+%|no reads yet)", printed).group(1)
    rate = data["total"]["hit_rate"]
    assert overall == ("no reads yet" if rate is None else f"{rate:.1%}")
    html = admin_client.get("/monitor/panels/cache").get_data(as_text=True)
    assert "Hit rate, hour" in html and "products" in html and "flask cache stats" in html


def test_unblock_with_limits_switched_off_says_so(backend, tmp_path, make_user):
    app = create_app({**_overrides(backend[1]), "RATELIMIT_ENABLED": False}, instance_path=str(tmp_path))
    app.test_client_class = RequestScopedClient
    with app.app_context():
        try:
            client = app.test_client()
            assert login(client, make_user("admin")).status_code == 302
            response = client.post(
                "/monitor/blocks/unblock", data={"who": "addr:1.2.3.4"}, headers={"HX-Request": "true"}
            )
            assert response.status_code == 200
            assert "could not be unblocked: Rate limits are switched off" in response.get_data(as_text=True)
            panel = client.get("/monitor/panels/limits").get_data(as_text=True)
            assert "Rate limits are switched off" in panel and 'role="alert"' not in panel
        finally:
            db.session.remove()
            _empty_tables()
            db.engine.dispose()


def test_health_and_recommendations_show_one_verdict(app, admin_client):
    # No processor has run: Health warns about it, and Recommendations says the same, not "nothing to do".
    health = admin_client.get("/monitor/panels/health").get_data(as_text=True)
    advice = admin_client.get("/monitor/panels/recommendations").get_data(as_text=True)
    verdicts = [
        re.search(r'<div class="verdict verdict-(\w+)" role="status">(.*?)</div>', html, re.S)
        for html in (health, advice)
    ]
    assert verdicts[0].group(1) == verdicts[1].group(1) == "amber"
    assert " ".join(verdicts[0].group(2).split()) == " ".join(verdicts[1].group(2).split())
    assert "Queue processor (never ran)" in verdicts[1].group(2)
    assert monitor.verdict()["colour"] == "amber"


def test_pools_larger_than_max_connections_are_named(app, make_app):
    from sqlalchemy import text

    limit = 400 if app.backend == "sqlite" else db.session.execute(text("SELECT @@max_connections")).scalar()
    big = make_app(DB_POOL_SIZE=limit, DB_MAX_OVERFLOW=100, MONITOR_PANEL_SECONDS=0)  # one process is too many
    with big.app_context():
        rules = {r["key"]: r for r in monitor.panel("recommendations")["rules"]}
        budget = monitor.panel("database")["connections"]
        if app.backend == "sqlite":
            assert budget is None and rules["connections"]["state"] == "unavailable"
        else:
            assert budget["per_process"] == limit + 100 and budget["max_connections"] == limit
            assert rules["connections"]["state"] == "firing"
            assert f"x {limit + 100} = {budget['needed']} for max_connections {limit}" in rules["connections"]["value"]
        db.engine.dispose()
