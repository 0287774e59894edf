"""Database tools beyond the ORM: bulk writes, and `flask db optimize` (indexes checked against the
models, monthly partitions of the orders tables, table maintenance, a performance report).

Modules: `batch` (`bulk_insert`, `bulk_update`: Core executemany in batches, in the caller's
transaction); `optimize` (the Optimizer, `flask db optimize`, `partition_orders`), made of its steps:
`indexes`, `partitions`, `maintenance`, and `report` (key queries timed, the report's sections and text),
all running statements through `statements` (the optimizer's own connection, dry runs, StepFailed).

Exports `bulk_insert` and `bulk_update`.
"""

from sipup.dbtools.batch import bulk_insert, bulk_update

__all__ = ["bulk_insert", "bulk_update"]
