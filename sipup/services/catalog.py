"""The catalog a buyer browses: search, filter, sort and page through active products."""
from sqlalchemy import func, or_, select

from ..cache import PageOf, Plain, cached
from ..extensions import db
from ..models import Category, Product
from .errors import NotFound

SORTS = {
    "name": (Product.name, Product.id),
    "sku": (Product.sku,),
    "price": (Product.base_price, Product.id),
    "price_desc": (Product.base_price.desc(), Product.id),
}


def categories():
    """All categories in display order, as plain dicts."""
    rows = db.session.scalars(select(Category).order_by(Category.position, Category.name))
    return [{"id": c.id, "name": c.name, "slug": c.slug} for c in rows]


def search(query="", category_slug=None, sort="name", page=1, per_page=24):
    """A page of active products matching a name/SKU query and a category."""
    stmt = search_query(query, category_slug, sort)
    return db.paginate(stmt, page=page, per_page=per_page, error_out=False, count=True)


def search_query(query="", category_slug=None, sort="name"):
    """The statement behind a catalog page (also timed by `flask db optimize`)."""
    stmt = select(Product).where(Product.active.is_(True))
    query = (query or "").strip()
    if query:
        like = "%" + query.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        stmt = stmt.where(or_(Product.name.ilike(like, escape="\\"), Product.sku.ilike(like, escape="\\")))
    if category_slug:
        stmt = stmt.join(Category).where(Category.slug == category_slug)
    return stmt.order_by(*SORTS.get(sort, SORTS["name"]))


def product_by_sku(sku, include_inactive=False):
    """One product by SKU, in any case, or NotFound."""
    product = products_by_skus([(sku or "").strip()]).get((sku or "").strip().upper())
    if product is None or not (product.active or include_inactive):
        raise NotFound(f"There is no product with SKU “{sku}”.")
    return product


def products_by_skus(skus):
    """Active and inactive products for many SKUs, in any case: {SKU upper-cased: product}.

    The back office stores SKUs in upper case, so they are looked up as such on the unique index; only
    SKUs not found that way are looked for in other case (a search through every product)."""
    wanted = {s.upper() for s in skus}
    if not wanted:
        return {}
    found = {p.sku.upper(): p for p in db.session.scalars(select(Product).where(Product.sku.in_(wanted)))}
    missing = wanted - found.keys()
    if missing:
        rows = db.session.scalars(select(Product).where(func.upper(Product.sku).in_(missing)))
        found.update({p.sku.upper(): p for p in rows})
    return found


# --- cached reads: plain rows, fresh after every product, stock or category change ("catalog") -------

def _row(product, with_category=False):
    row = Plain(
        id=product.id, sku=product.sku, name=product.name, description=product.description,
        sell_unit=product.sell_unit, base_price=product.base_price, deposit=product.deposit,
        min_qty=product.min_qty, qty_step=product.qty_step, available=product.available,
        low_stock=product.low_stock, low_stock_threshold=product.low_stock_threshold,
        backorder_allowed=product.backorder_allowed, active=product.active,
    )
    if with_category:
        row["category"] = Plain(name=product.category.name, slug=product.category.slug)
    return row


def catalog_page(query="", category_slug=None, sort="name", page=1, per_page=24):
    """search() as plain rows, through the cache."""
    return cached("products", "catalog", (query, category_slug, sort, page, per_page), ["catalog"],
                  lambda: PageOf.of(search(query, category_slug, sort, page, per_page), _row))


def category_list():
    """categories(), through the cache."""
    return cached("products", "categories", (), ["catalog"], categories)


def product_page(sku):
    """One active product by SKU as a plain row with its category, through the cache; or NotFound."""
    wanted = (sku or "").strip().upper()

    def load():
        try:
            return _row(product_by_sku(wanted), with_category=True)
        except NotFound:
            return None  # remembered too: a mistyped link costs no query the second time

    row = cached("products", "product", wanted, ["catalog"], load)
    if row is None:
        raise NotFound(f"There is no product with SKU “{sku}”.")
    return row
