"""Users and companies: sign-in checks and account creation."""
import re

from sqlalchemy import func, inspect, select
from sqlalchemy.orm import make_transient_to_detached
from sqlalchemy.orm.attributes import set_committed_value
from sqlalchemy.orm.util import identity_key
from werkzeug.security import generate_password_hash

from ..extensions import db
from ..models import Company, Role, User, utcnow
from .errors import InvalidInput

EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
MIN_PASSWORD = 10
# Checked against when the e-mail is unknown, so a wrong e-mail costs as long as a wrong password.
_DUMMY_HASH = generate_password_hash("not-a-real-password")


def normalise_email(email):
    return (email or "").strip().lower()


def authenticate(email, password):
    """The active user with this e-mail and password, or None."""
    user = db.session.scalar(select(User).where(User.email == normalise_email(email)))
    if user is None:
        User(password_hash=_DUMMY_HASH).check_password(password or "")
        return None
    if not user.check_password(password or "") or not user.is_active:
        return None
    user.last_login_at = utcnow()
    db.session.commit()
    return user


def load_user(user_id_and_token):
    """The user behind a login cookie, if the cookie's token is still current."""
    user_id, _, token = (user_id_and_token or "").partition(":")
    if not user_id.isdigit():
        return None
    user = signed_in_user(int(user_id))
    if user is None or user.session_token != token or not user.is_active:
        return None
    return user


# The signed-in user and company are read on every request: kept in the cache ("users") as plain column
# values, without the password hash, and attached to the session without a query. Any change to the user
# (password, deactivation, sign-in) or to a company renews them at once.
SESSION_SKIPS = {"password_hash"}


def signed_in_user(user_id):
    """The user with this id (and their company) for this request, through the cache; None if unknown."""
    from ..cache import cached

    present = db.session.identity_map.get(identity_key(User, user_id))
    if present is not None:
        return present

    def columns(obj):
        return {a.key: getattr(obj, a.key) for a in inspect(type(obj)).column_attrs if a.key not in SESSION_SKIPS}

    def load():
        user = db.session.get(User, user_id)
        if user is None:
            return None
        return {"user": columns(user), "company": columns(user.company) if user.company else None}

    row = cached("users", "session", user_id, [f"user:{user_id}", "users-all", "companies"], load)
    if row is None:
        return None
    user = _attach(User, row["user"])
    if row["company"] and "company" not in user.__dict__:
        # Set as loaded, so user.company needs no query (the session keeps only weak references).
        set_committed_value(user, "company", _attach(Company, row["company"]))
    return user


def _attach(model, values):
    """A persistent instance from cached column values, without a query (unlisted columns load on use)."""
    present = db.session.identity_map.get(identity_key(model, values["id"]))
    if present is not None:
        return present
    obj = model(**values)
    make_transient_to_detached(obj)
    return db.session.merge(obj, load=False)


def create_user(email, role, password, company_name=None, name=""):
    """A new user; customers (owner, buyer) belong to an existing company."""
    email = normalise_email(email)
    if not EMAIL.match(email):
        raise InvalidInput(f"“{email}” is not an e-mail address.")
    if role not in set(Role):
        raise InvalidInput(f"Role must be one of {', '.join(Role)}.")
    if len(password or "") < MIN_PASSWORD:
        raise InvalidInput(f"The password must have at least {MIN_PASSWORD} characters.")
    if db.session.scalar(select(User.id).where(User.email == email)):
        raise InvalidInput(f"There is already a user {email}.")
    company = None
    if role in (Role.OWNER, Role.BUYER):
        if not company_name:
            raise InvalidInput(f"A {role} belongs to a company: give --company.")
        company = db.session.scalar(select(Company).where(func.lower(Company.name) == company_name.strip().lower()))
        if company is None:
            raise InvalidInput(f"There is no company “{company_name}”.")
    elif company_name:
        raise InvalidInput(f"Staff and admins belong to no company; leave out --company for a {role}.")
    user = User(email=email, role=role, company=company, name=name or email.split("@")[0])
    user.set_password(password)
    db.session.add(user)
    db.session.commit()
    return user
