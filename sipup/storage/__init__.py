"""File storage: where pictures, reports and uploaded files are kept, so that every host sees the same files.

SIPUP_STORAGE_URL chooses the backend: unset, the instance folder (`folder`, one host); `database`, the
stored_files table (`database`); `s3://KEY:SECRET@host:port/bucket`, any S3-compatible object store (`s3`).
Each backend offers put(key, data, content_type), get(key), exists(key), list(prefix), delete(key) and
problem() (a line when it cannot be used, else None). Keys are `area/name` made by sipup (content hashes and
generated names, never a user's file name); a fault raises StorageUnavailable with a message fit for staff.

Modules: `base` (keys, errors, what list() returns), `folder`, `database`, `s3`, `cli` (`flask storage migrate`).
Exports `register_storage` for create_app(), `get_storage` (this app's backend), `folder_storage` (the
instance folder's, which `flask storage migrate` reads), and the errors.
"""

from flask import current_app

from sipup.config import parse_storage_url
from sipup.storage.base import Missing, StorageUnavailable, StoredInfo, check_key
from sipup.storage.database import DatabaseStorage
from sipup.storage.folder import FolderStorage


def folder_storage(app):
    """The instance folder as storage: instance/<area>/, pictures in SIPUP_IMAGE_FOLDER when that is set."""
    folders = {"images": app.config["IMAGE_FOLDER"]} if app.config["IMAGE_FOLDER"] else {}
    return FolderStorage(app.instance_path, folders)


def build_storage(app):
    """The backend SIPUP_STORAGE_URL names (checked already by sipup.config)."""
    url = app.config["STORAGE_URL"]
    if not url:
        return folder_storage(app)
    if url == "database":
        return DatabaseStorage()
    from sipup.storage.s3 import ObjectStorage  # lazy: minio is a tenth of start-up; only s3:// needs it

    return ObjectStorage(parse_storage_url(url))


def register_storage(app):
    """Make this app's file storage, reached through get_storage()."""
    app.extensions["storage"] = build_storage(app)


def get_storage():
    """The current app's file storage."""
    return current_app.extensions["storage"]


def __getattr__(name):
    """`from sipup.storage import ObjectStorage` works without loading minio at every start (PEP 562)."""
    if name == "ObjectStorage":
        from sipup.storage.s3 import ObjectStorage  # lazy: minio is a tenth of start-up; only s3:// needs it

        return ObjectStorage
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "DatabaseStorage",
    "FolderStorage",
    "Missing",
    "ObjectStorage",
    "StorageUnavailable",
    "StoredInfo",
    "build_storage",
    "check_key",
    "folder_storage",
    "get_storage",
    "register_storage",
]
