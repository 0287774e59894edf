"""Credit notes and payments booked by staff against an invoice: what may still be credited per line, credit
notes with gap-free numbers of their own, and partial payments with their date.

A credit note never takes off more than was invoiced and not yet credited: the invoice row is locked while
one is issued, so two clerks crediting the same invoice at once take turns and the second sees the first.
"""

import secrets
from dataclasses import dataclass
from datetime import datetime, time
from decimal import Decimal

from flask import current_app
from flask_babel import gettext
from sqlalchemy import func, select, update
from sqlalchemy.orm import selectinload

from ..database import run_in_transaction
from ..exceptions import FieldErrors, InvalidInput, NotFound
from ..extensions import db
from ..i18n import N_, fitted, kept
from ..i18n import money as money_text
from ..models import (
    CreditNote,
    CreditNoteLine,
    Invoice,
    Order,
    OrderEvent,
    OrderLine,
    OrderStatus,
    Payment,
    utcnow,
)
from . import vat
from .numbers import next_number
from .parsing import parse_count, parse_date, parse_money
from .pricing import money


@dataclass
class Creditable:
    """One invoiced order line: how many were invoiced, credited so far, and may still be credited."""

    line: OrderLine
    invoiced: int
    credited: int

    @property
    def left(self):
        return self.invoiced - self.credited


def get_invoice(number, company_id=None, lock=False):
    """An invoice by number (of one company when given); lock: held until the transaction ends; else NotFound."""
    number = (number or "")[:20]
    if lock:
        # A write first, as checkout locks the company: on MariaDB the row lock, on SQLite the write lock, so
        # the reads below see what a credit note or payment committed meanwhile.
        db.session.execute(update(Invoice).where(Invoice.number == number).values(id=Invoice.id))
    stmt = select(Invoice).where(Invoice.number == number)
    if company_id is not None:
        stmt = stmt.where(Invoice.company_id == company_id)
    invoice = db.session.scalar(stmt.execution_options(populate_existing=True))
    if invoice is None:
        raise NotFound(gettext("There is no invoice “%(number)s”.", number=number))
    return invoice


def invoice_of_order(order_id):
    """The invoice of an order, or None before it is invoiced."""
    return db.session.scalar(select(Invoice).where(Invoice.order_id == order_id))


def creditable(invoice):
    """[Creditable] for each line of the invoice's order (none when the order is archived)."""
    lines = db.session.scalars(
        select(OrderLine).where(OrderLine.order_id == invoice.order_id).order_by(OrderLine.id)
    ).all()
    credited = dict(
        db.session.execute(
            select(CreditNoteLine.order_line_id, func.sum(CreditNoteLine.quantity))
            .join(CreditNote)
            .where(CreditNote.invoice_id == invoice.id)
            .group_by(CreditNoteLine.order_line_id)
        ).all()
    )
    return [Creditable(line, line.quantity, int(credited.get(line.id, 0))) for line in lines]


def parse_quantities(form, lines):
    """{order line id: quantity} from form fields qty-<line id>; an empty field is 0; wrong ones are named."""
    errors, wanted = {}, {}
    for each in lines:
        name = f"qty-{each.line.id}"
        raw = (form.get(name) or "").strip()
        if not raw:
            continue
        try:
            quantity = parse_count(raw, gettext("Quantity of %(sku)s", sku=each.line.sku))
        except InvalidInput as exc:
            errors[name] = str(exc)
            continue
        if quantity > each.left:
            errors[name] = gettext(
                "%(sku)s: at most %(left)s can still be credited, not %(quantity)s.",
                sku=each.line.sku,
                left=each.left,
                quantity=quantity,
            )
        elif quantity:
            wanted[each.line.id] = quantity
    if errors:
        raise FieldErrors(errors)
    return wanted


def issue(invoice_number, form, staff_user_id):
    """A credit note for the quantities in form (qty-<line id>, or full=on for all that is left) and its
    reason; the invoice row is locked while it is issued. Returns the credit note."""
    return run_in_transaction(_issue, invoice_number, form, staff_user_id)


def _issue(invoice_number, form, staff_user_id):
    invoice = get_invoice(invoice_number, lock=True)  # two credit notes of one invoice take turns
    lines = creditable(invoice)
    reason = " ".join((form.get("reason") or "").split())
    errors = {}
    if not reason or len(reason) > 400:
        errors["reason"] = gettext("Give the reason for the credit note (at most 400 characters).")
    try:
        if form.get("full") == "on":
            wanted = {each.line.id: each.left for each in lines if each.left > 0}
        else:
            wanted = parse_quantities(form, lines)
    except FieldErrors as exc:
        errors.update(exc.errors)
        wanted = {}
    if not errors and not wanted:
        errors["lines"] = gettext("Enter a quantity to credit on at least one line.")
    if errors:
        raise FieldErrors(errors)
    by_id = {each.line.id: each for each in lines}
    credit_lines = []
    for line_id, quantity in wanted.items():
        line = by_id[line_id].line
        legacy = current_app.config["VAT_RATE"]  # lines ordered before rates per line had this one rate
        credit_lines.append(
            CreditNoteLine(
                order_line_id=line.id,
                sku=line.sku,
                name=line.name,
                sell_unit=line.sell_unit,
                quantity=quantity,
                unit_price=line.unit_price,
                unit_deposit=line.unit_deposit,
                line_total=money(line.unit_price * quantity),
                vat_rate=line.vat_rate if line.vat_rate is not None else legacy,
                deposit_vat_rate=line.deposit_vat_rate if line.deposit_vat_rate is not None else legacy,
            )
        )
    goods = sum((each.line_total for each in credit_lines), Decimal("0.00"))
    deposit = sum((money(each.unit_deposit * each.quantity) for each in credit_lines), Decimal("0.00"))
    tax = sum((row.vat for row in vat.summary(vat.line_parts(credit_lines))), Decimal("0.00"))
    amount = goods + deposit + tax
    everything_left = all(each.left == wanted.get(each.line.id, 0) for each in lines)
    if everything_left or amount > invoice.creditable_amount:
        # Rounding per credit note could leave a cent over or under: the last one takes exactly what is left.
        if not everything_left:
            raise InvalidInput(
                gettext(
                    "The credit note would be %(amount)s, more than the %(left)s of invoice %(number)s "
                    "not yet credited.",
                    amount=money_text(amount),
                    left=money_text(invoice.creditable_amount),
                    number=invoice.number,
                )
            )
        tax += invoice.creditable_amount - amount
        amount = invoice.creditable_amount
    if amount <= 0:
        raise InvalidInput(gettext("Nothing of invoice %(number)s is left to credit.", number=invoice.number))
    now = utcnow()
    value = next_number(f"credit-note-{now:%Y}")
    note = CreditNote(
        number=f"CN-{now:%Y}-{value:06d}",
        invoice_id=invoice.id,
        company_id=invoice.company_id,
        reason=reason,
        goods_total=goods,
        deposit_total=deposit,
        vat_total=tax,
        amount=amount,
        issued_at=now,
        created_by=staff_user_id,
        lines=credit_lines,
    )
    db.session.add(note)
    invoice.credited_amount += amount
    _settle(
        invoice,
        now,
        kept(N_("Credit note %(number)s of %(amount)s: %(reason)s"), number=note.number, amount=amount, reason=reason),
    )
    db.session.flush()
    return note


def record_payment(invoice_number, form, staff_user_id):
    """Book a payment received for an invoice (amount, date received, optional reference); in full it
    settles the invoice and marks the order paid. Returns the payment."""
    return run_in_transaction(_record_payment, invoice_number, form, staff_user_id)


def _record_payment(invoice_number, form, staff_user_id):
    invoice = get_invoice(invoice_number, lock=True)
    errors, amount, received = {}, None, None
    try:
        amount = parse_money(form.get("amount"), gettext("Amount"), positive=True)
    except InvalidInput as exc:
        errors["amount"] = str(exc)
    try:
        received = parse_date(form.get("received_on")) or utcnow().date()
    except InvalidInput as exc:
        errors["received_on"] = str(exc)
    if amount is not None and amount > invoice.open_amount:
        errors["amount"] = gettext(
            "Amount %(amount)s is more than the %(open)s open on %(number)s.",
            amount=money_text(amount),
            open=money_text(max(invoice.open_amount, 0)),
            number=invoice.number,
        )
    if received is not None and not invoice.issued_at.date() <= received <= utcnow().date():
        errors["received_on"] = gettext("The date received must lie between the invoice's date and today.")
    reference = (
        " ".join((form.get("reference") or "").split())[:70] or f"MANUAL-{invoice.number}-{secrets.token_hex(3)}"
    )
    if db.session.scalar(select(Payment.id).where(Payment.reference == reference)):
        errors["reference"] = gettext("Payment reference “%(reference)s” was already used.", reference=reference)
    if errors:
        raise FieldErrors(errors)
    at = datetime.combine(received, time(12))
    payment = Payment(
        reference=reference, company_id=invoice.company_id, invoice_id=invoice.id, amount=amount, received_at=at
    )
    db.session.add(payment)
    invoice.paid_amount += amount
    _settle(
        invoice,
        at,
        kept(
            N_("Payment %(reference)s of %(amount)s received %(day)s."),
            reference=reference,
            amount=amount,
            day=received,
        ),
    )
    db.session.flush()
    return payment


def _settle(invoice, when, note):
    """Note what happened on the order; an invoice with nothing left open is settled and its order paid."""
    status = OrderStatus.INVOICED
    if invoice.open_amount <= 0 and invoice.paid_at is None:
        invoice.paid_at = when
        changed = db.session.execute(
            update(Order)
            .where(Order.id == invoice.order_id, Order.status == OrderStatus.INVOICED)
            .values(status=OrderStatus.PAID, updated_at=utcnow())
            .execution_options(synchronize_session=False)
        ).rowcount
        if changed:
            status = OrderStatus.PAID
    current = db.session.scalar(select(Order.status).where(Order.id == invoice.order_id))
    db.session.add(
        OrderEvent(order_id=invoice.order_id, status=current or status, note=fitted(note, 400))
    )  # OrderEvent.note
    db.session.execute(
        update(Order)
        .where(Order.id == invoice.order_id)
        .values(updated_at=utcnow())
        .execution_options(synchronize_session=False, cache_touches=(f"orders:{invoice.company_id}", "orders-all"))
    )


def credit_note(number, company_id=None):
    """A credit note by number with its lines and invoice (of one company when given); else NotFound."""
    stmt = select(CreditNote).options(selectinload(CreditNote.lines)).where(CreditNote.number == (number or "")[:20])
    if company_id is not None:
        stmt = stmt.where(CreditNote.company_id == company_id)
    note = db.session.scalar(stmt)
    if note is None:
        raise NotFound(gettext("There is no credit note “%(number)s”.", number=(number or "")[:20]))
    return note


def summary(note):
    """A credit note's VAT per rate (its VAT total may carry the last cent of the invoice it settles)."""
    rows = vat.summary(vat.line_parts(note.lines))
    shown = sum((row.vat for row in rows), Decimal("0.00"))
    if rows and shown != note.vat_total:
        last = rows[0]
        rows[0] = vat.VatRow(last.rate, last.base, last.vat + note.vat_total - shown)
    return rows
