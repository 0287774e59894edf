"""The internals of limits (5.8) and Flask-Limiter (4.1.1) that the limiter relies on, in one place
(requirements.txt pins both); tests/test_compat.py checks each against the installed versions.

- `MemoryCounts`: limits' in-process storage without its expiry Timer thread (name-mangled methods).
- `HashedOnce`, `ParsedOnce`: Flask-Limiter's RuntimeLimit (a private module) hashed once, application
  limits parsed once, for the limiter's cost per request.
- `OneTripHits`: the sliding-window-counter strategy on Redis with all of a request's hits in one pipeline
  (limits' Lua script and its window key names; Flask-Limiter's `_limiter` and `_key_prefix`).
- `storage_dead`: whether Flask-Limiter counts in its in-memory fallback (its `_storage_dead`).
- `resolve_once`: Flask-Limiter's LimitManager resolving an endpoint's limits and exemptions once, not on
  every request (its `resolve_limits` and `exemption_scope`, which the extension calls through `limit_manager`).
- `hooks_first`: Flask-Limiter's check moved before the app's other before-request hooks (it adds the check
  with `app.before_request` in `init_app`).
"""

import threading
import time
import weakref
from dataclasses import fields

from flask import has_request_context, request
from flask_limiter import ApplicationLimit
from flask_limiter._limits import RuntimeLimit
from limits.storage import MemoryStorage, RedisStorage
from limits.strategies import SlidingWindowCounterRateLimiter
from redis.exceptions import NoScriptError

HITS = "sipup.limits.hits"  # in the WSGI environ: this request's counted hits, by key


class MemoryCounts(MemoryStorage):
    """limits' in-process storage without its expiry timer: MemoryStorage starts a new Timer thread 10 ms
    after the last one ended, and each start makes the request thread wait for the new thread to get the
    GIL (a quarter of the limiter's time in a profile). Counts already expire when read; one daemon thread
    per storage drops expired keys once a second, only to free memory."""

    STORAGE_SCHEME = ["sipup-memory"]

    def __init__(self, uri=None, wrap_exceptions=False, **options):
        super().__init__(uri, wrap_exceptions=wrap_exceptions, **options)
        ref = weakref.ref(self)
        threading.Thread(target=_purge_every_second, args=(ref,), name="sipup-limits-purge", daemon=True).start()

    def _MemoryStorage__schedule_expiry(self):  # replaces the per-10-ms Timer thread
        pass

    def expire_now(self):
        """Drop the expired keys (what the purge thread does once a second)."""
        self._MemoryStorage__expire_events()


def _purge_every_second(ref):
    while True:
        time.sleep(1)
        storage = ref()
        if storage is None:  # the app is gone
            return
        storage.expire_now()
        del storage


class HashedOnce(RuntimeLimit):
    """A RuntimeLimit that computes its hash once: Flask-Limiter puts every limit into ordered sets a dozen
    times a request, and the dataclass hash walks all its fields each time (a third of the limiter's time)."""

    def __hash__(self):
        value = self.__dict__.get("_hash")
        if value is None:
            value = self.__dict__["_hash"] = RuntimeLimit.__hash__(self)
        return value


class ParsedOnce(ApplicationLimit):
    """An application limit whose string is parsed once; Flask-Limiter parses it again on every request."""

    def __iter__(self):
        parsed = self.__dict__.get("_parsed")
        if parsed is None:
            parsed = tuple(HashedOnce(*(getattr(limit, f.name) for f in fields(limit))) for limit in super().__iter__())
            self.__dict__["_parsed"] = parsed
        return iter(parsed)


def storage_dead(limiter):
    """True while Flask-Limiter counts in this process's memory because its storage (Redis) failed; it checks
    the storage again every so often and sets this back itself."""
    return limiter._storage_dead


def hooks_first(app, install):
    """Call install() (which adds before-request hooks to the app: Flask-Limiter's init_app adds its check
    with app.before_request) and run the hooks it added before those that were there already."""
    hooks = app.before_request_funcs.setdefault(None, [])
    before = list(hooks)
    install()
    hooks[:] = [hook for hook in hooks if hook not in before] + before


def key_prefix(limiter):
    """The prefix Flask-Limiter puts before a limit's key and scope (RATELIMIT_KEY_PREFIX; "" by default)."""
    return limiter._key_prefix


def count_in_one_trip(limiter, planned, riding=None):
    """Let the Flask-Limiter `limiter` send a request's hits to Redis in one pipeline, when it counts with the
    sliding window counter there; `planned()` yields the (limit item, args) the request will hit, and
    `riding(client)` may name reads to send in the same trip (see OneTripHits). True if so."""
    strategy = limiter._limiter
    if not (isinstance(strategy, SlidingWindowCounterRateLimiter) and isinstance(strategy.storage, RedisStorage)):
        return False
    limiter._limiter = OneTripHits(strategy, planned, riding)
    return True


class OneTripHits:
    """The sliding-window-counter strategy on Redis, counting all of a request's hits in one round trip.

    Flask-Limiter hits the address limit, then the user limit, each a Lua call of its own. Here the first hit
    of a request sends every planned hit in one pipeline of the same script (EVALSHA) and keeps the answers;
    each hit then takes its own. A hit nobody planned, a cost other than 1, or a script Redis does not know
    yet (it was restarted: the plain call loads it) goes the plain way.

    `riding(client)`, if given, returns None or (Redis keys, done): the keys are read (MGET) in the same pipeline
    and done(values) gets what Redis answered, so a request's reads that do not depend on the limits (the
    signed-in user's cached row) cost no round trip of their own. A failed trip gives done() nothing."""

    def __init__(self, strategy, planned, riding=None):
        self.strategy, self.planned, self.riding = strategy, planned, riding

    def __getattr__(self, name):  # test(), get_window_stats(), clear(), storage: the strategy's own
        return getattr(self.strategy, name)

    def hit(self, item, *identifiers, cost=1):
        if cost != 1 or not has_request_context():
            return self.strategy.hit(item, *identifiers, cost=cost)
        answers = request.environ.get(HITS)
        if answers is None:
            answers = request.environ[HITS] = self._hit_planned()
        acquired = answers.pop(item.key_for(*identifiers), None)
        if acquired is None:
            return self.strategy.hit(item, *identifiers, cost=cost)
        return acquired

    def _hit_planned(self):
        storage = self.strategy.storage
        plan = [(item.key_for(*args), item) for item, args in self.planned()]
        if len(plan) < 2:
            return {}
        client = storage.get_connection()
        pipe = client.pipeline(transaction=False)
        sha = storage.lua_acquire_sliding_window.sha
        for key, item in plan:
            previous = storage.prefixed_key(storage._previous_window_key(key))
            current = storage.prefixed_key(storage._current_window_key(key))
            pipe.evalsha(sha, 2, previous, current, item.amount, item.get_expiry(), 1)
        rider = self.riding(client) if self.riding is not None else None
        if rider is not None:
            pipe.mget(rider[0])
        try:
            answers = pipe.execute()
        except NoScriptError:
            return {}
        if rider is not None:
            rider[1](answers[len(plan)])
        return {key: bool(acquired) for (key, _item), acquired in zip(plan, answers)}


RESOLVED_KEPT = 1000


def resolve_once(limiter):
    """Let the Flask-Limiter `limiter` work out which limits apply to an endpoint, and which exemptions, once per
    endpoint, blueprint and method instead of on every request (its LimitManager redoes it twice a request).
    Its limits and exemptions must all be declared before the first request; `exempt_when` and the key functions
    are still asked per request."""
    manager = limiter.limit_manager
    resolve, exemption_scope = manager.resolve_limits, manager.exemption_scope
    resolved, scopes = {}, {}

    def resolve_limits(app, endpoint=None, blueprint=None, callable_name=None, in_middleware=False, marked=False):
        # sipup's endpoint limits differ by the request's endpoint and method: both are part of the key.
        key = (endpoint, blueprint, callable_name, in_middleware, marked, request.endpoint, request.method)
        found = resolved.get(key)
        if found is None:
            if len(resolved) >= RESOLVED_KEPT:  # methods come from clients: keep the memory bounded
                resolved.clear()
            found = resolved[key] = resolve(app, endpoint, blueprint, callable_name, in_middleware, marked)
        return found

    def scope(app, endpoint, blueprint):
        key = (endpoint, blueprint)
        found = scopes.get(key)
        if found is None:
            found = scopes[key] = exemption_scope(app, endpoint, blueprint)
        return found

    manager.resolve_limits, manager.exemption_scope = resolve_limits, scope
