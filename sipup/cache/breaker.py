"""The circuit breaker in front of the cache store: when the store errors or times out, requests stop waiting
on it for CACHE_RETRY_SECONDS and use this process's fallback; then one request tries the store again, and
when it answers every generation is renewed (writes made meanwhile never reached it)."""

import logging
import secrets
import time

from sipup.cache import drivers as cache_drivers
from sipup.cache.drivers import STORE_ERRORS, writes_ok

log = logging.getLogger("sipup.cache")


class StoreFailed(Exception):
    """The cache store raised, timed out, or refused a write."""


def new_token():
    return secrets.token_hex(8)


class Breaker:
    """CacheLayer's breaker: every store call goes through _call; _failed opens the circuit."""

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
            ok = writes_ok(self.primary.set("gen:epoch", new_token(), timeout=0))
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
