"""Invoices, credit notes, payments and the gap-free sequences that number them."""

from datetime import date, datetime
from decimal import Decimal

from sqlalchemy import BigInteger, CheckConstraint, Date, DateTime, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, foreign, mapped_column, relationship

from ..extensions import db
from .accounts import Company
from .columns import BigId, Money, VatRate, utcnow
from .orders import Order


class Invoice(db.Model):
    __tablename__ = "invoices"
    id: Mapped[int] = mapped_column(primary_key=True)
    number: Mapped[str] = mapped_column(String(20), unique=True)
    order_id: Mapped[int] = mapped_column(BigId, index=True)
    company_id: Mapped[int] = mapped_column(ForeignKey("companies.id"))
    amount: Mapped[Decimal] = mapped_column(Money)
    paid_amount: Mapped[Decimal] = mapped_column(Money, default=Decimal("0.00"))
    issued_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    due_date: Mapped[date] = mapped_column(Date)
    # Settled: paid, or credited, in full. "Paid on" shows the date of the last payment.
    paid_at: Mapped[datetime | None] = mapped_column(DateTime)
    # What credit notes took off the invoice.
    credited_amount: Mapped[Decimal] = mapped_column(Money, default=Decimal("0.00"), server_default="0")
    # The date of supply: the day the order was shipped (NULL on invoices issued before it was recorded).
    delivery_date: Mapped[date | None] = mapped_column(Date)

    company: Mapped[Company] = relationship()
    order: Mapped[Order] = relationship(primaryjoin=lambda: foreign(Invoice.order_id) == Order.id, viewonly=True)
    credit_notes: Mapped[list["CreditNote"]] = relationship(back_populates="invoice", order_by="CreditNote.id")
    payments: Mapped[list["Payment"]] = relationship(order_by="Payment.received_at, Payment.id", viewonly=True)

    __table_args__ = (
        Index("ix_invoices_company_paid", "company_id", "paid_at"),
        Index("ix_invoices_due_date", "due_date"),
    )

    @property
    def open_amount(self):
        """What is still to pay: below 0 when a credit note came after payment (owed to the customer)."""
        return self.amount - self.paid_amount - self.credited_amount

    @property
    def creditable_amount(self):
        """What credit notes may still take off: invoiced and not yet credited."""
        return self.amount - self.credited_amount

    @property
    def is_overdue(self):
        return self.paid_at is None and self.due_date < utcnow().date()


class CreditNote(db.Model):
    """A correction of an invoice (goods returned, a wrong price): lines and quantities taken back, with a
    reason and a gap-free number of its own, booked against the invoice's open amount."""

    __tablename__ = "credit_notes"
    id: Mapped[int] = mapped_column(primary_key=True)
    number: Mapped[str] = mapped_column(String(20), unique=True)
    invoice_id: Mapped[int] = mapped_column(ForeignKey("invoices.id"), index=True)
    company_id: Mapped[int] = mapped_column(ForeignKey("companies.id"), index=True)
    reason: Mapped[str] = mapped_column(String(400))
    goods_total: Mapped[Decimal] = mapped_column(Money)
    deposit_total: Mapped[Decimal] = mapped_column(Money)
    vat_total: Mapped[Decimal] = mapped_column(Money)
    amount: Mapped[Decimal] = mapped_column(Money)
    issued_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"))

    invoice: Mapped[Invoice] = relationship(back_populates="credit_notes")
    company: Mapped[Company] = relationship()
    lines: Mapped[list["CreditNoteLine"]] = relationship(
        back_populates="credit_note", cascade="all, delete-orphan", order_by="CreditNoteLine.id"
    )

    __table_args__ = (CheckConstraint("amount > 0", name="credit_note_positive"),)


class CreditNoteLine(db.Model):
    """One order line taken back, in part or in full, at the prices and rates it was invoiced at."""

    __tablename__ = "credit_note_lines"
    id: Mapped[int] = mapped_column(primary_key=True)
    credit_note_id: Mapped[int] = mapped_column(ForeignKey("credit_notes.id", ondelete="CASCADE"), index=True)
    order_line_id: Mapped[int] = mapped_column(BigId, index=True)
    sku: Mapped[str] = mapped_column(String(40))
    name: Mapped[str] = mapped_column(String(200))
    sell_unit: Mapped[str] = mapped_column(String(80))
    quantity: Mapped[int] = mapped_column(Integer)
    unit_price: Mapped[Decimal] = mapped_column(Money)
    unit_deposit: Mapped[Decimal] = mapped_column(Money)
    line_total: Mapped[Decimal] = mapped_column(Money)
    vat_rate: Mapped[Decimal | None] = mapped_column(VatRate)
    deposit_vat_rate: Mapped[Decimal | None] = mapped_column(VatRate)

    credit_note: Mapped[CreditNote] = relationship(back_populates="lines")

    __table_args__ = (CheckConstraint("quantity > 0", name="credit_note_line_positive"),)


class Payment(db.Model):
    __tablename__ = "payments"
    id: Mapped[int] = mapped_column(primary_key=True)
    reference: Mapped[str] = mapped_column(String(80), unique=True)
    company_id: Mapped[int] = mapped_column(ForeignKey("companies.id"), index=True)
    invoice_id: Mapped[int | None] = mapped_column(ForeignKey("invoices.id"), index=True)
    amount: Mapped[Decimal] = mapped_column(Money)
    received_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)

    __table_args__ = (CheckConstraint("amount > 0", name="payment_positive"),)


class Sequence(db.Model):
    """Gap-free counters (invoice numbers): incremented inside the transaction that uses the value."""

    __tablename__ = "sequences"
    name: Mapped[str] = mapped_column(String(40), primary_key=True)
    value: Mapped[int] = mapped_column(BigInteger, default=0)
