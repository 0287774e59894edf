"""The internals of limits (5.8) and Flask-Limiter (4.1.1) that the limiter relies on, in one place
(requirements.txt pins both); tests/test_compat.py checks each against the installed versions.

- `MemoryCounts`: limits' in-process storage without its expiry Timer thread (name-mangled methods).
- `HashedOnce`, `ParsedOnce`: Flask-Limiter's RuntimeLimit (a private module) hashed once, application
  limits parsed once, for the limiter's cost per request.
- `session_user_id`: where Flask-Login keeps the signed-in user's id in the session.
"""

import threading
import time
import weakref
from dataclasses import fields

from flask_limiter import ApplicationLimit
from flask_limiter._limits import RuntimeLimit
from limits.storage import MemoryStorage

SESSION_USER_KEY = "_user_id"  # Flask-Login's session key for the signed-in user's id


def session_user_id(session):
    """The signed-in user's id as Flask-Login stored it in the session ("" when nobody is signed in)."""
    return session.get(SESSION_USER_KEY) or ""


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
