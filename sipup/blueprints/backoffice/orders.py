"""Orders, their steps, and the invoices and credit notes of an order: payments, credit notes, PDF and XML."""

from flask import abort, flash, redirect, render_template, request, url_for
from flask_babel import gettext
from flask_login import current_user

from ...exceptions import DomainError, FieldErrors, NotFound
from ...i18n import money, status_in_sentence
from ...models import OrderStatus, utcnow
from ...replicas import replica_reads
from ...services import backoffice, credit_notes, documents, orders
from ...services.parsing import whole_number
from ..shop import file_download
from .blueprint import bp, requested_page


@bp.route("/orders")
@replica_reads()
def order_list():
    """Orders filtered by status and company, found by number, PO reference, company name or buyer e-mail."""
    status = request.args.get("status", "")
    notice = None
    if status and status not in {s.value for s in OrderStatus}:
        notice, status = gettext("Unknown status “%(status)s”; showing all.", status=status[:20]), ""
    company = request.args.get("company", "")
    results = backoffice.find_orders(
        status or None, whole_number(company), request.args.get("q", "")[:100], requested_page()
    )
    companies = backoffice.company_names()
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
    return _invoice_step(number, "payment", credit_notes.record_payment, _payment_booked)


@bp.route("/invoices/<number>/credit-notes", methods=["POST"])
def invoice_credit_note(number):
    """Issue a credit note for lines and quantities of an invoice, or all that is left, with its reason."""
    return _invoice_step(number, "credit", credit_notes.issue, _credit_note_issued)


def _payment_booked(payment):
    return gettext("Payment of %(amount)s booked.", amount=money(payment.amount))


def _credit_note_issued(note):
    return gettext("Credit note %(number)s of %(amount)s issued.", number=note.number, amount=money(note.amount))


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
    flash(done(result), "success")
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
        flash(
            gettext(
                "Order %(number)s is now %(status)s.", number=order.number, status=status_in_sentence(order.status)
            ),
            "success",
        )
    return redirect(url_for("admin.order_detail", number=number))
