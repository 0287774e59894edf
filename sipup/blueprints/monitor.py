"""`/monitor` for admins: panels that refresh themselves every 30 seconds; `/metrics` for Prometheus."""
import hmac
import ipaddress
import re
import time
from datetime import datetime, timezone

from flask import Blueprint, Response, abort, current_app, render_template, request
from markupsafe import Markup, escape

from .. import monitor
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


def _render(name, title):
    """A panel's partial, or its inline error state when building its data fails."""
    try:
        data, error = monitor.panel(name), None
    except Exception as exc:  # one failing panel must not take the page or the other panels down
        current_app.logger.exception("Monitor panel %s failed", name)
        data, error = None, f"{type(exc).__name__}: {exc}"
    return render_template("monitor/_panel.html", name=name, title=title, data=data, error=error,
                           failed_at=time.time())


@bp.app_template_filter("clock")
def _clock(timestamp):
    return datetime.fromtimestamp(timestamp, timezone.utc).strftime("%H:%M:%S UTC")


@bp.app_template_filter("ago")
def _ago(timestamp):
    minutes = int(max(0, time.time() - timestamp) // 60)
    if minutes < 1:
        return "under a minute"
    if minutes < 120:
        return f"{minutes} min"
    return f"{minutes // 60} h {minutes % 60} min"


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
