"""The storefront for buyers: catalog, cart, quick order, checkout, orders and invoices."""

import hashlib
import os
import re

from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    flash,
    make_response,
    redirect,
    render_template,
    request,
    send_file,
    url_for,
)
from flask_babel import gettext, ngettext
from flask_login import current_user
from markupsafe import Markup, escape

from sipup.cache import cached

from .. import i18n
from ..exceptions import AlreadyPlaced, DomainError, NotFound
from ..extensions import db
from ..models import utcnow
from ..replicas import replica_reads
from ..security import READ_AHEAD, customer_required, same_site_path, sign_in_first
from ..services import cart as carts
from ..services import catalog, csv_export, documents, images, orders, pricing, quick_order, shopping_lists, vat
from ..services.parsing import page_number, parse_quantity, whole_number
from ..services.quantities import backorder_note, stock_problem
from ..web import csrf_token, fill_slots, kept_macro, kept_page, kept_render, render_page

bp = Blueprint("shop", __name__)
# Where a cached page's forms take the reader's own CSRF token; escaped data can never read like this.
CSRF_SLOT = Markup("<!--csrf-->")
# Where a cached page's stock parts go (shop/_stock.html): a catalog card's stock line, then its quantity field
# and button, card after card; a product page's stock line and its quantity field and button.
STOCK_SLOT, ORDER_SLOT = Markup("<!--stock-->"), Markup("<!--order-->")
# Where the kept catalog page is cut: its forms' CSRF token and each product's stock parts. Its fragments are kept
# as UTF-8, as the response sends them: a page this size took longer to decode from the cache and encode again than
# to fill in.
CATALOG_SLOTS = re.compile(f"({re.escape(CSRF_SLOT)}|{re.escape(STOCK_SLOT)})")
CSRF_BYTES, STOCK_BYTES = CSRF_SLOT.encode(), STOCK_SLOT.encode()
STOCK_PARTS = "shop/_stock.html"
CATALOG_ARGS = {"q", "category", "sort", "page"}
CHECKOUT_KEY = re.compile(r"[A-Za-z0-9_-]{16,32}")


@bp.app_template_filter("initials")
def _initials(name):
    """Up to two initials of a product's name for its placeholder picture."""
    return "".join(word[0] for word in (name or "?").split()[:2]).upper()


@bp.app_template_filter("percent")
def _percent(rate):
    """A VAT rate as "19 %"."""
    return vat.percent(rate)


@bp.app_template_global("vat_rows")
def _vat_rows(order):
    """An order's VAT per rate for the order and invoice pages."""
    return vat.order_summary(order)


def _arg(name, default=None):
    """A query argument, or default when absent (asked first: Werkzeug's get() raises and catches an error)."""
    args = request.args
    return args.get(name, default) if name in args else default


def _page():
    """The ?page= argument, or 1 with a notice naming a bad value."""
    return page_number(_arg("page"))


def _vat():
    """The VAT rules of the settings (rates per class and country of delivery)."""
    return vat.rules()


def _catalog_version():
    """The cached catalog HTML's version: its templates' source and the currency, so that neither a release
    nor a changed setting ever shows an older page."""
    return _html_version("shop/_catalog.html", "_macros.html")


def _html_version(*names):
    """The version of HTML kept in the cache that these templates render: their source and the currency."""
    versions = current_app.extensions.setdefault("sipup_html_versions", {})
    version = versions.get(names)
    if version is None:
        env = current_app.jinja_env
        source = "".join(env.loader.get_source(env, name)[0] for name in names)
        version = versions[names] = hashlib.sha1((source + current_app.config["CURRENCY"]).encode()).hexdigest()[:16]
    return version


def _kept_as_html(notice, query):
    """Whether this catalog address is kept as HTML: only as the search form sends it (known arguments, each
    once, valid, a query of at most 100 characters), so odd addresses cannot fill the cache."""
    args = request.args
    return (
        notice is None
        and len(query) <= 100
        and set(args) <= CATALOG_ARGS
        and all(len(args.getlist(name)) == 1 for name in args)
    )


@bp.route("/")
def index():
    """The buyer's dashboard: recent orders, open balance, credit left."""
    if not current_user.is_authenticated:
        return sign_in_first()
    if current_user.is_staff:
        return redirect(url_for("admin.index"))
    if not current_user.is_customer:
        abort(403)
    company = current_user.company
    return render_page(
        gettext("Overview"),
        "shop/index.html",
        company=company,
        credit=orders.account_position(company),
        recent=orders.history_page(company.id, per_page=5).items,
        cart=carts.priced(current_user, _vat()),
    )


@bp.route("/products")
@customer_required
@replica_reads()
def products():
    """The catalog with search, category filter, sorting and pages."""
    page, notice = _page()
    query, category = _arg("q", ""), _arg("category", "")
    sort = _arg("sort") or ("best" if query.strip() else "name")
    if sort not in catalog.SORTS:
        notice, sort = gettext("Unknown sort “%(sort)s”; sorted by name.", sort=sort[:20]), "name"
    price_list_id, per_page = current_user.company.price_list_id, current_app.config["PAGE_SIZE"]

    def render():
        results = catalog.catalog_page(query[:100], category or None, sort, page, per_page)
        ids = [p.id for p in results.items]
        tiers = pricing.tiers_for(price_list_id, ids)
        prices = {p.id: pricing.price_steps(p, tiers.get(p.id, [])) for p in results.items}
        html = render_template(
            "shop/_catalog.html",
            results=results,
            prices=prices,
            categories=catalog.category_list(),
            query=query,
            category=category,
            sort=sort,
            csrf_slot=CSRF_SLOT,
            stock_slot=STOCK_SLOT,
        )
        return tuple(ids), [part.encode() for part in CATALOG_SLOTS.split(str(html))]  # [text, slot, ..., text]

    # The same page for every buyer on this price list: rendered once, as fresh as catalog and prices, and kept in
    # fragments around its slots; the stock parts are kept apart, as fresh as the stock (an order renews them, not
    # the page).
    if _kept_as_html(notice, query):
        ids, fragments = cached(*_catalog_entry(price_list_id), render)
        stock_ids, parts = cached(*_catalog_stock_entry(), lambda: _catalog_stock_parts(ids))
        if stock_ids != ids:  # kept for the page as it was before a catalog change
            stock_ids, parts = _catalog_stock_parts(ids)
    else:
        ids, fragments = render()
        _, parts = _catalog_stock_parts(ids)
    # The reader's CSRF token and the stock parts in their slots; the page is then joined once, with the layout
    # around it: a page this size costs more to copy than to fill.
    token, stock = csrf_token().encode(), iter(parts)
    body = [token if each == CSRF_BYTES else next(stock) if each == STOCK_BYTES else each for each in fragments]
    if request.headers.get("HX-Request"):  # search as you type: the same partial, without the page around it
        response = make_response(b"".join(body))
    elif notice is None:
        response = make_response(kept_page(gettext("Catalog"), body))
    else:
        html = Markup(b"".join(body).decode())
        response = make_response(render_template("shop/products.html", catalog=html, notice=notice))
    response.vary.add("HX-Request")
    return response


def _catalog_entry(price_list_id, language=None):
    """The cache entry (type, name, args, depends) of this address's catalog page for one price list, in one
    language (the page's text and numbers are in it)."""
    per_page = current_app.config["PAGE_SIZE"]
    return (
        "products",
        "catalog-utf8",
        (_catalog_version(), price_list_id, per_page, request.full_path, language or i18n.current_language()),
        ["catalog", "prices", f"prices:{price_list_id}", "type:prices"],
    )


def _catalog_stock_entry(language=None):
    """The cache entry (type, name, args, depends) of this catalog address's stock parts, in one language: the
    same products for every price list."""
    per_page = current_app.config["PAGE_SIZE"]
    language = language or i18n.current_language()
    version = _html_version(STOCK_PARTS)
    return ("products", "catalog-stock-utf8", (version, per_page, request.full_path, language), ["catalog", "stock"])


def _catalog_stock_parts(ids):
    """(ids, [HTML as UTF-8]) of these products' stock lines and quantity fields (shop/_stock.html) as the database
    has them now, two a product in the order of ids."""
    rows = catalog.stock_rows(ids)  # a product deleted since the page was read shows no stock
    parts = []
    for row in map(rows.get, ids):  # each part made once per product state: an order changes only the ones it took
        macros = ("catalog_stock", "catalog_order") if row else ()
        parts += [kept_macro(STOCK_PARTS, macro, row).encode() for macro in macros] or [b"", b""]
    return ids, parts


# The catalog page and a product's row are read with the buyer's row, in one round trip (security.read_ahead).
# Before the user is loaded the read ahead guesses their language from the browser (a wrong guess costs a read).
READ_AHEAD["shop.products"] = lambda price_list_id, *_: (
    []
    if price_list_id is None
    else [_catalog_entry(price_list_id, i18n.visitor_language()), _catalog_stock_entry(i18n.visitor_language())]
)
READ_AHEAD["shop.product"] = lambda price_list_id, company_id, _: [
    *(
        []
        if company_id is None
        else [
            _product_entry(request.view_args["sku"], price_list_id, i18n.visitor_language()),
            _product_stock_entry(request.view_args["sku"], i18n.visitor_language()),
        ]
    ),
    *_list_choices_entry(company_id),
]
# Pages with a "Save to list" form read the company's lists with the user's row too.
READ_AHEAD["shop.order_detail"] = lambda _, company_id, __: _list_choices_entry(company_id)
# The cart page, the overview and the checkout page show the cart's lines as priced; the last two the credit left.
READ_AHEAD["shop.cart"] = lambda price_list_id, company_id, user_id: [
    *_list_choices_entry(company_id),
    *_cart_lines_entry(price_list_id, user_id, pictures=True),
]
READ_AHEAD["shop.index"] = READ_AHEAD["shop.checkout"] = lambda price_list_id, company_id, user_id: (
    [orders.credit_entry(company_id), *_cart_lines_entry(price_list_id, user_id)]
    if company_id is not None and request.method == "GET"
    else []
)


def _cart_lines_entry(price_list_id, user_id, pictures=False):
    return (
        []
        if price_list_id is None or request.method != "GET"
        else [carts.shown_entry(user_id, price_list_id, pictures)]
    )


def _list_choices_entry(company_id):
    return [] if company_id is None else [shopping_lists.choices_entry(company_id)]


@bp.route("/products/<sku>")
@customer_required
@replica_reads()
def product(sku):
    """One product with the buyer's own tier prices: its body is kept as HTML per price list and language (as fresh
    as the catalog and the prices); the CSRF token, the quantity asked for and the "Save to list" form (the
    company's own lists) are filled in per request."""
    price_list_id = current_user.company.price_list_id
    page = cached(*_product_entry(sku, price_list_id), lambda: _product_body(sku, price_list_id))
    if page is None:
        abort(404)
    name, min_qty, qty_step, item_sku, html = page
    # Its stock kept apart, as fresh as the stock: an order renews that, not the page.
    stock = cached(*_product_stock_entry(sku), lambda: _product_stock_parts(sku))
    if stock is None:  # sold no more since the body was read
        abort(404)
    # The "Save to list" form is the same for every product and buyer with these lists: rendered once and kept.
    choices = tuple(shopping_lists.editable_lists(current_user))
    lists_form = kept_render(
        "shop/_product_lists.html",
        ("product", choices),
        product={"sku": SKU_SLOT, "min_qty": MIN_QTY_SLOT, "qty_step": QTY_STEP_SLOT},
        quantity=QUANTITY_SLOT,
        saving_lists=lambda: choices,
        csrf_token=lambda: CSRF_SLOT,
    )
    filled = {
        CSRF_SLOT: escape(csrf_token()),
        QUANTITY_SLOT: escape(_arg("qty", str(min_qty))[:12]),
        SKU_SLOT: escape(item_sku),
        MIN_QTY_SLOT: str(min_qty),
        QTY_STEP_SLOT: str(qty_step),
    }
    html = html.replace(LISTS_SLOT, lists_form, 1).replace(STOCK_SLOT, stock[0], 1).replace(ORDER_SLOT, stock[1], 1)
    return kept_page(name, Markup(fill_slots(html, filled)))


# Where a product page's per-request parts go; escaped data can never read like these.
QUANTITY_SLOT, LISTS_SLOT = Markup("<!--quantity-->"), Markup("<!--save-to-list-->")
SKU_SLOT, MIN_QTY_SLOT, QTY_STEP_SLOT = Markup("<!--sku-->"), Markup("<!--min-qty-->"), Markup("<!--qty-step-->")


def _product_body(sku, price_list_id):
    """(name, minimum quantity, quantity step, SKU, body HTML with slots) of an active product's page for a price list,
    or None when there is none (remembered too: a mistyped link costs no query the second time)."""
    try:
        item = catalog.product_page(sku)
    except NotFound:
        return None
    tiers = pricing.tiers_for(price_list_id, [item.id]).get(item.id, [])
    html = render_template(
        "shop/_product.html",
        product=item,
        steps=pricing.price_steps(item, tiers),
        csrf_slot=CSRF_SLOT,
        lists_slot=LISTS_SLOT,
        stock_slot=STOCK_SLOT,
        order_slot=ORDER_SLOT,
    )
    return item.name, item.min_qty, item.qty_step, item.sku, str(html)


def _product_entry(sku, price_list_id, language=None):
    """The cache entry (type, name, args, depends) of a product page's body for one price list, in one language."""
    return (
        "products",
        "product-html",
        (
            _html_version("shop/_product.html", "_macros.html"),
            price_list_id,
            (sku or "").strip().upper(),
            request.script_root,
            language or i18n.current_language(),
        ),
        ["catalog", "prices", f"prices:{price_list_id}", "type:prices"],
    )


def _product_stock_entry(sku, language=None):
    """The cache entry (type, name, args, depends) of a product page's stock parts, in one language."""
    language = language or i18n.current_language()
    version = _html_version(STOCK_PARTS)
    return ("products", "product-stock", (version, (sku or "").strip().upper(), language), ["catalog", "stock"])


def _product_stock_parts(sku):
    """(stock HTML, quantity field and button HTML) of an active product's page as the database has it now, the
    quantity left as a slot; None when it is not sold."""
    rows = catalog.stock_rows_by_sku(sku)
    if not rows:
        return None
    (row,) = rows.values()
    return kept_macro(STOCK_PARTS, "product_stock", row), kept_macro(STOCK_PARTS, "product_order", row, QUANTITY_SLOT)


@bp.route("/cart/add", methods=["POST"])
@customer_required
def cart_add():
    """Add a product to the cart from the catalog or a product page."""
    sku, raw = request.form.get("sku", ""), request.form.get("quantity", "")
    try:
        item, line = carts.product_with_line(current_user.id, sku)
    except NotFound as exc:
        flash(str(exc), "error")
        return redirect(url_for("shop.products"))
    try:
        total = carts.add(current_user.id, item, parse_quantity(raw), line=line)
    except DomainError as exc:
        flash(str(exc), "error")
        return redirect(url_for("shop.product", sku=item.sku, qty=raw[:12]))
    flash(
        gettext(
            "%(name)s (%(unit)s): %(total)s in your cart.",
            name=item.name,
            unit=item.sell_unit,
            total=i18n.number(total),
        ),
        "success",
    )
    for note in (backorder_note(item, total), stock_problem(item, total)):
        if note:
            flash(note, "warning")
    return redirect(same_site_path(request.form.get("back")) or url_for("shop.cart"))


@bp.route("/cart", methods=["GET", "POST"])
@customer_required
def cart():
    """The cart: change quantities, remove lines, go to checkout."""
    entered, errors = {}, {}
    if request.method == "POST":
        if "remove" in request.form:
            product_id = whole_number(request.form["remove"])
            if product_id:
                carts.remove(current_user.id, product_id)
                flash(gettext("Removed from your cart."), "info")
            return redirect(url_for("shop.cart"))
        for item in carts.items(current_user.id):
            raw = request.form.get(f"qty-{item.product_id}")
            if raw is None or raw.strip() == str(item.quantity):
                continue
            try:
                carts.add(current_user.id, item.product, parse_quantity(raw), replace=True)
            except DomainError as exc:
                db.session.rollback()
                entered[item.product_id], errors[item.product_id] = raw[:12], str(exc)
        if not errors:
            flash(gettext("Cart updated."), "success")
            return redirect(url_for("shop.cart"))
    priced = carts.priced(current_user, _vat(), pictures=True)
    page = render_page(gettext("Cart"), "shop/cart.html", cart=priced, entered=entered, errors=errors)
    return page, 422 if errors else 200


def read_quick_order_source(text):
    """The text of the request's uploaded CSV file (at most QUICK_ORDER_MAX_FILE_MB), or else the pasted text."""
    upload = request.files.get("file")
    if not (upload and upload.filename):
        return text
    limit = current_app.config["QUICK_ORDER_MAX_FILE_MB"] * 1_048_576
    size = upload.stream.seek(0, os.SEEK_END)
    upload.stream.seek(0)
    return quick_order.read_upload(upload.stream.read(limit + 1), limit, size)


@bp.route("/quick-order", methods=["GET", "POST"])
@customer_required
def quick_order_page():
    """Paste lines or upload a CSV; preview each line before adding the valid ones."""
    text, lines, error = request.form.get("lines", ""), None, None
    if request.method == "POST":
        try:
            lines = quick_order.preview(
                read_quick_order_source(text),
                current_user.company.price_list_id,
                _vat(),
                current_app.config["QUICK_ORDER_MAX_LINES"],
            )
        except DomainError as exc:
            error = str(exc)
    status = 422 if error else 200
    return render_page(gettext("Quick order"), "shop/quick_order.html", text=text, lines=lines, error=error), status


@bp.route("/quick-order/add", methods=["POST"])
@customer_required
def quick_order_add():
    """Add the previewed valid lines to the cart."""
    pairs = list(zip(request.form.getlist("sku"), request.form.getlist("quantity")))
    added, problems = quick_order.add_to_cart(current_user.id, pairs)
    if added:
        flash(ngettext("%(num)s line added to your cart.", "%(num)s lines added to your cart.", added), "success")
    for problem in problems:
        flash(problem, "error")
    return redirect(url_for("shop.cart"))


@bp.route("/checkout", methods=["GET", "POST"])
@customer_required
def checkout():
    """Check out on account: PO reference, delivery address and date; credit is checked."""
    company = current_user.company
    # A POST prices the cart anew under lock (orders.checkout) and shows it only when refused.
    priced = carts.priced(current_user, _vat()) if request.method == "GET" else None
    if request.method == "GET" and not priced.lines:
        flash(gettext("Your cart is empty."), "info")
        return redirect(url_for("shop.products"))
    form = {k: request.form.get(k, "") for k in ("po_reference", "requested_date", "address_id", "note")}
    # The form's one-time key: sending it again shows the order it placed instead of placing another.
    key = request.form.get("checkout_key", "")
    form["checkout_key"] = key if CHECKOUT_KEY.fullmatch(key) else orders.new_checkout_key()
    error, refused = None, None
    if request.method == "POST":
        try:
            order = orders.checkout(
                current_user,
                _vat(),
                form["po_reference"][:60],
                orders.parse_requested_date(form["requested_date"]),
                whole_number(form["address_id"]),
                form["note"][:1000],
                checkout_key=key if CHECKOUT_KEY.fullmatch(key) else None,
            )
        except AlreadyPlaced as exc:
            flash(str(exc), "info")
            return redirect(url_for("shop.order_detail", number=exc.number))
        except DomainError as exc:
            error, refused = str(exc), getattr(exc, "product_id", None)
            priced = carts.priced(current_user, _vat())
        else:
            if order.status == "credit_hold":
                flash(
                    gettext(
                        "Order %(number)s is placed and waits for a credit review; we will be in touch.",
                        number=order.number,
                    ),
                    "warning",
                )
            else:
                flash(gettext("Thank you! Order %(number)s is placed.", number=order.number), "success")
            return redirect(url_for("shop.order_detail", number=order.number))
    page = render_page(
        gettext("Checkout"),
        "shop/checkout.html",
        cart=priced,
        form=form,
        error=error,
        refused=refused,
        addresses=company.addresses,  # carried with the signed-in user, in id order
        credit=orders.account_position(company),  # shown only: orders.checkout() decides on fresh figures
    )
    return page, 422 if error else 200


@bp.route("/orders")
@customer_required
@replica_reads()
def order_list():
    """The company's orders, newest first."""
    page, notice = _page()
    results = orders.history_page(current_user.company_id, page=page)
    return render_page(gettext("Orders"), "shop/orders.html", results=results, notice=notice)


@bp.route("/orders/<number>")
@customer_required
@replica_reads()
def order_detail(number):
    """One order of the company with its lines and status timeline."""
    try:
        order = orders.get_order(number, company_id=current_user.company_id)
    except NotFound:
        abort(404)
    return render_template("shop/order.html", order=order)


@bp.route("/orders/<number>/reorder", methods=["POST"])
@customer_required
def reorder(number):
    """Put an earlier order in the cart again at today's prices."""
    try:
        order = orders.get_order(number, company_id=current_user.company_id)
    except NotFound:
        abort(404)
    added, changes = orders.reorder(current_user, order)
    flash(
        ngettext(
            "%(num)s line of order %(number)s added to your cart.",
            "%(num)s lines of order %(number)s added to your cart.",
            added,
            number=order.number,
        ),
        "success",
    )
    for change in changes:
        flash(change, "warning")
    return redirect(url_for("shop.cart"))


@bp.route("/invoices")
@customer_required
@replica_reads()
def invoices():
    """The company's invoices and its open balance."""
    page, notice = _page()
    company = current_user.company
    return render_page(
        gettext("Invoices"),
        "shop/invoices.html",
        invoices=orders.invoices_page(company.id, page),
        credit=orders.account_position(company),
        today=utcnow().date(),
        notice=notice,
    )


@bp.route("/invoices/<number>")
@customer_required
@replica_reads()
def invoice_detail(number):
    """One invoice of the company as a page that prints cleanly, with its PDF."""
    try:
        document = documents.invoice_document(number, current_user.company_id)
    except NotFound:
        abort(404)
    return render_template("shop/invoice.html", doc=document, today=utcnow().date())


@bp.route("/invoices/<number>.<any(pdf, xml):extension>")
@customer_required
def invoice_file(number, extension):
    """One invoice of the company as a PDF file with the e-invoice inside (Factur-X), or as XRechnung XML."""
    return _document_file("invoice", extension, number)


@bp.route("/credit-notes/<number>.<any(pdf, xml):extension>")
@customer_required
def credit_note_file(number, extension):
    """One credit note of the company as a PDF file with the e-invoice inside (Factur-X), or as XRechnung XML."""
    return _document_file("credit_note", extension, number)


def _document_file(kind, extension, number):
    try:
        return file_download(*documents.document_file(kind, extension, number, current_user.company_id))
    except NotFound:
        abort(404)


def file_download(data, filename, mimetype):
    """Bytes as a file download."""
    response = make_response(data)
    response.mimetype = mimetype
    response.headers["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


def csv_download(text, filename):
    """A CSV file as a download."""
    response = make_response(text)
    response.mimetype = "text/csv"
    response.headers["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


@bp.route("/orders.csv")
@customer_required
def orders_export():
    """Every order of the company as CSV for its bookkeeping."""
    return csv_download(csv_export.orders_csv(current_user.company_id), "orders.csv")


@bp.route("/invoices.csv")
@customer_required
def invoices_export():
    """Every invoice of the company as CSV for its bookkeeping."""
    return csv_download(csv_export.invoices_csv(current_user.company_id), "invoices.csv")


@bp.route("/favicon.ico")
def favicon():
    """The site's icon where browsers look for it without a link."""
    return send_file(
        os.path.join(current_app.static_folder, "favicon.ico"), mimetype="image/vnd.microsoft.icon", max_age=86_400
    )


@bp.route("/images/<digest>-<size>.webp")
def product_image(digest, size):
    """A product picture's rendition; its address changes with its content, so browsers keep it a year and a
    browser asking whether its copy is still good is answered 304 without reading the storage."""
    try:
        images.rendition_key(digest, size)
    except NotFound:
        abort(404)
    etag = f"{digest}-{size}"  # the content's own hash: the same address never has other bytes
    if request.if_none_match.contains(etag):
        response = Response(status=304)
    else:
        try:
            response = Response(images.rendition(digest, size), mimetype="image/webp")
        except NotFound:
            abort(404)
    response.set_etag(etag)
    response.cache_control.max_age = 31_536_000
    response.cache_control.public, response.cache_control.immutable = True, True
    return response
