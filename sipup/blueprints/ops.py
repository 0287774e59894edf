"""Probes for load balancers and process managers: alive and ready."""

import redis
from flask import Blueprint, current_app, jsonify

from ..database import check_writable

bp = Blueprint("ops", __name__)


@bp.route("/healthz")
def healthz():
    """The process answers."""
    return jsonify(status="ok")


@bp.route("/readyz")
def readyz():
    """The database answers and takes writes (and Redis, where configured, answers); 503 names what does not."""
    checks = {}
    try:
        problem = check_writable()  # a committed no-op write: it reads as well
        checks["database"] = f"not writable: {problem}" if problem else "ok"
    except Exception as exc:  # any driver error means not ready; the probe says which part
        checks["database"] = f"error: {type(exc).__name__}"
    redis_url = current_app.config["REDIS_URL"]
    if redis_url:
        client = redis.Redis.from_url(redis_url, socket_timeout=1, socket_connect_timeout=1)
        try:
            client.ping()
            checks["redis"] = "ok"
        except redis.RedisError as exc:
            checks["redis"] = f"error: {type(exc).__name__}"
        finally:
            client.close()
    ready = all(value == "ok" for value in checks.values())
    return jsonify(status="ready" if ready else "not ready", checks=checks), 200 if ready else 503
