"""Product words: MariaDB/MySQL search through a word table in B-tree indexes instead of the FULLTEXT index
(every suffix of every word of each product's search text, with where it starts); SQLite keeps FTS5.

Revision ID: 0011_product_words
Revises: 0010
Create Date: 2026-12-07 09:00:00.000000

"""

import sqlalchemy as sa
from alembic import op

from sipup import searchtext

# revision identifiers, used by Alembic.
revision = "0011_product_words"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade():
    if op.get_bind().dialect.name == "sqlite":
        return
    op.create_table(
        "product_terms",
        # Folded words are ASCII: compared byte by byte, so that a prefix is one range of the primary key.
        sa.Column("term", sa.String(40, collation="ascii_bin"), nullable=False),
        sa.Column("product_id", sa.Integer(), nullable=False),
        sa.Column("at", sa.SmallInteger(), nullable=False),
        sa.PrimaryKeyConstraint("term", "product_id"),
        sa.ForeignKeyConstraint(["product_id"], ["products.id"], ondelete="CASCADE"),
        mysql_charset="ascii",
    )
    op.create_index("ix_product_terms_product_term", "product_terms", ["product_id", "term"])
    _fill()
    op.drop_index("ft_products_search_terms", "products")


def _fill():
    """Terms for the products already there."""
    bind = op.get_bind()
    rows = bind.execute(sa.text("SELECT id, search_text FROM products")).all()
    insert = sa.text("INSERT INTO product_terms (term, product_id, at) VALUES (:term, :product_id, :at)")
    for start in range(0, len(rows), 1000):
        terms = [
            dict(term=term, product_id=id_, at=at)
            for id_, text in rows[start : start + 1000]
            for term, at in searchtext.word_terms(text or "").items()
        ]
        if terms:
            bind.execute(insert, terms)


def downgrade():
    if op.get_bind().dialect.name == "sqlite":
        return
    op.create_index("ft_products_search_terms", "products", ["search_terms"], mysql_prefix="FULLTEXT")
    op.drop_table("product_terms")
