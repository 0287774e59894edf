"""Orders, their lines and events, and the checkout keys that make a checkout happen once.

The orders tables carry no database foreign keys (see sipup.models: partitioned by month on MySQL/MariaDB).
"""

import enum
from datetime import date, datetime
from decimal import Decimal

from sqlalchemy import Boolean, Date, DateTime, Index, Integer, String
from sqlalchemy.orm import Mapped, foreign, mapped_column, relationship

from ..extensions import db
from .accounts import Company, User
from .catalog import Product
from .columns import BigId, Money, VatRate, caseless, utcnow


class OrderStatus(enum.StrEnum):
    PLACED = "placed"
    CREDIT_HOLD = "credit_hold"
    CONFIRMED = "confirmed"
    SHIPPED = "shipped"
    INVOICED = "invoiced"
    PAID = "paid"
    CANCELLED = "cancelled"

    @property
    def label(self):
        return self.value.replace("_", " ").capitalize()


class Order(db.Model):
    __tablename__ = "orders"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    number: Mapped[str] = mapped_column(String(20), default="", index=True)
    company_id: Mapped[int] = mapped_column(Integer)
    buyer_id: Mapped[int | None] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16), default=OrderStatus.PLACED)
    po_reference: Mapped[str] = mapped_column(caseless(60), default="")
    requested_date: Mapped[date | None] = mapped_column(Date)
    delivery_address: Mapped[str] = mapped_column(String(400), default="")
    note: Mapped[str] = mapped_column(String(1000), default="")
    goods_total: Mapped[Decimal] = mapped_column(Money, default=Decimal("0.00"))
    deposit_total: Mapped[Decimal] = mapped_column(Money, default=Decimal("0.00"))
    vat_total: Mapped[Decimal] = mapped_column(Money, default=Decimal("0.00"))
    total: Mapped[Decimal] = mapped_column(Money, default=Decimal("0.00"))
    # No VAT charged: an EU business abroad with a valid VAT id accounts for it (SIPUP_VAT_REVERSE_CHARGE).
    reverse_charge: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)

    company: Mapped[Company] = relationship(primaryjoin=lambda: foreign(Order.company_id) == Company.id, viewonly=True)
    buyer: Mapped[User | None] = relationship(primaryjoin=lambda: foreign(Order.buyer_id) == User.id, viewonly=True)
    lines: Mapped[list["OrderLine"]] = relationship(
        primaryjoin=lambda: Order.id == foreign(OrderLine.order_id),
        order_by=lambda: OrderLine.id,
        cascade="all, delete-orphan",
    )
    events: Mapped[list["OrderEvent"]] = relationship(
        primaryjoin=lambda: Order.id == foreign(OrderEvent.order_id),
        order_by=lambda: OrderEvent.id,
        cascade="all, delete-orphan",
    )

    __table_args__ = (
        # A buyer's order history and the back office filtered by company, newest first. `id` is spelled
        # out: on a partitioned table MariaDB does not append the primary key for ORDER BY, and sorts.
        Index("ix_orders_company_history", "company_id", "created_at", "id"),
        # Credit check at checkout: the company's orders not yet invoiced.
        Index("ix_orders_company_status", "company_id", "status"),
        # Back-office queues (placed, credit hold, ...) newest first, and the counts per status.
        Index("ix_orders_status_queue", "status", "created_at", "id"),
        # The unfiltered back-office list, newest first, and the monthly sales report.
        Index("ix_orders_created", "created_at", "id"),
        # Back-office search by the customer's purchase order reference.
        Index("ix_orders_po_reference", "po_reference"),
        # Back-office search by the buyer's e-mail: that buyer's orders, newest first.
        Index("ix_orders_buyer_history", "buyer_id", "created_at", "id"),
    )


class CheckoutKey(db.Model):
    """A checkout form's one-time key and the order it placed, unique per company: a form sent twice (a double
    click, a retry after a timeout, a reload) finds its order here instead of placing another. Kept beside orders
    because the partitioned orders table can hold no unique key without created_at."""

    __tablename__ = "checkout_keys"
    company_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key: Mapped[str] = mapped_column(String(32), primary_key=True)
    order_id: Mapped[int] = mapped_column(BigId)
    order_number: Mapped[str] = mapped_column(String(20))
    # The hourly cleanup deletes keys older than SIPUP_QUEUE_KEEP_DAYS: the query this index serves.
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, index=True)


class OrderLine(db.Model):
    __tablename__ = "order_lines"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    order_id: Mapped[int] = mapped_column(BigId, index=True)
    # The order's month, so lines can be partitioned alongside their order.
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    product_id: Mapped[int] = mapped_column(Integer, index=True)
    sku: Mapped[str] = mapped_column(String(40))
    name: Mapped[str] = mapped_column(String(200))
    sell_unit: Mapped[str] = mapped_column(String(80))
    quantity: Mapped[int] = mapped_column(Integer)
    unit_price: Mapped[Decimal] = mapped_column(Money)
    unit_deposit: Mapped[Decimal] = mapped_column(Money)
    line_total: Mapped[Decimal] = mapped_column(Money)
    # The VAT rates on the goods and on the deposit when ordered, copied like the prices; NULL on lines
    # ordered before rates per line (their order keeps its one VAT total).
    vat_rate: Mapped[Decimal | None] = mapped_column(VatRate)
    deposit_vat_rate: Mapped[Decimal | None] = mapped_column(VatRate)

    product: Mapped[Product] = relationship(
        primaryjoin=lambda: foreign(OrderLine.product_id) == Product.id, viewonly=True
    )


class OrderEvent(db.Model):
    __tablename__ = "order_events"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    order_id: Mapped[int] = mapped_column(BigId, index=True)
    status: Mapped[str] = mapped_column(String(16))
    note: Mapped[str] = mapped_column(String(400), default="")
    user_id: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)

    user: Mapped[User | None] = relationship(primaryjoin=lambda: foreign(OrderEvent.user_id) == User.id, viewonly=True)
