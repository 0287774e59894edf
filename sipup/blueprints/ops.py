"""Probes for load balancers and process managers: alive and ready."""
from flask import Blueprint, current_app, jsonify
from sqlalchemy import text

from ..extensions import db

bp = Blueprint("ops", __name__)


@bp.route("/healthz")
def healthz():
    """The process answers."""
    return jsonify(status="ok")


@bp.route("/readyz")
def readyz():
    """The database (and Redis, where configured) answer; 503 names what does not."""
    checks = {}
    try:
        db.session.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as exc:  # any driver error means not ready; the probe says which part
        db.session.rollback()
        checks["database"] = f"error: {type(exc).__name__}"
    redis_url = current_app.config["REDIS_URL"]
    if redis_url:
        import redis

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
