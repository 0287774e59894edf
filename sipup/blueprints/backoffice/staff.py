"""The wholesaler's own people: staff and admins (admins only)."""

from flask import abort, flash, redirect, render_template, request, url_for
from flask_babel import gettext
from flask_login import current_user

from ...exceptions import FieldErrors, NotFound
from ...extensions import db
from ...models import Role
from ...security import admin_required
from ...services import users
from .blueprint import bp, user_action


@bp.route("/users", methods=["GET", "POST"])
@admin_required
def staff_users():
    """The wholesaler's own people (admins only): invite staff or admins."""
    errors = {}
    if request.method == "POST":
        try:
            invited = users.invite(
                request.form.get("email", ""),
                request.form.get("name", ""),
                request.form.get("role", ""),
                actor=current_user,
            )
        except FieldErrors as exc:
            db.session.rollback()
            errors = exc.errors
        else:
            flash(gettext("Invitation to %(email)s is on its way.", email=invited.email), "success")
            return redirect(url_for("admin.staff_users"))
    return render_template(
        "admin/users.html",
        people=users.staff_members(),
        errors=errors,
        form=request.form,
        roles=[Role.STAFF, Role.ADMIN],
        can_manage=lambda user: True,
        url_builder=lambda user, action: url_for("admin.staff_user", user_id=user.id, action=action),
    ), 422 if errors else 200


@bp.route("/users/<id:user_id>/<action>", methods=["POST"])
@admin_required
def staff_user(user_id, action):
    """Resend an invitation, change the role, or deactivate or reactivate a staff member or admin."""
    try:
        user = users.staff_user(user_id)
    except NotFound:
        abort(404)
    user_action(user, action)
    return redirect(url_for("admin.staff_users"))
