"""The cache layer: cached reads that are never stale, a fallback when the cache server fails, statistics.

Reads go through `cached()` (one value) or `cached_many()` (many keys in one round trip); `prefetch()`
reads ahead what a request's coming cached() calls need, in one round trip for all. Each cached
value is stored with the generation tokens of what it was computed from ("catalog", "prices:3",
"orders:12", ...), and the tokens are read in the same round trip as the value: a value whose tokens
changed is not served. Writes change tokens after their transaction commits (`touch()` and the
session hooks below), so every process and host sees a change at once. Values are plain data.

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
import secrets
import threading
import time
from itertools import chain

from flask import current_app, has_app_context, has_request_context, request
from flask_caching.backends import SimpleCache
from redis import connection as redis_connection
from sqlalchemy import event
from sqlalchemy.orm import Session

from sipup.cache import compat
from sipup.cache import drivers as cache_drivers
from sipup.cache.drivers import STORE_ERRORS, writes_ok
from sipup.extensions import db
from sipup.replicas import on_primary

log = logging.getLogger("sipup.cache")

TYPES = ("products", "prices", "users", "orders", "dashboard")
EVENTS = ("hit", "miss", "set", "error", "fallback", "stale", "wait")
GRACE = 2  # values are kept this many lifetimes, so an expired hot key still has a previous value
LOCK_SECONDS = 10  # a recomputing process that dies frees its key after this long
WAIT_SECONDS = 2.0  # how long others wait for a recomputed value before computing it themselves
POLL_SECONDS = 0.01
LANDED_KEPT = 10_000  # keys whose last computation time is kept, to tell a thread that missed it
TOUCHES = "sipup_cache_touches"
PREFETCHED = "sipup.cache.prefetched"  # in the WSGI environ: what prefetch() read, for this request only
# Part of every key: raise it when a cached value changes shape, so a deploy never reads the old shape.
FORMAT = 1


class StoreFailed(Exception):
    """The cache store raised, timed out, or refused a write."""


class Plain(dict):
    """A dict whose keys also read as attributes, so templates and price rules use it like a model."""

    __slots__ = ()

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


class PageOf:
    """One page of plain rows with what the pager macro reads; a picklable stand-in for Pagination."""

    def __init__(self, items, total, page, per_page):
        self.items, self.total, self.page, self.per_page = items, total, page, per_page

    @property
    def pages(self):
        return max(1, -(-self.total // self.per_page)) if self.total else 0

    @property
    def has_prev(self):
        return self.page > 1

    @property
    def has_next(self):
        return self.page < self.pages

    @property
    def prev_num(self):
        return self.page - 1 if self.has_prev else None

    @property
    def next_num(self):
        return self.page + 1 if self.has_next else None

    def converted(self, convert):
        """The same page with each item converted (ORM rows to plain ones, for the cache)."""
        return PageOf([convert(item) for item in self.items], self.total, self.page, self.per_page)

    @classmethod
    def of(cls, pagination, convert):
        return cls(
            [convert(item) for item in pagination.items], pagination.total or 0, pagination.page, pagination.per_page
        )


_MISSING = object()


def _token():
    return secrets.token_hex(8)


def _valid(payload, tokens):
    return isinstance(payload, dict) and payload.get("g") == tokens


class _Flight:
    def __init__(self):
        self.done = threading.Event()
        self.value = self.error = None


class CacheLayer:
    """The configured store behind a circuit breaker, a per-process fallback, and per-type counts."""

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

    # --- reads -------------------------------------------------------------------------------

    def cached(self, type_, name, args, depends, compute):
        """compute() through the cache, as fresh as the generations in `depends`."""
        if self.kind == "none":
            self._count(type_, "miss")
            return compute()
        key, gens = self._key(type_, name, args), self._gens(type_, depends)
        ttl = self.ttls[type_]
        if self._primary_usable():
            try:
                return self._read(self.primary, type_, key, gens, compute, ttl)
            except StoreFailed as exc:
                self._failed(type_, exc)
        self._count(type_, "fallback")
        if self.fallback_ttl <= 0:
            value, led = self._single_flight(key, compute)
            self._count(type_, "miss" if led else "hit")
            return value
        return self._read(self.local, type_, key, gens, compute, min(ttl, self.fallback_ttl))

    def cached_many(self, type_, name, ids, depends, compute_many):
        """{id: value} for many ids in one round trip; compute_many(missing ids) -> {id: value} fills the rest."""
        ids = list(dict.fromkeys(ids))
        if not ids:
            return {}
        if self.kind == "none":
            self._count(type_, "miss", len(ids))
            return compute_many(ids)
        keys = {i: self._key(type_, name, i) for i in ids}
        gens = self._gens(type_, depends)
        ttl = self.ttls[type_]
        if self._primary_usable():
            try:
                return self._read_many(self.primary, type_, keys, gens, compute_many, ttl)
            except StoreFailed as exc:
                self._failed(type_, exc)
        self._count(type_, "fallback", len(ids))
        if self.fallback_ttl <= 0:
            self._count(type_, "miss", len(ids))
            return compute_many(ids)
        return self._read_many(self.local, type_, keys, gens, compute_many, min(ttl, self.fallback_ttl))

    def prefetch(self, entries):
        """Read what several cached() calls of this request will ask for, in one round trip: entries are
        (type, name, args, depends) as they will pass them. Each call then takes its value and tokens from
        here instead of asking the store; a write in this request (bump) drops what was read."""
        if self.kind == "none" or not has_request_context() or not entries or not self._primary_usable():
            return
        wanted, names = self._wanted(entries)
        try:
            values = dict(zip(names, self._call(self.primary.get_many, *names)))
        except StoreFailed as exc:
            self._failed(None, exc)
            return
        self._keep_prefetched(wanted, values)

    def prefetch_riding(self, entries, client):
        """prefetch() as a read another user of the same Redis server sends in its own round trip (the rate
        limits' pipeline): (the Redis keys to MGET through `client`, a function to give the raw values to), or
        None when this cache is not on that server (another Redis, Sentinel, memcached, a folder) or is down."""
        if not (self.kind == "redis" and entries and has_request_context() and self.down_since is None):
            return None
        store = self.primary
        if not self._same_server(getattr(store, "_read_client", None), client):
            return None
        wanted, names = self._wanted(entries)
        prefix = store._get_prefix()  # cachelib's (a key_prefix may be a function)

        def done(raw):
            try:
                values = dict(zip(names, [store.serializer.loads(value) for value in raw]))
            except STORE_ERRORS as exc:
                self._failed(None, StoreFailed(str(exc) or type(exc).__name__))
                return
            self._keep_prefetched(wanted, values)

        return [prefix + name for name in names], done

    def _same_server(self, ours, theirs):
        """Whether two redis-py clients reach the same server and database with the same credentials."""
        if ours is None or theirs is None:
            return False
        if ours is theirs:
            return True
        known = self.__dict__.setdefault("_same_servers", {})
        pair = (id(ours.connection_pool), id(theirs.connection_pool))
        same = known.get(pair)
        if same is None:
            pools = (ours.connection_pool, theirs.connection_pool)
            if any(type(pool) is not redis_connection.ConnectionPool for pool in pools):  # Sentinel & co: no
                same = False
            else:
                fields = ("host", "port", "path", "db", "username", "password", "decode_responses")
                a, b = (pool.connection_kwargs for pool in pools)
                same = pools[0].connection_class is pools[1].connection_class and all(
                    a.get(field) == b.get(field) for field in fields
                )
            known[pair] = same
        return same

    def _wanted(self, entries):
        """({key: its generations' names}, every name to read) for prefetch entries."""
        wanted = {self._key(type_, name, args): self._gens(type_, depends) for type_, name, args, depends in entries}
        return wanted, list(dict.fromkeys(chain(*wanted.values(), wanted)))

    def _keep_prefetched(self, wanted, values):
        """Keep what a prefetch read, for this request's cached() calls."""
        found = request.environ.setdefault(PREFETCHED, {})
        for key, gens in wanted.items():
            found[key] = (gens, [values[name] for name in gens] + [values[key]])

    def _prefetched(self, store, key, gens):
        """What prefetch() read for this key in this request (once), or None."""
        if store is not self.primary or not has_request_context():
            return None
        gens_and_values = request.environ.get(PREFETCHED, {}).pop(key, None)
        if gens_and_values is None or gens_and_values[0] != gens:
            return None
        return gens_and_values[1]

    def _read(self, store, type_, key, gens, compute, ttl):
        read_at = time.monotonic()
        values = self._prefetched(store, key, gens) or self._call(store.get_many, *gens, key)
        tokens = self._tokens(store, gens, values[:-1])
        payload = values[-1]
        previous = _MISSING
        if _valid(payload, tokens):
            if payload["e"] > time.time():
                self._count(type_, "hit")
                return payload["v"]
            previous = payload["v"]  # only expired: no write since, so it is still right to show
            if key in self.flights:  # another thread of this process is refreshing it
                self._count(type_, "hit")
                self._count(type_, "stale")
                return previous
        value, led = self._single_flight(
            key, lambda: self._miss(store, type_, key, gens, tokens, compute, ttl, previous, read_at)
        )
        if not led:
            self._count(type_, "hit")
            self._count(type_, "wait")
        return value

    def _miss(self, store, type_, key, gens, tokens, compute, ttl, previous, read_at=None):
        """The one thread of this process that handles a missing, outdated or expired key."""
        # It missed while another thread computed the key and leads only now that one finished: read again
        # and take that value, rather than compute it a second time.
        if read_at is not None and self.landed.get(key, -1.0) >= read_at:
            *current, payload = self._call(store.get_many, *gens, key)
            if _valid(payload, current) and payload["e"] > time.time():
                self._count(type_, "hit")
                self._count(type_, "wait")
                return payload["v"]
        if self._take_lock(store, key):
            return self._compute_and_store(store, type_, key, tokens, compute, ttl, locked=True)
        if previous is not _MISSING:  # another process refreshes it: show the previous value meanwhile
            self._count(type_, "hit")
            self._count(type_, "stale")
            return previous
        deadline = time.monotonic() + WAIT_SECONDS
        while time.monotonic() < deadline:  # another process computes it: wait for its value
            time.sleep(POLL_SECONDS)
            *current, payload, lock = self._call(store.get_many, *gens, key, key + ":lock")
            if _valid(payload, current):  # computed with the tokens as they are now
                self._count(type_, "hit")
                self._count(type_, "wait")
                return payload["v"]
            if lock is None:
                break  # it finished with other tokens (a write came in between) or gave up
        return self._compute_and_store(store, type_, key, tokens, compute, ttl, locked=False)

    def _compute_and_store(self, store, type_, key, tokens, compute, ttl, locked):
        with on_primary():  # kept for minutes: never from a replica that has not yet seen the latest write
            value = compute()
        self._count(type_, "miss")
        payload = {"g": tokens, "e": time.time() + ttl, "v": value}
        try:
            stored = writes_ok(store.set(key, payload, timeout=int(ttl * GRACE)))
            if locked and self.kind in ("redis", "memcached") and store is self.primary:
                store.delete(key + ":lock")
        except STORE_ERRORS as exc:
            self._failed(type_, exc)  # the value is right; only keeping it failed
            return value
        if stored:
            self._count(type_, "set")
        else:
            self._failed(type_, StoreFailed("the cache refused a write (disk full or read-only?)"))
        return value

    def _read_many(self, store, type_, keys, gens, compute_many, ttl):
        values = self._call(store.get_many, *gens, *keys.values())
        tokens = self._tokens(store, gens, values[: len(gens)])
        now, found, missing = time.time(), {}, []
        for ident, payload in zip(keys, values[len(gens) :]):
            if _valid(payload, tokens) and payload["e"] > now:
                found[ident] = payload["v"]
            else:
                missing.append(ident)
        self._count(type_, "hit", len(found))
        if not missing:
            return found
        with on_primary():
            fresh = compute_many(missing)
        self._count(type_, "miss", len(missing))
        expires = now + ttl
        mapping = {keys[i]: {"g": tokens, "e": expires, "v": fresh[i]} for i in missing}
        try:
            stored = store.set_many(mapping, timeout=int(ttl * GRACE))
        except STORE_ERRORS as exc:
            self._failed(type_, exc)
        else:
            if len(stored or ()) == len(mapping):
                self._count(type_, "set", len(mapping))
            else:
                self._failed(type_, StoreFailed("the cache refused a write (disk full or read-only?)"))
        found.update(fresh)
        return found

    def _tokens(self, store, gens, values):
        """The current token of each generation; a missing one (new, evicted, flushed) gets a new token."""
        missing = [name for name, value in zip(gens, values) if value is None]
        if missing:
            for name in missing:
                self._call(store.add, name, _token(), timeout=0)
            again = dict(zip(missing, self._call(store.get_many, *missing)))
            if any(value is None for value in again.values()):
                raise StoreFailed("the cache does not keep generation tokens")
            values = [again.get(name, value) if value is None else value for name, value in zip(gens, values)]
        return list(values)

    def _take_lock(self, store, key):
        if self.kind in ("filesystem", "memory") or store is self.local:
            return True  # one host: threads already share one computation, and a lock file costs two writes
        if self.kind == "redis":
            client, name = compat.redis_client_and_key(store, key + ":lock")
            return bool(self._call(client.set, name, b"1", nx=True, ex=LOCK_SECONDS))
        return bool(self._call(store.add, key + ":lock", 1, timeout=LOCK_SECONDS))

    def _single_flight(self, key, work):
        """(result, True) for the thread that ran work(); others wanting the same key get its result."""
        with self.lock:
            flight = self.flights.get(key)
            leader = flight is None
            if leader:
                flight = self.flights[key] = _Flight()
        if not leader:
            flight.done.wait(LOCK_SECONDS + WAIT_SECONDS)
            if flight.done.is_set():
                if flight.error is not None:
                    raise flight.error
                return flight.value, False
            return work(), True
        try:
            flight.value = work()
            return flight.value, True
        except BaseException as exc:
            flight.error = exc
            raise
        finally:
            with self.lock:
                self.flights.pop(key, None)
                if len(self.landed) >= LANDED_KEPT:
                    self.landed.clear()
                self.landed[key] = time.monotonic()
            flight.done.set()

    # --- writes --------------------------------------------------------------------------------

    def bump(self, names):
        """New tokens for these generations, here and in the shared store: what depended on them is recomputed."""
        mapping = {f"gen:{name}": _token() for name in names}
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

    # --- the circuit breaker ---------------------------------------------------------------------

    def _call(self, operation, *args, **kwargs):
        try:
            return operation(*args, **kwargs)
        except STORE_ERRORS as exc:
            raise StoreFailed(str(exc) or type(exc).__name__) from exc

    def _primary_usable(self):
        if self.down_since is None:
            return True
        with self.lock:
            if time.monotonic() < self.retry_at:
                return False
            self.retry_at = time.monotonic() + self.retry_seconds  # one request probes, the others go on
        return self._recover()

    def _recover(self):
        """Try the store again; on success renew every generation, since writes made meanwhile missed it."""
        try:
            if isinstance(self.primary, cache_drivers.UnusableFolder):
                self.primary = self.primary.rebuild()
            ok = writes_ok(self.primary.set("gen:epoch", _token(), timeout=0))
        except STORE_ERRORS as exc:
            ok, self.last_error = False, str(exc) or type(exc).__name__
        if not ok:
            return False
        with self.lock:
            down_for, self.down_since = time.time() - (self.down_since or time.time()), None
        self.local.clear()
        log.warning(
            "Cache %s (%s) answers again after %.0f s; every cached value was renewed.", self.kind, self.where, down_for
        )
        return True

    def _failed(self, type_, exc):
        self._count(type_ or "all", "error")
        with self.lock:
            self.last_error = str(exc) or type(exc).__name__
            self.retry_at = time.monotonic() + self.retry_seconds
            first = self.down_since is None
            if first:
                self.down_since = time.time()
        if first:
            # What the fallback held may predate other processes' writes during the outage before this one.
            self.local.clear()
            log.error(
                "Cache %s (%s) failed: %s. Serving from this process's fallback; trying again every %d s.",
                self.kind,
                self.where,
                self.last_error,
                self.retry_seconds,
            )

    def close(self):
        """Let go of the store's connections."""
        cache_drivers.close(self.primary)

    # --- keys, counts, status --------------------------------------------------------------------

    @staticmethod
    def _key(type_, name, args):
        digest = hashlib.sha1(repr(args).encode()).hexdigest()[:24]
        return f"{type_}:{name}:v{FORMAT}:{digest}"

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


def touch(*names):
    """Renew these generations once the current transaction commits: for writes the session hooks cannot see."""
    db.session.info.setdefault(TOUCHES, set()).update(names)


def cache_status():
    """What /monitor and `flask cache stats` show about the cache (see CacheLayer.status)."""
    return layer().status()


# --- writes renew generations after commit ------------------------------------------------------------
# ORM objects name exactly what they change; Core statements through the session name their table,
# unless they pass execution_options(cache_touches=(...)) with something more precise.

TABLE_TOUCHES = {
    "products": ("catalog",),
    "categories": ("catalog",),
    "product_images": ("catalog",),
    "price_tiers": ("prices",),
    "price_lists": ("prices",),
    "companies": ("companies",),
    "users": ("users-all",),
    "user_sessions": ("users-all",),
    "orders": ("orders",),
    "order_lines": ("orders",),
    "order_events": ("orders",),
    "invoices": ("orders",),
    "payments": ("orders",),
    "cart_items": ("carts",),
    "shopping_lists": ("lists",),
}


def _object_touches(obj):
    table = getattr(obj, "__tablename__", None)
    if table in ("products", "categories", "product_images"):
        return ("catalog",)
    if table == "price_tiers":
        return (f"prices:{obj.price_list_id}",)
    if table == "price_lists":
        return (f"prices:{obj.id}",)
    if table == "companies":
        return ("companies",)
    if table in ("orders", "invoices", "payments"):
        return (f"orders:{obj.company_id}", "orders-all")
    if table == "users":
        return (f"user:{obj.id}",)
    if table == "user_sessions":
        return (f"user:{obj.user_id}",)
    if table == "cart_items":
        return (f"cart:{obj.user_id}",)
    if table == "shopping_lists":
        return (f"lists:{obj.company_id}",)
    if table in ("order_lines", "order_events"):
        return ("orders-all",)  # always written with their order, which names the company
    return ()


@event.listens_for(Session, "after_flush")
def _note_flushed_objects(session, _context):
    names = session.info.setdefault(TOUCHES, set())
    for obj in chain(session.new, session.dirty, session.deleted):
        names.update(_object_touches(obj))


@event.listens_for(Session, "do_orm_execute")
def _note_statement(state):
    if not (state.is_insert or state.is_update or state.is_delete):
        return
    names = state.execution_options.get("cache_touches")
    if names is None:
        table = getattr(state.statement, "table", None)
        names = TABLE_TOUCHES.get(getattr(table, "name", None), ())
    if names:
        state.session.info.setdefault(TOUCHES, set()).update(names)


@event.listens_for(Session, "after_commit")
def _renew_after_commit(session):
    names = session.info.pop(TOUCHES, None)
    if names and has_app_context():
        cache = current_app.extensions.get("sipup_cache")
        if cache is not None:
            cache.bump(names)


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
