"""Statement texts: normalised (literals and parameters as ?, lists collapsed), shortened for display, and
their kind (select, insert, update, delete, transaction, connection, other)."""

import re

KINDS = ("select", "insert", "update", "delete")
TRANSACTION_WORDS = ("commit", "rollback", "begin", "savepoint", "release")
# What the driver sends outside cursor.execute(): timed around the dialect's own calls (see register_query_stats).
COMMIT, ROLLBACK, CONNECT, PING = "COMMIT", "ROLLBACK", "(connect: handshake, login, session set-up)", "(ping)"

_STRING = re.compile(r"'(?:[^'\\]|\\.|'')*'")
_NUMBER = re.compile(r"(?<![\w$.`\"])-?(?:0x[0-9a-fA-F]+|\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)(?![\w.])")
_PARAM = re.compile(r"%\(\w+\)s|%s|\?|(?<!:):\w+")
_LIST = re.compile(r"\(\s*\?(?:\s*,\s*\?)+\s*\)")
_IN_ONE = re.compile(r"\bIN \(\?\)", re.IGNORECASE)  # a list of one is still a list
_ROWS = re.compile(r"(\(\?\+?\))(?:\s*,\s*\(\?\+?\))+")
_SPACE = re.compile(r"\s+")


def normalise(sql):
    """The statement with literals and parameters as ?, lists collapsed, whitespace single."""
    text = _STRING.sub("?", sql)
    text = _PARAM.sub("?", text)
    text = _NUMBER.sub("?", text)
    text = _SPACE.sub(" ", text).strip()
    text = _LIST.sub("(?+)", text)
    text = _IN_ONE.sub("IN (?+)", text)
    return _ROWS.sub(r"\1", text)


_COLUMNS = re.compile(r"\b(\w+)\.\w+(?: AS \w+)?(?:, \1\.\w+(?: AS \w+)?){2,}")


def short_sql(text):
    """For display: a run of three or more columns of one table as table.*, so FROM and WHERE show."""
    return _COLUMNS.sub(r"\1.*", text)


def kind_of(sql):
    if sql in (CONNECT, PING):
        return "connection"
    word = sql.lstrip("( ").split(" ", 1)[0].lower()
    if word == "with":
        return "select"
    if word in TRANSACTION_WORDS:
        return "transaction"
    return word if word in KINDS else "other"
