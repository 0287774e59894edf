"""Signed, single-use, expiring links mailed to users: invitations, password resets, new e-mail addresses.

A link is prepared in the business transaction (a row without a secret) and issued when its mail is
built: the mail job makes the secret, keeps only its hash and puts the signed link in the mail. A newer
link of the same purpose replaces an older one; using a link spends it.
"""

import hashlib
import hmac
import secrets
from datetime import timedelta

from flask import current_app
from flask_babel import lazy_gettext
from itsdangerous import BadSignature, URLSafeSerializer
from sqlalchemy import delete

from sipup.metrics.processes import served_address, served_url

from ..exceptions import DomainError
from ..extensions import db
from ..models import AccountLink, LinkPurpose, utcnow

ENDPOINTS = {
    LinkPurpose.INVITE: "auth.accept_invite",
    LinkPurpose.RESET: "auth.reset_with_link",
    LinkPurpose.EMAIL: "account.confirm_email",
}


class LinkInvalid(DomainError):
    """A link that cannot be used: reason is tampered, expired, used, replaced or inactive."""

    MESSAGES = {
        "tampered": lazy_gettext("This link is not valid: it may have been cut short or changed on the way."),
        "expired": lazy_gettext("This link has expired."),
        "used": lazy_gettext("This link has already been used."),
        "replaced": lazy_gettext("A newer link was sent since this one: use the newest mail."),
        "inactive": lazy_gettext("This account can no longer sign in."),
    }

    def __init__(self, reason, purpose, email=None):
        # email: the account's address, given only where the token's secret matched (its mail's recipient holds it)
        self.reason, self.purpose, self.email = reason, purpose, email
        super().__init__(str(self.MESSAGES[reason]))


def lifetime(purpose):
    """How long a link of this purpose stays valid after its mail is built."""
    if purpose == LinkPurpose.INVITE:
        return timedelta(hours=current_app.config["INVITE_HOURS"])
    if purpose == LinkPurpose.RESET:
        return timedelta(hours=1)
    return timedelta(hours=24)


def prepare(user, purpose, new_email=None):
    """A link for this user, replacing any earlier unused one of the same purpose; the caller commits."""
    db.session.execute(
        delete(AccountLink).where(
            AccountLink.user_id == user.id, AccountLink.purpose == purpose, AccountLink.used_at.is_(None)
        )
    )
    link = AccountLink(purpose=purpose, user_id=user.id, new_email=new_email)
    db.session.add(link)
    db.session.flush()
    return link


def issue(link):
    """Give the link its secret and expiry; returns the absolute URL to mail (the caller commits)."""
    secret = secrets.token_urlsafe(24)
    link.secret_hash = _hash(secret)
    link.expires_at = utcnow() + lifetime(link.purpose)
    token = _serializer(link.purpose).dumps([link.id, secret])
    return public_url(ENDPOINTS[link.purpose], token=token)


def open_link(token, purpose):
    """The usable link behind this token, or LinkInvalid saying why not."""
    try:
        link_id, secret = _serializer(purpose).loads(token)
        link = db.session.get(AccountLink, int(link_id))
    except (BadSignature, TypeError, ValueError, OverflowError):
        raise LinkInvalid("tampered", purpose) from None
    if link is None:
        # The signature is ours, so the row existed: a newer link of the same purpose replaced it.
        raise LinkInvalid("replaced", purpose)
    if link.purpose != purpose or not link.secret_hash or not hmac.compare_digest(link.secret_hash, _hash(secret)):
        raise LinkInvalid("tampered", purpose)
    if link.used_at is not None:
        raise LinkInvalid("used", purpose, link.user.email)
    if link.expires_at < utcnow():
        raise LinkInvalid("expired", purpose, link.user.email)
    if not link.user.is_active:
        raise LinkInvalid("inactive", purpose)
    return link


def spend(link):
    """Mark the link used (the caller commits with the change it made)."""
    link.used_at = utcnow()


def public_url(endpoint, **values):
    """An absolute URL on SIPUP_PUBLIC_URL (else the address `flask serve` listens on), for mails."""
    config = current_app.config
    base = (
        config["PUBLIC_URL"]
        or served_url(current_app.extensions["counters"])
        or served_address(config["HOST"], config["PORT"])
    )
    scheme, _, rest = base.partition("://")
    host, _, prefix = rest.partition("/")
    adapter = current_app.url_map.bind(host, script_name="/" + prefix, url_scheme=scheme)
    return adapter.build(endpoint, values, force_external=True)


def _serializer(purpose):
    return URLSafeSerializer(current_app.config["SECRET_KEY"], salt=f"sipup-link-{purpose}")


def _hash(secret):
    return hashlib.sha256(secret.encode()).hexdigest()
