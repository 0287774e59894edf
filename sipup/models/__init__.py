"""SQLAlchemy 2.x typed models, a module per domain; every class is exported here (`from sipup.models import X`),
and importing the package declares every table (what Alembic's env compares against).

- columns.py: the shared column types (Money, VatRate, BigId, caseless text), utcnow, Alembic's in_models
- accounts.py: companies, addresses, users, sessions, mailed links, account requests, the audit log
- catalog.py: categories, products and their pictures, price lists and their tiers
- shopping.py: the cart and shopping lists
- orders.py: orders, lines, events, checkout keys
- billing.py: invoices, credit notes, payments, gap-free sequences
- jobs.py: the durable record of background jobs and the queue's runs
- files.py: files kept in the database (SIPUP_STORAGE_URL=database)

The orders tables (orders, order_lines, order_events) carry no database foreign keys and no unique
key without created_at, because `flask db optimize` partitions them by month on MySQL/MariaDB and
InnoDB forbids both on partitioned tables. The order number is unique by construction: it is made
from the auto-increment id (see services.orders.order_number). On MySQL/MariaDB the primary key of
orders and order_lines is (id, created_at) in the database (migration 0002); the ORM keeps `id` alone
as the identity, which is unique all the same.

Every index names the query it serves (`flask db optimize` verifies them against the live schema).
"""

from .accounts import (
    AccountLink,
    AccountRequest,
    Address,
    AuditEvent,
    Company,
    LinkPurpose,
    Role,
    User,
    UserSession,
    address_line,
)
from .billing import CreditNote, CreditNoteLine, Invoice, Payment, Sequence
from .catalog import Category, PriceList, PriceTier, Product, ProductImage
from .columns import BigId, Email, Money, VatRate, caseless, in_models, utcnow
from .files import StoredFile
from .jobs import Job, JobStatus, QueueRun
from .orders import CheckoutKey, Order, OrderEvent, OrderLine, OrderStatus
from .shopping import CartItem, ShoppingList, ShoppingListItem

__all__ = [
    "AccountLink",
    "AccountRequest",
    "Address",
    "address_line",
    "AuditEvent",
    "BigId",
    "CartItem",
    "Category",
    "CheckoutKey",
    "Company",
    "CreditNote",
    "CreditNoteLine",
    "Email",
    "Invoice",
    "Job",
    "JobStatus",
    "LinkPurpose",
    "Money",
    "Order",
    "OrderEvent",
    "OrderLine",
    "OrderStatus",
    "Payment",
    "PriceList",
    "PriceTier",
    "Product",
    "ProductImage",
    "QueueRun",
    "Role",
    "Sequence",
    "ShoppingList",
    "ShoppingListItem",
    "StoredFile",
    "User",
    "UserSession",
    "VatRate",
    "caseless",
    "in_models",
    "utcnow",
]
