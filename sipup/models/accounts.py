"""Companies, their addresses, users and their sessions, mailed account links, account requests, the audit log."""

import enum
import secrets
from datetime import datetime
from decimal import Decimal

from sqlalchemy import Boolean, CheckConstraint, DateTime, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ..extensions import db
from ..hashing import hash_password, verify_password
from .catalog import PriceList
from .columns import BigId, Email, Money, utcnow


class Role(enum.StrEnum):
    ADMIN = "admin"
    STAFF = "staff"
    OWNER = "owner"
    BUYER = "buyer"


class Company(db.Model):
    __tablename__ = "companies"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    vat_id: Mapped[str | None] = mapped_column(String(32))
    payment_terms_days: Mapped[int] = mapped_column(Integer, default=30)
    credit_limit: Mapped[Decimal] = mapped_column(Money, default=Decimal("5000.00"))
    price_list_id: Mapped[int | None] = mapped_column(ForeignKey("price_lists.id"), index=True)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)

    price_list: Mapped[PriceList | None] = relationship()
    addresses: Mapped[list["Address"]] = relationship(
        back_populates="company", cascade="all, delete-orphan", order_by="Address.id"
    )
    users: Mapped[list["User"]] = relationship(back_populates="company", order_by="User.email")

    __table_args__ = (CheckConstraint("credit_limit >= 0", name="credit_limit_not_negative"),)


class Address(db.Model):
    __tablename__ = "addresses"
    id: Mapped[int] = mapped_column(primary_key=True)
    company_id: Mapped[int] = mapped_column(ForeignKey("companies.id"), index=True)
    label: Mapped[str] = mapped_column(String(80))
    street: Mapped[str] = mapped_column(String(200))
    postcode: Mapped[str] = mapped_column(String(20))
    city: Mapped[str] = mapped_column(String(100))
    country: Mapped[str] = mapped_column(String(2), default="DE")

    company: Mapped[Company] = relationship(back_populates="addresses")

    def one_line(self):
        return address_line(self.label, self.street, self.postcode, self.city, self.country)


def address_line(label, street, postcode, city, country):
    """An address on one line, as orders keep it: "Depot: Kai 1, 20457 Hamburg, DE"."""
    return f"{label}: {street}, {postcode} {city}, {country}"


class User(db.Model):
    __tablename__ = "users"
    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(Email, unique=True)
    name: Mapped[str] = mapped_column(String(120), default="")
    # Empty until the user chooses a password (an invitation not yet accepted): nothing can sign in with it.
    password_hash: Mapped[str] = mapped_column(String(255), default="")
    role: Mapped[str] = mapped_column(String(10))
    company_id: Mapped[int | None] = mapped_column(ForeignKey("companies.id"), index=True)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    last_login_at: Mapped[datetime | None] = mapped_column(DateTime)
    invited_at: Mapped[datetime | None] = mapped_column(DateTime)
    language: Mapped[str] = mapped_column(String(8), default="", server_default="")  # "": the browser's

    company: Mapped[Company | None] = relationship(back_populates="users")
    sessions: Mapped[list["UserSession"]] = relationship(cascade="all, delete-orphan", passive_deletes=True)
    # The session id of this request's login cookie (set by the user loader): Flask-Login stores get_id().
    session_id = None

    def set_password(self, password):
        """A new password ends every session of this user."""
        self.password_hash = hash_password(password)
        self.sessions.clear()

    def deactivate(self):
        """Stop this user signing in, and end every session they have."""
        self.active = False
        self.sessions.clear()

    def check_password(self, password):
        """True when the password matches; never for a user who has not chosen one."""
        return verify_password(self.password_hash, password)

    @property
    def has_password(self):
        """False while an invitation is not yet accepted."""
        return bool(self.password_hash)

    # Flask-Login protocol
    @property
    def is_authenticated(self):
        return True

    @property
    def is_active(self):
        return self.active and (self.company is None or self.company.active)

    @property
    def is_anonymous(self):
        return False

    def get_id(self):
        return f"{self.id}:{self.session_id}"

    @property
    def is_staff(self):
        return self.role in (Role.ADMIN, Role.STAFF)

    @property
    def is_admin(self):
        return self.role == Role.ADMIN

    @property
    def is_customer(self):
        return self.role in (Role.OWNER, Role.BUYER) and self.company_id is not None


class UserSession(db.Model):
    """One signed-in browser: the login cookie names it, and signing out deletes it, so a copied cookie
    opens nothing afterwards. Kept with the user's cached row, so checking it costs no query."""

    __tablename__ = "user_sessions"
    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=lambda: secrets.token_hex(16))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    address: Mapped[str] = mapped_column(String(45), default="")
    user_agent: Mapped[str] = mapped_column(String(200), default="")


class LinkPurpose(enum.StrEnum):
    INVITE = "invite"
    RESET = "reset"
    EMAIL = "email"


class AccountLink(db.Model):
    """A signed, single-use, expiring link mailed to a user: an invitation, a password reset, or the
    confirmation of a new e-mail address. Only a hash of its secret is kept."""

    __tablename__ = "account_links"
    id: Mapped[int] = mapped_column(primary_key=True)
    purpose: Mapped[str] = mapped_column(String(10))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    new_email: Mapped[str | None] = mapped_column(String(254))
    secret_hash: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(DateTime)
    used_at: Mapped[datetime | None] = mapped_column(DateTime)

    user: Mapped[User] = relationship()

    # Ids are never reused, so a replaced link's id finds no row, rather than a newer link it would not fit.
    __table_args__ = ({"sqlite_autoincrement": True},)


class AccountRequest(db.Model):
    """A business asking for an account at /register: no company or user exists until staff approve."""

    __tablename__ = "account_requests"
    id: Mapped[int] = mapped_column(primary_key=True)
    company_name: Mapped[str] = mapped_column(String(200))
    vat_id: Mapped[str] = mapped_column(String(32), default="")
    contact_name: Mapped[str] = mapped_column(String(120))
    email: Mapped[str] = mapped_column(String(254))
    phone: Mapped[str] = mapped_column(String(40), default="")
    street: Mapped[str] = mapped_column(String(200))
    postcode: Mapped[str] = mapped_column(String(20))
    city: Mapped[str] = mapped_column(String(100))
    country: Mapped[str] = mapped_column(String(2), default="DE")
    message: Mapped[str] = mapped_column(String(2000), default="")
    status: Mapped[str] = mapped_column(String(10), default="pending")  # pending, approved, rejected
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    decided_at: Mapped[datetime | None] = mapped_column(DateTime)
    decided_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    company_id: Mapped[int | None] = mapped_column(ForeignKey("companies.id"))

    # The back office's queue: pending requests, oldest first.
    __table_args__ = (Index("ix_account_requests_status_created", "status", "created_at"),)


class AuditEvent(db.Model):
    """Who changed a company's terms, a price list's tiers or a user's role, when, from what to what."""

    __tablename__ = "audit_events"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    subject: Mapped[str] = mapped_column(String(20))  # company, price_list, user
    subject_id: Mapped[int] = mapped_column(Integer)
    field: Mapped[str] = mapped_column(String(40))
    old_value: Mapped[str] = mapped_column(String(200), default="")
    new_value: Mapped[str] = mapped_column(String(200), default="")
    actor_id: Mapped[int | None] = mapped_column(Integer)
    actor: Mapped[str] = mapped_column(String(254), default="")  # the e-mail, or "command line"
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)

    # A company's or price list's history, newest first.
    __table_args__ = (Index("ix_audit_events_subject", "subject", "subject_id", "created_at"),)
