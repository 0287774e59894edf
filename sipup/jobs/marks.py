"""Marks in the shared counters store that every processor and worker reads: paused priorities, and the
jobs running now on every host."""

import time

from sipup.jobs.registry import PRIORITIES

PAUSED = "paused:"  # marks of paused priorities in the shared counters store: paused:<priority name>
RUNNING = "running:"  # marks of running jobs in the shared counters store: running:<job id>|<host>|<pid>


def paused_priorities(counters):
    """The names of the paused priorities ({} while the store does not answer: jobs then run)."""
    return {name.removeprefix(PAUSED) for name in counters.marks(PAUSED)} & set(PRIORITIES)


def set_paused(counters, priority, paused):
    """Pause or resume a priority for every processor and worker; raises when the store does not answer."""
    if priority not in PRIORITIES:
        raise ValueError(f"Unknown priority {priority!r}; use high, normal or low.")
    counters.store.mark(PAUSED + priority, paused, time.time())


def running_marks(counters, every=False):
    """{job id: (host, process id, since)} of the jobs that processors and workers of every host run now, by
    the marks they set as they start each run, the newest mark of a job where it has more ({} while the store
    does not answer). every: [(job id, mark name)] of every mark instead."""
    found, names = {}, []
    for name, since in sorted(counters.marks(RUNNING).items(), key=lambda item: item[1]):
        job_id, _, where = name.removeprefix(RUNNING).partition("|")
        host, _, pid = where.rpartition("|")
        if job_id.isdigit():
            found[int(job_id)] = (host, pid, since)
            names.append((int(job_id), name))
    return names if every else found
