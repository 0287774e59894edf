"""Background jobs: Huey carries the messages, the `jobs` table is the record that no job is lost.

Modules: `queue` (`job`, `enqueue`, `PermanentError` and the record: claim, finish, outbox, reaper,
the store's epoch, `flask queue process`), `worker` (`flask queue worker`: Huey's consumer with
sipup's housekeeping), `manage` (status, browsing, retry, cancel, delete, clean-up for the command
line and /monitor), `housekeeping` (the hourly clean-up job's work), `cli` (`flask queue ...`),
`names` (the job names services enqueue by), `compat` (the Huey internals relied on, in one place).
The jobs themselves are in sipup/tasks.py, a layer above: they call services.

Exports what sipup/tasks.py and services use: `job`, `crontab`, `enqueue`, `PermanentError`, and
`register_queue` for create_app().
"""

from huey import crontab

from sipup.jobs.queue import PermanentError, enqueue, job, register_queue

__all__ = ["PermanentError", "crontab", "enqueue", "job", "register_queue"]
