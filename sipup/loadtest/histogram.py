"""Latency histograms that merge exactly: fixed log-linear buckets in microseconds, counts per bucket.

Every histogram has the same bucket layout, so adding two histograms' counts gives exactly the
histogram of all their values together: per-thread, per-second and per-page figures combine without
the error that averaging percentiles would bring. Values below 256 µs are exact; above, a bucket is
at most 1/128 of its value wide (under 0.8%), and a percentile is reported as its bucket's midpoint.
"""

import math

SUB_BITS = 8
SUB = 1 << SUB_BITS  # 256
HALF = SUB >> 1


def bucket_of(micros):
    """The bucket index of a value in whole microseconds."""
    if micros < SUB:
        return micros if micros > 0 else 0
    shift = micros.bit_length() - SUB_BITS
    return shift * HALF + (micros >> shift)


def bucket_bounds(index):
    """(lowest, highest) value in microseconds that falls into bucket `index`."""
    if index < SUB:
        return index, index
    shift, sub = divmod(index - HALF, HALF)
    sub += HALF
    return sub << shift, ((sub + 1) << shift) - 1


class Histogram:
    """Counts of latencies per bucket, plus the exact count, sum, minimum and maximum."""

    __slots__ = ("counts", "count", "total", "min", "max")

    def __init__(self):
        self.counts = {}
        self.count = 0
        self.total = 0
        self.min = None
        self.max = 0

    def record(self, micros):
        micros = int(micros)
        index = bucket_of(micros)
        self.counts[index] = self.counts.get(index, 0) + 1
        self.count += 1
        self.total += micros
        if micros > self.max:
            self.max = micros
        if self.min is None or micros < self.min:
            self.min = micros

    def merge(self, other):
        """Add another histogram's values to this one (exact: same buckets)."""
        counts = self.counts
        for index, n in list(other.counts.items()):
            counts[index] = counts.get(index, 0) + n
        self.count += other.count
        self.total += other.total
        self.max = max(self.max, other.max)
        if other.min is not None and (self.min is None or other.min < self.min):
            self.min = other.min
        return self

    def copy(self):
        return Histogram().merge(self)

    def percentile(self, p):
        """The value in microseconds below or at which p percent of the values lie (0 when empty)."""
        if not self.count:
            return 0
        if p >= 100:
            return self.max
        rank = max(1, math.ceil(self.count * p / 100))
        seen = 0
        for index in sorted(self.counts):
            seen += self.counts[index]
            if seen >= rank:
                low, high = bucket_bounds(index)
                return min(max((low + high) // 2, self.min or 0), self.max)
        return self.max

    def mean(self):
        return self.total / self.count if self.count else 0.0

    def to_dict(self):
        return {
            "count": self.count,
            "sum_us": self.total,
            "min_us": self.min or 0,
            "max_us": self.max,
            "buckets": {str(k): v for k, v in sorted(self.counts.items())},
        }

    @classmethod
    def from_dict(cls, data):
        histogram = cls()
        histogram.counts = {int(k): v for k, v in data["buckets"].items()}
        histogram.count, histogram.total = data["count"], data["sum_us"]
        histogram.min = data["min_us"] if data["count"] else None
        histogram.max = data["max_us"]
        return histogram
