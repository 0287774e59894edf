"""Observability: what /monitor and /metrics show, read from everything below (the figures of sipup/metrics/,
the database, the cache, the queue, the limits, storage).

Modules:
- `health`: each part checked (database, Redis, cache, queue processor, limiter, disk, ...) and one verdict.
- `recommendations`: the seed's daily checks as rules over measured figures.
- `charts`: /monitor's SVG line charts over time, of the primitives in sipup/charts.py.
- `panels`: the data of each /monitor panel.
- `prometheus`: the `/metrics` exposition (prometheus-client).
- `alerts`: one mail to admins when health turns red or a recommendation stays red, one when it clears, one
  per new exception group.

Used by the monitor blueprint and the periodic alerts job; nothing below imports it.
"""
