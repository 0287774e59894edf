"""Shopping lists for buyers at /lists: keep, share, import, export and order named lists of products."""

from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, url_for
from flask_babel import gettext, ngettext
from flask_login import current_user

from ..exceptions import DomainError, FieldErrors, NotFound
from ..security import customer_required
from ..services import quick_order
from ..services import shopping_lists as lists
from ..services.parsing import whole_number
from ..services.vat import rules as vat_rules
from .shop import csv_download, read_quick_order_source

bp = Blueprint("lists", __name__, url_prefix="/lists")


def _max_lines():
    return current_app.config["QUICK_ORDER_MAX_LINES"]


def _list_or_404(list_id):
    try:
        return lists.get_list(current_user, list_id)
    except NotFound:
        abort(404)


def _flash_all(problems, category="error"):
    for problem in problems:
        flash(problem, category)


@bp.route("", methods=["GET", "POST"])
@customer_required
def index():
    """The company's lists this buyer sees, and a form for a new one."""
    errors, name = {}, request.form.get("name", "")
    if request.method == "POST":
        try:
            shopping_list = lists.create(current_user, name)
        except FieldErrors as exc:
            errors = exc.errors
        else:
            flash(
                gettext(
                    "List “%(name)s” made; add products from the catalog, a product, your cart or an order.",
                    name=shopping_list.name,
                ),
                "success",
            )
            return redirect(url_for("lists.detail", list_id=shopping_list.id))
    return render_template(
        "lists/index.html", rows=lists.lists_for(current_user), name=name[:120], errors=errors
    ), 422 if errors else 200


@bp.route("/<id:list_id>", methods=["GET", "POST"])
@customer_required
def detail(list_id):
    """One list: change quantities, remove products, share it, import and export it."""
    shopping_list = _list_or_404(list_id)
    entered, errors = {}, {}
    if request.method == "POST":
        try:
            if "remove" in request.form:
                lists.remove_item(current_user, shopping_list, whole_number(request.form["remove"]))
                flash(gettext("Removed from the list."), "info")
                return redirect(url_for("lists.detail", list_id=list_id))
            entered = {item.product_id: request.form.get(f"qty-{item.product_id}") for item in shopping_list.items}
            errors = lists.update_quantities(current_user, shopping_list, entered)
        except DomainError as exc:
            flash(str(exc), "error")
            return redirect(url_for("lists.detail", list_id=list_id))
        if not errors:
            flash(gettext("List updated."), "success")
            return redirect(url_for("lists.detail", list_id=list_id))
    return render_template(
        "lists/detail.html",
        shopping_list=shopping_list,
        entered=entered,
        errors=errors,
        may_edit=lists.may_edit(current_user, shopping_list),
        may_manage=lists.may_manage(current_user, shopping_list),
    ), 422 if errors else 200


@bp.route("/<id:list_id>/settings", methods=["POST"])
@customer_required
def settings(list_id):
    """Rename a list and decide whether the company sees it and may edit it."""
    shopping_list = _list_or_404(list_id)
    try:
        lists.update_settings(
            current_user,
            shopping_list,
            request.form.get("name", ""),
            request.form.get("shared") == "on",
            request.form.get("others_may_edit") == "on",
        )
    except DomainError as exc:
        flash(str(exc), "error")
    else:
        flash(gettext("“%(name)s” saved.", name=shopping_list.name), "success")
    return redirect(url_for("lists.detail", list_id=list_id))


@bp.route("/<id:list_id>/delete", methods=["POST"])
@customer_required
def delete(list_id):
    """Delete a list."""
    shopping_list = _list_or_404(list_id)
    name = shopping_list.name
    try:
        lists.delete(current_user, shopping_list)
    except DomainError as exc:
        flash(str(exc), "error")
        return redirect(url_for("lists.detail", list_id=list_id))
    flash(gettext("List “%(name)s” deleted.", name=name), "info")
    return redirect(url_for("lists.index"))


@bp.route("/<id:list_id>/order", methods=["GET", "POST"])
@customer_required
def order(list_id):
    """Preview what ordering the list puts in the cart; on POST put it there."""
    shopping_list = _list_or_404(list_id)
    vat = vat_rules()
    try:
        if request.method == "POST":
            added, problems = lists.order(current_user, shopping_list, vat, _max_lines())
            flash(
                ngettext(
                    "%(num)s line of “%(name)s” added to your cart.",
                    "%(num)s lines of “%(name)s” added to your cart.",
                    added,
                    name=shopping_list.name,
                ),
                "success" if added else "warning",
            )
            _flash_all(problems)
            return redirect(url_for("shop.cart"))
        lines = lists.order_preview(current_user, shopping_list, vat, _max_lines())
    except DomainError as exc:
        flash(str(exc), "error")
        return redirect(url_for("lists.detail", list_id=list_id))
    return render_template("lists/order.html", shopping_list=shopping_list, lines=lines)


@bp.route("/<id:list_id>.csv")
@customer_required
def export(list_id):
    """The list as a CSV file that quick order and list import read."""
    shopping_list = _list_or_404(list_id)
    return csv_download(lists.export_csv(shopping_list), f"list-{shopping_list.id}.csv")


@bp.route("/<id:list_id>/import", methods=["POST"])
@customer_required
def import_lines(list_id):
    """Preview a CSV file or pasted lines before saving the valid ones to the list."""
    shopping_list = _list_or_404(list_id)
    text, lines, error = request.form.get("lines", ""), None, None
    try:
        lines = quick_order.preview(
            read_quick_order_source(text),
            current_user.company.price_list_id,
            vat_rules(),
            _max_lines(),
        )
    except DomainError as exc:
        error = str(exc)
    return render_template(
        "lists/import.html", shopping_list=shopping_list, text=text, lines=lines, error=error
    ), 422 if error else 200


@bp.route("/save", methods=["POST"])
@customer_required
def save():
    """Save products with quantities to a list, from the catalog, a product page, the cart or an order."""
    pairs = list(zip(request.form.getlist("sku"), request.form.getlist("quantity")))
    if not pairs:
        flash(gettext("Nothing to save: choose products first."), "error")
        return redirect(url_for("lists.index"))
    list_id, new_name = whole_number(request.form.get("list_id")), request.form.get("new_name", "")
    if not list_id and not new_name.strip():  # from the catalog: ask which list
        return _choose(pairs)
    try:
        shopping_list = lists.list_for_saving(current_user, list_id, new_name)
        saved, problems = lists.add_items(current_user, shopping_list, pairs, _max_lines())
    except FieldErrors as exc:
        return _choose(pairs, exc.errors, new_name)
    except NotFound:
        abort(404)
    except DomainError as exc:
        flash(str(exc), "error")
        return redirect(url_for("lists.index"))
    if saved:
        flash(
            ngettext(
                "%(num)s product saved to “%(name)s”.",
                "%(num)s products saved to “%(name)s”.",
                saved,
                name=shopping_list.name,
            ),
            "success",
        )
    _flash_all(problems)
    return redirect(url_for("lists.detail", list_id=shopping_list.id))


def _choose(pairs, errors=None, new_name=""):
    """The page that asks which list to save products to."""
    return render_template(
        "lists/choose.html",
        pairs=pairs,
        lists=lists.editable_lists(current_user),
        errors=errors or {},
        new_name=new_name[:120],
    ), 422 if errors else 200


@bp.app_context_processor
def _list_choices():
    """saving_lists(): the lists the signed-in buyer may save to, for the forms on product, cart and order pages."""
    return {"saving_lists": lambda: lists.editable_lists(current_user)}
