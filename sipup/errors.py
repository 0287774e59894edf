"""Errors handled in one place: friendly pages or HTMX fragments, details only in the log."""

import logging
import secrets

from flask import current_app, g, jsonify, render_template, request
from flask_babel import lazy_gettext
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from werkzeug.exceptions import HTTPException

from sipup.metrics import exceptions
from sipup.metrics.outages import outage
from sipup.metrics.pool import POOL_TIMEOUTS
from sipup.storage import StorageUnavailable

from .compat import answer_as_anonymous
from .database import DATABASE, write_problem
from .extensions import db

log = logging.getLogger("sipup.errors")

MESSAGES = {
    400: (lazy_gettext("Bad request"), lazy_gettext("The request could not be understood. Go back and try again.")),
    401: (lazy_gettext("Please sign in"), lazy_gettext("Your session has ended. Sign in again to continue.")),
    403: (lazy_gettext("Not for this account"), lazy_gettext("Your account cannot open this page.")),
    404: (
        lazy_gettext("Not found"),
        lazy_gettext("There is nothing at this address. It may have moved, or the link is mistyped."),
    ),
    405: (lazy_gettext("Not allowed"), lazy_gettext("This page cannot be used that way.")),
    413: (
        lazy_gettext("Too large"),
        lazy_gettext("What you sent is larger than the server accepts. Send a smaller file."),
    ),
    429: (lazy_gettext("Slow down"), lazy_gettext("Too many requests. Wait a moment and try again.")),
    500: (
        lazy_gettext("Something went wrong"),
        lazy_gettext("We have logged the error and will look into it. Your data is safe; try again."),
    ),
    503: (
        lazy_gettext("Back in a moment"),
        lazy_gettext("The database is not answering right now. Please try again in a minute."),
    ),
}
# A 503 because the database takes no writes says so: reading may still work, and waiting a minute will not help.
NOT_WRITABLE_MESSAGES = {
    "read-only": lazy_gettext(
        "The database is read-only right now, so nothing can be saved. We have been told; please try again later."
    ),
    "full": lazy_gettext(
        "The database's disk is full, so nothing can be saved right now. We have been told; please try again later."
    ),
}


def register_error_handlers(app):
    """Render every HTTP error and every unexpected exception without exposing internals."""
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(OperationalError, _database_down)
    app.register_error_handler(DBAPIError, _database_error)
    app.register_error_handler(PoolTimeout, _database_down)
    app.register_error_handler(StorageUnavailable, _storage_down)
    app.register_error_handler(Exception, _unexpected)


def _http_error(error):
    if error.code in (301, 302, 303, 307, 308):
        return error
    return render_error(error.code or 500)


def _database_down(error):
    db.session.rollback()
    # Do not ask the database again while answering: an unloaded user (Flask-Login retries its loader on
    # every current_user) would raise anew in the page and in after_request hooks, turning 503 into 500.
    answer_as_anonymous(current_app.login_manager.anonymous_user())
    g.setdefault("cart_count", 0)
    if isinstance(error, PoolTimeout):
        POOL_TIMEOUTS.add()
    kind = None if isinstance(error, PoolTimeout) else write_problem(error)
    if kind:
        log.error("Database not writable (%s) on %s %s: %s", kind, request.method, request.path, error)
    else:  # one line when it goes, a count a minute while it stays away: not a line per request
        outage(DATABASE).failed(error, where=f" on {request.method} {request.path}")
    return render_error(503, message=NOT_WRITABLE_MESSAGES.get(kind))


def _storage_down(error):
    """The file storage failed (unreachable, refused, disk full): a 503 that says so, never a 500."""
    db.session.rollback()
    log.error("File storage failed on %s %s: %s", request.method, request.path, error.reason)
    return render_error(503, message=str(error))


def _database_error(error):
    """Another driver error: a 503 when it says the database takes no writes (MySQL's read-only mode), else a 500."""
    return _database_down(error) if write_problem(error) else _unexpected(error)


def _unexpected(error):
    if isinstance(error, HTTPException):
        return _http_error(error)
    db.session.rollback()
    reference = secrets.token_hex(4)
    log.exception("Unhandled error %s on %s %s", reference, request.method, request.path)
    exceptions.record(current_app.extensions["counters"], error, request.path)  # for /monitor's Exceptions
    return render_error(500, reference)


def render_error(code, reference=None, message=None):
    """A full page, an HTMX fragment or JSON, by what the client asked for."""
    title, default = MESSAGES.get(code, MESSAGES[500] if code >= 500 else MESSAGES[400])
    title, message = str(title), str(message or default)  # in the reader's language
    if request.accept_mimetypes.best == "application/json" or request.is_json:
        return jsonify(error=title, message=message, reference=reference), code
    template = "errors/_fragment.html" if request.headers.get("HX-Request") else "errors/page.html"
    try:
        return render_template(template, code=code, title=title, message=message, reference=reference), code
    except Exception:  # the template itself needs the database (e.g. the cart count): answer plainly
        log.exception("Error page for %s could not be rendered", code)
        return f"{title}. {message}", code, {"Content-Type": "text/plain; charset=utf-8"}
