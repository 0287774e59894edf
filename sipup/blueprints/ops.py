"""Probes for load balancers and process managers: alive and ready.

`/readyz` takes a host out of rotation only when this host cannot serve buyers: its database does not
answer (or takes no writes) within DATABASE_SECONDS, or the server is stopping. Redis is shared by every
host, so a Redis that does not answer leaves each host serving (degraded): the probe says so with 200, since
taking every host out of the balancer at once would turn a slower shop into no shop. Every answer comes
within PROBE_SECONDS whatever hangs behind it.
"""

import threading

import redis
from flask import Blueprint, current_app, jsonify

from .. import redisclient
from ..database import check_writable

bp = Blueprint("ops", __name__)

DATABASE_SECONDS = 2.0  # the database check's answer is awaited this long
REDIS_SECONDS = 0.5  # connect and read timeout of the Redis ping


class DatabaseProbe:
    """The database's write check, run in a thread of its own so the probe can stop waiting for it; one
    check at a time per app, so probes every second against a hung database never pile up threads."""

    def __init__(self, app):
        self.app = app
        self.lock = threading.Lock()
        self.done = None  # the running check's Event, None while none runs
        self.result = None

    def __call__(self, timeout):
        """ "ok" or what is wrong, within `timeout` seconds."""
        with self.lock:
            if self.done is None:
                self.done = done = threading.Event()
                threading.Thread(target=self._run, args=(done,), name="sipup-readyz", daemon=True).start()
            else:
                done = self.done
        if not done.wait(timeout):
            return f"error: no answer within {timeout:g} s"
        return self.result

    def _run(self, done):
        try:
            with self.app.app_context():
                problem = check_writable()  # a committed no-op write: it reads as well
            result = f"not writable: {problem}" if problem else "ok"
        except Exception as exc:  # any driver error means not ready; the probe says which part
            result = f"error: {type(exc).__name__}"
        with self.lock:
            self.result, self.done = result, None
        done.set()


def _redis_check(url):
    client = redisclient.connect(url, timeout=REDIS_SECONDS)
    try:
        client.ping()
        return "ok"
    except redis.RedisError as exc:
        return f"error: {type(exc).__name__}"
    finally:
        client.close()


@bp.route("/healthz")
def healthz():
    """The process answers."""
    return jsonify(status="ok")


@bp.route("/readyz")
def readyz():
    """200 while this host can serve (degraded when Redis does not answer); 503 names what stops it."""
    app = current_app._get_current_object()
    probe = app.extensions.setdefault("readyz_probe", DatabaseProbe(app))
    checks = {"database": probe(DATABASE_SECONDS)}
    if app.config["REDIS_URL"]:
        checks["redis"] = _redis_check(app.config["REDIS_URL"])
    if app.extensions.get("stopping"):
        checks["server"] = "stopping"
    if checks["database"] != "ok" or "server" in checks:
        return jsonify(status="not ready", checks=checks), 503
    degraded = [f"{part} {value}" for part, value in checks.items() if value != "ok"]
    if degraded:
        reason = "; ".join(degraded) + ": pages are served, shared cache, limits and queue fall back meanwhile"
        return jsonify(status="degraded", checks=checks, reason=reason)
    return jsonify(status="ready", checks=checks)
