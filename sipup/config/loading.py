"""Layered configuration: defaults, then instance/sipup.cfg, then SIPUP_* environment variables, then the
overrides of tests; each value converted and checked, then the derived values set."""

import difflib
import os
import sys
import traceback
from datetime import timedelta

from ..csvfiles import default_dialect
from .converters import CONVERTERS
from .defaults import DEFAULTS, OTHER_VARIABLES
from .engines import check_replicas, engine_options
from .errors import ENV_PREFIX, ConfigError, shown
from .instance import MIN_SECRET_KEY, embedded_secret_key, private_sqlite_file, writable_instance


def load_config(app, overrides=None):
    """Fill app.config from the three layers plus test overrides, then check and derive values."""
    app.config.update(DEFAULTS)
    _read_file(app)
    for key, value in os.environ.items():
        if key.startswith(ENV_PREFIX + "_") and not key.startswith(ENV_PREFIX + "_TEST_"):
            name = key[len(ENV_PREFIX) + 1 :]
            if name in DEFAULTS:
                app.config[name] = value
            elif name not in OTHER_VARIABLES:
                _warn_unknown(key)
    app.config.update(overrides or {})
    _check(app.config)
    _derive(app)


def _read_file(app):
    """instance/sipup.cfg, if there is one; a mistake in it is one line with the file and line number."""
    path = os.path.join(app.config.root_path, "sipup.cfg")
    try:
        app.config.from_pyfile("sipup.cfg", silent=True)
    except SyntaxError as exc:
        raise ConfigError(
            f"{path}, line {exc.lineno}: {exc.msg}; write NAME = value lines, text in quotes (PORT = 8080, "
            "SITE_NAME = 'Getränke Nord')."
        ) from None
    except Exception as exc:  # it ran and failed, e.g. NameError for text without quotes
        lines = [frame.lineno for frame in traceback.extract_tb(exc.__traceback__) if frame.filename == path]
        raise ConfigError(
            f"{path}, line {lines[-1] if lines else '?'}: {type(exc).__name__}: {exc}; write NAME = value lines, "
            "text in quotes (SITE_NAME = 'Getränke Nord')."
        ) from None


_WARNED = set()


def _warn_unknown(key):
    """Once per process, one line on standard error (logging is not set up yet): a SIPUP_* variable sipup does
    not read, with the closest name it does."""
    if key in _WARNED:
        return
    _WARNED.add(key)
    known = [f"{ENV_PREFIX}_{name}" for name in (*DEFAULTS, *OTHER_VARIABLES)]
    closest = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    hint = f"; did you mean {closest[0]}?" if closest else "; it is ignored (docs/settings.md lists the settings)."
    print(f"sipup: warning: {key} is not a sipup setting{hint}", file=sys.stderr)


def _check(config):
    for key, convert in CONVERTERS.items():
        try:
            config[key] = convert(config[key])
        except (TypeError, ValueError) as exc:
            reason = str(exc) if "must" in str(exc) else "has the wrong form"
            raise ConfigError(f"{ENV_PREFIX}_{key}={shown(config[key])!r} {reason}.") from None
    if config["MAIL_URL"] and not config["MAIL_FROM"]:
        raise ConfigError(
            f"{ENV_PREFIX}_MAIL_URL is set but {ENV_PREFIX}_MAIL_FROM is not: set the shop's sender address, "
            f"e.g. {ENV_PREFIX}_MAIL_FROM=orders@example.com (mail servers refuse or spam-file @localhost senders)."
        )
    if config["VAT_COUNTRY"] not in config["VAT_RATES"]:
        raise ConfigError(
            f"{ENV_PREFIX}_VAT_COUNTRY={config['VAT_COUNTRY']!r} has no rates in {ENV_PREFIX}_VAT_RATES; "
            f'add them, e.g. "{config["VAT_COUNTRY"]}: standard=0.20, reduced=0.10, zero=0".'
        )


def _derive(app):
    config = app.config
    writable_instance(app.instance_path)
    url = config["DATABASE_URL"] or "sqlite:///" + os.path.join(app.instance_path, "sipup.db")
    config["DATABASE_URL"] = url
    config["SQLALCHEMY_DATABASE_URI"] = url
    config["SQLALCHEMY_ENGINE_OPTIONS"] = engine_options(url, config)
    check_replicas(url, config)
    private_sqlite_file(url)
    config["SECRET_KEY"] = config["SECRET_KEY"] or embedded_secret_key(app, url)
    if len(str(config["SECRET_KEY"])) < MIN_SECRET_KEY and not url.startswith("sqlite"):
        raise ConfigError(
            f"{ENV_PREFIX}_SECRET_KEY has {len(str(config['SECRET_KEY']))} characters; outside the embedded default "
            f'it needs at least {MIN_SECRET_KEY}, e.g. python -c "import secrets; print(secrets.token_hex(32))".'
        )
    config["CSV_DIALECT"] = config["CSV_DIALECT"] or default_dialect(config["CURRENCY"])
    config["MAX_CONTENT_LENGTH"] = config["MAX_REQUEST_MB"] * 1024 * 1024
    # Pasted quick orders are form fields, not files: allow a generous paste.
    config["MAX_FORM_MEMORY_SIZE"] = 4 * 1024 * 1024
    config["SESSION_COOKIE_HTTPONLY"] = True
    config["SESSION_COOKIE_SAMESITE"] = "Lax"
    config["REMEMBER_COOKIE_HTTPONLY"] = True
    config["REMEMBER_COOKIE_SECURE"] = config["SESSION_COOKIE_SECURE"]

    config["PERMANENT_SESSION_LIFETIME"] = timedelta(hours=config["SESSION_HOURS"])
    # The cookie lasts SESSION_HOURS from sign-in, as the session on the server does (user_sessions): sent
    # again only when the session changes, not re-signed on every answer.
    config["SESSION_REFRESH_EACH_REQUEST"] = False
    # Static files carry a content hash in their URL, so browsers may keep them for a year.
    config["SEND_FILE_MAX_AGE_DEFAULT"] = 365 * 24 * 3600
    config["WTF_CSRF_TIME_LIMIT"] = None
