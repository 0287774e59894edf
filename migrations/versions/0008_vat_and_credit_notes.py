"""VAT per class and country, complete invoices and credit notes: products.vat_class, the rates copied onto
order lines, reverse charge on orders, the date of supply and credited amount of invoices, credit notes with
their lines.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-20 10:00:00.000000

"""

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
MONEY = sa.Numeric(precision=12, scale=2)
RATE = sa.Numeric(precision=5, scale=4)


def upgrade():
    # Plain ADD COLUMN (no table copy on SQLite): existing rows take the server default.
    op.add_column("products", sa.Column("vat_class", sa.String(length=10), server_default="standard", nullable=False))
    op.add_column("order_lines", sa.Column("vat_rate", RATE, nullable=True))
    op.add_column("order_lines", sa.Column("deposit_vat_rate", RATE, nullable=True))
    op.add_column("orders", sa.Column("reverse_charge", sa.Boolean(), server_default="0", nullable=False))
    op.add_column("invoices", sa.Column("credited_amount", MONEY, server_default="0", nullable=False))
    op.add_column("invoices", sa.Column("delivery_date", sa.Date(), nullable=True))

    op.create_table(
        "credit_notes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("number", sa.String(length=20), nullable=False),
        sa.Column("invoice_id", sa.Integer(), nullable=False),
        sa.Column("company_id", sa.Integer(), nullable=False),
        sa.Column("reason", sa.String(length=400), nullable=False),
        sa.Column("goods_total", MONEY, nullable=False),
        sa.Column("deposit_total", MONEY, nullable=False),
        sa.Column("vat_total", MONEY, nullable=False),
        sa.Column("amount", MONEY, nullable=False),
        sa.Column("issued_at", sa.DateTime(), nullable=False),
        sa.Column("created_by", sa.Integer(), nullable=True),
        sa.CheckConstraint("amount > 0", name=op.f("ck_credit_notes_credit_note_positive")),
        sa.ForeignKeyConstraint(["company_id"], ["companies.id"], name=op.f("fk_credit_notes_company_id_companies")),
        sa.ForeignKeyConstraint(["created_by"], ["users.id"], name=op.f("fk_credit_notes_created_by_users")),
        sa.ForeignKeyConstraint(["invoice_id"], ["invoices.id"], name=op.f("fk_credit_notes_invoice_id_invoices")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_credit_notes")),
        sa.UniqueConstraint("number", name=op.f("uq_credit_notes_number")),
    )
    op.create_index(op.f("ix_credit_notes_company_id"), "credit_notes", ["company_id"], unique=False)
    op.create_index(op.f("ix_credit_notes_invoice_id"), "credit_notes", ["invoice_id"], unique=False)

    op.create_table(
        "credit_note_lines",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("credit_note_id", sa.Integer(), nullable=False),
        sa.Column("order_line_id", BIG_ID, nullable=False),
        sa.Column("sku", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("sell_unit", sa.String(length=80), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("unit_price", MONEY, nullable=False),
        sa.Column("unit_deposit", MONEY, nullable=False),
        sa.Column("line_total", MONEY, nullable=False),
        sa.Column("vat_rate", RATE, nullable=True),
        sa.Column("deposit_vat_rate", RATE, nullable=True),
        sa.CheckConstraint("quantity > 0", name=op.f("ck_credit_note_lines_credit_note_line_positive")),
        sa.ForeignKeyConstraint(
            ["credit_note_id"],
            ["credit_notes.id"],
            name=op.f("fk_credit_note_lines_credit_note_id_credit_notes"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_credit_note_lines")),
    )
    op.create_index(op.f("ix_credit_note_lines_credit_note_id"), "credit_note_lines", ["credit_note_id"], unique=False)
    op.create_index(op.f("ix_credit_note_lines_order_line_id"), "credit_note_lines", ["order_line_id"], unique=False)


def downgrade():
    op.drop_table("credit_note_lines")
    op.drop_table("credit_notes")
    with op.batch_alter_table("invoices", schema=None) as batch_op:
        batch_op.drop_column("delivery_date")
        batch_op.drop_column("credited_amount")
    with op.batch_alter_table("orders", schema=None) as batch_op:
        batch_op.drop_column("reverse_charge")
    with op.batch_alter_table("order_lines", schema=None) as batch_op:
        batch_op.drop_column("deposit_vat_rate")
        batch_op.drop_column("vat_rate")
    with op.batch_alter_table("products", schema=None) as batch_op:
        batch_op.drop_column("vat_class")
