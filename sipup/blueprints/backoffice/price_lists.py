"""Price lists and their tiers."""

from flask import abort, flash, redirect, render_template, request, url_for
from flask_babel import gettext
from flask_login import current_user

from ...exceptions import DomainError, FieldErrors, NotFound
from ...extensions import db
from ...replicas import replica_reads
from ...services import audit, companies
from ...services.parsing import whole_number
from .blueprint import bp, requested_page


@bp.route("/price-lists")
@replica_reads()
def price_lists():
    """All price lists."""
    lists = companies.price_lists()
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
            flash(gettext("%(name)s is created.", name=created.name), "success")
            return redirect(url_for("admin.price_list", list_id=created.id))
    lists = companies.price_lists()
    return render_template("admin/price_list_new.html", lists=lists, form=form, errors=errors), 422 if errors else 200


@bp.route("/price-lists/<id:list_id>", methods=["GET", "POST"])
def price_list(list_id):
    """A price list's tiers; add, change or remove one; rename or delete the list."""
    errors, rename_errors = {}, {}
    if request.method == "POST":
        try:
            price_list_ = companies.get_price_list(list_id)
            if "delete_list" in request.form:
                flash(gettext("%(name)s is deleted.", name=companies.delete_price_list(price_list_)), "success")
                return redirect(url_for("admin.price_lists"))
            if "rename" in request.form:
                companies.rename_price_list(price_list_, request.form.get("name", ""), actor=current_user)
                flash(gettext("Price list renamed."), "success")
            elif "delete" in request.form:
                # 0 is no tier, so a mangled id gets the service's "no longer exists".
                companies.delete_tier(list_id, whole_number(request.form["delete"]) or 0, actor=current_user)
                flash(gettext("Tier removed."), "success")
            else:
                companies.save_tier(list_id, request.form, actor=current_user)
                flash(gettext("Tier saved."), "success")
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
        price_list_, tiers = companies.price_list_tiers(list_id, request.args.get("q", "")[:100], requested_page())
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
