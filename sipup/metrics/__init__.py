"""Metrics: what sipup records about itself as it runs, written by every layer and reading none of them.

Modules:
- `counters`: named counts per minute and hour, maxima, short texts and running totals, in the one
  store shared by every process (Redis, or instance/metrics.db); traffic, SQL statements, the cache,
  limits and jobs count here.
- `counter_stores`: where the counters live: instance/metrics.db (SQLite) or Redis hashes.
- `traffic`: requests, errors and latency per endpoint (counters group "traffic").
- `query_stats`: every SQL statement timed per normalised text and kind (counters group "dbstats"),
  the slow query log.
- `statements`: statement texts normalised (literals and parameters as ?), shortened, and their kind.
- `pool`: the connection pool's status, waits and timeouts, and the connection budget of every process.
- `processes`: the long-running processes that hold a database pool, with the address they serve.
- `logs`: error logs to rotating files in instance/logs/.
- `exceptions`: unexpected exceptions of requests and jobs, grouped by type and place, with scrubbed traces.
- `outages`: one log line when a dependency goes away, a count a minute while it stays away, one when it is back.
- `compat`: the SQLAlchemy pool internals the pool statistics rely on, in one place.

What reads these figures for /monitor and /metrics is sipup/observability/, a layer above.

Exports the register steps create_app() uses: `register_logging`, `register_counters`,
`register_traffic` (query statistics are registered with the database engine).
"""

from sipup.metrics.counters import register_counters
from sipup.metrics.logs import register_logging
from sipup.metrics.traffic import register_traffic

__all__ = ["register_counters", "register_logging", "register_traffic"]
