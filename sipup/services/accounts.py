"""Users and companies: sign-in checks, sessions and account creation."""

import functools
import re
from datetime import timedelta

from flask import current_app
from flask_babel import gettext
from sqlalchemy import bindparam, delete, func, inspect, select
from sqlalchemy.orm import joinedload
from sqlalchemy.orm.attributes import set_committed_value
from sqlalchemy.orm.util import identity_key

from sipup.cache import cached, prefetch, prefetch_riding

from ..database import kept_loaded
from ..exceptions import InvalidInput
from ..extensions import db
from ..hashing import dummy_hash, hash_password, needs_rehash
from ..i18n import role_name
from ..models import Address, Company, Role, User, UserSession, utcnow
from . import signed_in
from .cart import count_entry
from .passwords import check_new_password

EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
# Signed-in browsers kept per user; signing in on one more ends the oldest.
MAX_SESSIONS = 20


def normalise_email(email):
    """The address as entered, without surrounding spaces: the column compares it without case."""
    return (email or "").strip()


def user_by_email(email):
    """The user with this e-mail address (in any case), or None."""
    return db.session.scalar(select(User).where(User.email == normalise_email(email)))


def authenticate(email, password):
    """The active user with this e-mail and password, or None; a hash of an earlier release is replaced, written
    with the session that start_session() commits next."""
    # With the company, which decides whether the user is active: one read.
    stmt = select(User).options(joinedload(User.company)).where(User.email == normalise_email(email))
    user = db.session.scalar(stmt)
    if user is None:
        # An unknown e-mail costs what a wrong password does, so the answer's time tells nothing.
        User(password_hash=dummy_hash()).check_password(password or "")
        return None
    if not user.check_password(password or "") or not user.is_active:
        return None
    if needs_rehash(user.password_hash):  # a hash of an earlier release: replaced, the sessions kept
        user.password_hash = hash_password(password)
    return user


def start_session(user, address="", user_agent=""):
    """Record a new signed-in browser for this user, and when they signed in; returns its id, which the login
    cookie carries. Commits what the request changed in the user before (a new password, say) with it."""
    oldest_kept = utcnow() - _session_lifetime()
    # The expired ones and, past the newest MAX_SESSIONS - 1, the oldest: ended in one statement when there are any.
    kept = db.session.execute(
        select(UserSession.id, UserSession.created_at)
        .where(UserSession.user_id == user.id)
        .order_by(UserSession.created_at.desc(), UserSession.id.desc())
    ).all()
    ended = [row.id for n, row in enumerate(kept) if n >= MAX_SESSIONS - 1 or row.created_at < oldest_kept]
    # Written as statements, not through the unit of work: a sign-in then flushes nothing.
    renews_user = {"cache_touches": (f"user:{user.id}",)}
    if ended:
        db.session.execute(
            delete(UserSession).where(UserSession.user_id == user.id, UserSession.id.in_(ended)),
            execution_options=renews_user,
        )
    values = {"user_id": user.id, "address": (address or "")[:45], "user_agent": (user_agent or "")[:200]}
    inserted = db.session.execute(_NEW_SESSION, values, execution_options=renews_user)
    signed_in_at = utcnow()
    db.session.execute(_SIGNED_IN, {"user": user.id, "at": signed_in_at}, execution_options=renews_user)
    with kept_loaded():  # the user as read: signing in does not read it again
        db.session.commit()
    set_committed_value(user, "last_login_at", signed_in_at)
    user.session_id = inserted.inserted_primary_key[0]
    return user.session_id


_NEW_SESSION = UserSession.__table__.insert()
_SIGNED_IN = User.__table__.update().where(User.id == bindparam("user")).values(last_login_at=bindparam("at"))


def end_session(user_id, session_id):
    """Forget one signed-in browser: its cookie opens nothing afterwards."""
    db.session.execute(
        delete(UserSession).where(UserSession.id == session_id, UserSession.user_id == user_id),
        execution_options={"cache_touches": (f"user:{user_id}",)},
    )
    db.session.commit()


def _session_lifetime():
    return timedelta(hours=current_app.config["SESSION_HOURS"])


def load_user(user_id_and_session):
    """The user behind a login cookie, while the session it names is live and the user active."""
    user_id, _, session_id = (user_id_and_session or "").partition(":")
    if not user_id.isdigit():
        return None
    user = signed_in_user(int(user_id))
    if user is None or not user.is_active:
        return None
    starts = getattr(user, "session_starts", None)
    if starts is None:  # the user was already loaded in this request, without the cached sessions
        starts = _session_starts(user.id)
    started = starts.get(session_id)
    if started is None or started < utcnow() - _session_lifetime():
        return None
    user.session_id = session_id
    return user


# The signed-in user, their company with its addresses and their live sessions are read on every request: kept
# in the cache ("users") as plain column values, without the password hash, and given to the request as plain
# values (see services.signed_in); the ORM instance is attached without a query only where a view changes the
# user. Any change to the user (password, deactivation, sign-in, sign-out), to a company or to an address renews
# them at once.
SESSION_SKIPS = {"password_hash"}


def signed_in_user(user_id):
    """The user with this id (and their company) for this request, through the cache; None if unknown."""
    if db.session.registry.has():  # a request that has not opened a database session has no user loaded either
        present = db.session.identity_map.get(identity_key(User, user_id))
        if present is not None:
            return present

    def columns(obj):
        return {a.key: getattr(obj, a.key) for a in inspect(type(obj)).column_attrs if a.key not in SESSION_SKIPS}

    def load():
        # The user, the company and its addresses in one statement.
        user = db.session.get(User, user_id, options=[joinedload(User.company).joinedload(Company.addresses)])
        if user is None:
            return None
        company = user.company
        return {
            "user": columns(user),
            "company": columns(company) if company else None,
            "addresses": [columns(address) for address in company.addresses] if company else [],
            "sessions": _session_starts(user_id),
        }

    row = cached(*user_entry(user_id), load)
    if row is None:
        return None
    company = None
    if row["company"]:
        _price_list_hints()[user_id] = (row["company"]["price_list_id"], row["company"]["id"])
        addresses = tuple(map(_plain_address(), row["addresses"]))
        company = _plain_company()(row["company"], addresses=addresses)
    return _plain_user()(row["user"], company=company, session_starts=row["sessions"], session_id=None)


@functools.cache
def _plain_company():
    """The class of a signed-in user's company as plain values, with its addresses."""
    return signed_in.plain_class(Company, extras=("addresses",))


@functools.cache
def _plain_address():
    """The class of a signed-in company's addresses as plain values (the cart prices for the first one)."""
    return signed_in.plain_class(Address, methods=("one_line",))


@functools.cache
def _plain_user():
    """The class of a signed-in user's plain values (see services.signed_in): every column but the skipped."""
    return signed_in.plain_class(
        User,
        SESSION_SKIPS,
        extras=("company", "session_starts", "session_id"),
        settable=("session_id",),
        methods=("get_id",),
    )


def user_entry(user_id):
    """The cache entry (type, name, args, depends) of a signed-in user's row, for cached() and prefetch()."""
    # Named for the row's shape (with the company's addresses): a row kept in an older shape is never read.
    return ("users", "signed-in", user_id, [f"user:{user_id}", "users-all", "companies"])


HINTS_KEPT = 10_000


def _price_list_hints():
    """{user id: (price list, company) as this process last loaded them}: a guess, for reading ahead; what a
    request shows is always decided by the user row itself."""
    hints = current_app.extensions.setdefault("sipup_price_list_hints", {})
    if len(hints) > HINTS_KEPT:
        hints.clear()
    return hints


def prefetch_signed_in(user_id, extras=None, client=None):
    """Read in one round trip what a signed-in request reads from the cache anyway: the user's row, their cart's
    line count, and the entries `extras(price_list_id, company_id, user_id)` names for the endpoint (a catalog
    page), given the price list and company this process saw the user on last (None at first). With a Redis
    `client`, only say what to read through it: (keys, done) or None (see CacheLayer.prefetch_riding)."""
    entries = [user_entry(user_id), count_entry(user_id)]
    if extras is not None:
        entries += extras(*_price_list_hints().get(user_id, (None, None)), user_id)
    if client is not None:
        return prefetch_riding(entries, client)
    prefetch(entries)
    return None


def _session_starts(user_id):
    """{session id: when it started} for the user's live sessions."""
    rows = db.session.execute(select(UserSession.id, UserSession.created_at).where(UserSession.user_id == user_id))
    return dict(rows.all())


def create_user(email, role, password, company_name=None, name=""):
    """A new user; customers (owner, buyer) belong to an existing company."""
    email = normalise_email(email)
    if not EMAIL.match(email) or len(email) > 254:
        raise InvalidInput(gettext("“%(email)s” is not an e-mail address.", email=email[:254]))
    if role not in set(Role):
        raise InvalidInput(gettext("Role must be one of %(roles)s.", roles=", ".join(Role)))
    check_new_password(password, email, name)
    existing = user_by_email(email)
    if existing is not None:
        raise InvalidInput(gettext("There is already a user %(email)s.", email=existing.email))
    company = find_company(company_name, role)
    user = User(email=email, role=role, company=company, name=name or email.split("@")[0])
    user.set_password(password)
    db.session.add(user)
    db.session.commit()
    return user


def find_company(name, role):
    """The company an owner or buyer belongs to, by name in any case; None for staff and admins."""
    if role not in (Role.OWNER, Role.BUYER):
        if name:
            raise InvalidInput(
                gettext(
                    "Staff and admins belong to no company; leave out --company for a %(role)s.", role=role_name(role)
                )
            )
        return None
    if not name:
        raise InvalidInput(gettext("A %(role)s belongs to a company: give --company.", role=role_name(role)))
    company = db.session.scalar(select(Company).where(func.lower(Company.name) == name.strip().lower()))
    if company is None:
        raise InvalidInput(gettext("There is no company “%(name)s”.", name=name))
    return company
