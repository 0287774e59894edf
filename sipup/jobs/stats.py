"""Statistics of the jobs in the shared counters: run times per job type and waits per priority."""

import time

from sipup.jobs.registry import PRIORITIES, PRIORITY_NAMES
from sipup.metrics.counters import percentile

# Run times per job type, in the shared counters (group "jobs"): `<name>|n` runs, `|f` failed for good,
# `|r` failed and retried, `|h<i>` the run-time histogram in seconds (bounds below). The running totals
# also keep `|t` (milliseconds run) and `|<priority>:<outcome>` (done, failed, retried) for /metrics.
RUN_BOUNDS_S = (0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600)


OUTCOMES = {"f": "failed", "r": "retried", None: "done"}


def count_run(counters, task, started, failure):
    """Count one run of a job with its run time; failure: "f" (for good), "r" (retried) or None."""
    seconds = time.perf_counter() - started
    name, priority = task.name, PRIORITY_NAMES.get(task.priority, "normal")
    index = next((i for i, bound in enumerate(RUN_BOUNDS_S) if seconds <= bound), len(RUN_BOUNDS_S))
    amounts = {f"{name}|n": 1, f"{name}|h{index}": 1}
    if failure:
        amounts[f"{name}|{failure}"] = 1
    totals = {f"{name}|t": round(seconds * 1000), f"{name}|{priority}:{OUTCOMES[failure]}": 1}
    counters.incr_many("jobs", amounts, totals_only=totals)


def job_type_stats(counters, hours=24):
    """Per job type over the last `hours`: runs, failures (for good), retries and the p95 run time in s."""
    rows = {}
    for key, value in counters.totals("jobs", "hour", hours).items():
        name, _, field = key.rpartition("|")
        row = rows.setdefault(
            name, {"name": name, "runs": 0, "failed": 0, "retried": 0, "hist": [0] * (len(RUN_BOUNDS_S) + 1)}
        )
        if field.startswith("h"):
            row["hist"][int(field[1:])] += value
        else:
            row[{"n": "runs", "f": "failed", "r": "retried"}[field]] += value
    for row in rows.values():
        row["p95_s"] = percentile(row["hist"], 0.95, RUN_BOUNDS_S)
    return sorted(rows.values(), key=lambda r: (-r["runs"], r["name"]))


# Waits per priority in the shared counters (group "waits"): `<priority>|h<i>`, a histogram in seconds of the
# time from when a job was due (enqueued, or its delay or retry came) to the start of its run.
WAITS = "waits"
WAIT_BOUNDS_S = (1, 2, 5, 10, 30, 60, 120, 300, 900, 3600)


def count_wait(counters, task, seconds):
    """Count how long a job waited for its run to start."""
    priority = PRIORITY_NAMES.get(task.priority, "normal")
    index = next((i for i, bound in enumerate(WAIT_BOUNDS_S) if seconds <= bound), len(WAIT_BOUNDS_S))
    counters.incr(WAITS, f"{priority}|h{index}")


def wait_stats(counters, res="minute", count=60):
    """Per priority, highest first, over the last `count` buckets: runs started, and the p50 and p95 wait in
    seconds (the upper bound of its histogram bin; None without runs, inf past the last bound)."""
    hists = {name: [0] * (len(WAIT_BOUNDS_S) + 1) for name in PRIORITIES}
    for key, value in counters.totals(WAITS, res, count).items():
        name, _, field = key.rpartition("|")
        if name in hists and field[1:].isdigit() and int(field[1:]) < len(hists[name]):
            hists[name][int(field[1:])] += value
    return [
        {
            "priority": name,
            "started": sum(hist),
            "p50_s": percentile(hist, 0.50, WAIT_BOUNDS_S),
            "p95_s": percentile(hist, 0.95, WAIT_BOUNDS_S),
        }
        for name, hist in hists.items()
    ]
