"""Files only the service account reads: the databases, the secret key, logs, backups, reports, the outbox,
the cache folder and product pictures.

On POSIX they are created mode 0600 in folders of mode 0700, whatever the umask; on Windows the modes are
ignored and the folder's access list decides. Files that exist already keep the mode the operator gave them.

    private_folder(path)                      # makedirs, mode 0700; returns path
    with open_private(path, "w") as handle:   # open(), creating the file with mode 0600
    private_file(path)                        # create it empty (mode 0600) unless it exists: for SQLite
    PrivateRotatingFileHandler(path, ...)     # a RotatingFileHandler whose files are 0600
"""

import os
from logging.handlers import RotatingFileHandler

FILE_MODE, FOLDER_MODE = 0o600, 0o700


def _opener(path, flags):
    return os.open(path, flags, FILE_MODE)


def private_folder(path):
    """Create path (and its parents) as needed; the folders made here have mode 0700."""
    os.makedirs(path, mode=FOLDER_MODE, exist_ok=True)
    return path


def open_private(path, mode="r", **kwargs):
    """open(), but a file it creates gets mode 0600 (set at creation, so it is never readable by others)."""
    return open(path, mode, opener=_opener, **kwargs)


def private_file(path):
    """Create an empty file of mode 0600 unless path exists, so a program that opens it later (SQLite, which
    gives its -wal and -journal files the database's mode) finds it private."""
    if not os.path.exists(path):
        open_private(path, "ab").close()
    return path


class PrivateRotatingFileHandler(RotatingFileHandler):
    """Log files, the current one and each one rotation starts, created mode 0600."""

    def _open(self):
        return open_private(self.baseFilename, self.mode, encoding=self.encoding, errors=self.errors)
