"""Outage logging: one line when a dependency goes away, a count per minute while it stays away, one line when
it answers again, instead of a line (or a traceback) for every request or poll that finds it gone."""

import logging
import threading
import time

REPORT_SECONDS = 60


class Outage:
    """The log of one dependency's outages in this process (the database, the job queue's Redis, ...)."""

    def __init__(self, name, logger, report_seconds=REPORT_SECONDS, clock=time.monotonic):
        self.name, self.log, self.report_seconds, self.clock = name, logger, report_seconds, clock
        self.lock = threading.Lock()
        self.down_since = None
        self.reported_at = None
        self.failures = 0  # since the last line
        self.total = 0  # since it went away

    @property
    def down(self):
        return self.down_since is not None

    def failed(self, error, where=""):
        """Count one failure; log a line when it is the first, or the first after a minute of them."""
        now = self.clock()
        with self.lock:
            self.failures += 1
            self.total += 1
            if self.down_since is None:
                self.down_since = self.reported_at = now
                self.failures = 0
                line = f"{self.name} unavailable{where}: {describe(error)}"
            elif now - self.reported_at >= self.report_seconds:
                line = (
                    f"{self.name} still unavailable after {now - self.down_since:.0f} s: {self.failures} failure(s) "
                    f"in the last {now - self.reported_at:.0f} s; the last: {describe(error)}"
                )
                self.reported_at, self.failures = now, 0
            else:
                return
        self.log.warning("%s", line)

    def ok(self):
        """It answered: log one line if it had gone away."""
        if self.down_since is None:  # the common case, without the lock
            return
        now = self.clock()
        with self.lock:
            if self.down_since is None:
                return
            down_for, total = now - self.down_since, self.total
            self.down_since = self.reported_at = None
            self.failures = self.total = 0
        self.log.warning("%s answers again after %.0f s (%d failure(s) meanwhile)", self.name, down_for, total)


def describe(error):
    """The first line of an error, with the driver's own message where there is one."""
    text = str(getattr(error, "orig", None) or error) or type(error).__name__
    return text.splitlines()[0][:300]


_OUTAGES = {}
_OUTAGES_LOCK = threading.Lock()


def outage(name, logger_name="sipup.outages"):
    """The process's one Outage for this dependency."""
    with _OUTAGES_LOCK:
        if name not in _OUTAGES:
            _OUTAGES[name] = Outage(name, logging.getLogger(logger_name))
        return _OUTAGES[name]
