"""The catalog a buyer browses: search, filter, sort and page through active products."""

from flask_babel import gettext
from sqlalchemy import case, exists, func, literal_column, select, text
from sqlalchemy.orm import selectinload

from sipup.cache import PageOf, Plain, cached

from .. import searchtext
from ..exceptions import NotFound
from ..extensions import db
from ..models import Category, Product
from ..models.catalog import product_terms, write_terms
from . import spelling
from .images import image_row

SORTS = {
    "best": (),  # best matches first: filled in by search() for the words searched
    "name": (Product.name, Product.id),
    "sku": (Product.sku,),
    "price": (Product.base_price, Product.id),
    "price_desc": (Product.base_price.desc(), Product.id),
}
# A word of one letter (the "x" of "24 x 0.33 l") is in nearly every product: it narrows nothing and is left out.
SHORTEST_WORD = searchtext.SHORTEST_WORD


def categories():
    """All categories in display order, as plain dicts."""
    rows = db.session.scalars(select(Category).order_by(Category.position, Category.name))
    return [{"id": c.id, "name": c.name, "slug": c.slug} for c in rows]


def _words(query):
    return [w for w in searchtext.words(query) if len(w) >= SHORTEST_WORD]


def matching(stmt, query, best=False):
    """Limit a products statement to those whose name, SKU, category or pack hold every word of the query
    inside any of their words, in any case and with or without accents, through the search index; with
    `best`, also order it best match first (see best_first)."""
    indexed = _words(query)
    if not indexed:
        return stmt.order_by(*SORTS["name"]) if best else stmt
    if db.session.get_bind().dialect.name == "sqlite":
        expression = " AND ".join(f'"{searchtext.MARK}{w}"*' for w in indexed)
        hits = text("SELECT rowid FROM product_search WHERE product_search MATCH :fts").bindparams(fts=expression)
        stmt = stmt.where(Product.id.in_(hits.columns(literal_column("rowid"))))
        return stmt.order_by(*best_first(query)) if best else stmt
    # MariaDB/MySQL: the word table's primary key gives the products of the longest word's terms by one range
    # (a word is found inside another: the table holds every suffix), each with its best place for the rank;
    # every other word is one seek per product in (product_id, term).
    longest, *others = indexed
    first = product_terms.alias("first_word")
    hits = (
        select(first.c.product_id, func.min(first.c.at).label("place"))
        .where(first.c.term >= longest, first.c.term < _after(longest))
        .group_by(first.c.product_id)
        .subquery("hits")
    )
    stmt = stmt.join(hits, hits.c.product_id == Product.id)
    for n, word in enumerate(others):
        other = product_terms.alias(f"word_{n}")
        stmt = stmt.where(
            exists().where(other.c.product_id == Product.id, other.c.term >= word, other.c.term < _after(word))
        )
    return stmt.order_by(hits.c.place, Product.name, Product.id) if best else stmt


def _after(prefix):
    """The first string after every string that starts with a prefix of folded letters and digits."""
    return prefix[:-1] + chr(ord(prefix[-1]) + 1)


def index_products(skus=(), ids=()):
    """Write the search index's terms of products written at once by SKU or id (Core inserts and updates skip
    the model's events): MariaDB/MySQL's word table; SQLite's FTS5 table follows by its triggers."""
    connection = db.session.connection()
    if connection.dialect.name == "sqlite":
        return
    skus, ids = list(skus), list(ids)
    for key, values in ((Product.sku, skus), (Product.id, ids)):
        for start in range(0, len(values), 5000):
            chunk = values[start : start + 5000]
            rows = db.session.execute(select(Product.id, Product.search_text).where(key.in_(chunk))).all()
            write_terms(connection, rows)


def merge_search_index():
    """After many products were written at once: SQLite's FTS5 index merged into one segment, so searches
    read one b-tree instead of hundreds (MariaDB's word table is a plain B-tree)."""
    if db.session.get_bind().dialect.name == "sqlite":
        db.session.execute(text("INSERT INTO product_search(product_search) VALUES ('optimize')"))
        db.session.commit()


def best_first(query):
    """Order for a search: names that start with the longest word searched, then those holding a word that
    starts with it, then the rest; by name within each (on MariaDB the word table's places give the same)."""
    found = _words(query)
    if not found:
        return SORTS["name"]
    rank = case((Product.search_text.like(found[0] + "%"), 0), (Product.search_text.like(f"% {found[0]}%"), 1), else_=2)
    return rank, Product.name, Product.id


def search(query="", category_slug=None, sort="name", page=1, per_page=24):
    """A page of active products matching a query (every word, anywhere) and a category; when nothing
    matches, the page for the query with its typos corrected, which the page's `meant` names (else None)."""
    found = _search_page(query, category_slug, sort, page, per_page)
    found.meant = None
    if found.total == 0 and _words(query):
        meant = spelling.corrected(query)
        if meant is not None:
            forgiven = _search_page(meant, category_slug, sort, page, per_page)
            if forgiven.total:  # a guess that finds nothing either is not offered
                forgiven.meant = meant
                return forgiven
    return found


def _search_page(query, category_slug, sort, page, per_page):
    """The page's ids are sorted first and its products loaded after, so that a search matching thousands
    sorts their ids and sort keys only, not whole rows."""
    words = _words(query)
    if words and sort in ("best", "name") and not category_slug and db.session.get_bind().dialect.name != "sqlite":
        ids, total = _word_page(words, sort == "best", (page - 1) * per_page, per_page)
        return PageOf(_loaded(ids), total, page, per_page)
    stmt = search_query(query, category_slug, sort)
    if words:
        # The count comes with the page's ids: the full-text match is evaluated once, not once for each.
        offset = (page - 1) * per_page
        rows = db.session.execute(stmt.add_columns(func.count().over()).limit(per_page).offset(offset)).all()
        ids = [row[0] for row in rows]
        total = rows[0][1] if rows else _count(stmt) if page > 1 else 0  # past the last page: no row to tell
    else:
        total = _count(stmt)
        ids = db.session.scalars(stmt.limit(per_page).offset((page - 1) * per_page)).all()
    return PageOf(_loaded(ids), total, page, per_page)


def _loaded(ids):
    """The products of ids with their pictures and categories, in the order of ids."""
    if not ids:
        return []
    stmt = select(Product).options(selectinload(Product.images), selectinload(Product.category))
    found = {p.id: p for p in db.session.scalars(stmt.where(Product.id.in_(ids)))}
    return [found[i] for i in ids if i in found]


# Reading the name index in order costs about a fifth of what looking up a product by id and sorting costs
# (0.3 against 1.7 us a product on MariaDB): a page is read along the name index while that reads fewer than
# WALK_RATIO times as many products as the matches are, else the matches are looked up and sorted.
WALK_RATIO = 5


def _word_page(words, ranked, offset, limit):
    """MariaDB/MySQL: (ids of a page of active products holding every word, best match or name first, total).

    The count comes from the word table alone: the matches by place of the longest word (see best_first), less
    the few inactive ones. A page of a large group is then read along the name index, each product checked
    by a seek in the word table, instead of looking up and sorting thousands of products for 24 of them."""
    longest, *others = words
    params = {"w0": longest, "w0_end": _after(longest)}
    also = ""
    for n, word in enumerate(others, 1):
        params |= {f"w{n}": word, f"w{n}_end": _after(word)}
        also += (
            f" AND EXISTS (SELECT 1 FROM product_terms o{n} WHERE o{n}.product_id = {{id}}"
            f" AND o{n}.term >= :w{n} AND o{n}.term < :w{n}_end)"
        )
    place = "MIN(t.at)" if ranked else "0"
    hits = (
        f"SELECT t.product_id, {place} AS place FROM product_terms t WHERE t.term >= :w0 AND t.term < :w0_end"
        f"{also.format(id='t.product_id')} GROUP BY t.product_id"
    )
    # Statements are select()s around SQL text: a Select may read a replica (sipup.replicas), plain text may not.
    by_place = select(literal_column("place"), func.count()).group_by(literal_column("place"))
    groups = dict(db.session.execute(by_place.select_from(text(f"({hits}) hits")), params).all())
    lowest = place if ranked else "MIN(0)"  # NULL for a product without the word, as MIN(t.at)
    first_place = (
        f"(SELECT {lowest} FROM product_terms t WHERE t.product_id = p.id AND t.term >= :w0 AND t.term < :w0_end)"
    )
    inactive = text(
        f"(SELECT {first_place} AS place FROM products p"
        f" WHERE (p.active = 0 OR p.active IS NULL){also.format(id='p.id')}) found"
    )
    for at, count in db.session.execute(by_place.select_from(inactive).where(text("place IS NOT NULL")), params):
        groups[at] -= count
    total = sum(groups.values())
    ids, size = [], None
    for at in sorted(groups):
        if offset >= groups[at]:
            offset -= groups[at]
            continue
        if size is None:  # products by id, as many as there are: what reading the name index passes
            size = db.session.scalar(select(func.max(Product.id))) or 0
        wanted = min(limit - len(ids), groups[at] - offset)
        if (offset + wanted) * size < WALK_RATIO * groups[at] * groups[at]:
            member = (
                "EXISTS (SELECT 1 FROM product_terms t WHERE t.product_id = p.id"
                " AND t.term >= :w0 AND t.term < :w0_end AND t.at = :at)"
                " AND NOT EXISTS (SELECT 1 FROM product_terms t WHERE t.product_id = p.id"
                " AND t.term >= :w0 AND t.term < :w0_end AND t.at < :at)"
                if ranked
                else "EXISTS (SELECT 1 FROM product_terms t WHERE t.product_id = p.id"
                " AND t.term >= :w0 AND t.term < :w0_end)"
            )
            page = (
                select(literal_column("p.id"))
                .select_from(text("products p FORCE INDEX (ix_products_active_name)"))
                .where(text(f"p.active = 1 AND {member}{also.format(id='p.id')}"))
            )
        else:
            page = (
                select(literal_column("p.id"))
                .prefix_with("STRAIGHT_JOIN")
                .select_from(text(f"({hits} HAVING place = :at) hits JOIN products p ON p.id = hits.product_id"))
                .where(text("p.active = 1"))
            )
        page = page.order_by(text("p.name, p.id")).limit(wanted).offset(offset)
        ids += db.session.scalars(page, params | {"at": at}).all()
        offset = 0
        if len(ids) >= limit:
            break
    return ids, total


def _count(stmt):
    return db.session.scalar(stmt.with_only_columns(func.count()).order_by(None))


def search_query(query="", category_slug=None, sort="name"):
    """The ids of a catalog page's products, in order (also timed by `flask db optimize`)."""
    query = (query or "").strip()
    if _words(query):
        # Wrapped, so that no index on `active` tempts the planner into walking every active product and
        # probing the matches for each: the full-text matches are the few rows to start from.
        stmt = matching(
            select(Product.id).where(func.coalesce(Product.active, False).is_(True)), query, best=sort == "best"
        )
    else:
        stmt = select(Product.id).where(Product.active.is_(True))
    if category_slug:
        stmt = stmt.join(Category, Category.id == Product.category_id).where(Category.slug == category_slug)
    if sort == "best" and _words(query):
        return stmt  # ordered by matching()
    return stmt.order_by(*SORTS.get(sort) or SORTS["name"])


def product_by_sku(sku, include_inactive=False):
    """One product by SKU, in any case, or NotFound."""
    product = products_by_skus([(sku or "").strip()]).get((sku or "").strip().upper())
    if product is None or not (product.active or include_inactive):
        raise NotFound(gettext("There is no product with SKU “%(sku)s”.", sku=sku))
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


# --- cached reads: plain rows, fresh after every product or category change ("catalog") and stock change
# ("stock": orders reserve and ship without changing anything else of a product) -------------------------


def _row(product, with_category=False):
    row = Plain(
        id=product.id,
        sku=product.sku,
        name=product.name,
        description=product.description,
        sell_unit=product.sell_unit,
        base_price=product.base_price,
        deposit=product.deposit,
        min_qty=product.min_qty,
        qty_step=product.qty_step,
        available=product.available,
        low_stock=product.low_stock,
        low_stock_threshold=product.low_stock_threshold,
        backorder_allowed=product.backorder_allowed,
        active=product.active,
        image=image_row(product.images[0] if product.images else None),
        category_slug=product.category.slug,
    )
    if with_category:
        row["category"] = Plain(name=product.category.name, slug=product.category.slug)
        row["images"] = [image_row(image) for image in product.images]
    return row


def catalog_page(query="", category_slug=None, sort="name", page=1, per_page=24):
    """search() as plain rows, through the cache."""
    return cached(
        "products",
        "catalog",
        (query, category_slug, sort, page, per_page),
        ["catalog", "stock"],
        lambda: _plain(search(query, category_slug, sort, page, per_page)),
    )


def _plain(found):
    """A search page as plain rows, with the corrected query it shows if any."""
    page = found.converted(_row)
    page.meant = found.meant
    return page


def category_list():
    """categories(), through the cache."""
    return cached("products", "categories", (), ["catalog"], categories)


def product_page(sku):
    """One active product by SKU as a plain row with its category, through the cache; or NotFound."""

    def load():
        try:
            return _row(product_by_sku(sku), with_category=True)
        except NotFound:
            return None  # remembered too: a mistyped link costs no query the second time

    row = cached(*product_entry(sku), load)
    if row is None:
        raise NotFound(gettext("There is no product with SKU “%(sku)s”.", sku=sku))
    return row


def product_entry(sku):
    """The cache entry (type, name, args, depends) of a product page's row, for cached() and prefetch()."""
    return ("products", "product", (sku or "").strip().upper(), ["catalog", "stock"])


def stock_rows(ids):
    """{id: plain row of what the stock parts of a page show} for these products (shop/_stock.html)."""
    if not ids:
        return {}
    return {p.id: _stock_row(p) for p in db.session.scalars(select(Product).where(Product.id.in_(ids)))}


def stock_rows_by_sku(sku):
    """stock_rows() of one active product by SKU, in any case; {} when there is none."""
    try:
        product = product_by_sku(sku)
    except NotFound:
        return {}
    return {product.id: _stock_row(product)}


def _stock_row(product):
    return Plain(
        id=product.id,
        name=product.name,
        min_qty=product.min_qty,
        qty_step=product.qty_step,
        available=product.available,
        low_stock=product.low_stock,
        backorder_allowed=product.backorder_allowed,
    )
