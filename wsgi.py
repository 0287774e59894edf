"""WSGI entry point for waitress and other servers; lets a bare `flask` find the app."""

import gc

from sipup import create_app
from sipup.config import ConfigError
from sipup.database import check_database

try:
    app = create_app()
except ConfigError as error:  # one clear line instead of a traceback
    raise SystemExit(f"sipup: configuration error: {error}") from None
problem = check_database(app)
if problem:
    raise SystemExit(f"sipup: cannot use the database: {problem}")

# What the start-up made lives as long as the process: the collector need not walk it again on every full
# collection, nor at exit (a third of a second for `flask queue process`).
gc.freeze()
