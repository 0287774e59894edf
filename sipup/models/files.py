"""Files kept in the database when SIPUP_STORAGE_URL=database."""

from datetime import datetime

from sqlalchemy import DateTime, Integer, LargeBinary, String
from sqlalchemy.dialects.mysql import LONGBLOB
from sqlalchemy.orm import Mapped, mapped_column

from ..extensions import db
from .columns import utcnow


class StoredFile(db.Model):
    """A file kept in the database when SIPUP_STORAGE_URL=database (sipup/storage/database.py): a picture, a
    report, an uploaded stock file, named by a key such as images/<sha256>-card.webp."""

    __tablename__ = "stored_files"
    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    content_type: Mapped[str] = mapped_column(String(100))
    size: Mapped[int] = mapped_column(Integer)
    data: Mapped[bytes] = mapped_column(LargeBinary().with_variant(LONGBLOB(), "mysql", "mariadb"))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
