"""The cache layer: cached reads that are never stale, a fallback when the cache server fails, statistics.

Reads go through `cached()` (one value) or `cached_many()` (many keys in one round trip); `prefetch()`
reads ahead what a request's coming cached() calls need, in one round trip for all. Each cached
value is stored with the generation tokens of what it was computed from ("catalog", "prices:3",
"orders:12", ...), and the tokens are read in the same round trip as the value: a value whose tokens
changed is not served. Writes change tokens after their transaction commits (`touch()` and the
session hooks of sipup.cache.invalidation), so every process and host sees a change at once. Values are plain data.

When the store errors or times out, the circuit opens: for CACHE_RETRY_SECONDS requests do not wait
on it but use this process's fallback (results kept for CACHE_FALLBACK_TTL seconds; 0 computes them,
the only setting that stays exact when several processes serve the site). Then one request tries the
store again; when it answers, every generation is renewed (writes made meanwhile never reached it).

A missing or stale hot key is recomputed once: threads of one process share one computation, and
processes on Redis or Memcached take a short lock in the store; the others wait briefly, or get the
previous value when it only expired (no write since). `cache_status()` is what /monitor shows.
"""

import hashlib
import logging
import threading
import time
from functools import lru_cache

from flask import current_app, has_request_context, request
from flask_caching.backends import SimpleCache

from sipup.cache import compat
from sipup.cache import drivers as cache_drivers
from sipup.cache.breaker import Breaker, StoreFailed, new_token
from sipup.cache.drivers import STORE_ERRORS
from sipup.cache.reads import PREFETCHED, Reads
from sipup.cache.single_flight import SingleFlight

log = logging.getLogger("sipup.cache")

TYPES = ("products", "prices", "users", "orders", "dashboard")
EVENTS = ("hit", "miss", "set", "error", "fallback", "stale", "wait")
# Part of every key: raise it when a cached value changes shape, so a deploy never reads the old shape.
FORMAT = 2


class CacheLayer(Reads, SingleFlight, Breaker):
    """The configured store behind a circuit breaker, a per-process fallback, and per-type counts.

    Its parts are in their own modules: reads (reads), single flight (single_flight), the breaker (breaker).
    """

    def __init__(self, app, kind, where, store):
        config = app.config
        self.kind, self.where, self.primary = kind, where, store
        self.local = SimpleCache(threshold=5000, default_timeout=0)
        self.ttls = {name: config[f"CACHE_TTL_{name.upper()}"] for name in TYPES}
        self.retry_seconds = config["CACHE_RETRY_SECONDS"]
        self.fallback_ttl = config["CACHE_FALLBACK_TTL"]
        self.counters = app.extensions["counters"]
        self.lock = threading.Lock()
        self.flights = {}
        self.landed = {}  # key -> when its last computation in this process ended (time.monotonic())
        self.down_since = None  # Unix time the store failed; None while it serves
        self.retry_at = 0.0  # monotonic time of the next attempt while down
        self.last_error = None

    # --- writes --------------------------------------------------------------------------------

    def bump(self, names):
        """New tokens for these generations, here and in the shared store: what depended on them is recomputed."""
        mapping = {f"gen:{name}": new_token() for name in names}
        self.local.set_many(mapping, timeout=0)
        if has_request_context():
            request.environ.pop(PREFETCHED, None)  # read with the tokens as they were
        if self.kind == "none":
            return True
        if not self._primary_usable():
            return False  # renewed wholesale when the store answers again
        try:
            stored = self.primary.set_many(mapping, timeout=0)
        except STORE_ERRORS as exc:
            self._failed(None, exc)
            return False
        if len(stored or ()) != len(mapping):
            self._failed(None, StoreFailed("the cache refused to store generation tokens"))
            return False
        return True

    def clear(self, type_=None):
        """Make every cached value (or those of one type) stale; True when the shared store took it."""
        if type_:
            return self.bump([f"type:{type_}"])
        self.local.clear()
        if self.kind != "memcached" and self._primary_usable():
            try:
                self.primary.clear()  # only our own keys: Redis by prefix, the folder, this process
            except STORE_ERRORS as exc:
                self._failed(None, exc)
        return self.bump(["epoch"])

    # --- keys, counts, status --------------------------------------------------------------------

    @staticmethod
    def _key(type_, name, args):
        return _key_of(type_, name, repr(args))  # repr, not args: 1, 1.0 and True are equal keys of a dict

    @staticmethod
    def _gens(type_, depends):
        return [f"gen:{name}" for name in ("epoch", f"type:{type_}", *depends)]

    def _count(self, type_, event_, amount=1):
        if amount:
            self.counters.incr("cache", f"{type_}.{event_}", amount)

    def purge_expired(self, now=None):
        """Delete the expired files of a folder cache (the hourly cleanup job); how many, or None elsewhere."""
        store = self.primary
        if self.kind != "filesystem" or isinstance(store, cache_drivers.UnusableFolder):
            return None  # Redis and Memcached expire entries themselves
        return compat.remove_expired_files(store, time.time() if now is None else now)

    def status(self):
        """Driver, primary or degraded since when, the last error, hit rates now and over the last hour."""
        now = hit_rate(self.counters.totals("cache", "minute", 5))
        hour = hit_rate(self.counters.totals("cache", "minute", 60))
        since = self.down_since
        return {
            "driver": self.kind,
            "where": self.where,
            "state": "primary" if since is None else "degraded",
            "degraded_since": since,
            "last_error": self.last_error,
            "fallback_ttl": self.fallback_ttl,
            "hit_rate_5min": now,
            "hit_rate_hour": hour,
        }


@lru_cache(maxsize=16_384)
def _key_of(type_, name, shown_args):
    """The store's key of an entry whose arguments read as shown_args, worked out once (a hash per read was a
    percent of a page)."""
    return f"{type_}:{name}:v{FORMAT}:{hashlib.sha1(shown_args.encode()).hexdigest()[:24]}"


def hit_rate(totals):
    hits = sum(v for k, v in totals.items() if k.endswith(".hit"))
    reads = hits + sum(v for k, v in totals.items() if k.endswith(".miss"))
    return round(hits / reads, 4) if reads else None


# --- the API services use ---------------------------------------------------------------------------


def layer():
    return current_app.extensions["sipup_cache"]


def purge_expired():
    """Delete the expired files of a folder cache (the hourly cleanup job); how many, or None for stores
    that expire entries themselves."""
    return layer().purge_expired()


def cached(type_, name, args, depends, compute):
    """compute() through the cache of the current app (see CacheLayer.cached)."""
    return layer().cached(type_, name, args, depends, compute)


def prefetch(entries):
    """Read ahead, in one round trip, what this request's cached() calls will ask for (see CacheLayer.prefetch)."""
    layer().prefetch(entries)


def prefetch_riding(entries, client):
    """prefetch() sent through another Redis client's round trip (see CacheLayer.prefetch_riding)."""
    return layer().prefetch_riding(entries, client)


def cached_many(type_, name, ids, depends, compute_many):
    """Many values in one round trip (see CacheLayer.cached_many)."""
    return layer().cached_many(type_, name, ids, depends, compute_many)


def cache_status():
    """What /monitor and `flask cache stats` show about the cache (see CacheLayer.status)."""
    return layer().status()


# --- set-up and command line -------------------------------------------------------------------------


def register_cache(app):
    """Build the store SIPUP_CACHE_URL names (Flask-Caching) behind the fallback layer."""
    kind, where, settings = cache_drivers.describe(app)
    try:
        store = cache_drivers.build(app, settings)
    except OSError as exc:  # a cache folder that cannot be created: serve without it, say so, try again later
        store = cache_drivers.UnusableFolder(where, exc)
    cache = CacheLayer(app, kind, where, store)
    if isinstance(store, cache_drivers.UnusableFolder):
        cache._failed(None, store.error)
    app.extensions["sipup_cache"] = cache
    return cache
