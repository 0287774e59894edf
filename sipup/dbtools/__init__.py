"""Database tools beyond the ORM: bulk writes, and `flask db optimize` (indexes checked against the
models, monthly partitions of the orders tables, table maintenance, a performance report).

Modules: `batch` (`bulk_insert`, `bulk_update`: Core executemany in batches, in the caller's
transaction), `optimize` (the optimizer, `flask db optimize`, `partition_orders`).

Exports `bulk_insert` and `bulk_update`.
"""

from sipup.dbtools.batch import bulk_insert, bulk_update

__all__ = ["bulk_insert", "bulk_update"]
