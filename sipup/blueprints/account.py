"""Account self-service for everyone signed in: name, e-mail, password; owners manage their company's buyers."""

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_babel import force_locale, gettext
from flask_login import current_user, login_required

from .. import i18n
from ..exceptions import DomainError, FieldErrors, NotFound
from ..extensions import db
from ..models import LinkPurpose, Role
from ..security import owner_required
from ..services import links, orders, passwords, users
from ..services.signed_in import record
from .auth import sign_in

bp = Blueprint("account", __name__, url_prefix="/account")


def _page(errors=None, status=200):
    company = current_user.company if current_user.is_customer else None
    return render_template(
        "account/index.html",
        errors=errors or {},
        form=request.form,
        company=company,
        credit=orders.credit_position(company) if company else None,
        min_length=passwords.MIN_LENGTH,
    ), status


@bp.route("/")
@login_required
def index():
    """The signed-in user's name, e-mail and password, and their company's terms and addresses."""
    return _page()


@bp.route("/profile", methods=["POST"])
@login_required
def profile():
    """Change the display name."""
    try:
        users.update_profile(record(current_user), request.form.get("name", ""))
    except FieldErrors as exc:
        db.session.rollback()
        return _page(exc.errors, 422)
    flash(gettext("Your name is saved."), "success")
    return redirect(url_for("account.index"))


@bp.route("/language", methods=["POST"])
@login_required
def language():
    """Choose the language of the shop, its mails and PDFs ("" follows the browser)."""
    chosen = request.form.get("language", "")
    try:
        users.update_language(record(current_user), chosen, i18n.languages())
    except FieldErrors as exc:
        db.session.rollback()
        return _page(exc.errors, 422)
    with force_locale(chosen or i18n.visitor_language()):  # this request was read in the language before
        flash(gettext("Your language is saved."), "success")
    return redirect(url_for("account.index"))


@bp.route("/email", methods=["POST"])
@login_required
def email():
    """Ask to change the sign-in address (the current password is asked for): a confirmation link goes to the new
    one."""
    try:
        new_email = users.request_email_change(
            record(current_user), request.form.get("new_email", ""), request.form.get("email_password", "")
        )
    except FieldErrors as exc:
        db.session.rollback()
        return _page(exc.errors, 422)
    flash(gettext("We sent a link to %(email)s. Your address changes when you open it.", email=new_email), "success")
    return redirect(url_for("account.index"))


@bp.route("/email/<token>")
def confirm_email(token):
    """Confirm a new sign-in address from its link."""
    try:
        user = users.confirm_email_change(links.open_link(token, LinkPurpose.EMAIL))
    except links.LinkInvalid as exc:
        return render_template("auth/link_invalid.html", error=exc), 410 if exc.reason != "tampered" else 400
    except DomainError as exc:
        db.session.rollback()
        flash(str(exc), "error")
        return redirect(url_for("account.index"))
    flash(gettext("Your sign-in address is now %(email)s.", email=user.email), "success")
    return redirect(url_for("account.index") if current_user.is_authenticated else url_for("auth.login"))


@bp.route("/password", methods=["POST"])
@login_required
def password():
    """Change the password (the current one is asked for); every other session ends."""
    user = record(current_user)
    try:
        users.change_password(
            user, request.form.get("current", ""), request.form.get("new", ""), request.form.get("confirm", "")
        )
    except FieldErrors as exc:
        db.session.rollback()
        return _page(exc.errors, 422)
    sign_in(user)  # this browser goes on with a new session; every other one has ended
    flash(gettext("Your password is changed. Every other place you were signed in is signed out."), "success")
    return redirect(url_for("account.index"))


@bp.route("/users", methods=["GET", "POST"])
@owner_required
def company_users():
    """An owner's list of their company's users; invite a buyer."""
    company = record(current_user.company)  # buyers are invited into it
    errors = {}
    if request.method == "POST":
        try:
            invited = users.invite(
                request.form.get("email", ""), request.form.get("name", ""), Role.BUYER, company, actor=current_user
            )
        except FieldErrors as exc:
            db.session.rollback()
            errors = exc.errors
        else:
            flash(gettext("Invitation to %(email)s is on its way.", email=invited.email), "success")
            return redirect(url_for("account.company_users"))
    return render_template(
        "account/users.html",
        company=company,
        people=users.company_users(company.id),
        errors=errors,
        form=request.form,
        can_manage=lambda user: user.role == Role.BUYER,
        url_builder=lambda user, action: url_for("account.company_user_action", user_id=user.id, action=action),
    ), 422 if errors else 200


@bp.route("/users/<id:user_id>/<action>", methods=["POST"])
@owner_required
def company_user_action(user_id, action):
    """Resend a buyer's invitation, or deactivate or reactivate a buyer of the owner's company."""
    try:
        user = users.company_user(current_user.company_id, user_id)
    except NotFound:
        abort(404)
    if user.role != Role.BUYER:
        flash(gettext("Owners are managed by the wholesaler's staff."), "error")
        return redirect(url_for("account.company_users"))
    flash_user_action(user, action)
    return redirect(url_for("account.company_users"))


def flash_user_action(user, action):
    """Carry out resend, deactivate or activate on a user and say what happened (shared with the back office)."""
    try:
        if action == "resend":
            users.resend_invitation(user)
            message = gettext(
                "A new invitation to %(email)s is on its way; the earlier link no longer works.", email=user.email
            )
        elif action == "deactivate":
            users.set_active(user, False, actor=current_user)
            message = gettext("%(email)s can no longer sign in; their sessions have ended.", email=user.email)
        elif action == "activate":
            users.set_active(user, True, actor=current_user)
            message = gettext("%(email)s can sign in again.", email=user.email)
        else:
            abort(404)
    except DomainError as exc:
        db.session.rollback()
        flash(str(exc), "error")
    else:
        flash(message, "success")
