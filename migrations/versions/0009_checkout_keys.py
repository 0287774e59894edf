"""Checkout keys: each checkout form's one-time key and the order it placed, unique per company, so a form sent
twice shows the order instead of placing a second one.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07 01:50:00.000000

"""

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "checkout_keys",
        sa.Column("company_id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=32), nullable=False),
        sa.Column("order_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("order_number", sa.String(length=20), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("company_id", "key", name=op.f("pk_checkout_keys")),
    )
    with op.batch_alter_table("checkout_keys", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_checkout_keys_created_at"), ["created_at"], unique=False)


def downgrade():
    with op.batch_alter_table("checkout_keys", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_checkout_keys_created_at"))
    op.drop_table("checkout_keys")
