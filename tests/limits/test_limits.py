"""Rate limits: per address, per user and per endpoint, in memory and in Redis; blocks that double and
decay; the answers; the client address behind proxies; two real servers sharing one budget; Redis outages."""

import json
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest

from sipup import create_app
from sipup.config import ConfigError
from sipup.limits.limiter import Blocks, SqliteBlockStore, blocks_in_force, status
from tests.conftest import PASSWORD, REDIS_URL, login
from tests.servers import SipupServer


@pytest.fixture(autouse=True)
def _clear_of_a_minute_edge():
    """The sliding windows weigh the last minute's count by the share of it still in the window: right after a
    minute begins, 2 requests of the last one weigh 1.99 and a "2 per minute" budget lets a third through. Each
    test counts within one minute: it starts at least 3 s before the next one begins."""
    left = 60 - time.time() % 60
    if left < 3:
        time.sleep(left + 0.05)


def _app(tmp_path, **config):
    return create_app(
        {
            "DATABASE_URL": f"sqlite:///{tmp_path / 'sipup.db'}",
            "SECRET_KEY": "test-secret",
            "WTF_CSRF_ENABLED": False,
            **config,
        },
        instance_path=str(tmp_path),
    )


@pytest.fixture(params=["memory", "redis"])
def storage(request):
    """Configuration for the embedded default (in-process counting) and for the shared Redis."""
    if request.param == "memory":
        return {}
    namespace = request.getfixturevalue("redis_namespace")
    return {"REDIS_URL": REDIS_URL, "REDIS_NAMESPACE": namespace}


def _from(address):
    return {"environ_base": {"REMOTE_ADDR": address}}


def test_the_101st_request_in_a_minute_from_one_address_is_refused(tmp_path, storage):
    client = _app(tmp_path, **storage).test_client()
    codes = [client.get("/login", **_from("10.0.0.1")).status_code for _ in range(100)]
    assert codes == [200] * 100
    refused = client.get("/login", **_from("10.0.0.1"))
    assert refused.status_code == 429
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert refused.headers["X-RateLimit-Limit"] == "100"
    assert refused.headers["X-RateLimit-Remaining"] == "0"
    assert int(refused.headers["X-RateLimit-Reset"]) > time.time()
    assert "Slow down" in refused.get_data(as_text=True)
    # Another address has its own budget; probes and static files are never limited.
    assert client.get("/login", **_from("10.0.0.2")).status_code == 200
    assert client.get("/healthz", **_from("10.0.0.1")).status_code == 200
    static = client.get("/static/css/sipup.css", **_from("10.0.0.1"))
    static.close()
    assert static.status_code == 200


def test_refusals_answer_browsers_htmx_and_json_clients(tmp_path):
    client = _app(tmp_path, RATELIMIT_IP="1 per minute").test_client()
    client.get("/login")
    page = client.get("/login")
    assert page.status_code == 429 and "<html" in page.get_data(as_text=True)
    assert "Please wait" in page.get_data(as_text=True)
    fragment = client.get("/login", headers={"HX-Request": "true"})
    assert fragment.status_code == 429 and fragment.get_data(as_text=True).startswith('<div class="inline-error"')
    answer = client.get("/login", headers={"Accept": "application/json"})
    assert answer.status_code == 429 and answer.get_json()["error"] == "Slow down"
    assert all("Retry-After" in r.headers for r in (page, fragment, answer))


def test_unknown_urls_spend_the_address_budget(tmp_path):
    client = _app(tmp_path, RATELIMIT_IP="3 per minute").test_client()
    assert [client.get(f"/no-such-page-{n}").status_code for n in range(3)] == [404] * 3
    assert client.get("/login").status_code == 429


def test_requests_refused_by_other_checks_count_too(tmp_path):
    client = _app(tmp_path, RATELIMIT_IP="3 per minute", WTF_CSRF_ENABLED=True).test_client()
    codes = [client.post("/login", data={"email": "a@example.com", "password": "x"}).status_code for _ in range(4)]
    assert codes == [400, 400, 400, 429]  # no CSRF token: refused, and still counted


def test_a_forged_forwarded_for_changes_nothing_without_trusted_proxies(tmp_path, storage):
    client = _app(tmp_path, RATELIMIT_IP="5 per minute", **storage).test_client()
    codes = [client.get("/login", headers={"X-Forwarded-For": f"203.0.113.{n}"}).status_code for n in range(6)]
    assert codes == [200] * 5 + [429]


def test_with_one_proxy_the_address_it_saw_is_used(tmp_path, storage):
    client = _app(tmp_path, RATELIMIT_IP="5 per minute", PROXY_HOPS=1, **storage).test_client()
    # Every request comes through the same proxy address; each client behind it has its own budget.
    codes = [client.get("/login", headers={"X-Forwarded-For": "203.0.113.7"}).status_code for _ in range(6)]
    assert codes == [200] * 5 + [429]
    assert client.get("/login", headers={"X-Forwarded-For": "203.0.113.8"}).status_code == 200
    # A client cannot pick its address by prepending one: the proxy's entry (the last) counts.
    forged = client.get("/login", headers={"X-Forwarded-For": "198.51.100.1, 203.0.113.7"})
    assert forged.status_code == 429


def test_the_user_limit_follows_the_user_across_addresses(app, make_app, buyer, storage):
    limited = make_app(RATELIMIT_USER="5 per minute", **storage)
    client = limited.test_client()
    assert login(client, buyer).status_code == 302  # sign-in itself is not a user request yet
    codes = [client.get("/orders", **_from(f"10.1.0.{n}")).status_code for n in range(6)]
    assert codes == [200] * 5 + [429]
    assert client.get("/orders", **_from("10.1.0.99")).status_code == 429
    # Anonymous visitors from those addresses are not affected by the user's budget.
    assert limited.test_client().get("/login", **_from("10.1.0.1")).status_code == 200


def test_login_is_limited_per_address_and_per_account(app, make_app, buyer, make_company, make_user, storage):
    limited = make_app(
        RATELIMIT_ENDPOINTS={"POST auth.login": "4 per minute", "POST auth.login by account": "3 per minute"}, **storage
    )
    client = limited.test_client()
    wrong = {"email": buyer.email, "password": "not the password"}
    # One account guessed at from many addresses: the fourth try is refused, even with the right password.
    codes = [client.post("/login", data=wrong, **_from(f"10.2.0.{n}")).status_code for n in range(3)]
    assert 429 not in codes
    assert (
        client.post(
            "/login", data={"email": buyer.email, "password": "correct horse battery"}, **_from("10.2.0.50")
        ).status_code
        == 429
    )
    # Many accounts from one address: the fifth try is refused; reading the form is not counted.
    other = make_user("buyer", make_company())
    for n in range(4):
        client.post("/login", data={"email": f"nobody{n}@example.com", "password": "x"}, **_from("10.3.0.1"))
    assert client.get("/login", **_from("10.3.0.1")).status_code == 200
    assert client.post("/login", data={"email": other.email, "password": "x"}, **_from("10.3.0.1")).status_code == 429
    assert login(client, other).status_code == 302  # another address, another account: fine


def test_guesses_from_elsewhere_do_not_lock_the_owner_out_of_their_usual_address(
    app, make_app, make_company, make_user, storage
):
    limited = make_app(
        RATELIMIT_ENDPOINTS={"POST auth.login": "10 per minute", "POST auth.login by account": "3 per minute"},
        RATELIMIT_STRATEGY="moving-window",  # exact counts, whatever the minute
        **storage,
    )
    # An address of its own: the known addresses on the embedded default outlive a test (one instance folder).
    buyer = make_user("buyer", make_company(), email="office-guessed@example.com")
    right = {"email": buyer.email, "password": PASSWORD}
    wrong = {"email": buyer.email.upper(), "password": "not the password"}

    def sign_in(data, address):
        return limited.test_client().post("/login", data=data, **_from(address)).status_code

    assert sign_in(right, "10.8.0.1") == 302  # the office, last week
    assert [sign_in(wrong, f"10.8.0.{n}") for n in range(2, 7)] == [401, 401, 429, 429, 429]  # five guessers
    assert sign_in(right, "10.8.0.99") == 429  # a new address waits: the account's shared budget is spent
    assert sign_in(right, "10.8.0.1") == 302  # the office gets in
    # The office's own budget is no bigger: guessing from there is limited per account and address.
    assert [sign_in(wrong, "10.8.0.1") for _ in range(3)] == [401, 401, 429]


# --- blocks ------------------------------------------------------------------------------------


def test_blocks_double_up_to_the_cap_and_decay(tmp_path):
    blocks = Blocks(SqliteBlockStore(str(tmp_path / "limits.db")), base=60, cap=300, decay=3600)
    t = 1_000_000.0
    lengths = []
    for _ in range(5):
        block = blocks.block("addr:10.0.0.1", "test", now=t)
        lengths.append(block.until - t)
        t = block.until + 10  # breaches again soon after the block ends
    assert lengths == [60, 120, 240, 300, 300]
    assert block.level == 5
    # Blocking again while a block is in force does not escalate it.
    assert blocks.block("addr:10.0.0.1", "again", now=block.until - 1).until == block.until
    # Two decay periods of good behaviour take two doublings off: level 5 -> 3, so the next is level 4.
    again = blocks.block("addr:10.0.0.1", "test", now=block.until + 2 * 3600 + 1)
    assert again.level == 4
    # After the level has fully decayed the record is forgotten, and the next block starts over at 1 minute.
    later = again.until + 4 * 3600 + 1
    fresh = blocks.block("addr:10.0.0.1", "test", now=later)
    assert (fresh.level, fresh.until - later) == (1, 60)


def test_a_client_that_keeps_going_is_blocked_then_an_admin_lifts_it(tmp_path, storage):
    app = _app(tmp_path, RATELIMIT_IP="2 per minute", RATELIMIT_BLOCK_AFTER="3 per minute", **storage)
    client = app.test_client()
    codes = [client.get("/login", **_from("10.4.0.1")).status_code for _ in range(5)]
    assert codes == [200, 200, 429, 429, 429]
    assert blocks_in_force(app) == []
    blocked = client.get("/login", **_from("10.4.0.1"))  # the fourth refusal earns a block
    assert blocked.status_code == 429
    [block] = blocks_in_force(app)
    assert block.who == "addr:10.4.0.1" and block.level == 1 and 55 <= block.seconds_left() <= 60
    answer = client.get("/login", **_from("10.4.0.1"), headers={"Accept": "application/json"})
    assert answer.status_code == 429 and "blocked" in answer.get_json()["message"]
    assert 55 <= int(answer.headers["Retry-After"]) <= 60
    assert client.get("/login", **_from("10.4.0.2")).status_code == 200  # nobody else

    runner = app.test_cli_runner()
    shown = runner.invoke(args=["limits", "status"])
    assert shown.exit_code == 0, shown.output
    assert "address 10.4.0.1" in shown.output and "kept exceeding 2 per 1 minute" in shown.output
    figures = status(app)
    assert figures["refused"] == 5 and figures["refused_by_blocks"] == 1 and figures["blocks_started"] == 1
    assert figures["top_addresses"] == [("10.4.0.1", 4)]

    lifted = runner.invoke(args=["limits", "unblock", "10.4.0.1"])
    assert lifted.exit_code == 0 and "Lifted" in lifted.output
    assert blocks_in_force(app) == []
    assert client.get("/login", **_from("10.4.0.1")).status_code == 200  # and its budget starts afresh
    again = runner.invoke(args=["limits", "unblock", "10.4.0.1"])
    assert again.exit_code == 1 and "No block in force" in again.output


def test_the_command_line_sees_blocks_set_by_the_server_process(tmp_path):
    server = _app(tmp_path, RATELIMIT_IP="1 per minute", RATELIMIT_BLOCK_AFTER="1 per minute")
    client = server.test_client()
    for _ in range(3):
        client.get("/login")
    cli_app = _app(tmp_path)  # another process on the same instance folder
    assert [b.who for b in blocks_in_force(cli_app)] == ["addr:127.0.0.1"]
    assert cli_app.test_cli_runner().invoke(args=["limits", "unblock", "--all"]).exit_code == 0
    time.sleep(1.1)  # the server rereads the block list once a second, and resets the lifted client's counts
    assert client.get("/login").status_code == 200


def test_a_block_set_by_one_process_holds_in_the_others(tmp_path, redis_namespace):
    config = dict(
        REDIS_URL=REDIS_URL,
        REDIS_NAMESPACE=redis_namespace,
        RATELIMIT_IP="1 per minute",
        RATELIMIT_BLOCK_AFTER="1 per minute",
    )
    first, second = (_app(tmp_path, **config).test_client() for _ in range(2))
    assert second.get("/login", **_from("10.7.0.1")).status_code == 200  # its copy of the block list is fresh
    codes = [first.get("/login", **_from("10.7.0.1")).status_code for _ in range(3)]
    assert codes == [429, 429, 429]  # the budget is shared; the second refusal earned a block
    time.sleep(1.1)
    answer = second.get("/login", **_from("10.7.0.1"), headers={"Accept": "application/json"})
    assert answer.status_code == 429 and "blocked" in answer.get_json()["message"]


def test_a_blocked_user_is_refused_from_any_address(app, make_app, buyer, storage):
    limited = make_app(RATELIMIT_USER="2 per minute", RATELIMIT_BLOCK_AFTER="1 per minute", **storage)
    client = limited.test_client()
    login(client, buyer)
    codes = [client.get("/orders", **_from(f"10.5.0.{n}")).status_code for n in range(4)]
    assert codes == [200, 200, 429, 429]
    assert [b.who for b in blocks_in_force(limited)] == [f"user:{buyer.id}"]
    assert "blocked" in client.get("/orders", **_from("10.5.0.77")).get_data(as_text=True)
    with limited.app_context():  # the command runs in the app context it finds: this app's
        result = limited.test_cli_runner().invoke(args=["limits", "unblock", buyer.email])
    assert result.exit_code == 0, result.output
    assert client.get("/orders", **_from("10.5.0.77")).status_code == 200


# --- configuration -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "key, value",
    [
        ("RATELIMIT_IP", "lots"),
        ("RATELIMIT_BLOCK_AFTER", "3 per fortnight"),
        ("RATELIMIT_STRATEGY", "leaky-bucket"),
        ("RATELIMIT_ENDPOINTS", "{not json"),
        ("RATELIMIT_ENDPOINTS", '{"POST auth.login": "ten a minute"}'),
        ("RATELIMIT_ENDPOINTS", '{"POST auth.login by shoe size": "10/minute"}'),
        ("RATELIMIT_ENDPOINTS", '{"shop.nowhere": "10/minute"}'),
        ("RATELIMIT_ENDPOINTS", '{"FETCH auth.login": "10/minute"}'),
        ("RATELIMIT_ENDPOINTS", '["POST auth.login"]'),
    ],
)
def test_a_malformed_limit_stops_start_up_naming_the_setting(tmp_path, key, value):
    with pytest.raises(ConfigError, match=f"SIPUP_{key}"):
        _app(tmp_path, **{key: value})


def test_endpoint_limits_merge_over_the_defaults(tmp_path, monkeypatch):
    monkeypatch.setenv(
        "SIPUP_RATELIMIT_ENDPOINTS", json.dumps({"POST shop.checkout": "", "GET shop.products": "9/minute"})
    )
    endpoints = _app(tmp_path).config["RATELIMIT_ENDPOINTS"]
    assert "POST shop.checkout" not in endpoints
    assert endpoints["GET shop.products"] == "9/minute"
    assert endpoints["POST auth.login by account"] == "5 per minute; 20 per hour"


def test_changing_the_window_strategy_on_a_live_redis_keeps_working(tmp_path, redis_namespace):
    shared = {"REDIS_URL": REDIS_URL, "REDIS_NAMESPACE": redis_namespace}
    for strategy in ("fixed-window", "moving-window", "sliding-window-counter"):
        client = _app(tmp_path, RATELIMIT_STRATEGY=strategy, **shared).test_client()
        assert client.get("/login").status_code == 200
        app = client.application
        assert not app.extensions["limits"].fallback_active, strategy


# --- Redis outage ------------------------------------------------------------------------------


def test_a_redis_outage_keeps_the_site_answering_and_counting_resumes(tmp_path, local_redis, caplog):
    import redis

    app = _app(tmp_path, REDIS_URL=local_redis.url, REDIS_NAMESPACE="t", RATELIMIT_IP="5 per minute")
    client = app.test_client()
    limits = app.extensions["limits"]
    assert [client.get("/login", **_from("10.6.0.1")).status_code for _ in range(2)] == [200, 200]
    local_redis.stop()
    # Per-process counting from zero while Redis is away: five more, then refused; never a 500.
    codes = [client.get("/login", **_from("10.6.0.1")).status_code for _ in range(6)]
    assert codes == [200] * 5 + [429]
    assert limits.fallback_active and status(app)["fallback_active"]
    assert not status(app)["storage_reachable"]
    assert "Redis) unreachable" in caplog.text
    shown = app.test_cli_runner().invoke(args=["limits", "status"])
    assert shown.exit_code == 0 and "Redis unreachable" in shown.output
    assert client.get("/healthz").status_code == 200
    local_redis.start()  # an empty Redis: this one keeps nothing on disk
    time.sleep(2.2)  # Flask-Limiter retries Redis with a growing pause (1 s, 2 s, ...)
    assert client.get("/login", **_from("10.6.0.9")).status_code == 200
    assert not limits.fallback_active
    client.get("/login", **_from("10.6.0.9"))
    assert "counting is shared again" in caplog.text
    # Shared again: another process on the same Redis spends the same budget.
    other = _app(tmp_path, REDIS_URL=local_redis.url, REDIS_NAMESPACE="t", RATELIMIT_IP="5 per minute").test_client()
    codes = [c.get("/login", **_from("10.6.0.1")).status_code for c in (client, other, client, other, client, other)]
    assert codes == [200] * 5 + [429]
    assert status(app)["storage_reachable"]
    server = redis.Redis.from_url(local_redis.url)
    assert server.keys("t:limits:sliding-window-counter:*"), "counting is back in Redis"
    server.close()


# --- two real servers, one budget --------------------------------------------------------------


def _status(url):
    try:
        with urllib.request.urlopen(f"{url}/login", timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def test_two_waitress_processes_sharing_redis_enforce_one_budget(tmp_path, redis_namespace, demo_instance):
    settings = {
        "REDIS_URL": REDIS_URL,
        "REDIS_NAMESPACE": redis_namespace,
        "RATELIMIT_IP": "40 per minute",
        "RATELIMIT_BLOCK_AFTER": "1000 per minute",
    }
    servers = [SipupServer(demo_instance(tmp_path / name), **settings) for name in ("a", "b")]
    try:
        with ThreadPoolExecutor(2) as pool:  # both start at once
            list(pool.map(SipupServer.start, servers))
        urls = [server.url for server in servers] * 40
        with ThreadPoolExecutor(8) as pool:
            codes = list(pool.map(_status, urls))
        assert codes.count(200) == 40, codes
        assert codes.count(429) == 40
        # Each process served some of the 200s: they were counted in one budget, not two.
        per_server = [codes[i::2].count(200) for i in (0, 1)]
        assert all(per_server), per_server
    finally:
        for server in servers:
            server.stop()


def test_blocks_hold_in_the_process_while_redis_is_down(tmp_path, local_redis):
    app = _app(
        tmp_path,
        REDIS_URL=local_redis.url,
        REDIS_NAMESPACE="t",
        RATELIMIT_IP="1 per minute",
        RATELIMIT_BLOCK_AFTER="1 per minute",
    )
    local_redis.stop()
    client = app.test_client()
    assert [client.get("/login").status_code for _ in range(3)] == [200, 429, 429]
    answer = client.get("/login", headers={"Accept": "application/json"})
    assert answer.status_code == 429 and "blocked" in answer.get_json()["message"]
    assert app.extensions["limits"].blocks.store_error
    shown = app.test_cli_runner().invoke(args=["limits", "status"])
    assert shown.exit_code == 0 and "address 127.0.0.1" in shown.output and "unavailable" in shown.output
