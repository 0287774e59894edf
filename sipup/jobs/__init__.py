"""Background jobs: Huey carries the messages, the `jobs` table is the record that no job is lost.

Modules: `queue` (the design, and `Queue`, one app's queue, made of the parts below), `registry` (`job`,
`enqueue`, `PermanentError`, the priorities, the hand-off to Huey after commit), `store` (Huey on Redis or
SQLite, the store's epoch and its losses), `outbox` (sending job rows to Huey, again when they went
missing), `running` (claim, run, record the outcome), `reaper` (runs whose process went away), `process`
(the housekeeping and `flask queue process`), `heartbeats` (the queue_runs table), `marks` (paused
priorities, running jobs), `stats` (run times and waits), `worker` (`flask queue worker`: Huey's consumer with
sipup's housekeeping), `manage` (status, browsing, retry, cancel, delete, clean-up for the command
line and /monitor), `housekeeping` (the hourly clean-up job's work), `cli` (`flask queue ...`),
`names` (the job names services enqueue by), `compat` (the Huey internals relied on, in one place).
The jobs themselves are in sipup/tasks.py, a layer above: they call services.

Exports what sipup/tasks.py and services use: `job`, `crontab`, `enqueue`, `PermanentError`, and
`register_queue` for create_app().
"""

from huey import crontab

from sipup.jobs.queue import register_queue
from sipup.jobs.registry import PermanentError, enqueue, job

__all__ = ["PermanentError", "crontab", "enqueue", "job", "register_queue"]
