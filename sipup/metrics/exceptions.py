"""Unexpected exceptions of requests and jobs, grouped by type and place, in the shared counters store.

A group is the exception's type and the innermost sipup frame (file:line). Each occurrence counts in the
counters group "exceptions" (per minute and hour, as every other figure), and its group's last occurrence is
kept as a short text (`describe()`): type, a scrubbed message, the URL path or job, when, and the trace. The
first time a group is seen is a mark of the store (shared by every process and host); the alert job mails
the admins about groups first seen lately (sipup/observability/alerts.py).

No personal data: a trace holds frames only (file, line, function, source line, from `traceback.extract_tb`),
never locals; the message keeps at most MESSAGE_CHARS characters with anything like `password=...` or
`token=...` blanked; a URL is its path, without the query string.
"""

import hashlib
import json
import os
import re
import time
import traceback
import weakref

GROUP = "exceptions"
MARK = "exception:"  # the marks of first sightings: exception:<key>
MESSAGE_CHARS = 200
MAX_FRAMES = 40
SOURCE_CHARS = 160
PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # .../sipup
ROOT = os.path.dirname(PACKAGE)
SECRET = re.compile(
    r"(?i)\b(password|passwd|pwd|token|secret|api[_-]?key|csrf_token|authorization|session)(\s*[=:]\s*)"
    r"(\"[^\"]*\"|'[^']*'|[^\s&,;]+)"
)
# Keys each counters object (one per app) has marked already: the store is written once per group and process.
_seen = weakref.WeakKeyDictionary()


def scrub(message):
    """The first MESSAGE_CHARS characters of a message, with values of secret-looking names blanked."""
    return SECRET.sub(lambda m: f"{m.group(1)}{m.group(2)}***", str(message))[:MESSAGE_CHARS]


def _own(filename):
    """Whether a frame is sipup's own code: the package, or tasks.py beside it."""
    path = os.path.abspath(filename)
    return path.startswith(PACKAGE + os.sep) or path == os.path.join(ROOT, "tasks.py")


def _short(filename):
    path = os.path.abspath(filename)
    return os.path.relpath(path, ROOT) if path.startswith(ROOT + os.sep) else os.path.basename(path)


def frames_of(error):
    """The trace's frames, innermost last: {file, line, function, source, own}; no locals, no values."""
    frames = traceback.extract_tb(error.__traceback__)[-MAX_FRAMES:]
    return [
        {
            "file": _short(f.filename),
            "line": f.lineno,
            "function": f.name,
            "source": (f.line or "")[:SOURCE_CHARS],
            "own": _own(f.filename),
        }
        for f in frames
    ]


def group_of(error, frames):
    """(key, type name, location): the type and the innermost sipup frame (else the innermost frame)."""
    kind = f"{type(error).__module__}.{type(error).__qualname__}".removeprefix("builtins.")
    place = next((f for f in reversed(frames) if f["own"]), frames[-1] if frames else None)
    location = f"{place['file']}:{place['line']}" if place else "?"
    key = hashlib.sha1(f"{kind}|{location}".encode()).hexdigest()[:16]
    return key, kind, location


def record(counters, error, where):
    """Count one unexpected exception and keep it as its group's last occurrence; where: a URL path or
    "job <name>". Returns the group's key. Never raises for the store: counting never fails a request."""
    frames = frames_of(error)
    key, kind, location = group_of(error, frames)
    now = time.time()
    text = {
        "type": kind,
        "location": location,
        "message": scrub(error),
        "where": where.split("?", 1)[0][:300],
        "last": now,
        "frames": frames,
    }
    counters.incr(GROUP, key, now=now)
    counters.describe(GROUP, {key: json.dumps(text)})
    seen = _seen.setdefault(counters, set())
    if key not in seen:
        counters.mark(MARK + key, True, now)  # the first sighting, kept by whichever process saw it first
        seen.add(key)
    return key


def groups(counters, res="minute", count=60):
    """The groups seen in the last `count` buckets, most frequent first: their count, first and last seen,
    type, location, message, where, and trace (sipup frames first, then every frame)."""
    counts = counters.totals(GROUP, res, count)
    texts = counters.descriptions(GROUP)
    firsts = counters.marks(MARK)
    rows = []
    for key, number in counts.items():
        try:
            text = json.loads(texts.get(key, "{}"))
        except ValueError:  # written by another version: show the count without its details
            text = {}
        frames = text.get("frames", [])
        rows.append(
            {
                "key": key,
                "count": number,
                "type": text.get("type", "?"),
                "location": text.get("location", "?"),
                "message": text.get("message", ""),
                "where": text.get("where", ""),
                "first": firsts.get(MARK + key),
                "last": text.get("last"),
                "own_frames": [f for f in frames if f.get("own")],
                "frames": frames,
            }
        )
    return sorted(rows, key=lambda r: (-r["count"], -(r["last"] or 0)))


def new_groups(counters, since):
    """{key: first seen} of the groups first seen at or after `since` (a Unix time)."""
    return {name.removeprefix(MARK): first for name, first in counters.marks(MARK).items() if first and first >= since}
