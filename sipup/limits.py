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

For `/monitor` and `flask limits`: `status(app)`, `blocks_in_force(app)`, `unblock(app, who)`.
"""
import json
import logging
import math
import os
import threading
import time
import weakref
from contextlib import closing
from dataclasses import asdict, dataclass, fields

import click
from flask import current_app, has_request_context, make_response, request, session
from flask.cli import AppGroup
from flask_limiter import ApplicationLimit, Limiter, RateLimitExceeded
from flask_limiter._limits import RuntimeLimit  # private, but stable within the pinned 4.1.1
from limits import parse_many
from limits.storage import MemoryStorage

from .metrics import connect_sqlite

log = logging.getLogger("sipup.limits")

# Probes of load balancers and process managers come often from one address and must always answer.
EXEMPT_ENDPOINTS = frozenset({"ops.healthz", "ops.readyz"})
BY = ("address", "account", "user")
HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
SNAPSHOT_SECONDS = 1.0  # how stale a process's copy of the block list may be
STORE_RETRY_SECONDS = 30


# --- who is asking -----------------------------------------------------------------------------

def client_address():
    """The client's address; ProxyFix has already applied SIPUP_PROXY_HOPS to it."""
    return request.remote_addr or "unknown"


def _signed_in_id():
    """The signed-in user's id from the session cookie, without asking the database: the limiter must not
    fail (or fall back from Redis) because the database does, and the view loads the user anyway."""
    user_id = (session.get("_user_id") or "").partition(":")[0]  # Flask-Login keeps "id:session token"
    return user_id if user_id.isdigit() else None


def _user_key():
    return f"user:{_signed_in_id()}"


def _account_key():
    """The e-mail typed into the sign-in form, so guessing one account's password from many addresses stops."""
    email = (request.form.get("email") or "").strip().lower()[:254]
    return f"account:{email or '-'}"


def _anonymous():
    return _signed_in_id() is None


KEY_FUNCTIONS = {"address": client_address, "account": _account_key, "user": _user_key}


class MemoryCounts(MemoryStorage):
    """limits' in-process storage without its expiry timer: MemoryStorage starts a new Timer thread 10 ms
    after the last one ended, and each start makes the request thread wait for the new thread to get the
    GIL (a quarter of the limiter's time in a profile). Counts already expire when read; one daemon thread
    per storage drops expired keys once a second, only to free memory. Relies on limits 5.8's private
    expiry method names (requirements.txt pins limits)."""

    STORAGE_SCHEME = ["sipup-memory"]

    def __init__(self, uri=None, wrap_exceptions=False, **options):
        super().__init__(uri, wrap_exceptions=wrap_exceptions, **options)
        ref = weakref.ref(self)
        threading.Thread(target=_purge_every_second, args=(ref,), name="sipup-limits-purge", daemon=True).start()

    def _MemoryStorage__schedule_expiry(self):  # replaces the per-10-ms Timer thread
        pass


def _purge_every_second(ref):
    while True:
        time.sleep(1)
        storage = ref()
        if storage is None:  # the app is gone
            return
        storage._MemoryStorage__expire_events()
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
    from .config import ConfigError

    rules = {}
    for rule, limit in app.config["RATELIMIT_ENDPOINTS"].items():
        methods, endpoint, by = parse_endpoint_rule(rule, limit)
        if endpoint not in app.view_functions:
            raise ConfigError(f"SIPUP_RATELIMIT_ENDPOINTS names {endpoint!r}, which is no endpoint of sipup.")
        parsed = tuple(ParsedOnce(limit, key_function=KEY_FUNCTIONS[by], scope=f"{endpoint} by {by}",
                                  exempt_when=_anonymous if by == "user" else None))
        rules.setdefault(endpoint, []).append((frozenset(methods or ()), parsed))
    group = EndpointLimits("", scope="endpoints")
    group.__dict__["rules"] = rules
    return group


def parse_endpoint_rule(rule, limit):
    """("POST auth.login by account", "5 per minute") -> (["POST"], "auth.login", "account"); ValueError says why."""
    words = str(rule).split()
    methods = None
    if words and words[0].isupper():
        methods = words.pop(0).split(",")
    by = "address"
    if len(words) == 3 and words[1] == "by":
        by = words.pop()
        words.pop()
    if len(words) != 1 or by not in BY or not set(methods or ()) <= HTTP_METHODS:
        raise ValueError(f'must have entries like "POST auth.login by account", not {rule!r}')
    if limit:
        try:
            check_limit(limit)
        except ValueError as exc:
            raise ValueError(f"{exc}, not {limit!r} for {rule!r}") from None
    return methods, words[0], by


def check_limit(text):
    """The parsed limits of a setting such as "100 per minute; 1000 per hour"; ValueError says what is wrong,
    including a limit of 0, which would refuse every request."""
    try:
        items = parse_many(str(text))
    except ValueError:
        raise ValueError('must read like "100 per minute" or "1000/hour"') from None
    for item in items:
        if item.amount < 1:
            raise ValueError(f'must allow at least 1 request ({str(text)!r} would refuse every one), '
                             'e.g. "100 per minute"')
    return items


# --- blocks ------------------------------------------------------------------------------------

@dataclass
class Block:
    who: str  # "addr:<address>" or "user:<id>"
    why: str
    since: float
    until: float
    level: int  # 1 for the first block, 2 when it doubled once, ...
    forget: float  # when the level has decayed to nothing and the record can go

    def seconds_left(self, now=None):
        return max(0, math.ceil(self.until - (time.time() if now is None else now)))


class SqliteBlockStore:
    """Blocks in instance/limits.db, shared by the server processes and the command line of one host."""

    name = "sqlite"

    def __init__(self, path):
        self.path = path
        with closing(self._connect()) as conn, conn:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS blocks (who TEXT PRIMARY KEY, why TEXT, since REAL, until REAL, "
                "level INTEGER, forget REAL)"
            )

    def _connect(self):
        return connect_sqlite(self.path)

    def all(self):
        with closing(self._connect()) as conn:
            rows = conn.execute("SELECT who, why, since, until, level, forget FROM blocks WHERE forget > ?",
                                (time.time(),)).fetchall()
        return {row[0]: Block(*row) for row in rows}

    def put(self, block):
        with closing(self._connect()) as conn, conn:
            conn.execute("DELETE FROM blocks WHERE forget <= ?", (time.time(),))
            conn.execute("INSERT OR REPLACE INTO blocks VALUES (?, ?, ?, ?, ?, ?)", tuple(asdict(block).values()))

    def delete(self, who):
        with closing(self._connect()) as conn, conn:
            return conn.execute("DELETE FROM blocks WHERE who = ?", (who,)).rowcount > 0


class RedisBlockStore:
    """Blocks in one Redis hash, shared by every process and host."""

    name = "redis"

    def __init__(self, url, namespace):
        import redis

        self.key = f"{namespace}:limits:blocks"
        self.client = redis.Redis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5)

    def all(self):
        now, found, stale = time.time(), {}, []
        for who, value in self.client.hgetall(self.key).items():
            block = Block(**json.loads(value))
            if block.forget > now:
                found[block.who] = block
            else:
                stale.append(who)
        if stale:
            self.client.hdel(self.key, *stale)
        return found

    def put(self, block):
        self.client.hset(self.key, block.who, json.dumps(asdict(block)))

    def delete(self, who):
        return self.client.hdel(self.key, who) > 0


class Blocks:
    """The block list: read from the store at most once a second per process, written through at once.

    A process may enforce a block set elsewhere up to SNAPSHOT_SECONDS late; the shared counters
    refuse that client meanwhile anyway, since a block only follows refusals.
    """

    def __init__(self, store, base, cap, decay, on_lift=None):
        self.store, self.base, self.cap, self.decay = store, base, cap, decay
        self.on_lift = on_lift  # called with `who` when a block ended early (lifted by an admin elsewhere)
        self.lock = threading.Lock()
        self.snapshot = {}
        self.read_at = -math.inf
        self.store_error = None

    def current(self):
        """{who: Block} as of at most a second ago (without waiting for another thread's read)."""
        wait = STORE_RETRY_SECONDS if self.store_error else SNAPSHOT_SECONDS
        if time.monotonic() - self.read_at >= wait and self.lock.acquire(blocking=False):
            try:
                self.read_at = time.monotonic()
                before, self.snapshot = self.snapshot, self._read()
            finally:
                self.lock.release()
            now = time.time()
            for who in [w for w, b in before.items() if b.until > now and w not in self.snapshot]:
                self._lifted(who)
        return self.snapshot

    def _lifted(self, who):
        if self.on_lift:
            self.on_lift(who)

    def _read(self):
        try:
            found = self.store.all()
        except Exception as exc:  # the store is down: keep enforcing what we know
            self._failed("read", exc)
            return self.snapshot
        self.store_error = None
        return found

    def _failed(self, action, exc):
        if self.store_error is None:
            log.warning("Blocks could not be %s (%s store); enforcing this process's copy: %s",
                        action, self.store.name, exc)
        self.store_error = str(exc) or type(exc).__name__

    def block(self, who, why, now=None):
        """Block `who`: one level above the last block, less one level per decay period since it ended."""
        now = time.time() if now is None else now
        with self.lock:
            known = self._read().get(who) or self.snapshot.get(who)
            if known and known.until > now:  # another thread or process was first
                return known
            level = 1
            if known:
                level += max(0, known.level - int((now - known.until) // self.decay))
            until = now + min(self.base * 2 ** (level - 1), self.cap)
            block = Block(who, why, now, until, level, until + self.decay * level)
            try:
                self.store.put(block)
            except Exception as exc:
                self._failed("saved", exc)
            self.snapshot = {**self.snapshot, who: block}
        log.warning("Blocked %s for %d s (level %d): %s", who, block.seconds_left(now), level, why)
        return block

    def in_force(self, now=None):
        """Blocks not yet over, freshly read, soonest end first."""
        now = time.time() if now is None else now
        self.read_at = -math.inf
        return sorted((b for b in self.current().values() if b.until > now), key=lambda b: b.until)

    def lift(self, who):
        """End `who`'s block and forget its level; True when there was one."""
        with self.lock:
            existed = who in self.snapshot
            self.snapshot = {k: v for k, v in self.snapshot.items() if k != who}
            existed = self.store.delete(who) or existed
        self._lifted(who)
        return existed


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
        self.user_limits = ParsedOnce(config["RATELIMIT_USER"], key_function=_user_key, scope="user",
                                      exempt_when=_anonymous)
        if config["REDIS_URL"]:
            namespace = config["REDIS_NAMESPACE"]
            self.blocks_store = RedisBlockStore(config["REDIS_URL"], namespace)
            storage = dict(
                storage_uri=config["REDIS_URL"],
                # Strategies keep different Redis types under the same key names: a prefix per strategy
                # lets the strategy change on a live Redis without WRONGTYPE errors.
                storage_options={"key_prefix": f"{namespace}:limits:{self.strategy}",
                                 "socket_timeout": 0.5, "socket_connect_timeout": 0.5},
                in_memory_fallback_enabled=True,
            )
        else:
            self.blocks_store = SqliteBlockStore(os.path.join(app.instance_path, "limits.db"))
            storage = dict(storage_uri="sipup-memory://")
        self.blocks = Blocks(self.blocks_store, config["RATELIMIT_BLOCK_SECONDS"], config["RATELIMIT_BLOCK_MAX_SECONDS"],
                             config["RATELIMIT_BLOCK_DECAY_SECONDS"], on_lift=self._start_afresh)
        self.limiter = Limiter(
            client_address,
            # All application limits: Flask-Limiter checks them in one pass, before the view.
            application_limits=[self.address_limits, self.user_limits, endpoint_limits(app)],
            strategy=self.strategy,
            # The headers cost one more storage round trip on every answer; 429s get them (see refused()).
            headers_enabled=False,
            swallow_errors=True,  # the limiter never fails a request
            on_breach=self._breached,
            # Unknown URLs count too, so scanning for pages spends the address's budget.
            request_identifier=lambda: request.endpoint or "not-found",
            **storage,
        )

    @property
    def storage_name(self):
        return "redis" if self.app.config["REDIS_URL"] else "memory"

    @property
    def fallback_active(self):
        """True while Redis is unreachable and each process counts on its own."""
        return bool(getattr(self.limiter, "_storage_dead", False))

    def init_app(self, app):
        hooks = app.before_request_funcs.setdefault(None, [])
        before = list(hooks)
        app.before_request(self._refuse_blocked)  # before the limiter's own check: blocked clients cost nothing
        self.limiter.init_app(app)
        # Count before any other hook answers (a CSRF failure is a 400 from a hook): every request spends budget.
        hooks[:] = [hook for hook in hooks if hook not in before] + before
        for endpoint in EXEMPT_ENDPOINTS & set(app.view_functions):
            self.limiter.exempt(app.view_functions[endpoint])
        app.register_error_handler(RateLimitExceeded, self._refused)

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
        from .errors import render_error

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
            "limits": {"address": config["RATELIMIT_IP"], "user": config["RATELIMIT_USER"],
                       **config["RATELIMIT_ENDPOINTS"]},
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


def blocks_in_force(app=None):
    """[Block] not yet over, soonest end first."""
    return _limits(app).blocks.in_force()


def unblock(app=None, who=None):
    """Lift a block ("addr:1.2.3.4" or "user:42"); True when there was one."""
    return _limits(app).unblock(who)


# --- command line ------------------------------------------------------------------------------

limits_cli = AppGroup("limits", help=(
    "Rate limits per address and user: `status` prints the limits, refusals per minute, the most limited "
    "clients and the blocks in force; `unblock` lifts blocks."))


def _user_emails(user_ids):
    from sqlalchemy import select

    from .extensions import db
    from .models import User

    ids = [int(i) for i in user_ids if i.isdigit()]
    if not ids:
        return {}
    return {str(i): e for i, e in db.session.execute(select(User.id, User.email).where(User.id.in_(ids)))}


def _name(who, emails):
    kind, _, key = who.partition(":")
    return f"user {emails.get(key, key)}" if kind == "user" else f"address {key}"


@limits_cli.command("status", short_help="Limits, refusals, top offenders and blocks.")
@click.option("--minutes", type=click.IntRange(1, 120), default=60, show_default=True, help="Time span.")
def limits_status(minutes):
    """Print the limits, refusals per minute, top limited addresses and users, and the blocks in force."""
    figures = status(minutes=minutes)
    fallback = ""
    if figures["fallback_active"] or not figures["storage_reachable"]:
        fallback = " (Redis unreachable: each process counts on its own in memory)"
    click.echo(f"Rate limits: {figures['strategy']} on {figures['storage']}{fallback}; blocks in {figures['blocks_store']}.")
    if figures["store_error"]:
        click.echo(f"  warning: statistics or blocks store unavailable: {figures['store_error']}")
    for name, limit in figures["limits"].items():
        click.echo(f"  {name:<28} {limit}")
    click.echo(f"\nLast {minutes} minutes: {figures['refused']:,} refused (429), {figures['refused_by_blocks']:,} "
               f"of them by blocks; {figures['blocks_started']:,} blocks started.")
    recent = [n for _start, n in figures["refused_per_minute"][-10:]]
    click.echo(f"  refused per minute, last 10: {' '.join(str(n) for n in recent)}")
    emails = _user_emails([who for who, _n in figures["top_users"]] + [b.who[5:] for b in figures["blocks"]])
    for title, rows, kind in (("Top limited addresses", figures["top_addresses"], "addr"),
                              ("Top limited users", figures["top_users"], "user")):
        click.echo(f"\n{title}:")
        for who, count in rows:
            click.echo(f"  {count:>8,}  {_name(f'{kind}:{who}', emails)}")
        if not rows:
            click.echo("  none")
    click.echo("\nBlocks in force:")
    for block in figures["blocks"]:
        until = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(block.until))
        click.echo(f"  {_name(block.who, emails):<40} until {until} ({block.seconds_left()} s, level {block.level}): {block.why}")
    if not figures["blocks"]:
        click.echo("  none")


def _who(text):
    """An address, a user's e-mail, or an "addr:"/"user:" key as listed, to the block list's key."""
    from sqlalchemy import func, select

    from .extensions import db
    from .models import User

    text = text.strip()
    if text.startswith(("addr:", "user:")):
        return text
    if "@" in text:
        user_id = db.session.scalar(select(User.id).where(func.lower(User.email) == text.lower()))
        if user_id is None:
            raise click.ClickException(f"No user with the e-mail {text}.")
        return f"user:{user_id}"
    return f"addr:{text}"


@limits_cli.command("unblock", short_help="Lift blocks of addresses or users (or --all).")
@click.argument("clients", nargs=-1)
@click.option("--all", "everyone", is_flag=True, help="Lift every block in force.")
def limits_unblock(clients, everyone):
    """Lift blocks: give addresses or users' e-mails (as `flask limits status` lists them), or --all."""
    if not clients and not everyone:
        raise click.UsageError("Name an address or a user's e-mail, or give --all.")
    keys = [b.who for b in blocks_in_force()] if everyone else [_who(c) for c in clients]
    missing = []
    for who in keys:
        try:
            lifted = unblock(who=who)
        except Exception as exc:  # the blocks store is down: say so, do not pretend
            raise click.ClickException(f"Could not lift the block on {who}: {exc}") from None
        (click.echo(f"Lifted the block on {who}.") if lifted else missing.append(who))
    if everyone and not keys:
        click.echo("No blocks in force.")
    if missing:
        raise click.ClickException("No block in force for " + ", ".join(missing) + " (its counters were reset).")
