"""`/monitor` for admins: panels that refresh themselves every 30 seconds; `/metrics` for Prometheus."""

import hmac
import ipaddress
import json
import re
import time
from datetime import datetime, timezone

from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_babel import gettext, lazy_gettext, ngettext
from markupsafe import Markup, escape

from sipup.jobs import manage, registry, stats
from sipup.jobs.manage import cancel_job as cancel
from sipup.jobs.manage import delete_job as delete
from sipup.jobs.manage import retry_job as retry
from sipup.limits import limiter as limits
from sipup.observability import panels as monitor
from sipup.observability.charts import DEFAULT_RANGE, RANGE_LABELS, pick_range
from sipup.observability.health import duration

from ..extensions import db
from ..models import Job
from ..security import admin_required
from ..services.parsing import page_number, whole_number

bp = Blueprint("monitor", __name__)


@bp.context_processor
def _job_words():
    return {"priority_names": registry.PRIORITY_NAMES, "range_labels": RANGE_LABELS}


@bp.route("/monitor")
@admin_required
def index():
    """Every panel on one page; each then refreshes itself."""
    panels = [Markup(_render(name, title, request.args.get(f"{name}_range"))) for name, title in monitor.panels()]
    return render_template("monitor/index.html", panels=panels)


@bp.route("/monitor/panels/<name>")
@admin_required
def panel(name):
    """One panel alone, for its HTMX refresh."""
    titles = dict(monitor.panels())
    if name not in titles:
        abort(404)
    return _render(name, titles[name], request.args.get("range"))


@bp.route("/monitor/jobs")
@admin_required
def jobs():
    """The job browser: every job, filtered by state, type and priority, a page at a time."""
    state = request.args.get("state", "")
    name = request.args.get("name", "")
    priority = request.args.get("priority", "")
    state = state if state in {s.value for s in registry.S} else ""
    priority = priority if priority in registry.PRIORITIES else ""
    page, notice = page_number(request.args.get("page"))
    results = manage.find_jobs(state or None, name or None, priority or None, page=page)
    context = {"results": results, "state": state, "name": name, "priority": priority, "page_notice": notice}
    if request.headers.get("HX-Request") and request.headers.get("HX-Target") == "job-list":
        return render_template("monitor/_job_list.html", **context)
    return render_template(
        "monitor/jobs.html",
        names=manage.job_names(),
        states=[s.value for s in registry.S],
        priorities=list(registry.PRIORITIES),
        kinds=stats.job_type_stats(current_app.extensions["counters"]),
        failed_count=manage.failed_jobs()[0],
        **context,
    )


@bp.route("/monitor/jobs/<id:job_id>")
@admin_required
def job(job_id):
    """One job: its arguments, attempts, times, error and result, with its actions."""
    record = db.session.get(Job, job_id)
    if record is None:
        abort(404)
    return render_template("monitor/job.html", job=record, args=_arguments(record.args))


def _arguments(text):
    try:
        return json.dumps(json.loads(text), indent=2, ensure_ascii=False)
    except ValueError:  # stored by an older version or by hand: show it as it is
        return text


@bp.post("/monitor/jobs/<id:job_id>/retry")
@admin_required
def retry_job(job_id):
    """Queue a failed or cancelled job again with fresh attempts."""
    try:
        record = retry(job_id)
        message, category = gettext("Job %(id)s (%(name)s) is queued again.", id=record.id, name=record.name), "success"
    except (LookupError, ValueError) as exc:
        message, category = str(exc), "error"
    return _after_action("queue", message, category)


@bp.post("/monitor/jobs/<id:job_id>/cancel")
@admin_required
def cancel_job(job_id):
    """Cancel a job that waits to run."""
    try:
        record = cancel(job_id)
        message, category = gettext("Job %(id)s (%(name)s) is cancelled.", id=record.id, name=record.name), "success"
    except (LookupError, ValueError) as exc:
        message, category = str(exc), "error"
    return _after_action("queue", message, category)


@bp.post("/monitor/jobs/<id:job_id>/delete")
@admin_required
def delete_job(job_id):
    """Delete a job that is not running from the history."""
    try:
        name = delete(job_id)
        message, category = gettext("Job %(id)s (%(name)s) is deleted.", id=job_id, name=name), "success"
    except (LookupError, ValueError) as exc:
        message, category = str(exc), "error"
    back = request.form.get("next", "")
    if back.startswith(f"/monitor/jobs/{job_id}") and category == "success":
        back = url_for("monitor.jobs")  # the job's own page is gone
    return _after_action("queue", message, category, back)


BULK = {  # the bulk actions on failed jobs: (what the question and outcome call it, the function)
    "retry": (lazy_gettext("Retry"), lazy_gettext("queued again"), manage.retry_failed),
    "delete": (lazy_gettext("Delete"), lazy_gettext("deleted"), manage.delete_failed),
}


@bp.route("/monitor/jobs/failed/<action>", methods=["GET", "POST"])
@admin_required
def failed_jobs(action):
    """Retry or delete every failed job: the count and a confirm button first, then the action on those jobs."""
    if action not in BULK:
        abort(404)
    verb, done, act = BULK[action]
    if request.method == "GET":
        count, newest = manage.failed_jobs()
        return render_template("monitor/confirm_failed.html", action=action, verb=verb, count=count, newest=newest)
    upto = whole_number(request.form.get("upto", ""))
    if upto is None:
        flash(gettext("The confirmation did not say which failed jobs; open the question again."), "error")
        return redirect(url_for("monitor.failed_jobs", action=action))
    changed = act(upto)
    monitor.forget("queue")
    flash(ngettext("%(num)s failed job %(done)s.", "%(num)s failed jobs %(done)s.", changed, done=done), "success")
    return redirect(url_for("monitor.jobs", state="failed"))


@bp.post("/monitor/queue/<priority>/<any(pause, resume):action>")
@admin_required
def pause_priority(priority, action):
    """Pause or resume a priority for every processor and worker."""
    if priority not in registry.PRIORITIES:
        return _after_action(
            "queue",
            gettext("There is no priority %(priority)r; use high, normal or low.", priority=priority[:20]),
            "error",
        )
    try:
        (manage.pause if action == "pause" else manage.resume)(priority)
    except Exception as exc:  # the shared store does not answer: say so, the priority stays as it was
        return _after_action(
            "queue",
            (
                gettext("The %(priority)s priority could not be paused: %(error)s", priority=priority, error=exc)
                if action == "pause"
                else gettext("The %(priority)s priority could not be resumed: %(error)s", priority=priority, error=exc)
            ),
            "error",
        )
    if action == "pause":
        message = gettext("Jobs of priority %(priority)s are paused: they wait until resumed.", priority=priority)
    else:
        message = gettext(
            "Jobs of priority %(priority)s run again; those that waited go out with the next processor run.",
            priority=priority,
        )
    return _after_action("queue", message, "success")


@bp.post("/monitor/blocks/unblock")
@admin_required
def unblock():
    """Lift a rate-limit block; the client starts afresh."""
    who = request.form.get("who", "").strip()[:200]
    if not who.startswith(("addr:", "user:")):
        return _after_action("limits", gettext("Name a block as addr:<address> or user:<id>."), "error")
    try:
        lifted = limits.unblock(who=who)
    except Exception as exc:  # limits switched off, or their Redis down: say so, as `flask limits` does
        return _after_action(
            "limits", gettext("%(who)s could not be unblocked: %(error)s", who=who, error=exc), "error"
        )
    message = (
        gettext("%(who)s is unblocked and starts afresh.", who=who)
        if lifted
        else gettext("%(who)s was not blocked; its counts start afresh.", who=who)
    )
    return _after_action("limits", message, "success")


def _after_action(name, message, category, back=None):
    """HTMX gets the panel itself, fresh, with the outcome; a plain form post goes back to the page it came
    from (the job browser) or to the panel."""
    monitor.forget(name)
    if request.headers.get("HX-Request"):
        return _render(name, dict(monitor.panels())[name], request.args.get("range"), notice=(message, category))
    flash(message, category)
    back = request.form.get("next", "") if back is None else back
    if back.startswith("/monitor/jobs") and "//" not in back and "\\" not in back:
        return redirect(back)
    return redirect(url_for("monitor.index") + f"#panel-{name}")


def _render(name, title, range_=None, notice=None):
    """A panel's partial over its time range, or its inline error state when building its data fails."""
    range_ = pick_range(range_) if monitor.ranged(name) else None
    verdict = None
    try:
        data, error = monitor.panel(name, range_ or DEFAULT_RANGE), None
        if name in ("health", "recommendations"):
            verdict = monitor.verdict()  # both panels show the same one
    except Exception as exc:  # one failing panel must not take the page or the other panels down
        current_app.logger.exception("Monitor panel %s failed", name)
        data, error = None, f"{type(exc).__name__}: {exc}"
    return render_template(
        "monitor/_panel.html",
        name=name,
        title=title,
        data=data,
        error=error,
        failed_at=time.time(),
        notice=notice,
        range=range_,
        verdict=verdict,
    )


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
    from sipup.observability import prometheus  # lazy: prometheus-client takes 0.1 s to import; only a scrape needs it

    return Response(prometheus.exposition(), content_type=prometheus.CONTENT_TYPE)


def _metrics_allowed():
    token = current_app.config["METRICS_TOKEN"]
    given = request.headers.get("Authorization", "")
    if token and hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
        return True
    if not current_app.config["PROXY_HOPS"] and request.headers.get("X-Forwarded-For"):
        return False  # passed on by a proxy sipup does not trust: its address is the proxy's, not the client's
    try:
        address = ipaddress.ip_address(request.remote_addr or "")
    except ValueError:
        return False
    return any(address in network for network in current_app.config["METRICS_ALLOW"])
