"""Users and companies: sign-in checks and account creation."""
import re

from sqlalchemy import func, select
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
    user = db.session.get(User, int(user_id))
    if user is None or user.session_token != token or not user.is_active:
        return None
    return user


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
