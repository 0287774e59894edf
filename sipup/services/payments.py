"""Incoming payments: a bank CSV becomes one job per line, each applied to the company's oldest open invoices.

A payment reference is applied once: the same reference again (a re-imported file, a job run twice)
changes nothing.
"""

from decimal import Decimal

from flask_babel import gettext
from sqlalchemy import or_, select, update

from sipup.jobs import enqueue
from sipup.jobs.names import APPLY_PAYMENT

from ..csvfiles import read_table
from ..database import run_in_transaction
from ..exceptions import InvalidInput, NotFound
from ..extensions import db
from ..i18n import N_, kept, kept_error
from ..models import Company, Invoice, Order, OrderEvent, OrderStatus, Payment, utcnow
from .parsing import parse_money, whole_number

MAX_LINES = 20_000


def parse_bank_csv(data):
    """([(line number, reference, company, amount text)], [(line number, problem)]) from a bank CSV.

    Columns: reference, company (name or id), amount; a header row naming them is required;
    comma or semicolon separated; a decimal comma is accepted.
    """
    rows, problems = [], []
    reader = read_table(data, ("reference", "company", "amount"))
    for number, record in reader:
        if number > MAX_LINES + 1:
            problems.append((number, gettext("more than %(most)s lines; the rest was not read", most=MAX_LINES)))
            break
        reference = (record.get("reference") or "").strip()
        company = (record.get("company") or "").strip()
        raw = (record.get("amount") or "").strip().replace(" ", "")
        if not reference or len(reference) > 70:
            problems.append((number, gettext("the reference is empty or longer than 70 characters")))
            continue
        if not company:
            problems.append((number, gettext("the company is empty")))
            continue
        try:
            amount = parse_money(raw, positive=True, language="en")  # a file reads the same whoever uploads it
        except InvalidInput:
            problems.append((number, gettext("“%(value)s” is not an amount above 0 such as 1250.00", value=raw[:20])))
            continue
        rows.append((number, reference, company, str(amount)))
    return rows, problems


def import_bank_csv(data):
    """Enqueue one payment job per good line of a bank CSV; returns (jobs queued, already known, problems)."""
    rows, problems = parse_bank_csv(data)
    queued = known = 0
    for _number, reference, company, amount in rows:
        if enqueue(APPLY_PAYMENT, reference, company, amount, dedupe_key=f"payment:{reference}") is None:
            known += 1
        else:
            queued += 1
    db.session.commit()
    return queued, known, problems


PART = " [part"


def apply_payment(reference, company, amount):
    """Apply a payment to the company's oldest open invoices; the same reference twice changes nothing."""
    return run_in_transaction(_apply, reference.strip()[:70], str(company).strip(), Decimal(str(amount)))


def _find_company(company):
    stmt = select(Company).where(or_(Company.name == company, Company.vat_id == company))
    if whole_number(company):
        stmt = select(Company).where(or_(Company.id == whole_number(company), Company.name == company))
    found = db.session.scalars(stmt).all()
    if len(found) != 1:
        raise kept_error(NotFound, N_("No single company matches “%(company)s”."), company=company[:60])
    return found[0]


def _apply(reference, company_text, amount):
    company = _find_company(company_text)
    # Lock the company row: payments of one company are applied one at a time.
    db.session.execute(update(Company).where(Company.id == company.id).values(id=Company.id))
    # A payment split over several invoices books "REF", "REF [part 2]", ...: bank references never end so,
    # whereas "REF/2" can be another payment's own reference.
    if db.session.scalar(
        select(Payment.id).where(
            or_(Payment.reference == reference, Payment.reference.startswith(f"{reference}{PART} ", autoescape=True))
        )
    ):
        return kept(N_("%(reference)s: already applied"), reference=reference)
    invoices = db.session.scalars(
        select(Invoice)
        .where(Invoice.company_id == company.id, Invoice.paid_at.is_(None))
        .order_by(Invoice.due_date, Invoice.id)
        .with_for_update()
    ).all()
    left, parts, now = amount, [], utcnow()
    for invoice in invoices:
        if left <= 0:
            break
        share = min(left, invoice.open_amount)
        if share <= 0:
            continue
        suffix = "" if not parts else f"{PART} {len(parts) + 1}]"
        db.session.add(
            Payment(
                reference=f"{reference}{suffix}",
                company_id=company.id,
                invoice_id=invoice.id,
                amount=share,
                received_at=now,
            )
        )
        invoice.paid_amount += share
        left -= share
        parts.append(kept(N_("%(amount)s to %(number)s"), amount=share, number=invoice.number))
        if invoice.open_amount <= 0:
            invoice.paid_at = now
            _mark_order_paid(invoice, reference)
    if left > 0:  # more than was owed: kept as a credit on the account
        suffix = "" if not parts else f"{PART} {len(parts) + 1}]"
        db.session.add(
            Payment(
                reference=f"{reference}{suffix}", company_id=company.id, invoice_id=None, amount=left, received_at=now
            )
        )
        parts.append(kept(N_("%(amount)s as credit"), amount=left))
    return kept(
        N_("%(reference)s: %(amount)s from %(company)s: %(parts)s"),
        reference=reference,
        amount=amount,
        company=company.name,
        parts=parts,
    )


def _mark_order_paid(invoice, reference):
    changed = db.session.execute(
        update(Order)
        .where(Order.id == invoice.order_id, Order.status == OrderStatus.INVOICED)
        .values(status=OrderStatus.PAID, updated_at=utcnow())
        .execution_options(synchronize_session=False)
    ).rowcount
    if changed:
        db.session.add(
            OrderEvent(
                order_id=invoice.order_id,
                status=OrderStatus.PAID,
                note=kept(N_("Paid by bank transfer %(reference)s."), reference=reference),
            )
        )
