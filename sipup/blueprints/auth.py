"""Sign in and sign out."""
from flask import Blueprint, flash, redirect, render_template, request, session, url_for
from flask_login import current_user, login_required, login_user, logout_user

from ..security import same_site_path
from ..services import accounts

bp = Blueprint("auth", __name__)


def home_for(user):
    return url_for("admin.index") if user.is_staff else url_for("shop.index")


@bp.route("/login", methods=["GET", "POST"])
def login():
    """Show the sign-in form and sign a user in."""
    if current_user.is_authenticated:
        return redirect(home_for(current_user))
    email = request.form.get("email", "")
    if request.method == "POST":
        user = accounts.authenticate(email, request.form.get("password", ""))
        if user is not None:
            next_url = same_site_path(request.args.get("next"))
            session.clear()  # a fresh session at sign-in: nothing from before carries over
            login_user(user, remember=False)
            session.permanent = True
            return redirect(next_url or home_for(user))
        flash("That e-mail and password do not match an active account.", "error")
        return render_template("auth/login.html", email=email), 401
    return render_template("auth/login.html", email=email)


@bp.route("/logout", methods=["POST"])
@login_required
def logout():
    """Sign out and forget the session."""
    logout_user()
    session.clear()
    flash("You are signed out.", "info")
    return redirect(url_for("auth.login"))
