"""Observability: what sipup measures about itself, and what /monitor and /metrics show of it.

Modules, from the bottom up:
- `counters`: named counts per minute and hour, maxima, short texts and running totals, in the one
  store shared by every process (Redis, or instance/metrics.db); traffic, SQL statements, the cache,
  limits and jobs count here.
- `traffic`: requests, errors and latency per endpoint (counters group "traffic").
- `query_stats`: every SQL statement timed per normalised text and kind (counters group "dbstats"),
  the slow query log, the pool.
- `logs`: error logs to rotating files in instance/logs/.
- `exceptions`: unexpected exceptions of requests and jobs, grouped by type and place, with scrubbed traces.
- `outages`: one log line when a dependency goes away, a count a minute while it stays away, one when it is back.
- `health`: each part checked (database, Redis, cache, queue processor, limiter, disk, ...) and one verdict.
- `recommendations`: the seed's daily checks as rules over measured figures.
- `charts`: geometry of the server-rendered SVG charts.
- `panels`: the data of each /monitor panel.
- `prometheus`: the `/metrics` exposition (prometheus-client).
- `alerts`: one mail to admins when health turns red or a recommendation stays red, one when it clears, one
  per new exception group.

Exports the register steps create_app() uses: `register_logging`, `register_counters`,
`register_traffic` (query statistics are registered with the database engine).
"""

from sipup.observability.counters import register_counters
from sipup.observability.logs import register_logging
from sipup.observability.traffic import register_traffic

__all__ = ["register_counters", "register_logging", "register_traffic"]
