"""Customer companies: terms, addresses and their users."""

from flask import abort, flash, redirect, render_template, request, url_for
from flask_babel import gettext
from flask_login import current_user

from ...exceptions import DomainError, FieldErrors, InvalidInput, NotFound
from ...extensions import db
from ...models import Company, Role
from ...replicas import replica_reads
from ...services import audit, backoffice, companies, orders, users
from ...services.parsing import whole_number
from .blueprint import bp, requested_page, user_action


@bp.route("/companies")
@replica_reads()
def company_list():
    """Customer companies with their terms, a page at a time, found by name or VAT id."""
    query = request.args.get("q", "")[:100]
    return render_template("admin/companies.html", results=backoffice.find_companies(query, requested_page()), q=query)


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
                flash(
                    gettext(
                        "%(company)s is created; the invitation to %(email)s is on its way.",
                        company=company.name,
                        email=owner.email,
                    ),
                    "success",
                )
            else:
                company = companies.create_company(request.form, actor=current_user)
                flash(gettext("%(company)s is created.", company=company.name), "success")
        except FieldErrors as exc:
            db.session.rollback()
            errors = exc.errors
        else:
            return redirect(url_for("admin.company_edit", company_id=company.id))
    price_lists = companies.price_lists()
    return render_template(
        "admin/company_new.html", form=form, errors=errors, price_lists=price_lists, account_request=account_request
    ), 422 if errors else 200


@bp.route("/companies/<id:company_id>", methods=["GET", "POST"])
def company_edit(company_id):
    """A company's terms, credit position, price list, addresses and users."""
    company = db.get_or_404(Company, company_id)
    errors = {}
    if request.method == "POST":
        try:
            companies.save_company(company, request.form, actor=current_user)
        except FieldErrors as exc:
            db.session.rollback()
            errors = exc.errors
        else:
            flash(gettext("%(company)s saved.", company=company.name), "success")
            return redirect(url_for("admin.company_edit", company_id=company.id))
    return _company_page(company, errors=errors)


@bp.route("/companies/<id:company_id>/addresses", methods=["POST"])
@bp.route("/companies/<id:company_id>/addresses/<id:address_id>", methods=["POST"])
def company_address(company_id, address_id=None):
    """Add a delivery address, change one, or remove one (orders keep the address they were placed with)."""
    company = db.get_or_404(Company, company_id)
    try:
        if address_id and "remove" in request.form:
            companies.remove_address(company, address_id, actor=current_user)
            flash(gettext("Address removed."), "success")
        else:
            companies.save_address(company, address_id, request.form, actor=current_user)
            flash(gettext("Address saved."), "success")
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
    price_lists = companies.price_lists()
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
    company = db.get_or_404(Company, company_id)
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
    flash(gettext("Invitation to %(email)s is on its way.", email=invited.email), "success")
    return redirect(url_for("admin.company_edit", company_id=company_id))


@bp.route("/companies/<id:company_id>/users/<id:user_id>/<action>", methods=["POST"])
def company_user(company_id, user_id, action):
    """Resend an invitation, change the role, or deactivate or reactivate a company's user."""
    try:
        user = users.company_user(company_id, user_id)
    except NotFound:
        abort(404)
    user_action(user, action)
    return redirect(url_for("admin.company_edit", company_id=company_id))
