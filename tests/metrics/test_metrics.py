"""Shared counters: added up across app instances (processes) in SQLite and Redis, kept while Redis is down;
maxima and descriptions alike in both stores; the end of a burst flushed by a timer."""

import time

import pytest

import sipup.metrics.counters as counters_module
from sipup import create_app
from sipup.metrics.counter_stores import DESCRIPTION_SECONDS, RESOLUTIONS, RedisCounterStore, SqliteCounterStore
from sipup.metrics.counters import Counters, bucket_start
from tests.conftest import REDIS_URL


def _app(tmp_path, **config):
    return create_app(
        {"DATABASE_URL": f"sqlite:///{tmp_path / 'sipup.db'}", "SECRET_KEY": "test-secret", **config},
        instance_path=str(tmp_path),
    )


def _two_writers_one_reader(apps):
    writer_a, writer_b, reader = (app.extensions["counters"] for app in apps)
    for _ in range(3):
        writer_a.incr("demo", "hit")
    writer_b.incr("demo", "hit", 4)
    writer_b.incr("demo", "miss")
    writer_a.flush()
    writer_b.flush()
    assert reader.totals("demo", "minute", 5) == {"hit": 7, "miss": 1}
    assert reader.totals("demo", "hour", 1) == {"hit": 7, "miss": 1}
    assert reader.totals("other", "minute", 5) == {}


def test_processes_add_up_in_the_embedded_store(tmp_path):
    apps = [_app(tmp_path) for _ in range(3)]
    _two_writers_one_reader(apps)
    assert apps[2].extensions["counters"].status() == {"store": "sqlite", "store_error": None}


def test_processes_add_up_in_redis(tmp_path, redis_namespace):
    apps = [_app(tmp_path, REDIS_URL=REDIS_URL, REDIS_NAMESPACE=redis_namespace) for _ in range(3)]
    _two_writers_one_reader(apps)
    assert apps[2].extensions["counters"].status() == {"store": "redis", "store_error": None}


def test_series_has_every_bucket_oldest_first(tmp_path):
    counters = _app(tmp_path).extensions["counters"]
    now = time.time()
    counters.incr("demo", "hit", 2, now=now - 120)
    counters.incr("demo", "hit", 5, now=now)
    series = counters.series("demo", "minute", 5, now=now)
    assert [start for start, _ in series] == [bucket_start(now, "minute") - 60 * i for i in (4, 3, 2, 1, 0)]
    assert [values.get("hit", 0) for _, values in series] == [0, 0, 2, 0, 5]


def test_counts_survive_a_redis_outage(tmp_path, local_redis):
    counters = _app(tmp_path, REDIS_URL=local_redis.url, REDIS_NAMESPACE="t").extensions["counters"]
    counters.incr("demo", "hit", 2)
    local_redis.stop()
    counters.incr("demo", "hit", 3)
    counters.flush()
    assert counters.status()["store_error"]
    assert counters.totals("demo") == {"hit": 5}  # held in memory meanwhile
    local_redis.start()
    counters.flush()
    assert counters.status()["store_error"] is None
    assert counters.totals("demo") == {"hit": 5}
    assert counters.store.read("demo", "minute", [bucket_start(time.time(), "minute")])  # really in Redis


def test_old_buckets_are_dropped_from_the_embedded_store(tmp_path):
    counters = _app(tmp_path).extensions["counters"]
    seconds, kept = RESOLUTIONS["minute"]
    old = time.time() - seconds * (kept + 5)
    counters.incr("demo", "hit", now=old)
    counters.flush()
    assert counters.store.read("demo", "minute", [bucket_start(old, "minute")]) == {}


def _mark_cycle(counters):
    assert counters.mark("incident", False) is None  # nothing held
    since = counters.mark("incident", True, now=1000.0)
    assert since == 1000.0
    assert counters.mark("incident", True, now=2000.0) == 1000.0  # still the first time
    assert counters.mark("incident", False) == 1000.0  # ended: says since when it had held
    assert counters.mark("incident", False) is None
    assert counters.mark("incident", True, now=3000.0) == 3000.0  # a new one


def test_marks_in_the_embedded_store(tmp_path):
    _mark_cycle(_app(tmp_path).extensions["counters"])


def test_marks_in_redis(tmp_path, redis_namespace):
    _mark_cycle(_app(tmp_path, REDIS_URL=REDIS_URL, REDIS_NAMESPACE=redis_namespace).extensions["counters"])


# --- maxima and descriptions -----------------------------------------------------------------------------


@pytest.fixture(params=["sqlite", "redis"])
def store(request, tmp_path):
    """Each counters store on its own file or namespace."""
    if request.param == "sqlite":
        yield SqliteCounterStore(str(tmp_path / "metrics.db"))
        return
    store = RedisCounterStore(REDIS_URL, request.getfixturevalue("redis_namespace"))
    yield store
    store.close()


def test_maxima_and_descriptions_agree_in_both_stores(store):
    now = bucket_start(time.time(), "minute") + 30  # one minute for the whole test
    minute, earlier, hour = bucket_start(now, "minute"), bucket_start(now, "minute") - 60, bucket_start(now, "hour")
    writer = Counters(store)
    writer.add_buckets(
        "demo",
        {("minute", minute): {"a|n": 2}, ("hour", hour): {"a|n": 2}},
        maxima={("minute", minute): {"a|u": 40, "b|u": 7.5}, ("minute", earlier): {"a|u": 90}},
    )
    writer.describe("demo", {"a": "SELECT a", "b": "SELECT b"})
    writer.flush()
    other = Counters(store)  # another process: a smaller maximum keeps the larger one, a larger one wins
    other.add_buckets("demo", {}, maxima={("minute", minute): {"a|u": 30, "b|u": 12}, ("hour", hour): {"a|u": 3}})
    other.describe("demo", {"b": "SELECT b FROM t"})
    other.flush()

    reader = Counters(store)  # nothing pending: all of it from the store
    assert reader.maxima("demo", "minute", 1, now=now) == {"a|u": 40, "b|u": 12}
    assert reader.maxima("demo", "minute", 2, now=now) == {"a|u": 90, "b|u": 12}
    assert reader.maxima("demo", "hour", 1, now=now) == {"a|u": 3}
    assert reader.totals("demo", "minute", 2, now=now) == {"a|n": 2}
    assert reader.descriptions("demo") == {"a": "SELECT a", "b": "SELECT b FROM t"}
    assert reader.maxima("other", "minute", 2, now=now) == {} and reader.descriptions("other") == {}
    assert reader.status()["store_error"] is None


def test_maxima_and_descriptions_expire(store):
    counters = Counters(store)
    seconds, kept = RESOLUTIONS["minute"]
    old = time.time() - seconds * (kept + 5)
    counters.add_buckets("demo", {}, maxima={("minute", bucket_start(old, "minute")): {"a|u": 5}})
    counters.describe("demo", {"a": "SELECT a"})
    counters.flush()
    if isinstance(store, RedisCounterStore):  # Redis expires them by itself
        maxima_key = f"{store._key('demo', 'minute', bucket_start(old, 'minute'))}:max"
        assert 0 < store.client.ttl(maxima_key) <= seconds * kept
        assert 0 < store.client.ttl(store._descriptions_key("demo")) <= DESCRIPTION_SECONDS
        return
    assert store.read_maxima("demo", "minute", [bucket_start(old, "minute")]) == {}  # pruned as it was written
    assert store.read_descriptions("demo") == {"a": "SELECT a"}
    assert store.prune(now=time.time() + DESCRIPTION_SECONDS + 1) >= 1
    assert store.read_descriptions("demo") == {}


def test_maxima_and_descriptions_survive_a_redis_outage(tmp_path, local_redis):
    counters = _app(tmp_path, REDIS_URL=local_redis.url, REDIS_NAMESPACE="t").extensions["counters"]
    start = bucket_start(time.time(), "minute")
    local_redis.stop()
    counters.add_buckets("demo", {("minute", start): {"a|n": 1}}, maxima={("minute", start): {"a|u": 8}})
    counters.describe("demo", {"a": "SELECT a"})
    counters.flush()
    assert counters.status()["store_error"]
    assert counters.maxima("demo", "minute", 2) == {"a|u": 8}  # held in memory meanwhile
    assert counters.descriptions("demo") == {"a": "SELECT a"}
    local_redis.start()
    counters.flush()
    assert counters.status()["store_error"] is None
    assert counters.store.read_maxima("demo", "minute", [start]) == {"a|u": 8}  # really in Redis
    assert counters.store.read_descriptions("demo") == {"a": "SELECT a"}


def test_the_end_of_a_burst_is_flushed_by_a_timer(tmp_path, monkeypatch):
    monkeypatch.setattr(counters_module, "FLUSH_SECONDS", 0.5)
    counters = _app(tmp_path).extensions["counters"]
    counters.flush()
    counters.incr("demo", "hit", 3)  # no later count, read or flush comes to write it
    start = bucket_start(time.time(), "minute")
    deadline = time.monotonic() + 10
    while not counters.store.read("demo", "minute", [start]) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert counters.store.read("demo", "minute", [start]) == {start: {"hit": 3}}


def test_closed_counters_write_what_was_pending_once_and_nothing_later(tmp_path, monkeypatch):
    monkeypatch.setattr(counters_module, "FLUSH_SECONDS", 0.2)
    counters = _app(tmp_path).extensions["counters"]
    counters.flush()
    counters.incr("demo", "hit", 3)  # a flush timer is armed
    counters.close()
    start = bucket_start(time.time(), "minute")
    assert counters.store.read("demo", "minute", [start]) == {start: {"hit": 3}}
    assert counters not in counters_module._LIVE  # nothing is written at exit either
    counters.incr("demo", "hit", 4)  # a count after closing arms no timer, and no read or flush writes it
    counters.flush()
    counters.close()
    time.sleep(0.5)
    assert counters.timer is None
    assert counters.store.read("demo", "minute", [start]) == {start: {"hit": 3}}
