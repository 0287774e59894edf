"""Reading through the cache: `cached()` (one value), `cached_many()` (many keys in one round trip) and
`prefetch()`; a value is served only while the generation tokens it was computed from are current."""

import time
from itertools import chain

from flask import has_request_context, request
from redis import connection as redis_connection

from sipup.cache import compat
from sipup.cache.breaker import StoreFailed, new_token
from sipup.cache.drivers import STORE_ERRORS, writes_ok
from sipup.cache.single_flight import WAIT_SECONDS
from sipup.replicas import on_primary

GRACE = 2  # values are kept this many lifetimes, so an expired hot key still has a previous value
POLL_SECONDS = 0.01
# Types whose values are one user's or one company's (the signed-in row, the cart, the credit left): only that
# account's own requests want one, so a miss takes no lock in the store (two round trips) against a stampede.
PRIVATE_TYPES = frozenset({"users"})
PREFETCHED = "sipup.cache.prefetched"  # in the WSGI environ: what prefetch() read, for this request only


_MISSING = object()


def _valid(payload, tokens):
    return isinstance(payload, dict) and payload.get("g") == tokens


class Reads:
    """CacheLayer's reads."""

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
        ours, prefix = compat.redis_read_client_and_prefix(store)
        if not self._same_server(ours, client):
            return None
        wanted, names = self._wanted(entries)

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
        if type_ in PRIVATE_TYPES:
            return self._compute_and_store(store, type_, key, tokens, compute, ttl, locked=False)
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
                self._call(store.add, name, new_token(), timeout=0)
            again = dict(zip(missing, self._call(store.get_many, *missing)))
            if any(value is None for value in again.values()):
                raise StoreFailed("the cache does not keep generation tokens")
            values = [again.get(name, value) if value is None else value for name, value in zip(gens, values)]
        return list(values)
