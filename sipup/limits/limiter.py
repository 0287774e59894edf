"""Rate limits: a budget per address and per user, tighter limits on sensitive endpoints, and blocks
that double for clients that keep pushing.

Flask-Limiter counts: an application limit per client address (SIPUP_RATELIMIT_IP) and one per
signed-in user (SIPUP_RATELIMIT_USER) on every route, plus the SIPUP_RATELIMIT_ENDPOINTS map, in
Redis when SIPUP_REDIS_URL is set (one budget for every process and host) and in memory otherwise.
When Redis fails, counting falls back to memory per process and returns to Redis when it answers.

A client refused more often than SIPUP_RATELIMIT_BLOCK_AFTER is blocked: for the block period, twice
that at the next block, and so on up to the cap; each decay period without a block takes one doubling
off. Flask-Limiter's meta limits only give fixed-length bans, so blocks are kept here, in Redis or in
a SQLite file in instance/ that the command line shares with the server.

Guesses at one account (`by account` rules) from addresses it never signed in from share one budget; an
address it signed in from lately (`remember_sign_in`, kept by sipup.limits.known) has a budget of its own.

For `/monitor` and `flask limits`: `status(app)`, `blocks_in_force(app)`, `unblock(app, who)`.
"""

import logging
import math
import os
import time

from flask import current_app, has_request_context, make_response, request, session
from flask_limiter import ApplicationLimit, Limiter, RateLimitExceeded
from limits import parse_many

from sipup import redisclient
from sipup.compat import signed_in_id
from sipup.config import ConfigError, parse_endpoint_rule
from sipup.errors import render_error
from sipup.limits.blocks import Blocks, RedisBlockStore, SqliteBlockStore
from sipup.limits.compat import (
    MemoryCounts,
    ParsedOnce,
    count_in_one_trip,
    hooks_first,
    key_prefix,
    resolve_once,
    storage_dead,
)
from sipup.limits.known import RedisKnownAddresses, SqliteKnownAddresses

log = logging.getLogger("sipup.limits")

# app.extensions key of a function(client) -> None or (Redis keys, done): reads to send in the limits' round trip.
RIDING = "sipup_riding"
# Probes of load balancers and process managers come often from one address and must always answer.
EXEMPT_ENDPOINTS = frozenset({"ops.healthz", "ops.readyz"})


# --- who is asking -----------------------------------------------------------------------------


def client_address():
    """The client's address; ProxyFix has already applied SIPUP_PROXY_HOPS to it."""
    return request.remote_addr or "unknown"


def _signed_in_id():
    """The signed-in user's id from the session cookie, without asking the database: the limiter must not
    fail (or fall back from Redis) because the database does, and the view loads the user anyway."""
    user_id = signed_in_id(session)
    return None if user_id is None else str(user_id)


def _user_key():
    return f"user:{_signed_in_id()}"


ACCOUNT_KEY = "sipup.limits.account"  # in the WSGI environ: this request's account key, looked up once


def _account_key():
    """The e-mail typed into the form, so guessing one account's password from many addresses stops: addresses
    the account never signed in from share one budget; each address it signed in from lately has its own, so
    the owner keeps getting in while others guess."""
    key = request.environ.get(ACCOUNT_KEY)
    if key is None:
        email = (request.form.get("email") or "").strip().lower()[:254]
        key = f"account:{email or '-'}"
        limits = current_app.extensions.get("limits")
        if email and limits is not None and limits.known_address(email):
            key = f"{key}@{client_address()}"
        request.environ[ACCOUNT_KEY] = key
    return key


def _anonymous():
    return _signed_in_id() is None


def _request_identifier():
    """What Flask-Limiter scopes a request's limits by: its endpoint. Unknown URLs count too, so scanning for
    pages spends the address's budget."""
    return request.endpoint or "not-found"


KEY_FUNCTIONS = {"address": client_address, "account": _account_key, "user": _user_key}


class EndpointLimits(ApplicationLimit):
    """The SIPUP_RATELIMIT_ENDPOINTS map as one application limit that yields, per request, only the rules
    for the request's endpoint and method. Flask-Limiter's per-request work grows with every limit it is
    given; this way the other pages carry two limits, not six, and the endpoint limits are still counted in
    the one check before the view (as decorators, Flask-Limiter would run its whole check twice there)."""

    def __iter__(self):
        if not has_request_context():  # Flask-Limiter's own `flask limiter config` lists limits
            return iter(())
        rules = self.__dict__["rules"].get(request.endpoint)
        if not rules:
            return iter(())
        method = request.method
        return iter([limit for methods, parsed in rules if not methods or method in methods for limit in parsed])


def endpoint_limits(app):
    """SIPUP_RATELIMIT_ENDPOINTS, checked against the app's endpoints, as an EndpointLimits."""
    rules = {}
    for rule, limit in app.config["RATELIMIT_ENDPOINTS"].items():
        methods, endpoint, by = parse_endpoint_rule(rule, limit)
        if endpoint not in app.view_functions:
            raise ConfigError(f"SIPUP_RATELIMIT_ENDPOINTS names {endpoint!r}, which is no endpoint of sipup.")
        parsed = tuple(
            ParsedOnce(
                limit,
                key_function=KEY_FUNCTIONS[by],
                scope=f"{endpoint} by {by}",
                exempt_when=_anonymous if by == "user" else None,
            )
        )
        rules.setdefault(endpoint, []).append((frozenset(methods or ()), parsed))
    group = EndpointLimits("", scope="endpoints")
    group.__dict__["rules"] = rules
    return group


# --- blocks ------------------------------------------------------------------------------------

# --- the limiter -------------------------------------------------------------------------------


class RateLimits:
    """Everything one app needs: its Flask-Limiter, the block list and the statistics."""

    def __init__(self, app):
        config = app.config
        self.app = app
        self.counters = app.extensions["counters"]
        self.strategy = config["RATELIMIT_STRATEGY"]
        self.fallback_noted = False
        self.block_after = parse_many(config["RATELIMIT_BLOCK_AFTER"])
        self.address_limits = ParsedOnce(config["RATELIMIT_IP"], key_function=client_address, scope="address")
        self.user_limits = ParsedOnce(
            config["RATELIMIT_USER"], key_function=_user_key, scope="user", exempt_when=_anonymous
        )
        if config["REDIS_URL"]:
            namespace = config["REDIS_NAMESPACE"]
            self.blocks_store = RedisBlockStore(config["REDIS_URL"], namespace)
            self.known = RedisKnownAddresses(self.blocks_store.client, namespace)
            uri, options = redisclient.limits_storage(config["REDIS_URL"], timeout=0.5)
            storage = dict(
                storage_uri=uri,
                # Strategies keep different Redis types under the same key names: a prefix per strategy
                # lets the strategy change on a live Redis without WRONGTYPE errors.
                storage_options={"key_prefix": f"{namespace}:limits:{self.strategy}", **options},
                in_memory_fallback_enabled=True,
            )
        else:
            self.blocks_store = SqliteBlockStore(os.path.join(app.instance_path, "limits.db"))
            self.known = SqliteKnownAddresses(self.blocks_store.path)
            storage = dict(storage_uri=f"{MemoryCounts.STORAGE_SCHEME[0]}://")  # the class registers its scheme
        self.blocks = Blocks(
            self.blocks_store,
            config["RATELIMIT_BLOCK_SECONDS"],
            config["RATELIMIT_BLOCK_MAX_SECONDS"],
            config["RATELIMIT_BLOCK_DECAY_SECONDS"],
            on_lift=self._start_afresh,
        )
        self.application_limits = [self.address_limits, self.user_limits, endpoint_limits(app)]
        self.limiter = Limiter(
            client_address,
            # All application limits: Flask-Limiter checks them in one pass, before the view.
            application_limits=self.application_limits,
            strategy=self.strategy,
            # The headers cost one more storage round trip on every answer; 429s get them (see refused()).
            headers_enabled=False,
            swallow_errors=True,  # the limiter never fails a request
            on_breach=self._breached,
            request_identifier=_request_identifier,
            **storage,
        )

    @property
    def storage_name(self):
        return "redis" if self.app.config["REDIS_URL"] else "memory"

    @property
    def fallback_active(self):
        """True while Redis is unreachable and each process counts on its own."""
        return storage_dead(self.limiter)

    def init_app(self, app):
        def install():
            app.before_request(self._refuse_blocked)  # before the limiter's own check: blocked clients cost nothing
            self.limiter.init_app(app)

        # Count before any other hook answers (a CSRF failure is a 400 from a hook): every request spends budget.
        hooks_first(app, install)
        # On Redis, the address and user limits (and an endpoint's) are counted in one round trip.
        count_in_one_trip(self.limiter, self._planned_hits, self._riding)
        # Which limits and exemptions apply to an endpoint is worked out once per endpoint and method.
        resolve_once(self.limiter)
        for endpoint in EXEMPT_ENDPOINTS & set(app.view_functions):
            self.limiter.exempt(app.view_functions[endpoint])
        app.register_error_handler(RateLimitExceeded, self._refused)

    def _riding(self, client):
        """Reads another part of sipup asks to send with the limits' round trip (app.extensions["sipup_riding"]:
        security.read_ahead's), as OneTripHits takes them. A rider that fails is logged and left out (the reads
        are made again later the usual way): it must never look like Redis failing the limits themselves."""
        riding = self.app.extensions.get(RIDING)
        if riding is None:
            return None
        try:
            rider = riding(client)
        except Exception:
            log.exception("reads riding with the rate limits' round trip failed; read separately")
            return None
        if rider is None:
            return None
        keys, done = rider

        def taken(values):
            try:
                done(values)
            except Exception:
                log.exception("reads riding with the rate limits' round trip failed; read separately")

        return keys, taken

    def _planned_hits(self):
        """(limit item, args) of every application limit this request spends, as Flask-Limiter will hit them."""
        endpoint, method, prefix = _request_identifier(), request.method, key_prefix(self.limiter)
        for group in self.application_limits:
            for limit in group:
                if limit.is_exempt or limit.method_exempt:
                    continue
                args = [limit.key_func(), limit.scope_for(endpoint, method)]
                yield limit.limit, [prefix, *args] if prefix else args

    # --- refusing ---

    def _note_storage(self):
        """Say in the log when counting falls back to this process's memory, and when Redis is back."""
        dead = self.fallback_active
        if dead != self.fallback_noted:
            self.fallback_noted = dead
            if dead:
                log.warning("Rate limit storage (Redis) unreachable: each process counts on its own until it answers")
            else:
                log.warning("Rate limit storage (Redis) answers again: counting is shared again")

    def _refuse_blocked(self):
        self._note_storage()  # the limiter switched (or not) while checking the request before this one
        endpoint = request.endpoint
        if endpoint in EXEMPT_ENDPOINTS or endpoint == "static" or (endpoint or "").endswith(".static"):
            return None
        blocks = self.blocks.current()
        if not blocks:
            return None
        now = time.time()
        candidates = [f"addr:{client_address()}"]
        if any(who.startswith("user:") for who in blocks) and not _anonymous():
            candidates.append(_user_key())
        for who in candidates:
            block = blocks.get(who)
            if block and block.until > now:
                self.counters.incr("limits", "refused")
                self.counters.incr("limits", "refused.blocked")
                return self._answer(block.seconds_left(now), 0, int(block.until), blocked=True)
        return None

    def _breached(self, request_limit):
        """A limit refused a request: count it, and block a client that keeps going."""
        key = request_limit.request_args[0]
        who = key if key.startswith("user:") else f"addr:{client_address()}"
        self.counters.incr("limits", "refused")
        self.counters.incr("limits", f"by {who}")
        limiter = self.limiter.limiter  # the in-memory fallback while Redis is down
        if all(limiter.hit(item, "strikes", who) for item in self.block_after):
            return None
        for item in self.block_after:
            limiter.clear(item, "strikes", who)
        why = f"kept exceeding {request_limit.limit} ({request_limit.request_args[1]})"
        self.blocks.block(who, why)
        self.counters.incr("limits", "blocks")
        return None

    def _refused(self, error):
        """429 from a breached limit, with Retry-After and the X-RateLimit-* headers."""
        current = self.limiter.current_limit
        now = time.time()
        if current is None:
            return self._answer(60, 0, int(now) + 60)
        try:
            reset_at, remaining = current.window  # RequestLimit.reset_at adds a second
        except Exception as exc:  # storage failed between the check and this answer
            log.warning("Rate limit window not readable: %s", exc)
            reset_at, remaining = int(now) + int(current.limit.get_expiry()), 0
        retry = max(1, math.ceil(reset_at - now))
        return self._answer(retry, remaining, math.ceil(reset_at), limit=current.limit.amount)

    def _answer(self, retry_after, remaining, reset_at, limit=None, blocked=False):
        wait = _duration(retry_after)
        if blocked:
            message = f"Too many requests came from you, so you are blocked for {wait}. Please wait and try again."
        else:
            message = f"Too many requests. Please wait {wait} and try again."
        response = make_response(render_error(429, message=message))
        amount = limit if limit is not None else self.address_limits_amount
        response.headers["Retry-After"] = str(retry_after)
        response.headers["X-RateLimit-Limit"] = str(amount)
        response.headers["X-RateLimit-Remaining"] = str(remaining)
        response.headers["X-RateLimit-Reset"] = str(int(reset_at))
        return response

    @property
    def address_limits_amount(self):
        return min(item.amount for item in parse_many(self.app.config["RATELIMIT_IP"]))

    # --- usual addresses of an account ---

    def known_address(self, email):
        """True when the account signed in from the client's address lately; False when the store fails."""
        try:
            return self.known.has(email, client_address())
        except Exception as exc:  # the store is down: the account's shared budget applies, as to any address
            log.warning("Known sign-in addresses not readable (%s store): %s", self.known.name, exc)
            return False

    def remember_sign_in(self, email):
        """Note that the account signed in from the client's address; a store that fails only logs."""
        try:
            self.known.add(email, client_address())
        except Exception as exc:
            log.warning("Sign-in address not remembered (%s store): %s", self.known.name, exc)

    # --- for /monitor and the command line ---

    def status(self, minutes=60):
        """Where counting happens, the limits, refusals per minute (per hour beyond two hours), top offenders and
        blocks in force."""
        res, count = ("minute", minutes) if minutes <= 120 else ("hour", -(-minutes // 60))
        series = self.counters.series("limits", res, count)  # one read, for the totals too
        totals = {}
        for _start, values in series:
            for name, count in values.items():
                totals[name] = totals.get(name, 0) + count
        offenders = sorted(((n[3:], c) for n, c in totals.items() if n.startswith("by ")), key=lambda x: -x[1])
        config = self.app.config
        return {
            "enabled": config["RATELIMIT_ENABLED"],
            "storage": self.storage_name,
            "fallback_active": self.fallback_active,
            "storage_reachable": self._storage_reachable(),
            "strategy": self.strategy,
            "limits": {
                "address": config["RATELIMIT_IP"],
                "user": config["RATELIMIT_USER"],
                **config["RATELIMIT_ENDPOINTS"],
            },
            "minutes": minutes,
            "refused": totals.get("refused", 0),
            "refused_by_blocks": totals.get("refused.blocked", 0),
            "blocks_started": totals.get("blocks", 0),
            "refused_per_minute": [(start, values.get("refused", 0)) for start, values in series],
            "top_addresses": [(who[5:], n) for who, n in offenders if who.startswith("addr:")][:10],
            "top_users": [(who[5:], n) for who, n in offenders if who.startswith("user:")][:10],
            "blocks": self.blocks.in_force(),
            "blocks_store": self.blocks_store.name,
            "store_error": self.blocks.store_error or self.counters.store_error,
        }

    def _storage_reachable(self):
        try:
            return bool(self.limiter.storage.check())
        except Exception:  # check() says False for most failures; be sure
            return False

    def unblock(self, who):
        """Lift `who`'s block and let it start afresh (its counters cleared too); True when it was blocked."""
        lifted = self.blocks.lift(who)
        self._start_afresh(who)  # also when it was not blocked: only over its limit
        return lifted

    def _start_afresh(self, who):
        """Clear a client's counts, in this process's memory too when an admin lifted its block elsewhere."""
        kind, _, key = who.partition(":")
        limiter = self.limiter.limiter
        group, args = (self.address_limits, (key, "address")) if kind == "addr" else (self.user_limits, (who, "user"))
        try:
            for item in self.block_after:
                limiter.clear(item, "strikes", who)
            for runtime_limit in group:
                limiter.clear(runtime_limit.limit, *args)
        except Exception as exc:  # storage down: the counts run out by themselves
            log.warning("Counts of %s not cleared: %s", who, exc)


def _duration(seconds):
    if seconds < 90:
        return f"{seconds} second{'s' if seconds != 1 else ''}"
    minutes = math.ceil(seconds / 60)
    return f"{minutes} minutes"


def register_limits(app):
    """Count requests per address, per user and per sensitive endpoint; refuse and block over the limits."""
    if not app.config["RATELIMIT_ENABLED"]:
        return None
    limits = RateLimits(app)
    limits.init_app(app)
    app.extensions["limits"] = limits
    return limits


# --- functions for /monitor --------------------------------------------------------------------


def _limits(app=None):
    limits = (app or current_app).extensions.get("limits")
    if limits is None:
        raise RuntimeError("Rate limits are switched off (SIPUP_RATELIMIT_ENABLED=false).")
    return limits


def status(app=None, minutes=60):
    """The limits' figures for `/monitor` and `flask limits status`."""
    return _limits(app).status(minutes)


def remember_sign_in(email):
    """Note a successful sign-in to this account from the request's address (nothing with limits off)."""
    limits = current_app.extensions.get("limits")
    if limits is not None:
        limits.remember_sign_in(email)


def blocks_in_force(app=None):
    """[Block] not yet over, soonest end first."""
    return _limits(app).blocks.in_force()


def unblock(app=None, who=None):
    """Lift a block ("addr:1.2.3.4" or "user:42"); True when there was one."""
    return _limits(app).unblock(who)
