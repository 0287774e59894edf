"""What a run measured: one Recorder per virtual user thread (no locks), merged into a Result at the end.

A request counts from its intended start when the open model set one (so a late start shows up in
its latency, as wrk2 and vegeta measure), else from when it was sent. Requests that begin within the
warm-up are counted apart and left out of every figure.
"""

from .histogram import Histogram

PERCENTILES = (50, 90, 95, 99, 99.9)
RATE_LIMITED = "HTTP 429 (rate limited)"


def failure_reason(status, error):
    """The failure group of one answer, or None when it succeeded."""
    if error:
        return error
    if status >= 400:
        return RATE_LIMITED if status == 429 else f"HTTP {status}"
    return None


class PageStats:
    """Requests, failures by reason and a latency histogram for one page (or the total)."""

    __slots__ = ("requests", "failures", "histogram")

    def __init__(self):
        self.requests = 0
        self.failures = {}
        self.histogram = Histogram()

    @property
    def failed(self):
        return sum(self.failures.values())

    def merge(self, other):
        self.requests += other.requests
        for reason, n in list(other.failures.items()):
            self.failures[reason] = self.failures.get(reason, 0) + n
        self.histogram.merge(other.histogram)
        return self


class Second:
    """One second of the run, for the charts: requests, failures and their latencies."""

    __slots__ = ("requests", "failures", "histogram")

    def __init__(self):
        self.requests = 0
        self.failures = 0
        self.histogram = Histogram()


class Recorder:
    """Collects one thread's requests; `clock` gives the run's start and the end of its warm-up."""

    def __init__(self, clock, late_after):
        self.clock = clock
        self.late_after = late_after
        self.pages = {}
        self.seconds = {}
        self.warmup_requests = 0
        self.late = 0
        self.dropped = 0
        self.scheduled = 0
        self._last = None  # (page, second) of the last counted request, for check failures

    def __call__(self, name, status, started, ended, intended, error, judged=False):
        """Count one request; judged: an error status the scenario expected and checks itself (fail_last)."""
        begin = started if intended is None else intended
        if begin < self.clock.measure_from:
            self.warmup_requests += 1
            self._last = None
            return
        if intended is not None and started - intended > self.late_after:
            self.late += 1
        page = self.pages.get(name)
        if page is None:
            page = self.pages[name] = PageStats()
        micros = int((ended - begin) * 1_000_000)
        page.requests += 1
        page.histogram.record(micros)
        second_index = int(ended - self.clock.measure_from)
        second = self.seconds.get(second_index)
        if second is None:
            second = self.seconds[second_index] = Second()
        second.requests += 1
        second.histogram.record(micros)
        reason = None if judged else failure_reason(status, error)
        if reason:
            page.failures[reason] = page.failures.get(reason, 0) + 1
            second.failures += 1
            self._last = None
        else:
            self._last = (page, second)

    def fail_last(self, reason):
        """Count the last request, which answered fine (or as expected), as failed after all (a scenario's check)."""
        if self._last is None:
            return
        page, second = self._last
        page.failures[reason] = page.failures.get(reason, 0) + 1
        second.failures += 1
        self._last = None

    def count_schedule(self, dropped=False):
        """The open model's bookkeeping: one arrival scheduled, perhaps dropped."""
        self.scheduled += 1
        if dropped:
            self.dropped += 1

    @property
    def requests(self):
        return sum(page.requests for page in list(self.pages.values()))

    @property
    def failures(self):
        return sum(page.failed for page in list(self.pages.values()))


class Result:
    """Every recorder merged: per page, in total and per second."""

    def __init__(self, recorders):
        self.pages = {}
        self.seconds = {}
        self.warmup_requests = self.late = self.dropped = self.scheduled = 0
        for recorder in recorders:
            self.add(recorder)

    def add(self, recorder):
        for name, page in list(recorder.pages.items()):
            self.pages.setdefault(name, PageStats()).merge(page)
        for index, second in list(recorder.seconds.items()):
            mine = self.seconds.setdefault(index, Second())
            mine.requests += second.requests
            mine.failures += second.failures
            mine.histogram.merge(second.histogram)
        self.warmup_requests += recorder.warmup_requests
        self.late += recorder.late
        self.dropped += recorder.dropped
        self.scheduled += recorder.scheduled

    def total(self):
        total = PageStats()
        for page in self.pages.values():
            total.merge(page)
        return total
