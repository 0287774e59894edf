"""The back office for staff: order processing, products and stock, companies, price lists."""

import io
import os

from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, send_file, url_for
from flask_login import current_user
from sqlalchemy import select

from sipup import tasks
from sipup.jobs import enqueue
from sipup.storage import StorageUnavailable

from ...exceptions import DomainError, FieldErrors, InvalidInput, NotFound
from ...extensions import db
from ...models import Category, Company, OrderStatus, PriceList, Product, Role, utcnow
from ...replicas import replica_reads
from ...security import admin_required, staff_required
from ...services import (
    audit,
    backoffice,
    bulk_import,
    companies,
    credit_notes,
    documents,
    images,
    orders,
    payments,
    reports,
    stock_import,
    users,
    vat,
)
from ...services.parsing import page_number, whole_number
from ..account import flash_user_action
from ..shop import file_download

bp = Blueprint("admin", __name__, url_prefix="/admin")


@bp.before_request
@staff_required
def _guard():
    """Every back-office page is for staff and admins only."""


def _page():
    """The ?page= argument; a bad value shows page 1 with a notice naming it."""
    page, notice = page_number(request.args.get("page"))
    if notice:
        flash(notice, "warning")
    return page


@bp.route("/")
@replica_reads()
def index():
    """What needs doing: orders waiting by status, credit holds, low stock, requests for an account."""
    return render_template("admin/index.html", requests=companies.pending_requests(), **backoffice.dashboard())


@bp.route("/orders")
@replica_reads()
def order_list():
    """Orders filtered by status and company, found by number, PO reference, company name or buyer e-mail."""
    status = request.args.get("status", "")
    notice = None
    if status and status not in {s.value for s in OrderStatus}:
        notice, status = f"Unknown status “{status[:20]}”; showing all.", ""
    company = request.args.get("company", "")
    results = backoffice.find_orders(status or None, whole_number(company), request.args.get("q", "")[:100], _page())
    companies = db.session.execute(select(Company.id, Company.name).order_by(Company.name)).all()
    return render_template(
        "admin/orders.html",
        results=results,
        status=status,
        company=company,
        q=request.args.get("q", ""),
        companies=companies,
        statuses=list(OrderStatus),
        notice=notice,
    )


@bp.route("/orders/<number>")
@replica_reads()
def order_detail(number):
    """One order with its lines, timeline, invoice, payments and credit notes, and the steps staff can take now."""
    try:
        order = orders.get_order(number)
    except NotFound:
        abort(404)
    return _order_page(order)


def _order_page(order, form=None, errors=None, which=None):
    """The order page; which names the invoice form (payment, credit) whose errors and input are shown."""
    invoice = credit_notes.invoice_of_order(order.id)
    return render_template(
        "admin/order.html",
        order=order,
        actions=orders.available_transitions(order),
        credit=orders.credit_position(order.company),
        invoice=invoice,
        creditable=credit_notes.creditable(invoice) if invoice else [],
        form=form or {},
        errors=errors or {},
        which=which,
        today=utcnow().date(),
    ), 422 if errors else 200


@bp.route("/invoices/<number>/payments", methods=["POST"])
def invoice_payment(number):
    """Book a payment received for an invoice, in part or in full, with the date it came in."""
    return _invoice_step(number, "payment", credit_notes.record_payment, "Payment of {0.amount} booked.")


@bp.route("/invoices/<number>/credit-notes", methods=["POST"])
def invoice_credit_note(number):
    """Issue a credit note for lines and quantities of an invoice, or all that is left, with its reason."""
    return _invoice_step(number, "credit", credit_notes.issue, "Credit note {0.number} of {0.amount} issued.")


def _invoice_step(number, which, step, done):
    """Run a payment or credit note step; its errors are shown on the order page beside the form kept filled."""
    try:
        result = step(number, request.form, current_user.id)
    except NotFound:
        abort(404)
    except DomainError as exc:
        errors = exc.errors if isinstance(exc, FieldErrors) else {"form": str(exc)}
        order = credit_notes.get_invoice(number).order
        if order is None:  # its order was archived: no page to show the form on
            flash(" ".join(errors.values()), "error")
            return redirect(url_for("admin.order_list"))
        return _order_page(orders.get_order(order.number), request.form, errors, which)
    flash(done.format(result), "success")
    order = credit_notes.get_invoice(number).order
    return redirect(url_for("admin.order_detail", number=order.number) if order else url_for("admin.order_list"))


@bp.route("/invoices/<number>.<any(pdf, xml):extension>")
def invoice_file(number, extension):
    """Any customer's invoice as PDF (Factur-X: the e-invoice inside) or as XRechnung XML."""
    return _document_file("invoice", extension, number)


@bp.route("/credit-notes/<number>.<any(pdf, xml):extension>")
def credit_note_file(number, extension):
    """Any customer's credit note as PDF (Factur-X: the e-invoice inside) or as XRechnung XML."""
    return _document_file("credit_note", extension, number)


def _document_file(kind, extension, number):
    try:
        return file_download(*documents.document_file(kind, extension, number))
    except NotFound:
        abort(404)


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
@replica_reads()
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
        "admin/product.html",
        product=product,
        form=form,
        errors=errors,
        categories=categories,
        vat_classes=vat.CLASS_LABELS,
    ), 422 if errors else 200


@bp.route("/products/<sku>/images", methods=["POST"])
def product_image_add(sku):
    """Upload a picture of a product; a file that is no picture, or too large, is refused with the reason."""
    product = db.session.scalar(select(Product).where(Product.sku == sku)) or abort(404)
    upload = request.files.get("image")
    limit = current_app.config["IMAGE_MAX_MB"] * 1_048_576
    try:
        images.add_image(product, upload.stream.read(limit + 1) if upload else b"")
    except (DomainError, StorageUnavailable) as exc:
        db.session.rollback()
        message, status = str(exc), 422
        if isinstance(exc, StorageUnavailable):  # the picture is fine; the storage is not: upload it again later
            message, status = f"{exc} The picture was not added: choose it and upload it again.", 503
        categories = db.session.scalars(select(Category).order_by(Category.position)).all()
        return render_template(
            "admin/product.html",
            product=product,
            form={},
            errors={},
            categories=categories,
            vat_classes=vat.CLASS_LABELS,
            image_error=message,
        ), status
    flash("Picture added; buyers see it now.", "success")
    return redirect(url_for("admin.product_edit", sku=product.sku, _anchor="pictures"))


@bp.route("/products/<sku>/images/<id:image_id>/remove", methods=["POST"])
def product_image_remove(sku, image_id):
    """Take a picture off a product."""
    product = db.session.scalar(select(Product).where(Product.sku == sku)) or abort(404)
    try:
        images.remove_image(product, image_id)
    except NotFound as exc:
        flash(str(exc), "error")
    else:
        flash("Picture removed.", "success")
    return redirect(url_for("admin.product_edit", sku=product.sku, _anchor="pictures"))


@bp.route("/companies")
@replica_reads()
def company_list():
    """Customer companies with their terms, a page at a time, found by name or VAT id."""
    query = request.args.get("q", "")[:100]
    return render_template("admin/companies.html", results=backoffice.find_companies(query, _page()), q=query)


@bp.route("/companies/new", methods=["GET", "POST"])
def company_new():
    """A new customer company with its terms and first delivery address; from an account request, approve it."""
    request_id = whole_number(request.values.get("request"))
    try:
        account_request = companies.get_request(request_id, pending=True) if request_id else None
    except DomainError as exc:
        flash(str(exc), "error")
        return redirect(url_for("admin.index"))
    errors, form = {}, request.form if request.method == "POST" else companies.new_company_defaults(account_request)
    if request.method == "POST":
        try:
            if account_request is not None:
                company, owner = companies.approve_request(account_request.id, request.form, actor=current_user)
                flash(f"{company.name} is created; the invitation to {owner.email} is on its way.", "success")
            else:
                company = companies.create_company(request.form, actor=current_user)
                flash(f"{company.name} is created.", "success")
        except FieldErrors as exc:
            db.session.rollback()
            errors = exc.errors
        else:
            return redirect(url_for("admin.company_edit", company_id=company.id))
    price_lists = db.session.scalars(select(PriceList).order_by(PriceList.name)).all()
    return render_template(
        "admin/company_new.html", form=form, errors=errors, price_lists=price_lists, account_request=account_request
    ), 422 if errors else 200


@bp.route("/companies/<id:company_id>", methods=["GET", "POST"])
def company_edit(company_id):
    """A company's terms, credit position, price list, addresses and users."""
    company = db.session.get(Company, company_id) or abort(404)
    errors = {}
    if request.method == "POST":
        try:
            companies.save_company(company, request.form, actor=current_user)
        except FieldErrors as exc:
            db.session.rollback()
            errors = exc.errors
        else:
            flash(f"{company.name} saved.", "success")
            return redirect(url_for("admin.company_edit", company_id=company.id))
    return _company_page(company, errors=errors)


@bp.route("/companies/<id:company_id>/addresses", methods=["POST"])
@bp.route("/companies/<id:company_id>/addresses/<id:address_id>", methods=["POST"])
def company_address(company_id, address_id=None):
    """Add a delivery address, change one, or remove one (orders keep the address they were placed with)."""
    company = db.session.get(Company, company_id) or abort(404)
    try:
        if address_id and "remove" in request.form:
            companies.remove_address(company, address_id, actor=current_user)
            flash("Address removed.", "success")
        else:
            companies.save_address(company, address_id, request.form, actor=current_user)
            flash("Address saved.", "success")
    except FieldErrors as exc:
        db.session.rollback()
        return _company_page(company, address_errors=exc.errors, address_id=address_id or "new")
    except NotFound:
        abort(404)
    except InvalidInput as exc:
        db.session.rollback()
        flash(str(exc), "error")
    return redirect(url_for("admin.company_edit", company_id=company_id))


def _company_page(company, errors=None, invite_errors=None, address_errors=None, address_id=None):
    price_lists = db.session.scalars(select(PriceList).order_by(PriceList.name)).all()
    invite_errors = invite_errors or {}
    return render_template(
        "admin/company.html",
        company=company,
        form=request.form if errors else {},
        errors=errors or {},
        price_lists=price_lists,
        credit=orders.credit_position(company),
        people=users.company_users(company.id),
        invite_errors=invite_errors,
        invite_values=request.form if invite_errors else {},
        history=audit.history("company", company.id),
        url_builder=lambda user, action: url_for(
            "admin.company_user", company_id=company.id, user_id=user.id, action=action
        ),
        can_manage=lambda user: True,
        customer_roles=[Role.OWNER, Role.BUYER],
        address_errors=address_errors or {},
        address_id=address_id,
    ), 422 if errors or invite_errors or address_errors else 200


@bp.route("/companies/<id:company_id>/users", methods=["POST"])
def company_invite(company_id):
    """Invite a user (owner or buyer) to a company."""
    company = db.session.get(Company, company_id) or abort(404)
    try:
        invited = users.invite(
            request.form.get("email", ""),
            request.form.get("name", ""),
            request.form.get("role", ""),
            company,
            actor=current_user,
        )
    except FieldErrors as exc:
        db.session.rollback()
        return _company_page(company, invite_errors=exc.errors)
    flash(f"Invitation to {invited.email} is on its way.", "success")
    return redirect(url_for("admin.company_edit", company_id=company_id))


@bp.route("/companies/<id:company_id>/users/<id:user_id>/<action>", methods=["POST"])
def company_user(company_id, user_id, action):
    """Resend an invitation, change the role, or deactivate or reactivate a company's user."""
    try:
        user = users.company_user(company_id, user_id)
    except NotFound:
        abort(404)
    _user_action(user, action)
    return redirect(url_for("admin.company_edit", company_id=company_id))


def _user_action(user, action):
    if action != "role":
        return flash_user_action(user, action)
    try:
        users.change_role(user, request.form.get("role", ""), actor=current_user)
    except DomainError as exc:
        db.session.rollback()
        flash(str(exc), "error")
    else:
        flash(f"{user.email} is now {user.role}.", "success")


@bp.route("/users", methods=["GET", "POST"])
@admin_required
def staff_users():
    """The wholesaler's own people (admins only): invite staff or admins."""
    errors = {}
    if request.method == "POST":
        try:
            invited = users.invite(
                request.form.get("email", ""),
                request.form.get("name", ""),
                request.form.get("role", ""),
                actor=current_user,
            )
        except FieldErrors as exc:
            db.session.rollback()
            errors = exc.errors
        else:
            flash(f"Invitation to {invited.email} is on its way.", "success")
            return redirect(url_for("admin.staff_users"))
    return render_template(
        "admin/users.html",
        people=users.staff_members(),
        errors=errors,
        form=request.form,
        roles=[Role.STAFF, Role.ADMIN],
        can_manage=lambda user: True,
        url_builder=lambda user, action: url_for("admin.staff_user", user_id=user.id, action=action),
    ), 422 if errors else 200


@bp.route("/users/<id:user_id>/<action>", methods=["POST"])
@admin_required
def staff_user(user_id, action):
    """Resend an invitation, change the role, or deactivate or reactivate a staff member or admin."""
    try:
        user = users.staff_user(user_id)
    except NotFound:
        abort(404)
    _user_action(user, action)
    return redirect(url_for("admin.staff_users"))


@bp.route("/price-lists")
@replica_reads()
def price_lists():
    """All price lists."""
    lists = db.session.scalars(select(PriceList).order_by(PriceList.name)).all()
    return render_template("admin/price_lists.html", lists=lists)


@bp.route("/price-lists/new", methods=["GET", "POST"])
def price_list_new():
    """A new price list, empty or copied with all its tiers from an existing one."""
    errors, form = {}, request.values
    if request.method == "POST":
        try:
            created = companies.create_price_list(
                form.get("name", ""), whole_number(form.get("copy_from")), actor=current_user
            )
        except FieldErrors as exc:
            db.session.rollback()
            errors = exc.errors
        else:
            flash(f"{created.name} is created.", "success")
            return redirect(url_for("admin.price_list", list_id=created.id))
    lists = db.session.scalars(select(PriceList).order_by(PriceList.name)).all()
    return render_template("admin/price_list_new.html", lists=lists, form=form, errors=errors), 422 if errors else 200


@bp.route("/price-lists/<id:list_id>", methods=["GET", "POST"])
def price_list(list_id):
    """A price list's tiers; add, change or remove one; rename or delete the list."""
    errors, rename_errors = {}, {}
    if request.method == "POST":
        try:
            price_list_ = companies.get_price_list(list_id)
            if "delete_list" in request.form:
                flash(f"{companies.delete_price_list(price_list_)} is deleted.", "success")
                return redirect(url_for("admin.price_lists"))
            if "rename" in request.form:
                companies.rename_price_list(price_list_, request.form.get("name", ""), actor=current_user)
                flash("Price list renamed.", "success")
            elif "delete" in request.form:
                # 0 is no tier, so a mangled id gets the service's "no longer exists".
                companies.delete_tier(list_id, whole_number(request.form["delete"]) or 0, actor=current_user)
                flash("Tier removed.", "success")
            else:
                companies.save_tier(list_id, request.form, actor=current_user)
                flash("Tier saved.", "success")
            return redirect(url_for("admin.price_list", list_id=list_id))
        except NotFound:
            abort(404)
        except FieldErrors as exc:
            db.session.rollback()
            if "rename" in request.form:
                rename_errors = exc.errors
            else:
                errors = exc.errors
        except DomainError as exc:
            db.session.rollback()
            flash(str(exc), "error")
    try:
        price_list_, tiers = companies.price_list_tiers(list_id, request.args.get("q", "")[:100], _page())
    except NotFound:
        abort(404)
    return render_template(
        "admin/price_list.html",
        price_list=price_list_,
        tiers=tiers,
        form=request.form,
        errors=errors,
        rename_errors=rename_errors,
        history=audit.history("price_list", list_id),
        q=request.args.get("q", "")[:100],
    ), 422 if errors or rename_errors else 200


@bp.route("/account-requests/<id:request_id>")
def account_request(request_id):
    """One request for a business account, with the buttons to approve or reject it."""
    try:
        found = companies.get_request(request_id)
    except NotFound:
        abort(404)
    return render_template("admin/account_request.html", account_request=found)


@bp.route("/account-requests/<id:request_id>/reject", methods=["POST"])
def account_request_reject(request_id):
    """Turn a request down; the contact gets a polite mail."""
    try:
        found = companies.reject_request(request_id, actor=current_user)
    except NotFound:
        abort(404)
    except DomainError as exc:
        flash(str(exc), "error")
    else:
        flash(f"The request from {found.company_name} is rejected; {found.email} gets a polite mail.", "success")
    return redirect(url_for("admin.index"))


@bp.route("/reports", methods=["GET", "POST"])
def report_list():
    """Report files to download, and a form that queues a new one."""

    if request.method == "POST":
        kind = request.form.get("kind", "")
        try:
            if kind not in reports.KINDS:
                raise DomainError("Choose a report.")
            args = (kind,)
            if kind != "receivables_ageing":
                first, last = reports.parse_range(request.form.get("start", ""), request.form.get("end", ""))
                args = (kind, first.isoformat(), last.isoformat())
            enqueue(tasks.build_report, *args, priority="normal")
            db.session.commit()
        except DomainError as exc:
            flash(str(exc), "error")
        else:
            flash(f"{reports.KINDS[kind]} is being prepared; it appears below within a few minutes.", "success")
        return redirect(url_for("admin.report_list"))
    start, end = reports.previous_month()
    try:
        files, status = reports.available(), 200
    except StorageUnavailable as exc:  # the form to queue a report still works
        flash(str(exc), "error")
        files, status = [], 503
    return render_template("admin/reports.html", files=files, kinds=reports.KINDS, start=start, end=end), status


@bp.route("/reports/<name>")
def report_download(name):
    """One report file as a download (CSV, UTF-8 with BOM for Excel)."""

    try:
        data = reports.read(name)
    except NotFound:
        abort(404)
    return send_file(io.BytesIO(data), mimetype="text/csv", as_attachment=True, download_name=name, max_age=0)


@bp.route("/imports", methods=["GET", "POST"])
def imports():
    """Upload a bank CSV (one payment job per line) or a warehouse stock CSV (one job for the file)."""
    problems, status = [], 200
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
        except StorageUnavailable as exc:  # nothing was queued: the file must be uploaded again
            db.session.rollback()
            flash(f"{exc} The stock file was not queued: upload it again.", "error")
            status = 503
    return _imports_page(problems=problems), status


def _imports_page(**extra):
    return render_template(
        "admin/imports.html",
        stock_runs=stock_import.recent_runs(),
        bulk_runs=bulk_import.recent(),
        kinds=bulk_import.LABELS,
        columns={kind: module.COLUMNS for kind, module in bulk_import.KINDS.items()},
        **extra,
    )


@bp.route("/imports/preview", methods=["POST"])
def import_preview():
    """Check a products, prices or companies file (CSV or XLSX) and show what it would do; nothing is written."""
    upload = request.files.get("file")
    kind = request.form.get("kind", "")
    try:
        if not (upload and upload.filename):
            raise DomainError("Choose a CSV or XLSX file to upload.")
        size = upload.stream.seek(0, os.SEEK_END)
        upload.stream.seek(0)
        data = upload.stream.read(current_app.config["IMPORT_MAX_MB"] * 1_048_576 + 1)
        preview = bulk_import.start_upload(kind, data, upload.filename, size)
    except DomainError as exc:
        return _imports_page(problems=[], bulk_error=str(exc), chosen=kind), 422
    except StorageUnavailable as exc:
        return _imports_page(problems=[], bulk_error=f"{exc} The file was not kept: upload it again.", chosen=kind), 503
    return redirect(url_for("admin.import_detail", name=preview["name"]))


@bp.route("/imports/<name>")
def import_detail(name):
    """An upload's preview, line by line: what it creates, changes and refuses; then its progress once confirmed."""
    return _import_state("admin/import_preview.html", name)


@bp.route("/imports/<name>/apply", methods=["POST"])
def import_apply(name):
    """Confirm a preview: the job applies the file in batches, its progress shown on the preview page."""
    try:
        bulk_import.confirm(name, actor=current_user)
    except NotFound:
        abort(404)
    except DomainError as exc:
        flash(str(exc), "error")
    else:
        flash("The file is being applied; this page shows how far it has got.", "success")
    return redirect(url_for("admin.import_detail", name=name))


@bp.route("/imports/<name>/progress")
def import_progress(name):
    """The progress of an import being applied (the preview page asks for it every 2 seconds while it runs)."""
    return _import_state("admin/_import_progress.html", name)


def _import_state(template, name):
    """The page or fragment of an upload: its preview, its job and the job's progress."""
    try:
        preview = bulk_import.load_preview(name)
    except NotFound:
        abort(404)
    job = bulk_import.job_of(name)
    return render_template(template, preview=preview, job=job, progress=bulk_import.progress(name) if job else None)


@bp.route("/exports/<kind>.<fmt>")
def export_download(kind, fmt):
    """Every product, price tier or company as CSV (either Excel dialect) or XLSX, in the import's format."""
    if kind not in bulk_import.KINDS or fmt not in bulk_import.FORMATS:
        abort(404)
    data, mimetype, filename = bulk_import.export(kind, fmt, request.args.get("dialect"))
    return send_file(io.BytesIO(data), mimetype=mimetype, as_attachment=True, download_name=filename, max_age=0)
