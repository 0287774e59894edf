"""The back office's blueprint (endpoints admin.*, URLs /admin/...), its guard and the helpers its areas share."""

from flask import Blueprint, flash, request
from flask_babel import gettext
from flask_login import current_user

from ...exceptions import DomainError
from ...extensions import db
from ...i18n import role_name
from ...security import staff_required
from ...services import users
from ...services.parsing import page_number
from ..account import flash_user_action

bp = Blueprint("admin", __name__, url_prefix="/admin")


@bp.before_request
@staff_required
def _guard():
    """Every back-office page is for staff and admins only."""


def requested_page():
    """The ?page= argument; a bad value shows page 1 with a notice naming it."""
    page, notice = page_number(request.args.get("page"))
    if notice:
        flash(notice, "warning")
    return page


def user_action(user, action):
    """Resend an invitation, deactivate or reactivate a user, or change the role (from the form)."""
    if action != "role":
        return flash_user_action(user, action)
    try:
        users.change_role(user, request.form.get("role", ""), actor=current_user)
    except DomainError as exc:
        db.session.rollback()
        flash(str(exc), "error")
    else:
        flash(gettext("%(email)s is now %(role)s.", email=user.email, role=role_name(user.role)), "success")
