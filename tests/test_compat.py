"""Each library internal sipup relies on (the compat.py of each package) still behaves as relied on.

A version bump that changes one fails here, in CI, instead of silently in production."""

import dataclasses
import signal
import sqlite3
import threading
import time
from datetime import datetime

import pytest
from cachelib import FileSystemCache
from cachelib.redis import RedisCache
from flask import Flask, abort, g
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_login import AnonymousUserMixin, LoginManager, UserMixin, current_user, login_user
from flask_wtf.csrf import CSRFProtect, generate_csrf, validate_csrf
from huey import SqliteHuey
from huey.api import TaskWrapper
from huey.consumer import Consumer, Scheduler
from sqlalchemy.pool import QueuePool

from sipup import compat as app_compat
from sipup.cache import compat as cache_compat
from sipup.cache.drivers import FolderCache
from sipup.jobs import compat as jobs_compat
from sipup.limits import compat as limits_compat
from sipup.metrics import compat as metrics_compat

# --- Huey -------------------------------------------------------------------------------------------


class _Holder:
    def __init__(self):
        self._registry = jobs_compat.new_registry()


def test_a_huey_sharing_the_registry_runs_tasks_registered_before_it_existed(tmp_path):
    holder = _Holder()
    wrapper = TaskWrapper(holder, lambda x: x * 2, name="double")
    huey = SqliteHuey("compat", filename=str(tmp_path / "q.db"), results=False)
    jobs_compat.share_registry(huey, holder._registry)
    huey.enqueue(wrapper.s(21))
    task = huey.dequeue()  # a task whose class the registry does not know is dropped here
    assert task is not None and task.name == "double" and huey.execute(task) == 42


def test_extra_signals_stop_the_consumer_gracefully(tmp_path):
    huey = SqliteHuey("compat", filename=str(tmp_path / "q.db"), results=False)
    consumer = Consumer(huey, workers=1, worker_type="thread", graceful_signal="TERM")
    jobs_compat.stop_gracefully_on(consumer, ("SIGINT", "SIGNOTONANYPLATFORM"))
    previous = signal.getsignal(signal.SIGINT)
    try:
        consumer._handle_signal(signal.SIGINT, None)  # what the consumer's handler does when SIGINT comes
    finally:
        signal.signal(signal.SIGINT, previous)
    assert (consumer._restart, consumer._graceful) == (False, True)
    assert signal.SIGTERM in consumer._signal_actions  # the handlers are installed for every key


def test_the_consumers_scheduler_hands_the_minutes_periodic_check_to_enqueue_periodic_tasks(tmp_path):
    # sipup.jobs.worker's scheduler runs the queue's housekeeping in place of this method, once a minute.
    calls = []

    class Recording(Scheduler):
        def enqueue_periodic_tasks(self, now):
            calls.append(now)

    huey = SqliteHuey("compat", filename=str(tmp_path / "q.db"), results=False)
    consumer = type("Consumer", (Consumer,), {"scheduler_class": Recording})(huey, periodic=True, scheduler_interval=1)
    scheduler = consumer._create_scheduler()
    assert isinstance(scheduler, Recording)
    scheduler._next_loop -= 0.99  # the loop sleeps out the rest of its one-second interval: leave 10 ms of it
    scheduler.loop(now=datetime(2026, 1, 1, 4, 0))
    assert calls == [datetime(2026, 1, 1, 4, 0)]


# --- cachelib ---------------------------------------------------------------------------------------


def test_redis_cache_client_and_keys_are_what_the_lock_writes():
    store = RedisCache(host="127.0.0.1", port=1, key_prefix="p:")
    client, key = cache_compat.redis_client_and_key(store, "k:lock")
    assert key == "p:k:lock" and hasattr(client, "set") and client is store._write_client
    cache_compat.close_redis(store)  # no connection was ever made: closing must still work


def test_redis_cache_read_client_and_prefix_name_the_keys_the_read_ahead_reads():
    store = RedisCache(host="127.0.0.1", port=1, key_prefix=lambda: "f:")
    client, prefix = cache_compat.redis_read_client_and_prefix(store)
    assert prefix == "f:" and client is store._read_client and hasattr(client, "mget")
    cache_compat.close_redis(store)


def test_the_folder_cache_sweep_removes_expired_files_and_keeps_the_rest(tmp_path):
    store = FileSystemCache(str(tmp_path), threshold=0)
    store.set("old", 1, timeout=1)
    store.set("kept", 2, timeout=3600)
    assert cache_compat.remove_expired_files(store, time.time() + 10) == 1
    assert store.get("kept") == 2 and store.get("old") is None


def test_the_folder_cache_writes_its_file_count_through_set_with_mgmt_element(tmp_path):
    # sipup.cache.drivers.FolderCache overrides set and delete and passes mgmt_element on: cachelib writes
    # its count file through the override with it, and that write must not count itself.
    calls = []

    class Recording(FolderCache):
        def set(self, key, value, timeout=None, mgmt_element=False):
            calls.append((key, mgmt_element))
            return super().set(key, value, timeout=timeout, mgmt_element=mgmt_element)

    store = Recording(str(tmp_path / "cache"), threshold=100)
    calls.clear()
    store.set("a", 1)
    store.set("b", 2)
    assert calls == [("a", False), (store._fs_count_file, True), ("b", False), (store._fs_count_file, True)]
    assert store.delete("a") and store.get(store._fs_count_file) == 1


# --- limits and Flask-Limiter -----------------------------------------------------------------------


def test_memory_counts_count_without_a_timer_and_expire_on_demand():
    storage = limits_compat.MemoryCounts()
    before = {t.ident for t in threading.enumerate()}
    assert storage.incr("k", expiry=0.05) == 1 and storage.incr("k", expiry=0.05) == 2
    started = [t for t in threading.enumerate() if t.ident not in before and isinstance(t, threading.Timer)]
    assert started == []  # limits would start a Timer thread here
    time.sleep(0.06)
    storage.expire_now()
    assert storage.get("k") == 0 and "k" not in storage.storage


def test_parsed_once_yields_runtime_limits_equal_to_flask_limiters_own():
    limit = limits_compat.ParsedOnce("5 per minute; 100 per hour", scope="s")
    app = Flask(__name__)
    Limiter(get_remote_address, app=app, application_limits=[limit], storage_uri="memory://")
    with app.test_request_context():
        own = list(super(limits_compat.ParsedOnce, limit).__iter__())
        parsed = list(limit)
    values = [tuple(getattr(item, f.name) for f in dataclasses.fields(item)) for item in parsed]
    assert values == [tuple(getattr(item, f.name) for f in dataclasses.fields(item)) for item in own]
    assert all(isinstance(p, limits_compat.HashedOnce) for p in parsed)
    assert [hash(p) for p in parsed] == [hash(o) for o in own] and list(limit)[0] is parsed[0]


def test_flask_limiter_checks_in_a_before_request_hook_that_hooks_first_moves_ahead_of_the_apps_own():
    def app_refusing_in_a_hook(first):
        app = Flask(__name__)
        app.before_request(lambda: abort(400))  # as a CSRF failure is answered: from a hook
        app.add_url_rule("/", "index", lambda: "ok")
        limiter = Limiter(get_remote_address, default_limits=["1 per minute"], storage_uri="memory://")
        if first:
            limits_compat.hooks_first(app, lambda: limiter.init_app(app))
        else:
            limiter.init_app(app)
        client = app.test_client()
        return [client.get("/").status_code for _ in range(2)]

    assert app_refusing_in_a_hook(first=False) == [400, 400]  # the app's hook answers before the limiter counts
    assert app_refusing_in_a_hook(first=True) == [400, 429]  # every request spends budget


def test_resolve_once_has_flask_limiter_resolve_an_endpoints_limits_once_and_still_count_and_exempt():
    def index():
        return "ok"

    def free():  # Flask-Limiter knows views by qualified name: two lambdas would be one
        return "ok"

    app = Flask(__name__)
    app.add_url_rule("/", "index", index, methods=["GET", "POST"])
    app.add_url_rule("/free", "free", free)
    limiter = Limiter(get_remote_address, app=app, application_limits=["2 per minute"], storage_uri="memory://")
    limiter.exempt(free)
    manager = limiter.limit_manager
    resolve, calls = manager.resolve_limits, []
    manager.resolve_limits = lambda *args: calls.append(args[1:]) or resolve(*args)
    limits_compat.resolve_once(limiter)
    client = app.test_client()
    assert [client.get("/").status_code for _ in range(3)] == [200, 200, 429]  # still counted
    assert [client.get("/free").status_code for _ in range(3)] == [200] * 3  # still exempt
    assert client.post("/").status_code == 429
    assert [call[0] for call in calls] == ["index", "free", "index"]  # once per endpoint and method


def test_storage_dead_tells_when_flask_limiter_counts_in_memory_because_its_storage_failed():
    app = Flask(__name__)
    app.add_url_rule("/", "index", lambda: "ok")
    limiter = Limiter(
        get_remote_address,
        app=app,
        default_limits=["5 per minute"],
        storage_uri="redis://127.0.0.1:1",  # nothing listens there
        storage_options={"socket_connect_timeout": 0.5},
        in_memory_fallback_enabled=True,
    )
    assert limits_compat.storage_dead(limiter) is False
    assert app.test_client().get("/").status_code == 200
    assert limits_compat.storage_dead(limiter) is True


def test_flask_login_keeps_the_user_id_under_the_session_key_the_limiter_and_the_read_ahead_read():
    app = Flask(__name__)
    app.secret_key = "x" * 32
    manager = LoginManager(app)

    class User(UserMixin):
        id = "7"

    manager.user_loader(lambda user_id: User())
    with app.test_request_context():
        from flask import session

        login_user(User())
        assert app_compat.session_user_id(session) == "7"


# --- Flask-WTF --------------------------------------------------------------------------------------


def test_flask_wtf_keeps_the_signed_and_raw_csrf_tokens_where_sipup_reads_them_and_answers_a_token_set_before():
    app = Flask(__name__)
    app.secret_key = "x" * 32
    CSRFProtect(app)
    with app.test_request_context():
        from flask import session

        assert app_compat.csrf_tokens(app.config, session) == (None, None)
        signed = generate_csrf()
        kept, raw = app_compat.csrf_tokens(app.config, session)
        assert kept == signed and raw and session["csrf_token"] == raw
        validate_csrf(signed)
    with app.test_request_context():
        from flask import session

        session["csrf_token"] = raw
        app_compat.use_signed_csrf(app.config, signed)
        assert generate_csrf() == signed  # not signed again
        validate_csrf(signed)


# --- SQLAlchemy -------------------------------------------------------------------------------------


def test_the_measured_pool_counts_a_checkout_that_waited():
    waits = []

    class Pool(metrics_compat.WaitTimingQueuePool):
        on_wait = staticmethod(waits.append)

    pool = Pool(lambda: sqlite3.connect(":memory:", check_same_thread=False), pool_size=1, max_overflow=0, timeout=10)
    assert metrics_compat.max_overflow(pool) == 0
    held = pool.connect()
    got = []
    waiter = threading.Thread(target=lambda: got.append(pool.connect()))
    waiter.start()
    while pool.checkedout() < 1 or not waiter.is_alive():
        time.sleep(0.001)
    time.sleep(0.05)  # let the waiter reach the wait: it is counted however short the wait was
    held.close()
    waiter.join(10)
    assert len(got) == 1 and len(waits) == 1
    got[0].close()
    assert metrics_compat.max_overflow(QueuePool(lambda: None, pool_size=1, max_overflow=3)) == 3


# --- Flask-Login ------------------------------------------------------------------------------------


def test_an_anonymous_user_set_in_g_is_current_user_without_the_loader():
    app = Flask(__name__)
    app.secret_key = "x" * 32
    manager = LoginManager(app)

    def loader(user_id):
        pytest.fail("the user loader must not be asked")

    manager.user_loader(loader)
    with app.test_request_context(headers={"Cookie": "session=whatever"}):
        app_compat.answer_as_anonymous(AnonymousUserMixin())
        assert current_user.is_anonymous and "_login_user" in g


def test_the_one_trip_hits_count_as_limits_own_sliding_window_does(redis_namespace):
    """Hits sent in one pipeline land in the keys and windows limits' own strategy reads and writes."""
    from limits import parse
    from limits.storage import RedisStorage
    from limits.strategies import SlidingWindowCounterRateLimiter

    from tests.conftest import REDIS_URL

    storage = RedisStorage(REDIS_URL, key_prefix=f"{redis_namespace}:limits")
    strategy = SlidingWindowCounterRateLimiter(storage)
    address, user = parse("3 per minute"), parse("2 per minute")
    plan = [(address, ["10.0.0.1", "address"]), (user, ["user:7", "user"])]
    app = Flask(__name__)

    class FlaskLimiterLike:
        _limiter = strategy

    wrapper = FlaskLimiterLike()
    assert limits_compat.count_in_one_trip(wrapper, lambda: plan)
    one_trip = wrapper._limiter
    answers = []
    for _ in range(3):
        with app.test_request_context():
            answers.append([one_trip.hit(item, *args) for item, args in plan])
    assert answers == [[True, True], [True, True], [True, False]]
    # limits' own strategy sees the same counts: the address has no hit left, the user's window is full.
    assert strategy.get_window_stats(address, "10.0.0.1", "address").remaining == 0
    assert not strategy.test(user, "user:7", "user")
    assert strategy.hit(address, "10.0.0.2", "address")  # another address is untouched


def test_pypdf_adds_an_indirect_object_the_output_intent_can_refer_to():
    from pypdf import PdfWriter
    from pypdf.generic import IndirectObject, StreamObject

    from sipup.services.compat import add_indirect

    writer = PdfWriter()
    stream = StreamObject()
    stream.set_data(b"icc")
    reference = add_indirect(writer, stream)
    assert isinstance(reference, IndirectObject) and reference.get_object().get_data() == b"icc"


def test_pymysql_takes_a_new_read_timeout_before_the_next_read():
    """set_read_timeout: PyMySQL keeps the read timeout in _read_timeout and applies it before every read."""
    import inspect

    import pymysql

    connection = pymysql.connections.Connection(defer_connect=True, read_timeout=2)
    app_compat.set_read_timeout(connection, 7)
    assert connection._read_timeout == 7
    assert "self._sock.settimeout(self._read_timeout)" in inspect.getsource(pymysql.connections.Connection._read_bytes)
