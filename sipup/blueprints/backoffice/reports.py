"""Report files: queue one, download one."""

import io

from flask import abort, flash, redirect, render_template, request, send_file, url_for
from flask_babel import gettext

from sipup import tasks
from sipup.jobs import enqueue
from sipup.storage import StorageUnavailable

from ...exceptions import DomainError, NotFound
from ...extensions import db
from ...services import reports
from .blueprint import bp


@bp.route("/reports", methods=["GET", "POST"])
def report_list():
    """Report files to download, and a form that queues a new one."""

    if request.method == "POST":
        kind = request.form.get("kind", "")
        try:
            if kind not in reports.KINDS:
                raise DomainError(gettext("Choose a report."))
            args = (kind,)
            if kind != "receivables_ageing":
                first, last = reports.parse_range(request.form.get("start", ""), request.form.get("end", ""))
                args = (kind, first.isoformat(), last.isoformat())
            enqueue(tasks.build_report, *args, priority="normal")
            db.session.commit()
        except DomainError as exc:
            flash(str(exc), "error")
        else:
            flash(
                gettext(
                    "%(report)s is being prepared; it appears below within a few minutes.", report=reports.KINDS[kind]
                ),
                "success",
            )
        return redirect(url_for("admin.report_list"))
    start, end = reports.previous_month()
    try:
        files, status = reports.available(), 200
    except StorageUnavailable as exc:  # the form to queue a report still works
        flash(str(exc), "error")
        files, status = [], 503
    return render_template("admin/reports.html", files=files, kinds=reports.KINDS, start=start, end=end), status


@bp.route("/reports/<name>")
def report_download(name):
    """One report file as a download (CSV, UTF-8 with BOM for Excel)."""

    try:
        data = reports.read(name)
    except NotFound:
        abort(404)
    return send_file(io.BytesIO(data), mimetype="text/csv", as_attachment=True, download_name=name, max_age=0)
