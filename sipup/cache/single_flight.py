"""A missing or stale hot key is recomputed once: threads of one process share one computation, and
processes on Redis or Memcached take a short lock in the store."""

import threading
import time

from sipup.cache import compat

LOCK_SECONDS = 10  # a recomputing process that dies frees its key after this long
WAIT_SECONDS = 2.0  # how long others wait for a recomputed value before computing it themselves
LANDED_KEPT = 10_000  # keys whose last computation time is kept, to tell a thread that missed it


class _Flight:
    def __init__(self):
        self.done = threading.Event()
        self.value = self.error = None


class SingleFlight:
    """CacheLayer's one computation per key: in this process, and across processes by a lock in the store."""

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
