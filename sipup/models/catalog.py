"""The catalog: categories, products and their pictures, price lists and their tiers."""

from datetime import datetime
from decimal import Decimal

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
    UniqueConstraint,
    event,
    select,
)
from sqlalchemy.orm import Mapped, attributes, mapped_column, relationship

from .. import searchtext
from ..extensions import db
from .columns import Money, utcnow


class PriceList(db.Model):
    __tablename__ = "price_lists"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(120), unique=True)
    tiers: Mapped[list["PriceTier"]] = relationship(back_populates="price_list", cascade="all, delete-orphan")


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
    # what SQLite's FTS5 table product_search holds (MariaDB/MySQL search the word table product_terms).
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
    before = attributes.get_history(product, "search_text")
    product.search_text = searchtext.product_text(product.name, product.sku, category, product.sell_unit)
    product.search_terms = searchtext.terms(product.search_text)
    # Rewritten after the row is: an insert has no id yet, and a stock change leaves the word table alone.
    product._terms_stale = product.search_text not in (before.unchanged or before.deleted or [None])


@event.listens_for(Product, "after_insert")
@event.listens_for(Product, "after_update")
def _index_for_search(mapper, connection, product):
    if getattr(product, "_terms_stale", False):
        write_terms(connection, [(product.id, product.search_text)])
        product._terms_stale = False


# MariaDB/MySQL's search index (migration 0011; none on SQLite, which searches with FTS5): every suffix of
# every word of each product's search text (searchtext.word_terms), with where it starts. Its primary key
# (term, product_id) finds the products of a word's prefix by one range; (product_id, term) checks one
# product for another word by one seek. Kept out of the models' metadata: created by the migration only.
product_terms = Table(
    "product_terms",
    MetaData(),
    Column("term", String(40), primary_key=True),
    Column("product_id", Integer, primary_key=True),
    Column("at", SmallInteger, nullable=False),
)
TERMS_BATCH = 1000  # products whose terms are written in one multi-row INSERT


def write_terms(connection, products):
    """Replace the word table's terms of products given as (id, search_text) pairs (MariaDB/MySQL only)."""
    if connection.dialect.name == "sqlite":
        return
    products = list(products)
    for start in range(0, len(products), TERMS_BATCH):
        batch = products[start : start + TERMS_BATCH]
        connection.execute(product_terms.delete().where(product_terms.c.product_id.in_([id_ for id_, _ in batch])))
        rows = [
            {"term": term, "product_id": id_, "at": at}
            for id_, text in batch
            for term, at in searchtext.word_terms(text or "").items()
        ]
        if rows:
            connection.execute(product_terms.insert(), rows)


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
