"""Behind a real proxy, as docs/SCALING_GUIDE.md deploys it: `flask serve` (real waitress) behind a real HAProxy
and a real nginx on free loopback ports, clients from their own loopback addresses (127.0.0.2, 127.0.0.3, ...).

With SIPUP_PROXY_HOPS=1 each client has its own rate-limit budget, a forged X-Forwarded-For changes nothing,
and `/metrics` follows the client's address (the proxy's own 127.0.0.1 opens nothing) or the bearer token.
With SIPUP_PROXY_HOPS=0 behind a proxy on the same host, sipup says the setting is likely wrong.
"""

import pytest

from sipup.observability import health
from tests.conftest import PASSWORD
from tests.servers import SipupServer, local_proxy, request

BUDGET = 5
TOKEN = "metrics-token-for-the-proxy-test"
pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")
CLIENTS = {"haproxy": "127.0.1", "nginx": "127.0.2"}  # loopback addresses of each proxy's clients


@pytest.fixture(scope="module")
def hops_server(tmp_path_factory, demo_instance):
    """One sipup server with SIPUP_PROXY_HOPS=1 for both proxies (each proxy's clients have addresses of their own,
    so the budgets the first proxy's tests spend are not the second's)."""
    server = SipupServer(
        demo_instance(tmp_path_factory.mktemp("proxied") / "instance"),
        PROXY_HOPS=1,
        RATELIMIT_IP=f"{BUDGET} per minute",
        RATELIMIT_BLOCK_AFTER="1000 per minute",
        METRICS_ALLOW=", ".join(["127.0.0.1", "::1", *(f"{net}.5" for net in CLIENTS.values())]),
        METRICS_TOKEN=TOKEN,
    ).start()
    yield server
    server.stop()


@pytest.fixture(scope="module", params=list(CLIENTS))
def proxied(request, tmp_path_factory, hops_server):
    """(proxy port, sipup server, the client addresses' first three bytes) behind HAProxy or nginx."""
    proxy = local_proxy(request.param, tmp_path_factory.mktemp(request.param), hops_server.port)
    yield proxy.port, hops_server, CLIENTS[request.param]
    proxy.stop()


def _statuses(port, source, count, headers=None):
    return [request(port, "/login", source, headers)[0] for _ in range(count)]


def test_each_client_behind_the_proxy_has_its_own_budget(proxied):
    port, _server, net = proxied
    assert _statuses(port, f"{net}.2", BUDGET + 1) == [200] * BUDGET + [429]
    assert _statuses(port, f"{net}.3", 1) == [200], "another client is not refused for the first one's requests"


def test_a_forged_forwarded_for_changes_nothing(proxied):
    port, _server, net = proxied
    forged = [request(port, "/login", f"{net}.4", {"X-Forwarded-For": f"198.51.100.{n}"})[0] for n in range(BUDGET + 1)]
    assert forged == [200] * BUDGET + [429], "a new forged address each time still counts against one budget"
    # Claiming to be the refused client neither borrows its refusal nor spends its own budget elsewhere.
    assert _statuses(port, f"{net}.6", 1, {"X-Forwarded-For": f"{net}.4"}) == [200]


def test_metrics_follow_the_client_address_behind_the_proxy_or_the_token(proxied):
    port, _server, net = proxied
    assert request(port, "/metrics", f"{net}.5")[0] == 200, "an allowed address"
    assert request(port, "/metrics", f"{net}.7")[0] == 403, "outside the allowlist, though the proxy is 127.0.0.1"
    assert request(port, "/metrics", f"{net}.7", {"X-Forwarded-For": f"{net}.5"})[0] == 403, "forged address"
    status, body = request(port, "/metrics", f"{net}.7", {"Authorization": f"Bearer {TOKEN}"})
    assert status == 200 and "sipup_" in body


def test_a_same_host_proxy_without_hops_is_named_once_a_minute(tmp_path, demo_instance):
    server = SipupServer(demo_instance(tmp_path / "instance"), PROXY_HOPS=0, RATELIMIT_IP="1000 per minute").start()
    proxy = local_proxy("nginx", tmp_path, server.port)
    try:
        assert _statuses(proxy.port, "127.0.0.2", 3) == [200] * 3
        assert request(proxy.port, "/metrics", "127.0.0.2")[0] == 403, "not by the untrusted proxy's loopback address"
    finally:
        proxy.stop()
        server.stop()
    log = (tmp_path / "instance" / "logs" / "sipup.log").read_text(encoding="utf-8")
    warnings = [line for line in log.splitlines() if "X-Forwarded-For" in line and "SIPUP_PROXY_HOPS=0" in line]
    assert len(warnings) == 1, log


def _through_same_host_proxy(client):
    return client.get("/login", environ_base={"REMOTE_ADDR": "127.0.0.1"}, headers={"X-Forwarded-For": "203.0.113.9"})


def test_monitor_health_names_the_untrusted_same_host_proxy(own_app):
    client = own_app.test_client()
    assert health.proxy()["state"] == "off"
    client.get("/login", headers={"X-Forwarded-For": "203.0.113.9"}, environ_base={"REMOTE_ADDR": "203.0.113.1"})
    assert health.proxy()["state"] == "off", "X-Forwarded-For from afar is a client's, not a same-host proxy's"
    assert _through_same_host_proxy(client).status_code == 200
    check = health.proxy()
    assert check["state"] == "warn" and "SIPUP_PROXY_HOPS" in check["detail"]
    assert check in health.run_checks()["checks"]


def test_trusted_hops_are_shown_as_such(make_app):
    app = make_app(PROXY_HOPS=1)
    with app.app_context():
        assert _through_same_host_proxy(app.test_client()).status_code == 200
        check = health.proxy()
    assert check["state"] == "ok" and "SIPUP_PROXY_HOPS=1" in check["detail"]


@pytest.mark.parametrize("hops, secure", [(1, True), (0, False)])
def test_session_cookies_are_secure_when_the_trusted_proxy_reports_https(app, make_app, buyer, hops, secure):
    client = make_app(PROXY_HOPS=hops).test_client()
    answer = client.post(
        "/login",
        data={"email": buyer.email, "password": PASSWORD},
        headers={"X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.9"},
    )
    assert answer.status_code == 302
    cookie = next(value for name, value in answer.headers.items() if name == "Set-Cookie" and "session=" in value)
    assert ("; Secure" in cookie) is secure, cookie
