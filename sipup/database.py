"""Engine set-up per backend and the unit of work that retries on deadlock without half-applying."""
import logging
import time

from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError

from .extensions import db

log = logging.getLogger(__name__)

# MySQL/MariaDB error codes worth retrying the whole unit for: deadlock, lock wait timeout.
RETRYABLE_MYSQL_ERRORS = {1213, 1205}


def register_database(app):
    """Bind Flask-SQLAlchemy and Flask-Migrate; SQLite gets WAL, a busy timeout and foreign keys."""
    from .extensions import migrate

    db.init_app(app)
    migrate.init_app(app, db, directory=_migrations_dir(), render_as_batch=True, compare_type=True)


def _migrations_dir():
    import os

    return os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "migrations")


@event.listens_for(Engine, "connect")
def _sqlite_pragmas(dbapi_connection, _record):
    if type(dbapi_connection).__module__.startswith("sqlite3"):
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()


def is_retryable(error):
    orig = getattr(error, "orig", None)
    code = orig.args[0] if orig is not None and orig.args else None
    return code in RETRYABLE_MYSQL_ERRORS


def run_in_transaction(work, *args, attempts=3, **kwargs):
    """Run work(*args) and commit; on deadlock or lock timeout roll back and run it all again."""
    # Start from a fresh transaction: on MySQL/MariaDB a transaction that already read something
    # (the signed-in user, say) keeps that snapshot, which would hide what others committed since.
    db.session.commit()
    for attempt in range(1, attempts + 1):
        try:
            result = work(*args, **kwargs)
            db.session.commit()
            return result
        except OperationalError as error:
            db.session.rollback()
            if not is_retryable(error) or attempt == attempts:
                raise
            log.warning("Retrying %s after %s (attempt %d)", work.__name__, error.orig, attempt)
            time.sleep(0.05 * attempt)
        except BaseException:
            db.session.rollback()
            raise
