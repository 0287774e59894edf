"""The side effects of loading the settings: the instance folder (0700), a new SQLite file (0600), and the
embedded default's secret key kept in instance/."""

import os
import secrets
import tempfile

from sqlalchemy.engine import make_url

from ..files import open_private, private_file, private_folder
from .errors import ENV_PREFIX, ConfigError

MIN_SECRET_KEY = 32


def writable_instance(path):
    """Create the instance folder (mode 0700) and make sure files can be written there."""
    try:
        private_folder(path)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as exc:
        raise ConfigError(
            f"The instance folder {path} cannot be written ({exc.strerror or exc}); give the service account "
            f"write access to it, or point {ENV_PREFIX}_INSTANCE_PATH at a folder it may write."
        ) from None


def private_sqlite_file(url):
    """A SQLite database file not there yet is created mode 0600 (SQLite would make it 0644)."""
    database = make_url(url).database
    if (
        make_url(url).get_backend_name() == "sqlite"
        and database
        and database != ":memory:"
        and not database.startswith("file:")
        and os.path.isdir(os.path.dirname(os.path.abspath(database)))
    ):
        private_file(database)


def embedded_secret_key(app, url):
    """On the embedded default, keep a generated key in instance/; elsewhere demand one."""
    if not url.startswith("sqlite"):
        raise ConfigError(
            f"{ENV_PREFIX}_SECRET_KEY is not set. Production needs a long random value shared by all hosts, "
            'e.g. python -c "import secrets; print(secrets.token_hex(32))".'
        )
    path = os.path.join(app.instance_path, "secret_key")
    if not os.path.exists(path):
        with open_private(path, "w", encoding="ascii") as handle:
            handle.write(secrets.token_hex(32))
    with open(path, encoding="ascii") as handle:
        return handle.read().strip()
