"""Shared counters: added up across app instances (processes) in SQLite and Redis, kept while Redis is down."""

import time

from sipup import create_app
from sipup.observability.counters import RESOLUTIONS, bucket_start
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
