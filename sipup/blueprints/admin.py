"""The back office for staff: order processing, products and stock, companies, price lists."""
from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_login import current_user
from sqlalchemy import select

from ..extensions import db
from ..models import Category, Company, OrderStatus, PriceList, Product
from ..security import staff_required
from ..services import backoffice, orders
from ..services.errors import DomainError, FieldErrors, NotFound
from ..services.parsing import whole_number

bp = Blueprint("admin", __name__, url_prefix="/admin")


@bp.before_request
@staff_required
def _guard():
    """Every back-office page is for staff and admins only."""


def _page():
    return whole_number(request.args.get("page")) or 1


@bp.route("/")
def index():
    """What needs doing: orders waiting by status, credit holds, low stock."""
    return render_template("admin/index.html", **backoffice.dashboard())


@bp.route("/orders")
def order_list():
    """Orders filtered by status, company, or number/PO reference."""
    status = request.args.get("status", "")
    notice = None
    if status and status not in {s.value for s in OrderStatus}:
        notice, status = f"Unknown status “{status[:20]}”; showing all.", ""
    company = request.args.get("company", "")
    results = backoffice.find_orders(
        status or None, whole_number(company), request.args.get("q", "")[:40], _page()
    )
    companies = db.session.execute(select(Company.id, Company.name).order_by(Company.name)).all()
    return render_template(
        "admin/orders.html", results=results, status=status, company=company, q=request.args.get("q", ""),
        companies=companies, statuses=list(OrderStatus), notice=notice,
    )


@bp.route("/orders/<number>")
def order_detail(number):
    """One order with its lines, timeline and the steps staff can take now."""
    try:
        order = orders.get_order(number)
    except NotFound:
        abort(404)
    return render_template(
        "admin/order.html", order=order, actions=orders.available_transitions(order),
        credit=orders.credit_position(order.company),
    )


@bp.route("/orders/<number>/<action>", methods=["POST"])
def order_action(number, action):
    """Confirm, release, ship, invoice, mark paid or cancel an order."""
    try:
        order = orders.transition(number, action, current_user.id, request.form.get("payment_reference", "")[:80])
    except NotFound:
        abort(404)
    except DomainError as exc:
        flash(str(exc), "error")
    else:
        flash(f"Order {order.number} is now {order.status_label.lower()}.", "success")
    return redirect(url_for("admin.order_detail", number=number))


@bp.route("/products")
def product_list():
    """All products with stock figures."""
    query = request.args.get("q", "")[:100]
    return render_template("admin/products.html", results=backoffice.find_products(query, _page()), q=query)


@bp.route("/products/new", methods=["GET", "POST"])
@bp.route("/products/<sku>", methods=["GET", "POST"])
def product_edit(sku=None):
    """Create or edit a product, its prices and its stock."""
    product = None
    if sku is not None:
        product = db.session.scalar(select(Product).where(Product.sku == sku))
        if product is None:
            abort(404)
    errors, form = {}, request.form
    if request.method == "POST":
        try:
            product = backoffice.save_product(product, request.form)
        except FieldErrors as exc:
            db.session.rollback()
            errors = exc.errors
        else:
            flash(f"{product.sku} saved.", "success")
            return redirect(url_for("admin.product_edit", sku=product.sku))
    categories = db.session.scalars(select(Category).order_by(Category.position)).all()
    return render_template(
        "admin/product.html", product=product, form=form, errors=errors, categories=categories
    ), 422 if errors else 200


@bp.route("/companies")
def company_list():
    """All customer companies with their terms."""
    companies = db.session.scalars(select(Company).order_by(Company.name)).all()
    return render_template("admin/companies.html", companies=companies)


@bp.route("/companies/<id:company_id>", methods=["GET", "POST"])
def company_edit(company_id):
    """A company's terms, credit position, price list and users."""
    company = db.session.get(Company, company_id) or abort(404)
    errors = {}
    if request.method == "POST":
        try:
            backoffice.save_company(company, request.form)
        except FieldErrors as exc:
            db.session.rollback()
            errors = exc.errors
        else:
            flash(f"{company.name} saved.", "success")
            return redirect(url_for("admin.company_edit", company_id=company.id))
    price_lists = db.session.scalars(select(PriceList).order_by(PriceList.name)).all()
    return render_template(
        "admin/company.html", company=company, form=request.form, errors=errors, price_lists=price_lists,
        credit=orders.credit_position(company),
    ), 422 if errors else 200


@bp.route("/companies/<id:company_id>/users/<id:user_id>", methods=["POST"])
def company_user(company_id, user_id):
    """Allow or stop a company user's sign-in."""
    try:
        user = backoffice.set_user_active(user_id, company_id, request.form.get("active") == "1")
    except NotFound:
        abort(404)
    flash(f"{user.email} can {'now' if user.active else 'no longer'} sign in.", "success")
    return redirect(url_for("admin.company_edit", company_id=company_id))


@bp.route("/price-lists")
def price_lists():
    """All price lists."""
    lists = db.session.scalars(select(PriceList).order_by(PriceList.name)).all()
    return render_template("admin/price_lists.html", lists=lists)


@bp.route("/price-lists/<id:list_id>", methods=["GET", "POST"])
def price_list(list_id):
    """A price list's tiers; add, change or remove one."""
    errors = {}
    if request.method == "POST":
        try:
            if "delete" in request.form:
                # 0 is no tier, so a mangled id gets the service's "no longer exists".
                backoffice.delete_tier(list_id, whole_number(request.form["delete"]) or 0)
                flash("Tier removed.", "success")
            else:
                backoffice.save_tier(list_id, request.form)
                flash("Tier saved.", "success")
            return redirect(url_for("admin.price_list", list_id=list_id))
        except FieldErrors as exc:
            db.session.rollback()
            errors = exc.errors
        except DomainError as exc:
            flash(str(exc), "error")
    try:
        price_list_, tiers = backoffice.price_list_tiers(list_id)
    except NotFound:
        abort(404)
    return render_template(
        "admin/price_list.html", price_list=price_list_, tiers=tiers, form=request.form, errors=errors
    ), 422 if errors else 200


@bp.route("/reports", methods=["GET", "POST"])
def report_list():
    """Report files to download, and a form that queues a new one."""
    from ..queue import enqueue
    from ..services import reports

    if request.method == "POST":
        kind = request.form.get("kind", "")
        try:
            if kind not in reports.KINDS:
                raise DomainError("Choose a report.")
            args = (kind,)
            if kind != "receivables_ageing":
                first, last = reports.parse_range(request.form.get("start", ""), request.form.get("end", ""))
                args = (kind, first.isoformat(), last.isoformat())
            enqueue("build_report", *args, priority="normal")
            db.session.commit()
        except DomainError as exc:
            flash(str(exc), "error")
        else:
            flash(f"{reports.KINDS[kind]} is being prepared; it appears below within a few minutes.", "success")
        return redirect(url_for("admin.report_list"))
    start, end = reports.previous_month()
    return render_template("admin/reports.html", files=reports.available(), kinds=reports.KINDS, start=start, end=end)


@bp.route("/reports/<name>")
def report_download(name):
    """One report file as a download (CSV, UTF-8 with BOM for Excel)."""
    from flask import send_file

    from ..services import reports

    try:
        path = reports.path_of(name)
    except NotFound:
        abort(404)
    return send_file(path, mimetype="text/csv", as_attachment=True, download_name=name, max_age=0)


@bp.route("/imports", methods=["GET", "POST"])
def imports():
    """Upload a bank CSV (one payment job per line) or a warehouse stock CSV (one job for the file)."""
    from ..services import payments, stock_import

    problems = []
    if request.method == "POST":
        upload = request.files.get("file")
        data = upload.read() if upload else b""
        kind = request.form.get("kind")
        try:
            if not data:
                raise DomainError("Choose a CSV file to upload.")
            if kind == "payments":
                queued, known, problems = payments.import_bank_csv(data)
                flash(f"{queued} payment(s) queued; {known} already imported before.", "success")
            elif kind == "stock":
                _record, good, problems = stock_import.import_stock_file(data)
                flash(f"{good} stock line(s) queued to be applied.", "success")
            else:
                raise DomainError("Choose what the file contains.")
        except DomainError as exc:
            flash(str(exc), "error")
    return render_template("admin/imports.html", problems=problems)
