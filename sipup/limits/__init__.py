"""Rate limits: budgets per address and per user, tighter limits per endpoint, and blocks that double
for clients that keep pushing.

Modules: `limiter` (Flask-Limiter set up with sipup's keys, fallback and statistics), `blocks` (the
block list and its SQLite and Redis stores), `known` (the addresses each account signed in from lately),
`cli` (`flask limits status`, `flask limits unblock`). The endpoint-rule parser lives in sipup/config/rate_limits.py,
beside the setting it validates.

Exports `register_limits` for create_app(), `remember_sign_in` for the sign-in form and, for /monitor and
the command line, `status`, `blocks_in_force` and `unblock`.
"""

from sipup.limits.limiter import blocks_in_force, register_limits, remember_sign_in, status, unblock

__all__ = ["blocks_in_force", "register_limits", "remember_sign_in", "status", "unblock"]
