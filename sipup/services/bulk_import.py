"""Bulk imports and exports of products, price tiers and customer companies, as CSV or XLSX, that round-trip.

An upload is read and checked line by line (sipup.spreadsheets; the kinds' own rules in import_products,
import_prices and import_companies) and planned against the database: what each line would create or
change, or why it is refused (its line, column and reason). The file and that preview are kept in the file
storage, and nothing is written until staff confirm the preview; then the job `apply_import` plans the file
again against the database as it is by then and applies it a batch at a time, each batch one transaction
holding whole keys (a company with all its lines), writing its progress beside the file for the page.
Every write is an upsert by key that leaves what already matches alone, so applying the same file again
changes nothing, and a job re-run after a crash skips the batches that were committed.

    preview = start_upload("products", data, "catalogue.xlsx")   # {name, counts, create, change, refused...}
    confirm(preview["name"], actor)                               # enqueues apply_import
    data, mimetype, filename = export("prices", "xlsx")           # a file that imports back unchanged
"""

import json
import logging
import re
import secrets

from flask import current_app
from flask_babel import gettext, lazy_gettext
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from sipup.jobs import enqueue
from sipup.jobs.names import APPLY_IMPORT
from sipup.storage import Missing, StorageUnavailable, get_storage

from ..csvfiles import DIALECTS, to_text
from ..exceptions import InvalidInput, LineRefused, NotFound
from ..extensions import db
from ..i18n import N_, kept
from ..models import Job, User, utcnow
from ..spreadsheets import read_upload, xlsx_bytes
from . import import_companies, import_prices, import_products

log = logging.getLogger("sipup.bulk_import")

KINDS = {"products": import_products, "prices": import_prices, "companies": import_companies}
LABELS = {
    "products": lazy_gettext("Products"),
    "prices": lazy_gettext("Price tiers"),
    "companies": lazy_gettext("Customer companies"),
}
KEY_WORDS = {
    "products": lazy_gettext("SKU"),
    "prices": lazy_gettext("price list, SKU and min_qty"),
    "companies": lazy_gettext("company and address_label"),
}
FORMATS = ("csv", "xlsx")
BATCH_LINES = 500
MAX_LINES = 100_000
SHOWN = 500  # lines of each kind a preview lists (the counts cover them all)
NAME = re.compile(r"(products|prices|companies)-\d{8}-\d{6}-[0-9a-f]{6}\.(csv|xlsx)")
APPLIES = ("create", "change")


def kind_module(kind):
    """The module of one kind of file, else InvalidInput naming the kinds."""
    if kind not in KINDS:
        raise InvalidInput(gettext("Choose what the file contains: products, prices or companies."))
    return KINDS[kind]


def check(kind, data, size=None):
    """Read and plan a file (size: its whole length when only its head was read): every line's action
    (create, change, same, refused) with its changes or reason."""
    module = kind_module(kind)
    limit = current_app.config["IMPORT_MAX_MB"] * 1_048_576
    entries, refused, seen = [], [], {}
    for number, record in read_upload(data, module.REQUIRED, limit, MAX_LINES, size):
        try:
            key, values = module.read(record)
        except LineRefused as exc:
            refused += [(number, column, why) for column, why in exc.problems]
            continue
        if key in seen:
            refused.append(
                (
                    number,
                    module.KEY_COLUMN,
                    gettext("the same %(key)s as line %(line)s", key=KEY_WORDS[kind], line=seen[key]),
                )
            )
            continue
        seen[key] = number
        entries.append((number, key, values))
    items = module.plan(entries) if entries else []
    refused += [(i["line"], i["column"], i["why"]) for i in items if i["action"] == "refused"]
    refused.sort(key=lambda r: (r[0], r[1]))
    return items, refused


def _summary(kind, items, refused):
    """The preview kept beside an upload: counts, and the first SHOWN lines of each action."""
    counts = {action: sum(1 for i in items if i["action"] == action) for action in ("create", "change", "same")}
    counts["refused"] = len({r[0] for r in refused})
    preview = {
        "kind": kind,
        "label": str(LABELS[kind]),
        "counts": counts,
        "refused": [list(r) for r in refused[:SHOWN]],
    }
    for action in APPLIES:
        preview[action] = [[i["line"], i["key"], i["changes"]] for i in items if i["action"] == action][:SHOWN]
    return preview


def _key(name, suffix=""):
    return f"imports/{name}{suffix}"


def start_upload(kind, data, filename="", size=None):
    """Check an uploaded file and keep it with its preview in the file storage; nothing else is written.
    InvalidInput when the file as a whole cannot be read; returns the preview with its `name`."""
    items, refused = check(kind, data, size)
    extension = "xlsx" if data.startswith(b"PK\x03\x04") else "csv"
    name = f"{kind}-{utcnow():%Y%m%d-%H%M%S}-{secrets.token_hex(3)}.{extension}"
    preview = _summary(kind, items, refused) | {"name": name, "filename": (filename or "")[:120]}
    storage = get_storage()
    storage.put(_key(name), data, "application/octet-stream")
    storage.put(_key(name, ".preview.json"), json.dumps(preview).encode("utf-8"), "application/json")
    return preview


def _stored_json(name, suffix):
    if not NAME.fullmatch(name or ""):
        raise NotFound(gettext("There is no such import."))
    try:
        return json.loads(get_storage().get(_key(name, suffix)))
    except Missing:
        return None
    except ValueError:
        raise NotFound(gettext("There is no such import.")) from None


def load_preview(name):
    """The preview of a kept upload, or NotFound."""
    preview = _stored_json(name, ".preview.json")
    if preview is None:
        raise NotFound(gettext("There is no such import."))
    preview["label"] = str(LABELS.get(preview.get("kind"), preview.get("label", "")))  # in the reader's language
    return preview


def job_of(name):
    """The job that applies this upload, or None while nobody confirmed it."""
    return db.session.scalar(select(Job).where(Job.dedupe_key == f"import:{name}"))


def progress(name):
    """How far applying the upload has gone ({state, total, done, created, changed, ...}), or None before it starts.
    A storage that cannot be read now answers None too: the page says it is waiting and asks again."""
    try:
        return _stored_json(name, ".progress.json")
    except StorageUnavailable as exc:
        log.warning("The progress of %s cannot be read now: %s", name, exc.reason)
        return None


def confirm(name, actor=None):
    """Enqueue the job that applies a previewed upload (once: confirming twice queues nothing more)."""
    preview = load_preview(name)
    if not any(preview["counts"][action] for action in APPLIES):
        raise InvalidInput(gettext("Nothing in this file would change anything: there is nothing to apply."))
    record = enqueue(APPLY_IMPORT, preview["kind"], name, actor.id if actor else None, dedupe_key=f"import:{name}")
    db.session.commit()
    return record


def apply_stored(kind, name, actor_id=None):
    """The job's work: apply a kept upload, its progress written beside it; returns the job's summary."""
    try:
        data = get_storage().get(_key(name))
    except Missing:
        raise NotFound(gettext("The file %(name)s is no longer in the file storage.", name=name)) from None
    actor = db.session.get(User, actor_id) if actor_id else None

    def report(state):
        get_storage().put(_key(name, ".progress.json"), json.dumps(state).encode("utf-8"), "application/json")

    state = apply_file(kind, data, actor, source=name, report=report)
    return kept(SUMMARY, **_counts(state))


# A finished import in one line (kept as the message and its counts: the job's result is read on the back office).
SUMMARY = N_("%(created)s created, %(changed)s changed, %(same)s already as in the file, %(refused)s line(s) refused")


def _counts(state):
    return {name: state[name] for name in ("created", "changed", "same", "refused")}


def describe(state):
    """One line for a finished import: what was created, changed, left alone and refused."""
    return gettext(SUMMARY, **_counts(state))


def batches(items):
    """Items in batches of about BATCH_LINES lines; the lines of one key (a company) stay in one batch."""
    batch, groups = [], {}
    for item in items:
        groups.setdefault(item["group"], []).append(item)
    for lines in groups.values():
        if batch and len(batch) + len(lines) > BATCH_LINES:
            yield batch
            batch = []
        batch.extend(lines)
    if batch:
        yield batch


def apply_file(kind, data, actor=None, source="", report=None):
    """Plan a file against the database as it is now and apply it a batch at a time, each batch committed
    on its own (what is already as in the file is skipped, so a re-run goes on where one stopped)."""
    module = kind_module(kind)
    items, refused = check(kind, data)
    todo = [item for item in items if item["action"] in APPLIES]
    state = {
        "state": "applying",
        "total": len(todo),
        "done": 0,
        "created": 0,
        "changed": 0,
        "same": sum(1 for i in items if i["action"] == "same"),
        "refused": len({r[0] for r in refused}),
        "problems": [list(r) for r in refused[:SHOWN]],
    }
    if report:
        report(state)
    for batch in batches(todo):
        try:
            created, changed = module.apply(batch, actor, source or kind)
            db.session.commit()
        except IntegrityError:  # changed meanwhile by someone else: nothing of this batch stays; the job retries
            db.session.rollback()
            raise
        state["done"] += len(batch)
        state["created"] += sum(1 for i in batch if i["action"] == "create")
        state["changed"] += sum(1 for i in batch if i["action"] == "change")
        if report:
            report(state)
    state["state"] = "done"
    if report:
        report(state)
    return state


def recent(limit=10):
    """The latest confirmed imports with their job and progress."""
    jobs = db.session.scalars(select(Job).where(Job.name == "apply_import").order_by(Job.id.desc()).limit(limit))
    runs = []
    for job in jobs:
        args = json.loads(job.args or "[]")
        name = args[1] if len(args) > 1 else ""
        runs.append({"job": job, "name": name, "kind": args[0] if args else "", "progress": progress(name)})
    return runs


def export(kind, fmt="csv", dialect=None):
    """(bytes, mimetype, file name) of every row of a kind, as CSV in a dialect or XLSX, ready to import back."""
    module = kind_module(kind)
    stamp = f"{utcnow():%Y%m%d}"
    if fmt == "xlsx":
        data = xlsx_bytes(module.COLUMNS, module.export_rows(), title=kind)
        return data, "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", f"{kind}-{stamp}.xlsx"
    if fmt != "csv":
        raise InvalidInput(gettext("Choose CSV or XLSX."))
    dialect = dialect if dialect in DIALECTS else current_app.config["CSV_DIALECT"]
    text = "\ufeff" + to_text(module.COLUMNS, module.export_rows(), dialect)  # the BOM: Excel reads UTF-8
    return text.encode("utf-8"), "text/csv", f"{kind}-{stamp}.csv"
