"""Bulk inserts and updates of dict rows through SQLAlchemy Core, in batches, inside the caller's transaction.

Nothing here commits: the caller commits once when all batches are in, or rolls back and nothing of
them stays. Each batch is one executemany, which PyMySQL turns into multi-row INSERTs.
"""

from itertools import islice

from sqlalchemy import Table, bindparam, update

from sipup.extensions import db

BATCH_SIZE = 5000


def _table(model_or_table):
    return model_or_table if isinstance(model_or_table, Table) else model_or_table.__table__


def _batches(rows, size):
    if size < 1:
        raise ValueError("batch_size must be 1 or more")
    rows = iter(rows)
    while batch := list(islice(rows, size)):
        yield batch


def bulk_insert(model_or_table, rows, batch_size=BATCH_SIZE, progress=None):
    """Insert dict rows batch by batch in the current transaction; return how many, call progress(n) per batch."""
    table = _table(model_or_table)
    count = 0
    for batch in _batches(rows, batch_size):
        db.session.execute(table.insert(), batch)
        count += len(batch)
        if progress:
            progress(len(batch))
    return count


def bulk_update(model, rows, key="id", batch_size=BATCH_SIZE, progress=None, cache_touches=None):
    """Set each row's other columns where `key` equals its value, batch by batch in the current transaction.
    cache_touches: the cache generations the change renews, where the table's own would say too much (stock
    levels renew the stock's, not the whole catalog's)."""
    options = {} if cache_touches is None else {"cache_touches": tuple(cache_touches)}
    table = _table(model)
    statements = {}  # one UPDATE per set of columns: rows may set different columns
    count = 0
    for batch in _batches(rows, batch_size):
        groups = {}
        for row in batch:
            if key not in row:
                raise ValueError(f"bulk_update: a row has no {key!r}: {row!r}")
            columns = tuple(sorted(name for name in row if name != key))
            if not columns:
                raise ValueError(f"bulk_update: a row sets no column: {row!r}")
            # Bound names must differ from the column names SQLAlchemy reserves for SET.
            groups.setdefault(columns, []).append({f"b_{name}": value for name, value in row.items()})
        for columns, params in groups.items():
            statement = statements.get(columns)
            if statement is None:
                statement = statements[columns] = (
                    update(table)
                    .where(table.c[key] == bindparam(f"b_{key}"))
                    .values({name: bindparam(f"b_{name}") for name in columns})
                )
            db.session.execute(statement, params, execution_options=options)
        count += len(batch)
        if progress:
            progress(len(batch))
    return count
