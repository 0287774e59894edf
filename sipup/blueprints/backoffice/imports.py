"""Uploads (bank and stock CSV; products, prices and companies files with a preview) and exports."""

import io
import os

from flask import abort, current_app, flash, redirect, render_template, request, send_file, url_for
from flask_babel import gettext, ngettext
from flask_login import current_user

from sipup.storage import StorageUnavailable

from ...exceptions import DomainError, NotFound
from ...extensions import db
from ...services import bulk_import, payments, stock_import
from .blueprint import bp


@bp.route("/imports", methods=["GET", "POST"])
def imports():
    """Upload a bank CSV (one payment job per line) or a warehouse stock CSV (one job for the file)."""
    problems, status = [], 200
    if request.method == "POST":
        upload = request.files.get("file")
        data = upload.read() if upload else b""
        kind = request.form.get("kind")
        try:
            if not data:
                raise DomainError(gettext("Choose a CSV file to upload."))
            if kind == "payments":
                queued, known, problems = payments.import_bank_csv(data)
                flash(
                    gettext(
                        "%(queued)s; %(known)s already imported before.",
                        queued=ngettext("%(num)s payment queued", "%(num)s payments queued", queued),
                        known=known,
                    ),
                    "success",
                )
            elif kind == "stock":
                _record, good, problems = stock_import.import_stock_file(data)
                flash(
                    ngettext(
                        "%(num)s stock line queued to be applied.", "%(num)s stock lines queued to be applied.", good
                    ),
                    "success",
                )
            else:
                raise DomainError(gettext("Choose what the file contains."))
        except DomainError as exc:
            flash(str(exc), "error")
        except StorageUnavailable as exc:  # nothing was queued: the file must be uploaded again
            db.session.rollback()
            flash(gettext("%(problem)s The stock file was not queued: upload it again.", problem=exc), "error")
            status = 503
    return _imports_page(problems=problems), status


def _imports_page(**extra):
    return render_template(
        "admin/imports.html",
        stock_runs=stock_import.recent_runs(),
        bulk_runs=bulk_import.recent(),
        kinds=bulk_import.LABELS,
        columns={kind: module.COLUMNS for kind, module in bulk_import.KINDS.items()},
        **extra,
    )


@bp.route("/imports/preview", methods=["POST"])
def import_preview():
    """Check a products, prices or companies file (CSV or XLSX) and show what it would do; nothing is written."""
    upload = request.files.get("file")
    kind = request.form.get("kind", "")
    try:
        if not (upload and upload.filename):
            raise DomainError(gettext("Choose a CSV or XLSX file to upload."))
        size = upload.stream.seek(0, os.SEEK_END)
        upload.stream.seek(0)
        data = upload.stream.read(current_app.config["IMPORT_MAX_MB"] * 1_048_576 + 1)
        preview = bulk_import.start_upload(kind, data, upload.filename, size)
    except DomainError as exc:
        return _imports_page(problems=[], bulk_error=str(exc), chosen=kind), 422
    except StorageUnavailable as exc:
        return _imports_page(
            problems=[],
            bulk_error=gettext("%(problem)s The file was not kept: upload it again.", problem=exc),
            chosen=kind,
        ), 503
    return redirect(url_for("admin.import_detail", name=preview["name"]))


@bp.route("/imports/<name>")
def import_detail(name):
    """An upload's preview, line by line: what it creates, changes and refuses; then its progress once confirmed."""
    return _import_state("admin/import_preview.html", name)


@bp.route("/imports/<name>/apply", methods=["POST"])
def import_apply(name):
    """Confirm a preview: the job applies the file in batches, its progress shown on the preview page."""
    try:
        bulk_import.confirm(name, actor=current_user)
    except NotFound:
        abort(404)
    except DomainError as exc:
        flash(str(exc), "error")
    else:
        flash(gettext("The file is being applied; this page shows how far it has got."), "success")
    return redirect(url_for("admin.import_detail", name=name))


@bp.route("/imports/<name>/progress")
def import_progress(name):
    """The progress of an import being applied (the preview page asks for it every 2 seconds while it runs)."""
    return _import_state("admin/_import_progress.html", name)


def _import_state(template, name):
    """The page or fragment of an upload: its preview, its job and the job's progress."""
    try:
        preview = bulk_import.load_preview(name)
    except NotFound:
        abort(404)
    job = bulk_import.job_of(name)
    return render_template(template, preview=preview, job=job, progress=bulk_import.progress(name) if job else None)


@bp.route("/exports/<kind>.<fmt>")
def export_download(kind, fmt):
    """Every product, price tier or company as CSV (either Excel dialect) or XLSX, in the import's format."""
    if kind not in bulk_import.KINDS or fmt not in bulk_import.FORMATS:
        abort(404)
    data, mimetype, filename = bulk_import.export(kind, fmt, request.args.get("dialect"))
    return send_file(io.BytesIO(data), mimetype=mimetype, as_attachment=True, download_name=filename, max_age=0)
