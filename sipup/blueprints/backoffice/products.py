"""Products, their prices and stock, and their pictures."""

from flask import abort, current_app, flash, redirect, render_template, request, url_for
from flask_babel import gettext

from sipup.storage import StorageUnavailable

from ...exceptions import DomainError, FieldErrors, NotFound
from ...extensions import db
from ...replicas import replica_reads
from ...services import backoffice, catalog, images, vat
from .blueprint import bp, requested_page


@bp.route("/products")
@replica_reads()
def product_list():
    """All products with stock figures."""
    query = request.args.get("q", "")[:100]
    return render_template("admin/products.html", results=backoffice.find_products(query, requested_page()), q=query)


@bp.route("/products/new", methods=["GET", "POST"])
@bp.route("/products/<sku>", methods=["GET", "POST"])
def product_edit(sku=None):
    """Create or edit a product, its prices and its stock."""
    product = None if sku is None else _product(sku)
    errors, form = {}, request.form
    if request.method == "POST":
        try:
            product = backoffice.save_product(product, request.form)
        except FieldErrors as exc:
            db.session.rollback()
            errors = exc.errors
        else:
            flash(gettext("%(sku)s saved.", sku=product.sku), "success")
            return redirect(url_for("admin.product_edit", sku=product.sku))
    categories = catalog.categories()
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
    product = _product(sku)
    upload = request.files.get("image")
    limit = current_app.config["IMAGE_MAX_MB"] * 1_048_576
    try:
        images.add_image(product, upload.stream.read(limit + 1) if upload else b"")
    except (DomainError, StorageUnavailable) as exc:
        db.session.rollback()
        message, status = str(exc), 422
        if isinstance(exc, StorageUnavailable):  # the picture is fine; the storage is not: upload it again later
            message, status = (
                gettext("%(error)s The picture was not added: choose it and upload it again.", error=exc),
                503,
            )
        categories = catalog.categories()
        return render_template(
            "admin/product.html",
            product=product,
            form={},
            errors={},
            categories=categories,
            vat_classes=vat.CLASS_LABELS,
            image_error=message,
        ), status
    flash(gettext("Picture added; buyers see it now."), "success")
    return redirect(url_for("admin.product_edit", sku=product.sku, _anchor="pictures"))


@bp.route("/products/<sku>/images/<id:image_id>/remove", methods=["POST"])
def product_image_remove(sku, image_id):
    """Take a picture off a product."""
    product = _product(sku)
    try:
        images.remove_image(product, image_id)
    except NotFound as exc:
        flash(str(exc), "error")
    else:
        flash(gettext("Picture removed."), "success")
    return redirect(url_for("admin.product_edit", sku=product.sku, _anchor="pictures"))


def _product(sku):
    """The product of a back-office URL, active or not, or 404."""
    try:
        return catalog.product_by_sku(sku, include_inactive=True)
    except NotFound:
        abort(404)
