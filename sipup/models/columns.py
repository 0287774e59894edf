"""Column types and helpers every model module shares: money, VAT rates, big ids, caseless text, UTC now."""

from datetime import datetime, timezone

from sqlalchemy import BigInteger, Integer, Numeric, String

Money = Numeric(12, 2)
VatRate = Numeric(5, 4)
# BIGINT on MySQL for tables that reach millions of rows; SQLite needs INTEGER to auto-increment.
BigId = BigInteger().with_variant(Integer, "sqlite")


def in_models(name, type_, parent_names):
    """Alembic's include_name: False for the search index that migration 0006 keeps outside the models (the
    FTS5 table product_search with its shadow tables on SQLite; on MariaDB the word table product_terms of
    migration 0011, and the FULLTEXT index that 0006 made and 0011 dropped)."""
    if type_ == "table" and (name.startswith("product_search") or name == "product_terms"):
        return False
    return name != "ft_products_search_terms"


def utcnow():
    """Naive UTC now: DATETIME columns on MySQL carry no zone, so every timestamp is UTC."""
    return datetime.now(timezone.utc).replace(tzinfo=None)


def caseless(length):
    """Text stored as entered and compared without regard to case by the column's collation, so that its
    index both finds and guards values in any case on either database."""
    return (
        String(length)
        .with_variant(String(length, collation="NOCASE"), "sqlite")
        .with_variant(String(length, collation="utf8mb4_unicode_ci"), "mysql", "mariadb")
    )


Email = caseless(254)
