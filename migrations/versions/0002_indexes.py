"""Indexes for the catalog, credit check and back-office search; orders keyed for monthly partitions.

On MySQL/MariaDB the primary keys of orders and order_lines become (id, created_at): InnoDB wants the
partition column in every unique key (error 1503), and `flask db optimize` partitions both tables by
month of created_at. `id` stays first, so it still carries AUTO_INCREMENT and lookups by id use the key.
SQLite keeps `id INTEGER PRIMARY KEY` (its rowid); it has no partitions.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26 23:00:00

"""

from alembic import op
from sqlalchemy import text

# revision identifiers, used by Alembic.
revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

PARTITION_READY = ("orders", "order_lines")


def _is_mysql():
    return op.get_bind().dialect.name in ("mysql", "mariadb")


def upgrade():
    with op.batch_alter_table("products", schema=None) as batch_op:
        batch_op.create_index("ix_products_active_name", ["active", "name"], unique=False)
        batch_op.create_index("ix_products_active_price", ["active", "base_price"], unique=False)
        # Created before the old one goes: MySQL needs an index starting with category_id for the foreign key.
        batch_op.create_index("ix_products_category_active_name", ["category_id", "active", "name"], unique=False)
    with op.batch_alter_table("products", schema=None) as batch_op:
        batch_op.drop_index("ix_products_category_id")

    with op.batch_alter_table("orders", schema=None) as batch_op:
        # The newest-first lists sort by (created_at, id): with id in the index they read it in order.
        batch_op.create_index("ix_orders_company_history", ["company_id", "created_at", "id"], unique=False)
        batch_op.create_index("ix_orders_status_queue", ["status", "created_at", "id"], unique=False)
        batch_op.create_index("ix_orders_created", ["created_at", "id"], unique=False)
        batch_op.create_index("ix_orders_company_status", ["company_id", "status"], unique=False)
        batch_op.create_index("ix_orders_po_reference", ["po_reference"], unique=False)
    with op.batch_alter_table("orders", schema=None) as batch_op:
        batch_op.drop_index("ix_orders_company_created")
        batch_op.drop_index("ix_orders_status_created")
        batch_op.drop_index("ix_orders_created_at")

    if _is_mysql():
        for table in PARTITION_READY:
            op.execute(text(f"ALTER TABLE {table} DROP PRIMARY KEY, ADD PRIMARY KEY (id, created_at)"))


def downgrade():
    if _is_mysql():
        bind = op.get_bind()
        for table in PARTITION_READY:
            partitioned = bind.scalar(
                text(
                    "SELECT COUNT(*) FROM information_schema.PARTITIONS WHERE TABLE_SCHEMA = DATABASE() "
                    "AND TABLE_NAME = :t AND PARTITION_NAME IS NOT NULL"
                ),
                {"t": table},
            )
            if partitioned:
                op.execute(text(f"ALTER TABLE {table} REMOVE PARTITIONING"))
            op.execute(text(f"ALTER TABLE {table} DROP PRIMARY KEY, ADD PRIMARY KEY (id)"))

    with op.batch_alter_table("orders", schema=None) as batch_op:
        batch_op.create_index("ix_orders_company_created", ["company_id", "created_at"], unique=False)
        batch_op.create_index("ix_orders_status_created", ["status", "created_at"], unique=False)
        batch_op.create_index("ix_orders_created_at", ["created_at"], unique=False)
    with op.batch_alter_table("orders", schema=None) as batch_op:
        batch_op.drop_index("ix_orders_po_reference")
        batch_op.drop_index("ix_orders_company_status")
        batch_op.drop_index("ix_orders_created")
        batch_op.drop_index("ix_orders_status_queue")
        batch_op.drop_index("ix_orders_company_history")

    with op.batch_alter_table("products", schema=None) as batch_op:
        batch_op.create_index("ix_products_category_id", ["category_id"], unique=False)
    with op.batch_alter_table("products", schema=None) as batch_op:
        batch_op.drop_index("ix_products_category_active_name")
        batch_op.drop_index("ix_products_active_price")
        batch_op.drop_index("ix_products_active_name")
