"""Which cache store SIPUP_CACHE_URL names, built as a Flask-Caching backend with short socket timeouts.

redis://host:6379/0          Redis (RedisCache), keys under "<REDIS_NAMESPACE>:cache:"
redis+sentinel://h:26379/M/0  the primary of Redis Sentinel's master M (sipup.redisclient), the same keys
memcached://host:11211[,h2]  Memcached through pymemcache (cachelib's own client list lacks it)
file:///var/cache/sipup      a folder (FolderCache: FileSystemCache that keeps tokens); a plain absolute path works too
memory://                    this process only (SimpleCache)
none://                      no caching (to measure what the cache saves, or to rule it out)
unset                        Redis when SIPUP_REDIS_URL is set, else a folder in instance/
"""

import os
import pickle
import secrets
import threading
import time
from urllib.parse import urlsplit

from cachelib.redis import RedisCache
from flask_caching import Cache
from flask_caching.backends import FileSystemCache
from flask_caching.backends.base import BaseCache
from pymemcache.client.base import PooledClient
from pymemcache.client.hash import HashClient
from pymemcache.serde import pickle_serde
from redis.backoff import NoBackoff
from redis.retry import Retry

from sipup import redisclient
from sipup.cache import compat
from sipup.config import ConfigError, parse_sentinel_url
from sipup.files import FILE_MODE, private_folder

# What a failing store raises. cachelib's folder store logs and returns False instead (see writes_ok).
try:
    from redis.exceptions import RedisError
except ImportError:  # pragma: no cover - redis is in requirements.txt
    RedisError = OSError
try:
    from pymemcache.exceptions import MemcacheError
except ImportError:  # pragma: no cover - pymemcache is in requirements.txt
    MemcacheError = OSError

STORE_ERRORS = (RedisError, MemcacheError, OSError, EOFError, pickle.UnpicklingError)


def describe(app):
    """(kind, where, config for Flask-Caching) from SIPUP_CACHE_URL, or a ConfigError naming it."""
    config = app.config
    url = config["CACHE_URL"] or config["REDIS_URL"]
    timeout = config["CACHE_TIMEOUT_MS"] / 1000
    prefix = f"{config['REDIS_NAMESPACE']}:cache:"
    if not url:
        folder = os.path.join(app.instance_path, "cache")
        return "filesystem", folder, _filesystem(folder)
    scheme = urlsplit(url).scheme.lower() if "://" in url else ""
    if scheme in ("redis", "rediss", "unix", redisclient.SENTINEL_SCHEME):
        if scheme == redisclient.SENTINEL_SCHEME and config["CACHE_URL"]:
            _check_sentinel_url(url)
        # No retries inside redis-py: the circuit breaker decides when to try again.
        client = redisclient.connect(url, timeout, retry=Retry(NoBackoff(), 0), health_check_interval=30)
        return (
            "redis",
            _hide_password(url),
            {"CACHE_TYPE": "RedisCache", "CACHE_REDIS_HOST": client, "CACHE_KEY_PREFIX": prefix},
        )
    if scheme == "memcached":
        servers = _memcached_servers(url)
        return (
            "memcached",
            ",".join(f"{h}:{p}" for h, p in servers),
            {
                "CACHE_TYPE": "sipup.cache.drivers.PymemcacheCache",
                "CACHE_KEY_PREFIX": prefix,
                "CACHE_MEMCACHED_SERVERS": servers,
                "CACHE_OPTIONS": {"timeout": timeout},
            },
        )
    if scheme == "file" or (not scheme and os.path.isabs(url)):
        folder = urlsplit(url).path if scheme else url
        _check_own_folder(app, url, folder)
        return "filesystem", folder, _filesystem(folder)
    if scheme == "none":
        return "none", "caching switched off", {"CACHE_TYPE": "NullCache"}
    if scheme in ("memory", "simple"):
        return "memory", "this process", {"CACHE_TYPE": "SimpleCache", "CACHE_THRESHOLD": 20_000}
    raise ConfigError(
        f"SIPUP_CACHE_URL={url!r} is not a cache sipup knows; use redis://host:6379/0 (or redis+sentinel://), "
        "memcached://host:11211, file:///path/to/folder (or an absolute path), or memory://."
    )


def _check_own_folder(app, url, folder):
    """Clearing and purging delete every file in the cache folder: it must not hold sipup's own files."""
    folder = os.path.realpath(folder)
    instance = os.path.realpath(app.instance_path)
    if instance == folder or instance.startswith(folder.rstrip(os.sep) + os.sep):
        raise ConfigError(
            f"SIPUP_CACHE_URL={url!r} is, or holds, the instance folder {instance}: clearing the cache deletes "
            "every file in its folder. Give the cache a folder of its own, e.g. file:///var/cache/sipup."
        )


def _filesystem(folder):
    # cachelib prunes the folder beyond this many files, so a busy site cannot fill the disk.
    return {"CACHE_TYPE": "sipup.cache.drivers.FolderCache", "CACHE_DIR": folder, "CACHE_THRESHOLD": 50_000}


def _check_sentinel_url(url):
    try:
        parse_sentinel_url(url)
    except ValueError as exc:
        raise ConfigError(f"SIPUP_CACHE_URL={_hide_password(url)!r} {exc}.") from None


def _hide_password(url):
    if redisclient.is_sentinel(url):
        password = parse_sentinel_url(url).password
        return url.replace(f":{password}@", ":***@", 1) if password else url
    parts = urlsplit(url)
    if parts.password:
        return url.replace(f":{parts.password}@", ":***@", 1)
    return url


def _memcached_servers(url):
    servers = []
    for item in url.split("://", 1)[1].strip("/").split(","):
        host, _, port = item.strip().rpartition(":")
        if not host or not port.isdigit():
            raise ConfigError(
                f"SIPUP_CACHE_URL={url!r}: write each Memcached server as host:port, e.g. memcached://127.0.0.1:11211."
            )
        servers.append((host, int(port)))
    return servers


def build(app, settings):
    """The backend of a Flask-Caching Cache bound to app with these settings."""
    cache = Cache()
    cache.init_app(app, config={"CACHE_DEFAULT_TIMEOUT": 300, "CACHE_NO_NULL_WARNING": True, **settings})
    return app.extensions["cache"][cache]  # not cache.cache: that follows whichever app is current


GEN = "gen:"  # the cache layer's generation tokens
CLOCK = "gens-clock"  # renewed whenever any process writes a generation token
KEPT = 2_000  # tokens, and values, kept in memory by a folder store


class FolderCache(FileSystemCache):
    """cachelib's folder store that keeps what it read in this process while it is still right.

    A page reads a dozen generation tokens and a few values; from files that is an open each, and under
    waitress each open lets go of the interpreter lock and waits to get it back. Here:
    - tokens ("gen:..."): every write of one also renews one clock file; while the clock is as it was, the
      tokens read before are still those in the files. The clock is read before the tokens, so a token
      written meanwhile renews it again and the next read fetches the tokens anew.
    - values the cache layer stored ({"g": tokens, "e": expires, "v": ...}), read with tokens: kept, pickled
      (each read gets a copy of its own), until they expire or the clock moves (then another process may
      have stored a newer one). The layer checks their tokens on every read besides.
    """

    def __init__(self, cache_dir, *args, **kwargs):
        self.kept_lock = threading.Lock()  # before cachelib's set-up, which writes its file count
        self.adding = threading.Lock()
        self.gens, self.gens_clock, self.values = {}, None, {}
        private_folder(cache_dir)  # cachelib would make it with the umask's mode; its files are FILE_MODE
        super().__init__(cache_dir, *args, mode=FILE_MODE, **kwargs)

    def get_many(self, *keys):
        if not any(key.startswith(GEN) for key in keys):
            return super().get_many(*keys)
        clock, now = self.get(CLOCK), time.time()  # None (cleared, pruned): nothing is kept until a token is written
        with self.kept_lock:
            if clock is None or clock != self.gens_clock:  # a token was written: values may be outdated too
                self.gens, self.gens_clock, self.values = {}, clock, {}
            gens, values = self.gens, self.values
        answers, read_gens, read_values = [], {}, {}
        for key in keys:
            if key in gens:
                answers.append(gens[key])
                continue
            kept = values.get(key)
            if kept is not None and kept[0] > now:
                answers.append(pickle.loads(kept[1]))  # a copy of its own, as from the file
                continue
            value = self.get(key)
            answers.append(value)
            if clock is None:
                continue
            if key.startswith(GEN):
                if value is not None:
                    read_gens[key] = value
            elif _is_layer_value(value):
                read_values[key] = _keepable(value)
        if read_gens or read_values:
            with self.kept_lock:
                if self.gens_clock == clock:
                    _bounded(self.gens).update(read_gens)
                    _bounded(self.values).update(read_values)
        return answers

    def add(self, key, value, timeout=None):
        """cachelib's add (is it there? if not, write it) under a lock: threads that find a generation token
        missing at once would each write one of their own, and then hold different tokens."""
        with self.adding:
            return super().add(key, value, timeout=timeout)

    def set(self, key, value, timeout=None, mgmt_element=False):
        stored = super().set(key, value, timeout=timeout, mgmt_element=mgmt_element)
        self._wrote(key, value if stored and _is_layer_value(value) else None)
        return stored

    def delete(self, key, mgmt_element=False):
        deleted = super().delete(key, mgmt_element=mgmt_element)
        self._wrote(key, None)
        return deleted

    def clear(self):
        cleared = super().clear()
        with self.kept_lock:
            self.gens, self.gens_clock, self.values = {}, None, {}
        return cleared

    def _wrote(self, key, value):
        if key.startswith(GEN):
            super().set(CLOCK, secrets.token_hex(8), timeout=0)
            return
        with self.kept_lock:
            if value is None:
                self.values.pop(key, None)
            else:
                _bounded(self.values)[key] = _keepable(value)


def _keepable(value):
    return value["e"], pickle.dumps(value, pickle.HIGHEST_PROTOCOL)


def _is_layer_value(value):
    return isinstance(value, dict) and "g" in value and isinstance(value.get("e"), float)


def _bounded(kept):
    if len(kept) >= KEPT:
        kept.clear()
    return kept


class UnusableFolder:
    """Stands in for a folder store whose folder could not be made; every use raises until rebuild() works."""

    def __init__(self, folder, error):
        self.folder, self.error = folder, error

    def rebuild(self):
        return FolderCache(self.folder, threshold=_filesystem(self.folder)["CACHE_THRESHOLD"])

    def __getattr__(self, name):
        def unusable(*_args, **_kwargs):
            raise OSError(f"cache folder {self.folder} cannot be used: {self.error}")

        return unusable


def close(store):
    """Let go of the store's connections (an app that is discarded, e.g. in tests)."""
    if isinstance(store, RedisCache):
        compat.close_redis(store)
    elif isinstance(store, PymemcacheCache):
        store.close()


def writes_ok(result):
    """cachelib's folder store answers False instead of raising when the disk is full or read-only."""
    return result is not False


class PymemcacheCache(BaseCache):
    """A Flask-Caching backend on pymemcache: pooled, thread-safe, with short timeouts, values pickled."""

    def __init__(self, servers, default_timeout=300, key_prefix="", timeout=0.25, **_ignored):
        super().__init__(default_timeout)
        self.key_prefix = key_prefix
        common = dict(serde=pickle_serde, connect_timeout=timeout, timeout=timeout, default_noreply=False)
        if len(servers) == 1:
            self.client = PooledClient(servers[0], max_pool_size=64, **common)
        else:
            self.client = HashClient(servers, use_pooling=True, retry_attempts=0, dead_timeout=5, **common)

    @classmethod
    def factory(cls, app, config, args, kwargs):
        return cls(config["CACHE_MEMCACHED_SERVERS"], key_prefix=config.get("CACHE_KEY_PREFIX", ""), **kwargs)

    def _key(self, key):
        return self.key_prefix + key

    def _expire(self, timeout):
        timeout = self._normalize_timeout(timeout)
        return max(int(timeout), 0)

    def get(self, key):
        return self.client.get(self._key(key))

    def get_many(self, *keys):
        found = self.client.get_many([self._key(k) for k in keys])
        return [found.get(self._key(k)) for k in keys]

    def set(self, key, value, timeout=None):
        return bool(self.client.set(self._key(key), value, expire=self._expire(timeout)))

    def set_many(self, mapping, timeout=None):
        failed = self.client.set_many({self._key(k): v for k, v in mapping.items()}, expire=self._expire(timeout))
        return [k for k in mapping if self._key(k) not in set(failed)]

    def add(self, key, value, timeout=None):
        return bool(self.client.add(self._key(key), value, expire=self._expire(timeout)))

    def delete(self, key):
        self.client.delete(self._key(key))
        return True

    def has(self, key):
        return self.get(key) is not None

    def close(self):
        self.client.close()

    def clear(self):
        # flush_all would empty a Memcached other sites may share: the caller bumps generations instead.
        return False
