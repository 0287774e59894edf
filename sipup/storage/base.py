"""What every storage backend shares: the form of a key, the errors, and what list() returns."""

import mimetypes
import re
from collections import namedtuple

# area/name: an area such as images, reports or imports, then a name sipup made (a hash, a date, a token).
KEY = re.compile(r"^[a-z]+/[A-Za-z0-9][A-Za-z0-9._-]{0,150}$")
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,150}$")

# One stored file as list() describes it: its key, its size in bytes and when it was written (naive UTC).
StoredInfo = namedtuple("StoredInfo", "key size modified")


class Missing(LookupError):
    """No file is stored under this key."""


class StorageUnavailable(RuntimeError):
    """The storage cannot be used now (unreachable, refused, full); str() tells staff what happened and what
    to do."""

    def __init__(self, action, reason):
        self.action, self.reason = action, reason
        advice = "Nothing was saved; please try again" if action == "save" else "Please try again"
        what = "the files" if action == "list" else "the file"
        super().__init__(f"The file storage could not {action} {what}: {reason}. {advice} in a minute.")


def check_key(key):
    """The key itself when it has the form area/name with no path tricks; ValueError otherwise."""
    if not isinstance(key, str) or not KEY.match(key) or ".." in key:
        raise ValueError(f"not a storage key: {key!r}")
    return key


def content_type_of(key):
    """The content type a key's extension suggests (for files found in a folder)."""
    return mimetypes.guess_type(key)[0] or "application/octet-stream"
