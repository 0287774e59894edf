"""The SQLAlchemy (2.1) internals the query statistics rely on, in one place (requirements.txt pins
SQLAlchemy); tests/test_compat.py checks each against the installed version."""

import time

from sqlalchemy.pool import QueuePool


def max_overflow(pool):
    """A QueuePool's max_overflow (kept only privately); 0 for other pools."""
    return getattr(pool, "_max_overflow", 0)


class WaitTimingQueuePool(QueuePool):
    """SQLAlchemy's QueuePool, calling `on_wait(ms)` for each checkout that found every connection busy and
    waited (QueuePool._do_get is where a checkout waits)."""

    on_wait = None

    def _do_get(self):
        if self._max_overflow < 0 or self.checkedout() < self.size() + self._max_overflow:
            return super()._do_get()
        started = time.perf_counter()
        connection = super()._do_get()  # raises TimeoutError after pool_timeout, counted as a timeout
        type(self).on_wait((time.perf_counter() - started) * 1000)
        return connection
