"""SQLAlchemy 2.x typed models: companies, users, catalog, prices, carts, orders, invoices, payments.

The orders tables (orders, order_lines, order_events) carry no database foreign keys and no unique
key without created_at, because `flask db optimize` partitions them by month on MySQL/MariaDB and
InnoDB forbids both on partitioned tables. The order number is unique by construction: it is made
from the auto-increment id (see services.orders.order_number). On MySQL/MariaDB the primary key of
orders and order_lines is (id, created_at) in the database (migration 0002); the ORM keeps `id` alone
as the identity, which is unique all the same.

Every index names the query it serves (`flask db optimize` verifies them against the live schema).
"""

import enum
import secrets
from datetime import date, datetime, timezone
from decimal import Decimal

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    Numeric,
    String,
    Text,
    UniqueConstraint,
    event,
    select,
)
from sqlalchemy.dialects.mysql import LONGBLOB
from sqlalchemy.orm import Mapped, foreign, mapped_column, relationship

from . import searchtext
from .extensions import db
from .hashing import hash_password, verify_password

Money = Numeric(12, 2)
VatRate = Numeric(5, 4)
# BIGINT on MySQL for tables that reach millions of rows; SQLite needs INTEGER to auto-increment.
BigId = BigInteger().with_variant(Integer, "sqlite")


def in_models(name, type_, parent_names):
    """Alembic's include_name: False for the search index that migration 0006 keeps outside the models (the
    FTS5 table product_search with its shadow tables on SQLite, the FULLTEXT index on MariaDB)."""
    return not (type_ == "table" and name.startswith("product_search")) and name != "ft_products_search_terms"


def utcnow():
    """Naive UTC now: DATETIME columns on MySQL carry no zone, so every timestamp is UTC."""
    return datetime.now(timezone.utc).replace(tzinfo=None)


class Role(enum.StrEnum):
    ADMIN = "admin"
    STAFF = "staff"
    OWNER = "owner"
    BUYER = "buyer"


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


class PriceList(db.Model):
    __tablename__ = "price_lists"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(120), unique=True)
    tiers: Mapped[list["PriceTier"]] = relationship(back_populates="price_list", cascade="all, delete-orphan")


class Company(db.Model):
    __tablename__ = "companies"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    vat_id: Mapped[str | None] = mapped_column(String(32))
    payment_terms_days: Mapped[int] = mapped_column(Integer, default=30)
    credit_limit: Mapped[Decimal] = mapped_column(Money, default=Decimal("5000.00"))
    price_list_id: Mapped[int | None] = mapped_column(ForeignKey("price_lists.id"), index=True)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)

    price_list: Mapped[PriceList | None] = relationship()
    addresses: Mapped[list["Address"]] = relationship(
        back_populates="company", cascade="all, delete-orphan", order_by="Address.id"
    )
    users: Mapped[list["User"]] = relationship(back_populates="company", order_by="User.email")

    __table_args__ = (CheckConstraint("credit_limit >= 0", name="credit_limit_not_negative"),)


class Address(db.Model):
    __tablename__ = "addresses"
    id: Mapped[int] = mapped_column(primary_key=True)
    company_id: Mapped[int] = mapped_column(ForeignKey("companies.id"), index=True)
    label: Mapped[str] = mapped_column(String(80))
    street: Mapped[str] = mapped_column(String(200))
    postcode: Mapped[str] = mapped_column(String(20))
    city: Mapped[str] = mapped_column(String(100))
    country: Mapped[str] = mapped_column(String(2), default="DE")

    company: Mapped[Company] = relationship(back_populates="addresses")

    def one_line(self):
        return f"{self.label}: {self.street}, {self.postcode} {self.city}, {self.country}"


def caseless(length):
    """Text stored as entered and compared without regard to case by the column's collation, so that its
    index both finds and guards values in any case on either database."""
    return (
        String(length)
        .with_variant(String(length, collation="NOCASE"), "sqlite")
        .with_variant(String(length, collation="utf8mb4_unicode_ci"), "mysql", "mariadb")
    )


Email = caseless(254)


class User(db.Model):
    __tablename__ = "users"
    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(Email, unique=True)
    name: Mapped[str] = mapped_column(String(120), default="")
    # Empty until the user chooses a password (an invitation not yet accepted): nothing can sign in with it.
    password_hash: Mapped[str] = mapped_column(String(255), default="")
    role: Mapped[str] = mapped_column(String(10))
    company_id: Mapped[int | None] = mapped_column(ForeignKey("companies.id"), index=True)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    last_login_at: Mapped[datetime | None] = mapped_column(DateTime)
    invited_at: Mapped[datetime | None] = mapped_column(DateTime)
    language: Mapped[str] = mapped_column(String(8), default="", server_default="")  # "": the browser's

    company: Mapped[Company | None] = relationship(back_populates="users")
    sessions: Mapped[list["UserSession"]] = relationship(cascade="all, delete-orphan", passive_deletes=True)
    # The session id of this request's login cookie (set by the user loader): Flask-Login stores get_id().
    session_id = None

    def set_password(self, password):
        """A new password ends every session of this user."""
        self.password_hash = hash_password(password)
        self.sessions.clear()

    def deactivate(self):
        """Stop this user signing in, and end every session they have."""
        self.active = False
        self.sessions.clear()

    def check_password(self, password):
        """True when the password matches; never for a user who has not chosen one."""
        return verify_password(self.password_hash, password)

    @property
    def has_password(self):
        """False while an invitation is not yet accepted."""
        return bool(self.password_hash)

    # Flask-Login protocol
    @property
    def is_authenticated(self):
        return True

    @property
    def is_active(self):
        return self.active and (self.company is None or self.company.active)

    @property
    def is_anonymous(self):
        return False

    def get_id(self):
        return f"{self.id}:{self.session_id}"

    @property
    def is_staff(self):
        return self.role in (Role.ADMIN, Role.STAFF)

    @property
    def is_admin(self):
        return self.role == Role.ADMIN

    @property
    def is_customer(self):
        return self.role in (Role.OWNER, Role.BUYER) and self.company_id is not None


class UserSession(db.Model):
    """One signed-in browser: the login cookie names it, and signing out deletes it, so a copied cookie
    opens nothing afterwards. Kept with the user's cached row, so checking it costs no query."""

    __tablename__ = "user_sessions"
    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=lambda: secrets.token_hex(16))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    address: Mapped[str] = mapped_column(String(45), default="")
    user_agent: Mapped[str] = mapped_column(String(200), default="")


class LinkPurpose(enum.StrEnum):
    INVITE = "invite"
    RESET = "reset"
    EMAIL = "email"


class AccountLink(db.Model):
    """A signed, single-use, expiring link mailed to a user: an invitation, a password reset, or the
    confirmation of a new e-mail address. Only a hash of its secret is kept."""

    __tablename__ = "account_links"
    id: Mapped[int] = mapped_column(primary_key=True)
    purpose: Mapped[str] = mapped_column(String(10))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    new_email: Mapped[str | None] = mapped_column(String(254))
    secret_hash: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(DateTime)
    used_at: Mapped[datetime | None] = mapped_column(DateTime)

    user: Mapped[User] = relationship()

    # Ids are never reused, so a replaced link's id finds no row, rather than a newer link it would not fit.
    __table_args__ = ({"sqlite_autoincrement": True},)


class AccountRequest(db.Model):
    """A business asking for an account at /register: no company or user exists until staff approve."""

    __tablename__ = "account_requests"
    id: Mapped[int] = mapped_column(primary_key=True)
    company_name: Mapped[str] = mapped_column(String(200))
    vat_id: Mapped[str] = mapped_column(String(32), default="")
    contact_name: Mapped[str] = mapped_column(String(120))
    email: Mapped[str] = mapped_column(String(254))
    phone: Mapped[str] = mapped_column(String(40), default="")
    street: Mapped[str] = mapped_column(String(200))
    postcode: Mapped[str] = mapped_column(String(20))
    city: Mapped[str] = mapped_column(String(100))
    country: Mapped[str] = mapped_column(String(2), default="DE")
    message: Mapped[str] = mapped_column(String(2000), default="")
    status: Mapped[str] = mapped_column(String(10), default="pending")  # pending, approved, rejected
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    decided_at: Mapped[datetime | None] = mapped_column(DateTime)
    decided_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    company_id: Mapped[int | None] = mapped_column(ForeignKey("companies.id"))

    # The back office's queue: pending requests, oldest first.
    __table_args__ = (Index("ix_account_requests_status_created", "status", "created_at"),)


class AuditEvent(db.Model):
    """Who changed a company's terms, a price list's tiers or a user's role, when, from what to what."""

    __tablename__ = "audit_events"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    subject: Mapped[str] = mapped_column(String(20))  # company, price_list, user
    subject_id: Mapped[int] = mapped_column(Integer)
    field: Mapped[str] = mapped_column(String(40))
    old_value: Mapped[str] = mapped_column(String(200), default="")
    new_value: Mapped[str] = mapped_column(String(200), default="")
    actor_id: Mapped[int | None] = mapped_column(Integer)
    actor: Mapped[str] = mapped_column(String(254), default="")  # the e-mail, or "command line"
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)

    # A company's or price list's history, newest first.
    __table_args__ = (Index("ix_audit_events_subject", "subject", "subject_id", "created_at"),)


class Category(db.Model):
    __tablename__ = "categories"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    slug: Mapped[str] = mapped_column(String(100), unique=True)
    position: Mapped[int] = mapped_column(Integer, default=0)


class Product(db.Model):
    __tablename__ = "products"
    id: Mapped[int] = mapped_column(primary_key=True)
    sku: Mapped[str] = mapped_column(String(40), unique=True)
    name: Mapped[str] = mapped_column(String(200), index=True)
    description: Mapped[str] = mapped_column(Text, default="")
    category_id: Mapped[int] = mapped_column(ForeignKey("categories.id"))  # indexed by ix_products_category_active_name
    sell_unit: Mapped[str] = mapped_column(String(80))
    base_price: Mapped[Decimal] = mapped_column(Money)
    min_qty: Mapped[int] = mapped_column(Integer, default=1)
    qty_step: Mapped[int] = mapped_column(Integer, default=1)
    deposit: Mapped[Decimal] = mapped_column(Money, default=Decimal("0.00"))
    # standard, reduced or zero: its rate depends on the country of delivery (SIPUP_VAT_RATES).
    vat_class: Mapped[str] = mapped_column(String(10), default="standard", server_default="standard")
    stock_on_hand: Mapped[int] = mapped_column(Integer, default=0)
    stock_reserved: Mapped[int] = mapped_column(Integer, default=0)
    backorder_allowed: Mapped[bool] = mapped_column(Boolean, default=False)
    low_stock_threshold: Mapped[int] = mapped_column(Integer, default=10)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)
    # Folded name, SKU, category and pack (sipup.searchtext), kept by the events below; search_terms is
    # what the full-text index holds (FTS5 table product_search on SQLite, FULLTEXT on MariaDB).
    search_text: Mapped[str] = mapped_column(String(400), default="")
    search_terms: Mapped[str] = mapped_column(Text, default="", deferred=True)

    category: Mapped[Category] = relationship()
    images: Mapped[list["ProductImage"]] = relationship(
        back_populates="product", cascade="all, delete-orphan", order_by="ProductImage.position, ProductImage.id"
    )

    __table_args__ = (
        # Catalog pages: active products by name or price, a page at a time, without sorting them all.
        Index("ix_products_active_name", "active", "name"),
        Index("ix_products_active_price", "active", "base_price"),
        # Catalog filtered by category, sorted by name.
        Index("ix_products_category_active_name", "category_id", "active", "name"),
        CheckConstraint("stock_on_hand >= 0", name="stock_on_hand_not_negative"),
        CheckConstraint("stock_reserved >= 0", name="stock_reserved_not_negative"),
        CheckConstraint("min_qty >= 1 AND qty_step >= 1", name="quantities_positive"),
        CheckConstraint("base_price >= 0 AND deposit >= 0", name="prices_not_negative"),
    )

    @property
    def available(self):
        return self.stock_on_hand - self.stock_reserved

    @property
    def low_stock(self):
        return self.available <= self.low_stock_threshold


@event.listens_for(Product, "before_insert")
@event.listens_for(Product, "before_update")
def _fold_for_search(mapper, connection, product):
    """Keep a product's search text in step with its name, SKU, category and pack."""
    category = connection.scalar(select(Category.name).where(Category.id == product.category_id))
    product.search_text = searchtext.product_text(product.name, product.sku, category, product.sell_unit)
    product.search_terms = searchtext.terms(product.search_text)


class ProductImage(db.Model):
    """One uploaded picture of a product: the original and its renditions are files named by `digest`."""

    __tablename__ = "product_images"
    id: Mapped[int] = mapped_column(primary_key=True)
    product_id: Mapped[int] = mapped_column(ForeignKey("products.id", ondelete="CASCADE"), index=True)
    position: Mapped[int] = mapped_column(Integer, default=0)
    digest: Mapped[str] = mapped_column(String(64))  # SHA-256 of the stored original, in every URL
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)

    product: Mapped[Product] = relationship(back_populates="images")


class PriceTier(db.Model):
    __tablename__ = "price_tiers"
    id: Mapped[int] = mapped_column(primary_key=True)
    price_list_id: Mapped[int] = mapped_column(ForeignKey("price_lists.id"))
    product_id: Mapped[int] = mapped_column(ForeignKey("products.id"), index=True)
    min_qty: Mapped[int] = mapped_column(Integer, default=1)
    price: Mapped[Decimal] = mapped_column(Money)

    price_list: Mapped[PriceList] = relationship(back_populates="tiers")
    product: Mapped[Product] = relationship()

    __table_args__ = (
        UniqueConstraint("price_list_id", "product_id", "min_qty", name="uq_price_tiers_list_product_qty"),
        CheckConstraint("min_qty >= 1 AND price >= 0", name="tier_valid"),
    )


class CartItem(db.Model):
    __tablename__ = "cart_items"
    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    product_id: Mapped[int] = mapped_column(ForeignKey("products.id"), index=True)
    quantity: Mapped[int] = mapped_column(Integer)
    added_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)

    product: Mapped[Product] = relationship()

    __table_args__ = (UniqueConstraint("user_id", "product_id", name="uq_cart_items_user_product"),)


class ShoppingList(db.Model):
    """A named list of products and quantities that a company's users keep and order again."""

    __tablename__ = "shopping_lists"
    id: Mapped[int] = mapped_column(primary_key=True)
    company_id: Mapped[int] = mapped_column(ForeignKey("companies.id"))
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    name: Mapped[str] = mapped_column(String(120))
    # Who besides its owner (and the company's owners) sees it, and whether they may change it.
    shared: Mapped[bool] = mapped_column(Boolean, default=True)
    others_may_edit: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)

    owner: Mapped[User] = relationship()
    items: Mapped[list["ShoppingListItem"]] = relationship(
        back_populates="shopping_list", cascade="all, delete-orphan", order_by="ShoppingListItem.id"
    )

    # A company's lists by name.
    __table_args__ = (Index("ix_shopping_lists_company_name", "company_id", "name"),)


class ShoppingListItem(db.Model):
    __tablename__ = "shopping_list_items"
    id: Mapped[int] = mapped_column(primary_key=True)
    list_id: Mapped[int] = mapped_column(ForeignKey("shopping_lists.id", ondelete="CASCADE"))
    product_id: Mapped[int] = mapped_column(ForeignKey("products.id"), index=True)
    quantity: Mapped[int] = mapped_column(Integer)

    shopping_list: Mapped[ShoppingList] = relationship(back_populates="items")
    product: Mapped[Product] = relationship()

    __table_args__ = (UniqueConstraint("list_id", "product_id", name="uq_shopping_list_items_list_product"),)


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

    @property
    def status_label(self):
        return OrderStatus(self.status).label


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

    @property
    def status_label(self):
        return OrderStatus(self.status).label


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


class JobStatus(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    RETRYING = "retrying"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"  # by hand, from /monitor/jobs, before it ran


class Job(db.Model):
    """The durable record of one background job: written in the business transaction, leased while it runs.

    Huey carries the message; this row is what survives a killed process or a Redis outage (see sipup.jobs.queue).
    """

    __tablename__ = "jobs"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(80))
    args: Mapped[str] = mapped_column(Text, default="[]")
    priority: Mapped[int] = mapped_column(Integer, default=1)
    status: Mapped[str] = mapped_column(String(10), default=JobStatus.QUEUED)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer, default=3)
    run_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    # Unique when set: a periodic job per minute, a payment reference, a reminder per invoice and day.
    dedupe_key: Mapped[str | None] = mapped_column(String(160), unique=True)
    # NULL while the job is only in this table (the outbox): the processor hands it to Huey.
    dispatched_at: Mapped[datetime | None] = mapped_column(DateTime)
    lease_until: Mapped[datetime | None] = mapped_column(DateTime)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(DateTime)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime)
    error: Mapped[str] = mapped_column(Text, default="")
    result: Mapped[str] = mapped_column(String(400), default="")

    __table_args__ = (
        Index("ix_jobs_status_run_at", "status", "run_at"),
        Index("ix_jobs_finished_at", "finished_at"),
        {"sqlite_autoincrement": True},  # ids are never reused: a stale message cannot claim a new job
    )


class QueueRun(db.Model):
    """The last run of each processor (`flask queue process`, each worker): the heartbeat /monitor shows."""

    __tablename__ = "queue_runs"
    processor: Mapped[str] = mapped_column(String(120), primary_key=True)
    started_at: Mapped[datetime] = mapped_column(DateTime)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime)
    jobs_run: Mapped[int] = mapped_column(Integer, default=0)
    failures: Mapped[int] = mapped_column(Integer, default=0)


class StoredFile(db.Model):
    """A file kept in the database when SIPUP_STORAGE_URL=database (sipup/storage/database.py): a picture, a
    report, an uploaded stock file, named by a key such as images/<sha256>-card.webp."""

    __tablename__ = "stored_files"
    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    content_type: Mapped[str] = mapped_column(String(100))
    size: Mapped[int] = mapped_column(Integer)
    data: Mapped[bytes] = mapped_column(LargeBinary().with_variant(LONGBLOB(), "mysql", "mariadb"))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
