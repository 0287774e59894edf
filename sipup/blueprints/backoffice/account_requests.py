"""Requests for a business account: look at one, reject it (approving is creating the company)."""

from flask import abort, flash, redirect, render_template, url_for
from flask_babel import gettext
from flask_login import current_user

from ...exceptions import DomainError, NotFound
from ...services import companies
from .blueprint import bp


@bp.route("/account-requests/<id:request_id>")
def account_request(request_id):
    """One request for a business account, with the buttons to approve or reject it."""
    try:
        found = companies.get_request(request_id)
    except NotFound:
        abort(404)
    return render_template("admin/account_request.html", account_request=found)


@bp.route("/account-requests/<id:request_id>/reject", methods=["POST"])
def account_request_reject(request_id):
    """Turn a request down; the contact gets a polite mail."""
    try:
        found = companies.reject_request(request_id, actor=current_user)
    except NotFound:
        abort(404)
    except DomainError as exc:
        flash(str(exc), "error")
    else:
        flash(
            gettext(
                "The request from %(company)s is rejected; %(email)s gets a polite mail.",
                company=found.company_name,
                email=found.email,
            ),
            "success",
        )
    return redirect(url_for("admin.index"))
