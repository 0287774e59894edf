"""The Flask-Login (0.6) internals the app's own modules rely on, in one place (requirements.txt pins
Flask-Login); tests/test_compat.py checks them against the installed version.

- `answer_as_anonymous`: where Flask-Login keeps the request's user (g._login_user).
- `session_user_id`: where it keeps the signed-in user's id in the session; `signed_in_id` reads sipup's
  id from it for the limiter and the read-ahead, before any user is loaded.

And Flask-WTF's (1.x) two places for a request's CSRF token, which its generate_csrf() documents for tests:
`csrf_tokens` gives the signed token it kept for this request (g.<field name>) and the raw token it keeps in the
session (session[<field name>]); `use_signed_csrf` has generate_csrf() answer with a token signed before.

And one PyMySQL (1.x) internal: `set_read_timeout` changes an open connection's read timeout, which PyMySQL
takes only when connecting (it keeps it in `_read_timeout` and applies it before every read).

And one SQLAlchemy (2.x) internal: `is_locking_read` tells a SELECT ... FOR UPDATE / FOR SHARE (kept in
`_for_update_arg`), which must never go to a read replica."""

from flask import g


def answer_as_anonymous(anonymous_user):
    """Make current_user the anonymous user for the rest of this request without asking the user loader
    (Flask-Login keeps the request's user in g._login_user and loads it when that is missing). A user loaded
    already is replaced too: after a rollback its attributes would be read from the database again."""
    g._login_user = anonymous_user


SESSION_USER_KEY = "_user_id"  # Flask-Login's session key for the signed-in user's id


def session_user_id(session):
    """The signed-in user's id as Flask-Login stored it in the session ("" when nobody is signed in)."""
    return session.get(SESSION_USER_KEY) or ""


def signed_in_id(session):
    """The signed-in user's numeric id from the session, without loading the user, or None: sipup stores
    "id:session id" under Flask-Login's key (see services.accounts.load_user)."""
    user_id = session_user_id(session).partition(":")[0]
    return int(user_id) if user_id.isdigit() else None


def csrf_tokens(config, session):
    """(the signed CSRF token generate_csrf() kept for this request or None, the raw token in the session or None)."""
    field = config["WTF_CSRF_FIELD_NAME"]
    return g.get(field), session.get(field)


def use_signed_csrf(config, token):
    """Make generate_csrf() answer `token` for the rest of this request, as if it had signed it itself."""
    setattr(g, config["WTF_CSRF_FIELD_NAME"], token)


def set_read_timeout(connection, seconds):
    """Let reads on this open PyMySQL connection wait at most `seconds` (None: for ever) from now on."""
    connection._read_timeout = seconds


def is_locking_read(select):
    """True for a SELECT that locks rows (with_for_update()): it belongs to a write and to the primary."""
    return getattr(select, "_for_update_arg", None) is not None
