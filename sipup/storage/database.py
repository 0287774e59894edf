"""Files in the database's stored_files table (SIPUP_STORAGE_URL=database): shared by every host without
another server; fine for a small shop's pictures and reports (each file at most the server's
max_allowed_packet on MySQL/MariaDB, 16 MB by default).

Pictures are content-addressed and sent with a year's caching and an ETag, so browsers and proxies ask for
each one once; sipup answers their conditional requests without reading the bytes.
"""

from sqlalchemy import delete, insert, select
from sqlalchemy.exc import DBAPIError

from sipup.extensions import db
from sipup.models import StoredFile, utcnow
from sipup.storage.base import Missing, StorageUnavailable, StoredInfo, check_key

TABLE = StoredFile.__table__


class DatabaseStorage:
    """Files as rows of stored_files, written and committed in the session of the request or job."""

    name = "database"
    where = "the database (table stored_files)"

    def put(self, key, data, content_type):
        """Store a file, replacing one of the same key, and commit."""
        check_key(key)
        try:
            db.session.execute(delete(TABLE).where(TABLE.c.key == key))
            db.session.execute(
                insert(TABLE).values(key=key, content_type=content_type, size=len(data), data=data, created_at=utcnow())
            )
            db.session.commit()
        except DBAPIError as exc:
            db.session.rollback()
            raise StorageUnavailable("save", _reason(exc)) from exc

    def get(self, key):
        """The bytes of a file; Missing when there is none."""
        data = self._scalar(select(TABLE.c.data).where(TABLE.c.key == check_key(key)))
        if data is None:
            raise Missing(key)
        return data

    def exists(self, key):
        """Whether a file is stored under key."""
        return self._scalar(select(TABLE.c.key).where(TABLE.c.key == check_key(key))) is not None

    def list(self, area):
        """Every file of an area ("reports"), as StoredInfo."""
        prefix = area.strip("/") + "/"
        statement = select(TABLE.c.key, TABLE.c.size, TABLE.c.created_at).where(
            TABLE.c.key.startswith(prefix, autoescape=True)
        )
        try:
            return [StoredInfo(*row) for row in db.session.execute(statement)]
        except DBAPIError as exc:
            db.session.rollback()
            raise StorageUnavailable("list", _reason(exc)) from exc

    def delete(self, key):
        """Remove a file; one that is not there is no error."""
        try:
            db.session.execute(delete(TABLE).where(TABLE.c.key == check_key(key)))
            db.session.commit()
        except DBAPIError as exc:
            db.session.rollback()
            raise StorageUnavailable("delete", _reason(exc)) from exc

    def problem(self):
        """A line when the table cannot be read, else None."""
        try:
            self._scalar(select(TABLE.c.key).limit(1))
        except StorageUnavailable as exc:
            return f"{exc.reason}; run `flask db upgrade` if the table is missing"
        return None

    def _scalar(self, statement):
        try:
            return db.session.execute(statement).scalar()
        except DBAPIError as exc:
            db.session.rollback()
            raise StorageUnavailable("read", _reason(exc)) from exc


def _reason(error):
    detail = str(getattr(error, "orig", error)).strip() or type(error).__name__
    return f"the database refused it ({detail[:160]})"
