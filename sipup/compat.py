"""The Flask-Login (0.6) internal the app's own modules rely on, in one place (requirements.txt pins
Flask-Login); tests/test_compat.py checks it against the installed version."""

from flask import g


def answer_as_anonymous(anonymous_user):
    """Make current_user the anonymous user for the rest of this request without asking the user loader
    (Flask-Login keeps the request's user in g._login_user and loads it when that is missing)."""
    if "_login_user" not in g:
        g._login_user = anonymous_user
