"""`/monitor` for admins: panels that refresh themselves every 30 seconds; `/metrics` for Prometheus."""
import hmac
import ipaddress
import re
import time
from datetime import datetime, timezone

from flask import Blueprint, Response, abort, current_app, flash, redirect, render_template, request, url_for
from markupsafe import Markup, escape

from .. import monitor
from ..health import duration
from ..security import admin_required

bp = Blueprint("monitor", __name__)


@bp.route("/monitor")
@admin_required
def index():
    """Every panel on one page; each then refreshes itself."""
    panels = [Markup(_render(name, title)) for name, title in monitor.panels()]
    return render_template("monitor/index.html", panels=panels)


@bp.route("/monitor/panels/<name>")
@admin_required
def panel(name):
    """One panel alone, for its HTMX refresh."""
    titles = dict(monitor.panels())
    if name not in titles:
        abort(404)
    return _render(name, titles[name])


@bp.post("/monitor/jobs/<id:job_id>/retry")
@admin_required
def retry_job(job_id):
    """Queue a failed job again with fresh attempts."""
    from ..queue import retry_job as retry

    try:
        record = retry(job_id)
        message, category = f"Job {record.id} ({record.name}) is queued again.", "success"
    except (LookupError, ValueError) as exc:
        message, category = str(exc), "error"
    return _after_action("queue", message, category)


@bp.post("/monitor/blocks/unblock")
@admin_required
def unblock():
    """Lift a rate-limit block; the client starts afresh."""
    from .. import limits

    who = request.form.get("who", "").strip()[:200]
    if not who.startswith(("addr:", "user:")):
        return _after_action("limits", "Name a block as addr:<address> or user:<id>.", "error")
    try:
        lifted = limits.unblock(who=who)
    except Exception as exc:  # limits switched off, or their Redis down: say so, as `flask limits` does
        return _after_action("limits", f"{who} could not be unblocked: {exc}", "error")
    message = f"{who} is unblocked and starts afresh." if lifted else f"{who} was not blocked; its counts start afresh."
    return _after_action("limits", message, "success")


def _after_action(name, message, category):
    """HTMX gets the panel itself, fresh, with the outcome; a plain form post goes back to the page."""
    monitor.forget(name)
    if request.headers.get("HX-Request"):
        return _render(name, dict(monitor.panels())[name], notice=(message, category))
    flash(message, category)
    return redirect(url_for("monitor.index") + f"#panel-{name}")


def _render(name, title, notice=None):
    """A panel's partial, or its inline error state when building its data fails."""
    try:
        data, error = monitor.panel(name), None
    except Exception as exc:  # one failing panel must not take the page or the other panels down
        current_app.logger.exception("Monitor panel %s failed", name)
        data, error = None, f"{type(exc).__name__}: {exc}"
    return render_template("monitor/_panel.html", name=name, title=title, data=data, error=error,
                           failed_at=time.time(), notice=notice)


@bp.app_template_filter("clock")
def _clock(timestamp):
    return datetime.fromtimestamp(timestamp, timezone.utc).strftime("%H:%M:%S UTC")


@bp.app_template_filter("ago")
def _ago(timestamp):
    return duration(max(0, time.time() - timestamp))


bp.add_app_template_filter(duration, "duration")


@bp.app_template_filter("inline_code")
def _inline_code(text):
    """Advice text with `commands` set as code; everything else escaped."""
    return Markup(re.sub(r"`([^`]+)`", r"<code>\1</code>", str(escape(text))))


@bp.route("/metrics")
def metrics():
    """Figures in Prometheus text format, for a bearer token or an allowed address only."""
    if not _metrics_allowed():
        abort(403)
    return Response(monitor.prometheus_text(), mimetype="text/plain; version=0.0.4; charset=utf-8")


def _metrics_allowed():
    token = current_app.config["METRICS_TOKEN"]
    given = request.headers.get("Authorization", "")
    if token and hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
        return True
    try:
        address = ipaddress.ip_address(request.remote_addr or "")
    except ValueError:
        return False
    return any(address in network for network in current_app.config["METRICS_ALLOW"])
