"""Files in the instance folder: instance/<area>/<name>, mode 0600 in folders of mode 0700 (sipup/files.py).

The embedded default, for one host. A file is written to a temporary name and renamed, so a reader never
sees half a file, and a full disk leaves nothing behind.
"""

import errno
import os
import secrets
import tempfile
from datetime import datetime, timezone

from sipup.files import open_private, private_folder
from sipup.storage.base import NAME, Missing, StorageUnavailable, StoredInfo, check_key

REASONS = {
    errno.ENOSPC: "the disk holding {folder} is full",
    errno.EDQUOT: "the disk quota of {folder} is used up",
    errno.EROFS: "the file system holding {folder} is read-only",
    errno.EACCES: "the service account may not write {folder}",
}


class FolderStorage:
    """Files under one base folder, one sub-folder per area; `folders` may place an area elsewhere."""

    name = "folder"

    def __init__(self, base, folders=None):
        self.base, self.folders = base, dict(folders or {})

    @property
    def where(self):
        moved = "".join(f", {area} in {path}" for area, path in sorted(self.folders.items()))
        return f"{self.base}{moved}"

    def folder(self, area):
        """The folder of one area."""
        return self.folders.get(area) or os.path.join(self.base, area)

    def _path(self, key):
        area, name = check_key(key).split("/", 1)
        return self.folder(area), name

    def put(self, key, data, content_type):
        """Write a file whole (or not at all)."""
        folder, name = self._path(key)
        temporary = os.path.join(folder, f".{name}.{secrets.token_hex(4)}.part")
        try:
            private_folder(folder)
            with open_private(temporary, "wb") as handle:
                handle.write(data)
            os.replace(temporary, os.path.join(folder, name))
        except OSError as exc:
            _remove(temporary)
            raise StorageUnavailable("save", _reason(exc, folder)) from exc

    def get(self, key):
        """The bytes of a file; Missing when there is none."""
        folder, name = self._path(key)
        try:
            with open(os.path.join(folder, name), "rb") as handle:
                return handle.read()
        except FileNotFoundError:
            raise Missing(key) from None
        except OSError as exc:
            raise StorageUnavailable("read", _reason(exc, folder)) from exc

    def exists(self, key):
        """Whether a file is stored under key."""
        folder, name = self._path(key)
        return os.path.isfile(os.path.join(folder, name))

    def list(self, area):
        """Every file of an area ("reports"), as StoredInfo."""
        folder = self.folder(area.strip("/"))
        found = []
        try:
            entries = list(os.scandir(folder))
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise StorageUnavailable("list", _reason(exc, folder)) from exc
        for entry in entries:
            if NAME.match(entry.name) and entry.is_file():
                stat = entry.stat()
                modified = datetime.fromtimestamp(stat.st_mtime, timezone.utc).replace(tzinfo=None)
                found.append(StoredInfo(f"{area.strip('/')}/{entry.name}", stat.st_size, modified))
        return found

    def delete(self, key):
        """Remove a file; one that is not there is no error."""
        folder, name = self._path(key)
        _remove(os.path.join(folder, name))

    def problem(self):
        """A line when a file cannot be written here, else None."""
        for folder in [self.base, *self.folders.values()]:
            try:
                private_folder(folder)
                with tempfile.TemporaryFile(dir=folder):
                    pass
            except OSError as exc:
                return f"{_reason(exc, folder)} ({exc.strerror or exc})"
        return None


def _reason(error, folder):
    return REASONS.get(error.errno, "{folder}: " + (error.strerror or str(error))).format(folder=folder)


def _remove(path):
    try:
        os.remove(path)
    except FileNotFoundError:
        pass
