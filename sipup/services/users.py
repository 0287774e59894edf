"""People who sign in: invitations, roles, deactivation, self-service changes of name, e-mail and password.

Staff manage every company's users and the wholesaler's own people (admins only); an owner manages the
buyers of their own company. Every change of role is written to the audit trail.
"""

from flask_babel import gettext
from sqlalchemy import func, select

from ..exceptions import FieldErrors, InvalidInput, NotFound
from ..extensions import db
from ..models import LinkPurpose, Role, User, utcnow
from . import accounts, audit, links, passwords
from .mail import ascii_address, queue_mail

CUSTOMER_ROLES = (Role.OWNER, Role.BUYER)
STAFF_ROLES = (Role.STAFF, Role.ADMIN)


def check_email(email, errors, field="email", user_id=None):
    """The address as entered, or None with a message in errors; taken addresses (in any case) are refused."""
    email = accounts.normalise_email(email)
    if not accounts.EMAIL.match(email) or len(email) > 254:
        errors[field] = gettext("Enter an e-mail address such as anna@example.com.")
        return None
    try:
        ascii_address(email)
    except InvalidInput as exc:
        errors[field] = str(exc)
        return None
    other = accounts.user_by_email(email)
    if other is not None and other.id != user_id:
        errors[field] = gettext("%(email)s already has an account.", email=email)
        return None
    return email


def _check_name(name, errors):
    name = (name or "").strip()
    if len(name) > 120:
        errors["name"] = gettext("The name can have at most 120 characters.")
    return name


def invite(email, name, role, company=None, actor=None, mail=True):
    """Create a user without a password and queue their invitation mail (unless mail is False, when the
    caller hands the link over itself); returns the user."""
    user = add_invited(email, name, role, company, actor, mail)
    db.session.commit()
    return user


def add_invited(email, name, role, company=None, actor=None, mail=True):
    """invite() in the caller's transaction (a bulk import commits a batch of companies and users at once)."""
    errors = {}
    email = check_email(email, errors)
    name = _check_name(name, errors)
    allowed = CUSTOMER_ROLES if company is not None else STAFF_ROLES
    if role not in allowed:
        errors["role"] = gettext("Choose %(value)s.", value=" or ".join(allowed))
    if errors:
        raise FieldErrors(errors)
    user = User(email=email, name=name or email.split("@")[0], role=role, company=company, password_hash="")
    db.session.add(user)
    db.session.flush()
    audit.record("user", user.id, "role", "", role, actor)
    if mail:
        queue_invitation(user)
    else:
        user.invited_at = utcnow()
    return user


def listing(company_name=None):
    """Every user, or one company's, by e-mail."""
    if company_name:
        return company_users(accounts.find_company(company_name, Role.BUYER).id)
    return db.session.scalars(select(User).order_by(User.email)).all()


def queue_invitation(user):
    """A new invitation link (replacing any earlier one) and its mail, in the caller's transaction."""
    link = links.prepare(user, LinkPurpose.INVITE)
    user.invited_at = utcnow()
    queue_mail("invitation", link.id, priority="high")
    return link


def resend_invitation(user):
    """Send a pending user a fresh invitation; the earlier link stops working."""
    if user.has_password:
        raise InvalidInput(gettext("%(email)s has already chosen a password.", email=user.email))
    if not user.active:
        raise InvalidInput(gettext("%(email)s is deactivated: reactivate them first.", email=user.email))
    queue_invitation(user)
    db.session.commit()


def set_password_from_link(link, password, confirm):
    """Set the password from an invitation or reset link and spend the link: every other session of the
    user ends. Returns the user."""
    user = link.user
    _check_new_password(user, password, confirm)
    _set_password(user, password, actor=user)
    links.spend(link)
    db.session.commit()
    return user


def set_password(user, password, actor=None):
    """Set a password chosen elsewhere (the command line); InvalidInput says why one is refused."""
    passwords.check_new_password(password, user.email, user.name)
    _set_password(user, password, actor)
    db.session.commit()


def _set_password(user, password, actor):
    """Store the new password (every session of the user ends) and, when it replaces one, record the change
    and queue the notice to the account, in the caller's transaction."""
    had_password = user.has_password
    user.set_password(password)
    if had_password:
        event = audit.record("user", user.id, "password", "", "changed", actor)
        db.session.flush()
        queue_mail("password_changed", event.id, priority="high")


def _check_new_password(user, password, confirm, field="password"):
    try:
        passwords.check_new_password(password, user.email, user.name)
    except InvalidInput as exc:
        raise FieldErrors({field: str(exc)}) from None
    if password != confirm:
        raise FieldErrors({"confirm": gettext("The two passwords differ.")})


def set_active(user, active, actor=None):
    """Let a user sign in again, or stop them (which ends every session they have)."""
    if not active:
        _keep_an_admin(user, user.role, active=False)
        user.deactivate()
    else:
        user.active = True
    audit.record("user", user.id, "active", not active, active, actor)
    db.session.commit()
    return user


def change_role(user, role, actor=None):
    """Make a staff member an admin or back; an owner a buyer or back. The last admin stays an admin."""
    allowed = CUSTOMER_ROLES if user.company_id else STAFF_ROLES
    if role not in allowed:
        raise InvalidInput(gettext("Choose %(value)s.", value=" or ".join(allowed)))
    _keep_an_admin(user, role, active=user.active)
    audit.record("user", user.id, "role", user.role, role, actor)
    user.role = role
    db.session.commit()
    return user


def _keep_an_admin(user, new_role, active):
    """Refuse a change that would leave no active admin able to sign in."""
    if user.role != Role.ADMIN or (new_role == Role.ADMIN and active) or not user.active:
        return
    others = db.session.scalar(
        select(func.count()).select_from(User).where(User.role == Role.ADMIN, User.active.is_(True), User.id != user.id)
    )
    if not others:
        raise InvalidInput(
            gettext("%(email)s is the last active admin: make someone else an admin first.", email=user.email)
        )


def company_user(company_id, user_id):
    """One user of this company, or NotFound (so one company's id never reaches another's user)."""
    user = db.session.get(User, user_id)
    if user is None or user.company_id != company_id:
        raise NotFound(gettext("There is no such user in this company."))
    return user


def staff_user(user_id):
    """One of the wholesaler's own people, or NotFound."""
    user = db.session.get(User, user_id)
    if user is None or user.company_id is not None or user.role not in STAFF_ROLES:
        raise NotFound(gettext("There is no such staff member."))
    return user


def staff_members():
    """The wholesaler's staff and admins, by e-mail."""
    return db.session.scalars(select(User).where(User.role.in_(STAFF_ROLES)).order_by(User.email)).all()


def company_users(company_id):
    """A company's users, by e-mail."""
    return db.session.scalars(select(User).where(User.company_id == company_id).order_by(User.email)).all()


def update_profile(user, name):
    """Change the user's display name."""
    errors = {}
    name = _check_name(name, errors)
    if not name:
        errors["name"] = gettext("Enter your name.")
    if errors:
        raise FieldErrors(errors)
    user.name = name
    db.session.commit()


def update_language(user, language, offered):
    """Set the language the user reads the shop, its mails and PDFs in ("" follows the browser)."""
    if language and language not in offered:
        raise FieldErrors({"language": gettext("Choose one of the languages offered.")})
    user.language = language
    db.session.commit()


def request_email_change(user, new_email, current_password):
    """After checking the current password, queue a confirmation link to the new address; the address changes
    only when it is opened."""
    errors = {}
    if not user.check_password(current_password or ""):
        errors["email_password"] = gettext("That is not your current password.")
    email = check_email(new_email, errors, field="new_email", user_id=user.id)
    if email is not None and email == user.email:
        errors["new_email"] = gettext("That is already your address.")
    if errors:
        raise FieldErrors(errors)
    link = links.prepare(user, LinkPurpose.EMAIL, new_email=email)
    queue_mail("email_change", link.id, priority="high")
    db.session.commit()
    return email


def confirm_email_change(link):
    """Make the link's new address the user's sign-in, spend the link and queue a notice to the old address;
    returns the user."""
    errors = {}
    email = check_email(link.new_email, errors, user_id=link.user_id)
    if errors:
        raise InvalidInput(errors["email"])
    user = link.user
    event = audit.record("user", user.id, "email", user.email, email, user)
    user.email = email
    links.spend(link)
    if event is not None:
        db.session.flush()
        queue_mail("email_changed", event.id, priority="high")
    db.session.commit()
    return user


def change_password(user, current, new, confirm):
    """Change the password after checking the current one; every session of the user ends."""
    if not user.check_password(current or ""):
        raise FieldErrors({"current": gettext("That is not your current password.")})
    _check_new_password(user, new, confirm, field="new")
    _set_password(user, new, actor=user)
    db.session.commit()
