"""Addresses each account signed in from lately, in Redis or instance/limits.db: guesses at an account from
addresses it never signed in from share one budget, while each of its usual addresses keeps a budget of its
own, so a guesser cannot lock the owner out (see limiter._account_key).

Accounts are kept as a hash of the e-mail address typed into the form, not the address itself.
"""

import hashlib
import time
from contextlib import closing

from sipup.metrics.counter_stores import connect_sqlite

KEEP_SECONDS = 90 * 24 * 3600  # an address not signed in from for 90 days is unknown again
KEEP_PER_ACCOUNT = 20  # the most recent addresses per account


def account_id(email):
    """The account's key in the store: a hash of the e-mail address, in any case."""
    return hashlib.sha256(email.strip().lower().encode()).hexdigest()[:32]


class SqliteKnownAddresses:
    """Known addresses in instance/limits.db, shared by the server processes of one host."""

    name = "sqlite"

    def __init__(self, path):
        self.path = path
        with closing(connect_sqlite(self.path)) as conn, conn:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS known_addresses (account TEXT, address TEXT, seen REAL, "
                "PRIMARY KEY (account, address))"
            )

    def has(self, email, address):
        """True when the account signed in from this address within KEEP_SECONDS."""
        with closing(connect_sqlite(self.path)) as conn:
            row = conn.execute(
                "SELECT 1 FROM known_addresses WHERE account = ? AND address = ? AND seen > ?",
                (account_id(email), address, time.time() - KEEP_SECONDS),
            ).fetchone()
        return row is not None

    def add(self, email, address):
        """Remember a sign-in from this address, keeping the account's most recent KEEP_PER_ACCOUNT."""
        account, now = account_id(email), time.time()
        with closing(connect_sqlite(self.path)) as conn, conn:
            conn.execute("INSERT OR REPLACE INTO known_addresses VALUES (?, ?, ?)", (account, address, now))
            conn.execute(
                "DELETE FROM known_addresses WHERE account = ? AND address NOT IN "
                "(SELECT address FROM known_addresses WHERE account = ? ORDER BY seen DESC LIMIT ?)",
                (account, account, KEEP_PER_ACCOUNT),
            )
            conn.execute("DELETE FROM known_addresses WHERE seen <= ?", (now - KEEP_SECONDS,))


class RedisKnownAddresses:
    """Known addresses in one sorted set per account (address -> last sign-in), shared by every host."""

    name = "redis"

    def __init__(self, client, namespace):
        self.client, self.prefix = client, f"{namespace}:limits:known:"

    def has(self, email, address):
        """True when the account signed in from this address within KEEP_SECONDS."""
        seen = self.client.zscore(self.prefix + account_id(email), address)
        return seen is not None and seen > time.time() - KEEP_SECONDS

    def add(self, email, address):
        """Remember a sign-in from this address, keeping the account's most recent KEEP_PER_ACCOUNT."""
        key = self.prefix + account_id(email)
        pipe = self.client.pipeline(transaction=False)
        pipe.zadd(key, {address: time.time()})
        pipe.zremrangebyrank(key, 0, -(KEEP_PER_ACCOUNT + 1))
        pipe.expire(key, KEEP_SECONDS)
        pipe.execute()
