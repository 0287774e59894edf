"""Password hashes: argon2id at OWASP's parameters (19 MiB, 2 passes, 1 lane). The scrypt and pbkdf2 hashes
of earlier releases still verify; `needs_rehash` says to replace them at the next sign-in."""

import functools
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from werkzeug.security import check_password_hash

_hasher = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)


def hash_password(password):
    """The argon2id hash of a password, with its own random salt."""
    return _hasher.hash(password)


def verify_password(stored, password):
    """True when the password matches the stored hash (argon2id, or scrypt/pbkdf2 from before)."""
    if not stored:
        return False
    if stored.startswith("$argon2"):
        try:
            return _hasher.verify(stored, password)
        except (VerificationError, InvalidHashError):
            return False
    return check_password_hash(stored, password)


def needs_rehash(stored):
    """True for a hash of an earlier kind or cost, which the next sign-in replaces."""
    return not stored.startswith("$argon2id$") or _hasher.check_needs_rehash(stored)


@functools.cache
def dummy_hash():
    """A hash at today's cost of a password nobody knows, made at first use (not at import: `flask queue
    process` signs nobody in): checked when an e-mail is unknown, so that costs what a wrong password does."""
    return hash_password(secrets.token_urlsafe(16))
