"""Stock levels from the warehouse: a CSV of SKU and count, applied in batches, then reservations rechecked.

Levels are absolute, so applying the same file twice leaves the same stock: the job is safe to re-run.
"""

import hashlib
import json
import logging
import os
import secrets

from flask_babel import gettext
from sqlalchemy import select

from sipup.dbtools.batch import bulk_update
from sipup.jobs import enqueue
from sipup.jobs.names import APPLY_STOCK_FILE, SEND_MAIL
from sipup.storage import Missing, StorageUnavailable, get_storage

from ..csvfiles import read_table
from ..database import run_in_transaction
from ..exceptions import InvalidInput, NotFound
from ..extensions import db
from ..i18n import N_, kept, kept_error, kept_parts
from ..i18n import number as number_text
from ..models import Job, JobStatus, Product, utcnow
from .orders import STOCK
from .parsing import MAX_COUNT, whole_number

log = logging.getLogger("sipup.stock_import")

BATCH_SIZE = 500
MAX_LINES = 200_000


def parse_stock_csv(data):
    """([(line number, sku, count)], [(line number, problem)]); columns sku and stock_on_hand."""
    rows, problems, seen = [], [], {}
    for number, record in read_table(data, ("sku", "stock_on_hand")):
        if number > MAX_LINES + 1:
            problems.append((number, gettext("more than %(most)s lines; the rest was not read", most=MAX_LINES)))
            break
        sku = (record.get("sku") or "").strip().upper()
        raw = (record.get("stock_on_hand") or "").strip()
        if not sku:
            problems.append((number, gettext("the SKU is empty")))
        elif whole_number(raw, minimum=0, maximum=MAX_COUNT) is None:
            problems.append(
                (
                    number,
                    gettext(
                        "“%(value)s” is not a whole number from 0 to %(most)s",
                        value=raw[:20],
                        most=number_text(MAX_COUNT),
                    ),
                )
            )
        elif sku in seen:
            problems.append((number, gettext("%(sku)s already appears on line %(line)s", sku=sku, line=seen[sku])))
        else:
            seen[sku] = number
            rows.append((number, sku, whole_number(raw, minimum=0, maximum=MAX_COUNT)))
    return rows, problems


def save_upload(data):
    """Keep an uploaded stock file in the file storage (imports/) for the job, whichever host runs it; returns
    its file name (made here, never the uploader's)."""
    name = f"stock-{utcnow():%Y%m%d-%H%M%S}-{secrets.token_hex(3)}.csv"
    get_storage().put(f"imports/{name}", data, "text/csv")
    return name


def import_stock_file(data):
    """Check an uploaded stock CSV, keep it and enqueue the job that applies it; returns (job, good lines, problems)."""
    rows, problems = parse_stock_csv(data)
    if not rows:
        raise InvalidInput(gettext("No line of the file can be applied.") + " " + _describe(problems))
    name = save_upload(data)
    record = enqueue(APPLY_STOCK_FILE, name)
    db.session.commit()
    return record, len(rows), problems


def _describe(problems, limit=20):
    text = "; ".join(gettext("line %(line)s: %(problem)s", line=n, problem=p) for n, p in problems[:limit])
    more = " " + gettext("(and %(count)s more)", count=len(problems) - limit) if len(problems) > limit else ""
    return text + more


def apply_stock_file(filename):
    """Apply a kept stock file: good lines in batches, unknown SKUs reported; then low-stock alerts."""
    path = f"imports/{os.path.basename(filename)}"
    try:
        rows, problems = parse_stock_csv(get_storage().get(path))
    except (Missing, ValueError):
        raise kept_error(
            NotFound, N_("The stock file %(name)s is no longer in the file storage."), name=filename
        ) from None
    ids = (
        dict(db.session.execute(select(Product.sku, Product.id).where(Product.sku.in_([r[1] for r in rows]))).all())
        if len(rows) <= 20_000
        else _all_ids()
    )
    updates = []
    for number, sku, count in rows:
        if sku not in ids:
            problems.append((number, gettext("unknown SKU %(sku)s", sku=sku)))
        else:
            updates.append({"id": ids[sku], "stock_on_hand": count, "updated_at": utcnow()})
    # By id, the order checkout locks products in, so the two never wait on each other in a circle; a deadlock
    # with anything else is retried. One transaction per batch: a large file never holds locks for long. Only the
    # stock's cached values are renewed, as when an order moves stock: the catalog's pages keep their stock apart.
    updates.sort(key=lambda row: row["id"])
    for start in range(0, len(updates), BATCH_SIZE):
        run_in_transaction(bulk_update, Product, updates[start : start + BATCH_SIZE], cache_touches=STOCK)
    short, low = recheck([u["id"] for u in updates])
    problems.sort()
    _write_report(path, problems)
    # Kept as messages and values: the job's result is read on the back office in each reader's language.
    parts = [
        kept(N_("%(count)s stock level(s) applied from %(file)s"), count=len(updates), file=os.path.basename(path))
    ]
    if short:
        parts.append(kept(N_("short against open reservations: %(products)s"), products=short[:20]))
    if problems:
        lines = [kept(N_("line %(line)s: %(problem)s"), line=n, problem=p) for n, p in problems[:10]]
        more = [kept(N_("(and %(count)s more)"), count=len(problems) - 10)] if len(problems) > 10 else []
        parts.append(kept(N_("%(count)s line(s) not applied: %(lines)s"), count=len(problems), lines=lines + more))
    return kept_parts(*parts), low


def _report_path(path):
    return path + ".problems.json"


def _write_report(path, problems):
    """Keep every line not applied beside the file, for the imports page (the job's result holds a few)."""
    get_storage().put(_report_path(path), json.dumps(problems).encode("utf-8"), "application/json")


def recent_runs(limit=5):
    """The latest stock files with their job's state and, once applied, every line not applied."""
    jobs = db.session.scalars(select(Job).where(Job.name == "apply_stock_file").order_by(Job.id.desc()).limit(limit))
    runs = []
    for job in jobs:
        filename = os.path.basename((json.loads(job.args or "[]") or [""])[0])
        problems = None
        if job.status == JobStatus.DONE:
            problems = _read_report(f"imports/{filename}")
        runs.append({"job": job, "filename": filename, "problems": problems})
    return runs


def _read_report(path):
    """The lines of a stock file not applied, or None when there is no report (or the storage fails: the page
    still lists the files and their state)."""
    try:
        return [tuple(p) for p in json.loads(get_storage().get(_report_path(path)))]
    except (Missing, ValueError):
        return None
    except StorageUnavailable as exc:
        log.warning("The problems of %s cannot be read now: %s", path, exc.reason)
        return None


def _all_ids():
    return dict(db.session.execute(select(Product.sku, Product.id)).all())


def recheck(product_ids):
    """After new counts: products whose reservations exceed the stock, and the active ones now low on stock."""
    short, low = [], []
    for start in range(0, len(product_ids), BATCH_SIZE):
        for product in db.session.scalars(
            select(Product).where(Product.id.in_(product_ids[start : start + BATCH_SIZE]))
        ):
            if product.stock_reserved > product.stock_on_hand and not product.backorder_allowed:
                short.append(
                    kept(
                        N_("%(sku)s (%(on_hand)s on hand, %(reserved)s reserved)"),
                        sku=product.sku,
                        on_hand=product.stock_on_hand,
                        reserved=product.stock_reserved,
                    )
                )
            if product.active and product.low_stock:
                low.append(product.id)
    return short, low


def alert_low_stock(product_ids):
    """Enqueue one staff mail listing these low-stock products (once a day for the same list)."""
    if not product_ids:
        return None
    ids = ",".join(str(i) for i in sorted(product_ids))
    key = f"mail:low_stock:{utcnow():%Y-%m-%d}:{ids}"
    if len(key) > 160:
        key = f"mail:low_stock:{utcnow():%Y-%m-%d}:{hashlib.sha256(ids.encode()).hexdigest()}"
    record = enqueue(SEND_MAIL, "low_stock", ids, priority="high", dedupe_key=key)
    db.session.commit()
    return record
