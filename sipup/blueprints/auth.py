"""Sign in and out, password resets, and the links mailed to users (invitations)."""

from flask import Blueprint, flash, redirect, render_template, request, session, url_for
from flask_babel import gettext, lazy_gettext
from flask_login import current_user, login_required, login_user, logout_user

from sipup import i18n, tasks
from sipup.jobs import enqueue
from sipup.limits import remember_sign_in

from ..exceptions import FieldErrors
from ..extensions import db
from ..models import LinkPurpose
from ..security import same_site_path
from ..services import accounts, companies, links, passwords, users
from ..services.signed_in import record

bp = Blueprint("auth", __name__)


def home_for(user):
    return url_for("admin.index") if user.is_staff else url_for("shop.index")


def sign_in(user):
    """Start a fresh session for this user in this browser: nothing from before carries over."""
    session.clear()
    accounts.start_session(user, request.remote_addr, request.user_agent.string)
    remember_sign_in(user.email)  # this address now has its own budget of guesses at the account
    login_user(user, remember=False)
    session.permanent = True


@bp.route("/login", methods=["GET", "POST"])
def login():
    """Show the sign-in form and sign a user in."""
    if current_user.is_authenticated:
        return redirect(home_for(current_user))
    email = request.form.get("email", "")
    if request.method == "POST":
        user = accounts.authenticate(email, request.form.get("password", ""))
        if user is not None:
            sign_in(user)
            return redirect(same_site_path(request.args.get("next")) or home_for(user))
        flash(gettext("That e-mail and password do not match an active account."), "error")
        return render_template("auth/login.html", email=email), 401
    return render_template("auth/login.html", email=email)


@bp.route("/language", methods=["POST"])
def language():
    """Switch the language: a visitor's is kept in a cookie, a signed-in user's on their account too."""
    code = request.form.get("language", "")
    if code not in i18n.languages():
        flash(gettext("Choose one of the languages offered."), "error")
        code = None
    elif current_user.is_authenticated:
        users.update_language(record(current_user), code, i18n.languages())
    response = redirect(same_site_path(request.form.get("next")) or url_for("shop.index"))
    if code:
        response.set_cookie(i18n.COOKIE, code, max_age=i18n.COOKIE_DAYS * 86400, samesite="Lax", httponly=True)
    return response


@bp.route("/logout", methods=["POST"])
@login_required
def logout():
    """Sign out: the session ends on the server too, so a copy of the cookie opens nothing afterwards."""
    accounts.end_session(current_user.id, current_user.session_id)
    logout_user()
    session.clear()
    flash(gettext("You are signed out."), "info")
    return redirect(url_for("auth.login"))


@bp.route("/password/reset", methods=["GET", "POST"])
def password_reset():
    """Ask for a password reset link; the answer is the same whether the address has an account or not. An
    expired link's page passes its address (?email=) so the form comes filled in."""
    email = (request.form if request.method == "POST" else request.args).get("email", "").strip()[:254]
    if request.method == "POST":
        if not accounts.EMAIL.match(email):
            return render_template(
                "auth/password_reset.html",
                email=email,
                errors={"email": gettext("Enter the e-mail address you sign in with.")},
            ), 422
        # The job looks the address up, so an unknown one costs this request exactly what a known one does.
        enqueue(tasks.send_mail, "password_reset", email, priority="high")
        db.session.commit()
        return render_template("auth/password_reset_sent.html", email=email)
    return render_template("auth/password_reset.html", email=email, errors={})


@bp.route("/password/reset/<token>", methods=["GET", "POST"])
def reset_with_link(token):
    """Choose a new password from a reset link; every other session ends, and this browser is signed in."""
    return _choose_password(token, LinkPurpose.RESET, lazy_gettext("Your new password is set; you are signed in."))


@bp.route("/invite/<token>", methods=["GET", "POST"])
def accept_invite(token):
    """Choose a password from an invitation link, then sign in."""
    return _choose_password(
        token, LinkPurpose.INVITE, lazy_gettext("Welcome! Your password is set; you are signed in.")
    )


def _choose_password(token, purpose, done):
    try:
        link = links.open_link(token, purpose)
    except links.LinkInvalid as exc:
        return render_template("auth/link_invalid.html", error=exc), 410 if exc.reason != "tampered" else 400
    errors = {}
    if request.method == "POST":
        try:
            user = users.set_password_from_link(link, request.form.get("password", ""), request.form.get("confirm", ""))
        except FieldErrors as exc:
            db.session.rollback()
            errors = exc.errors
        else:
            sign_in(user)
            flash(str(done), "success")
            return redirect(home_for(user))
    return render_template(
        "auth/choose_password.html", link=link, purpose=purpose, errors=errors, min_length=passwords.MIN_LENGTH
    ), 422 if errors else 200


@bp.route("/register", methods=["GET", "POST"])
def register():
    """Ask for a business account: staff review the request; no company or user exists until they approve."""
    form = {name: request.form.get(name, "") for name in companies.REQUEST_FIELDS}
    if request.method == "GET":
        form["country"] = "DE"
    errors = {}
    if request.method == "POST":
        try:
            companies.submit_request(request.form)
        except FieldErrors as exc:
            db.session.rollback()
            errors = exc.errors
        else:
            # A filled honeypot gets this same answer, so a bot learns nothing from it.
            return render_template("auth/register_sent.html", email=form["email"])
    return render_template("auth/register.html", form=form, errors=errors), 422 if errors else 200
