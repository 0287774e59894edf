"""Bulk imports and exports at /admin/imports and `flask import|export`: round-trips of products, price tiers and
companies in CSV (both dialects) and XLSX, the preview before anything is written, the job that applies it,
the same file twice, every kind of refusal, formulas kept as text, a re-run after a crash."""

import io
from decimal import Decimal

import openpyxl
import pytest
from sqlalchemy import func, select
from werkzeug.datastructures import FileStorage
from werkzeug.test import stream_encode_multipart

from sipup.extensions import db
from sipup.i18n import shown
from sipup.models import Address, AuditEvent, Category, Company, Job, PriceTier, Product, User
from sipup.services import bulk_import, catalog
from sipup.spreadsheets import xlsx_bytes
from tests.conftest import login

FORMATS = [("csv", "excel"), ("csv", "excel-eu"), ("xlsx", None)]
PRODUCTS = (
    "sku;name;category;pack;unit_price;deposit;vat_class;min_qty;qty_step;stock;active\n"
    "BEER-1;Helles;Beer;case of 20 x 0.5 l;18,90;3,10;standard;1;1;120;yes\n"
    "JUICE-1;Apfelsaft;Juice;case of 12 x 1 l;14,20;2,40;reduced;2;2;40;yes\n"
    "WATER-1;-Still- water;Water;case of 12 x 0.7 l;6,50;;zero;;;0;no\n"
)
COMPANIES = (
    "company,vat_id,payment_terms_days,credit_limit,price_list,address_label,street,postcode,city,country,users\n"
    "Bar Alpha,DE111111111,14,2500.00,Gastro,Main,Hauptstr. 1,10115,Berlin,DE,owner:anna@alpha.example\n"
    "Bar Alpha,,,,,Cellar,Hof 2,10115,Berlin,DE,buyer:ben@alpha.example\n"
    "Kiosk Beta,,30,800,,Main,Ring 5,80331,München,DE,\n"
)


@pytest.fixture
def staff(app, make_user, client):
    user = make_user("staff")
    login(client, user)
    return user


def upload(client, kind, data, filename="file.csv"):
    """POST a file for a preview; the preview page (after the redirect) or the refusal."""
    data = data.encode("utf-8") if isinstance(data, str) else data
    # Encoded in memory: the test client spools a body past 500 KB to a temporary file it never closes.
    body, length, boundary = stream_encode_multipart(
        {"kind": kind, "file": FileStorage(io.BytesIO(data), filename)}, use_tempfile=False
    )
    return client.post(
        "/admin/imports/preview",
        input_stream=body,
        content_length=length,
        content_type=f'multipart/form-data; boundary="{boundary}"',
        follow_redirects=True,
    )


def preview_of(response):
    name = response.request.path.rsplit("/", 1)[1]
    return bulk_import.load_preview(name)


def apply_now(client, runner, response):
    """Confirm a preview and run the queue, as cron would."""
    name = preview_of(response)["name"]
    assert client.post(f"/admin/imports/{name}/apply").status_code == 302
    result = runner.invoke(args=["queue", "process", "--limit", "50"])
    assert result.exit_code == 0, result.output
    return name


def export(client, kind, fmt, dialect):
    response = client.get(f"/admin/exports/{kind}.{fmt}" + (f"?dialect={dialect}" if dialect else ""))
    assert response.status_code == 200
    return response.get_data()


def counts(response):
    return preview_of(response)["counts"]


def test_products_import_previews_then_applies_as_a_job_and_twice_changes_nothing(staff, client, runner):
    preview = upload(client, "products", PRODUCTS)
    page = preview.get_data(as_text=True)
    assert preview.status_code == 200 and "Apply 3 line(s)" in page
    assert counts(preview) == {"create": 3, "change": 0, "same": 0, "refused": 0}
    assert "new category Juice" in page
    assert db.session.scalar(select(func.count()).select_from(Product)) == 0  # nothing written yet

    name = apply_now(client, runner, preview)
    juice = db.session.scalar(select(Product).where(Product.sku == "JUICE-1"))
    assert (juice.name, juice.base_price, juice.deposit, juice.min_qty, juice.qty_step) == (
        "Apfelsaft",
        Decimal("14.20"),
        Decimal("2.40"),
        2,
        2,
    )
    water = db.session.scalar(select(Product).where(Product.sku == "WATER-1"))
    assert (water.name, water.active, water.deposit, water.min_qty) == ("-Still- water", False, Decimal("0.00"), 1)
    assert (juice.vat_class, water.vat_class) == ("reduced", "zero")
    assert "case of 12" in juice.search_text and "apfelsaft" in juice.search_text  # found by the shop's search
    assert [p.sku for p in catalog.search("apfel case 12").items] == ["JUICE-1"]  # the index followed the import
    done = client.get(f"/admin/imports/{name}/progress").get_data(as_text=True)
    assert "3 of 3 line(s) applied: 3 created, 0 changed" in done and "hx-get" not in done  # polling stops
    job = db.session.scalar(select(Job).where(Job.name == "apply_import"))
    assert job.status == "done" and shown(job.result).startswith("3 created, 0 changed")

    again = upload(client, "products", PRODUCTS)
    assert counts(again) == {"create": 0, "change": 0, "same": 3, "refused": 0}
    assert "Nothing in this file would change anything." in again.get_data(as_text=True)
    refused = client.post(f"/admin/imports/{preview_of(again)['name']}/apply", follow_redirects=True)
    assert "there is nothing to apply" in refused.get_data(as_text=True)

    changed = upload(client, "products", PRODUCTS.replace("18,90", "19,50").replace("reduced", "standard"))
    assert counts(changed)["change"] == 2 and "unit_price: 18.90 → 19.50" in changed.get_data(as_text=True)
    assert "vat_class: reduced → standard" in changed.get_data(as_text=True)


@pytest.mark.parametrize("fmt, dialect", FORMATS)
def test_every_kind_exports_a_file_that_imports_back_unchanged(staff, client, runner, make_price_list, fmt, dialect):
    runner.invoke(args=["import", "products", "-", "--yes"], input=PRODUCTS)
    make_price_list("Gastro", [])
    prices = "price_list,sku,min_qty,price\nGastro,BEER-1,1,17.50\nGastro,BEER-1,10,16.90\nGastro,JUICE-1,2,13.00\n"
    assert runner.invoke(args=["import", "prices", "-", "--yes"], input=prices).exit_code == 0
    assert runner.invoke(args=["import", "companies", "-", "--yes"], input=COMPANIES).exit_code == 0
    beer = db.session.scalar(select(Category.id).where(Category.name == "Beer"))
    db.session.add(Product(sku="F-1", name='=HYPERLINK("x")', sell_unit="+1 case", base_price=1, category_id=beer))
    db.session.commit()

    for kind, rows in (("products", 4), ("prices", 3), ("companies", 3)):
        data = export(client, kind, fmt, dialect)
        if fmt == "csv":
            assert {"excel": b",", "excel-eu": b";"}[dialect] in data.splitlines()[0]
        back = upload(client, kind, data, f"{kind}.{fmt}")
        assert counts(back) == {"create": 0, "change": 0, "same": rows, "refused": 0}, preview_of(back)
        assert export(client, kind, fmt, dialect) == data or fmt == "xlsx"  # a workbook carries its time of writing
    formula = db.session.scalar(select(Product).where(Product.sku == "F-1"))
    assert (formula.name, formula.sell_unit) == ('=HYPERLINK("x")', "+1 case")


def test_a_catalogue_exported_imports_into_an_empty_shop_as_it_was(staff, client, runner, make_price_list):
    runner.invoke(args=["import", "products", "-", "--yes"], input=PRODUCTS)
    make_price_list("Gastro", [])
    runner.invoke(args=["import", "companies", "-", "--yes"], input=COMPANIES)
    files = {kind: export(client, kind, "xlsx", None) for kind in ("products", "companies")}
    before = {kind: list(bulk_import.KINDS[kind].export_rows()) for kind in files}
    db.session.execute(User.__table__.delete().where(User.company_id.is_not(None)))
    for model in (Address, Company, Product, Category):
        db.session.execute(model.__table__.delete())
    db.session.commit()
    for kind in ("products", "companies"):
        apply_now(client, runner, upload(client, kind, files[kind], f"{kind}.xlsx"))
    assert {kind: list(bulk_import.KINDS[kind].export_rows()) for kind in files} == before


def test_companies_with_addresses_users_and_terms(staff, client, runner, make_price_list):
    gastro = make_price_list("Gastro", [])
    preview = upload(client, "companies", COMPANIES)
    assert counts(preview) == {"create": 3, "change": 0, "same": 0, "refused": 0}
    apply_now(client, runner, preview)
    alpha = db.session.scalar(select(Company).where(Company.name == "Bar Alpha"))
    assert (alpha.vat_id, alpha.payment_terms_days, alpha.credit_limit, alpha.price_list_id) == (
        "DE111111111",
        14,
        Decimal("2500.00"),
        gastro.id,
    )
    assert [a.label for a in alpha.addresses] == ["Main", "Cellar"]
    assert {(u.email, u.role, u.has_password) for u in alpha.users} == {
        ("anna@alpha.example", "owner", False),
        ("ben@alpha.example", "buyer", False),
    }
    invitations = select(func.count()).select_from(Job).where(Job.name == "send_mail", Job.args.like('["invitation"%'))
    assert db.session.scalar(invitations) == 2

    moved = COMPANIES.replace("Ring 5", "Ring 7").replace("Kiosk Beta,,30,800", "Kiosk Beta,,30,900")
    again = upload(client, "companies", moved)
    assert counts(again) == {"create": 0, "change": 1, "same": 2, "refused": 0}
    assert "credit_limit: 800.00 → 900" in again.get_data(as_text=True)
    apply_now(client, runner, again)
    beta = db.session.scalar(select(Company).where(Company.name == "Kiosk Beta"))
    assert beta.credit_limit == Decimal("900.00") and beta.addresses[0].street == "Ring 7"
    assert db.session.scalar(invitations) == 2  # nobody invited twice
    trail = db.session.scalars(select(AuditEvent.field).where(AuditEvent.subject_id == beta.id)).all()
    assert {"created", "credit_limit", "address"} <= set(trail)


def test_every_refusal_names_line_column_and_why(staff, client, make_product, make_price_list, make_company):
    make_product(sku="KNOWN-1", stock_reserved=30, stock_on_hand=40)
    products = (
        "sku,name,category,pack,unit_price,vat_class,min_qty,qty_step,stock\n"
        "A-1,Ok,Beer,case,10.00,standard,,,\n"
        "A-2,Bad price,Beer,case,NaN,,,,\n"
        "A-1,Twice,Beer,case,10.00,,,,\n"
        "A-3,Vat,Beer,case,1.00,luxury,,,\n"
        "A-4,Steps,Beer,case,1.00,,3,2,\n"
        "KNOWN-1,Known,Beer,case,1.00,,,,5\n"
        "bad sku!,X,Beer,case,1,,,,\n"
    )
    page = upload(client, "products", products).get_data(as_text=True)
    for line, column, why in (
        (3, "unit_price", "Unit price “NaN” is not an amount"),
        (4, "sku", "the same SKU as line 2"),
        (5, "vat_class", "“luxury” is not one of standard, reduced, zero"),
        (6, "min_qty", "the minimum quantity must be a multiple of the step (2)"),
        (7, "stock", "30 are reserved by open orders"),
        (8, "sku", "must be 1 to 40 letters"),
    ):
        assert f'<td class="num">{line}</td><td>{column}</td><td>{why}' in page, (line, column, why)
    assert "Apply 1 line(s)" in page

    make_price_list("Gastro", [])
    prices = "price_list;sku;min_qty;price\nNo such list;KNOWN-1;1;1,00\nGastro;NOPE;1;1,00\nGastro;KNOWN-1;0;1,00\n"
    page = upload(client, "prices", prices).get_data(as_text=True)
    assert "<td>price_list</td><td>there is no price list “No such list”" in page
    assert "<td>sku</td><td>there is no product NOPE" in page
    assert "<td>min_qty</td><td>From quantity must be between 1" in page

    make_company(name="Taken", vat_id="DE999")
    companies = (
        "company,vat_id,credit_limit,price_list,street,postcode,city,country,users\n"
        "New One,,100,,Street 1,1,Town,DE,\n"
        "New One,,200,,Street 2,2,Town,DE,\n"
        "Other,DE999,,,,,,,\n"
        "Third,,,Missing list,,,,,\n"
        "Fourth,,,,,,,,boss:x@example.com\n"
        "Fifth,,,,Street,1,Town,Germany,\n"
    )
    page = upload(client, "companies", companies).get_data(as_text=True)
    assert '<td class="num">3</td><td>address_label</td><td>the same company and address_label as line 2' in page
    assert "<td>vat_id</td><td>VAT id DE999 belongs to Taken" in page
    assert "<td>price_list</td><td>there is no price list “Missing list”" in page
    assert "<td>users</td><td>“boss:x@example.com”: the role must be owner or buyer" in page
    assert "<td>country</td><td>must be a two-letter code" in page
    assert db.session.scalar(select(func.count()).select_from(Company)) == 1  # a preview writes nothing


@pytest.mark.app_config(IMPORT_MAX_MB=1)
def test_files_that_are_not_tables_or_too_large_are_refused_with_the_reason(staff, client):
    for data, name, why in (
        (b"%PDF-1.7\n\x00\x01binary", "x.pdf", "This file is neither CSV nor XLSX"),
        (b"PK\x03\x04 not really a workbook", "x.xlsx", "This file is neither CSV nor XLSX"),
        (b"sku,name\n" + b"A,B\n" * 400_000, "big.csv", "import files can be at most 1 MB (SIPUP_IMPORT_MAX_MB)"),
        (b"sku,name\nA,B\n", "x.csv", "missing: category, pack, unit_price"),
        (b"", "x.csv", "The file is empty."),
    ):
        response = upload(client, "products", data, name)
        assert response.status_code == 422 and why in response.get_data(as_text=True), why
    assert upload(client, "wine", PRODUCTS).status_code == 422


def test_formula_cells_in_a_workbook_are_text_never_evaluated(staff, client, runner):
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.append(["sku", "name", "category", "pack", "unit_price"])
    sheet.append(["F-1", "=1+2", "Beer", "case", 10])
    sheet.append(["F-2", "Price by formula", "Beer", "case", "=A1*2"])
    out = io.BytesIO()
    book.save(out)
    preview = upload(client, "products", out.getvalue(), "f.xlsx")
    assert "<td>unit_price</td><td>Unit price “=A1*2” is not an amount" in preview.get_data(as_text=True)
    apply_now(client, runner, preview)
    assert db.session.scalar(select(Product.name).where(Product.sku == "F-1")) == "=1+2"
    written = openpyxl.load_workbook(io.BytesIO(export(client, "products", "xlsx", None)), read_only=True)
    cells = [row for row in written.active.iter_rows(min_row=2, values_only=True)]
    assert cells[0][1] == "=1+2"  # written as text: Excel shows it, never runs it
    assert xlsx_bytes(["a"], [["=2+2"]]).count(b"<f>") == 0


def test_a_run_that_stopped_midway_is_resumed_by_running_again(staff, app, monkeypatch):
    monkeypatch.setattr(bulk_import, "BATCH_LINES", 1)
    batches = []

    def crash_after_first(state):
        batches.append(state["done"])
        if state["done"] == 1:
            raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        bulk_import.apply_file("products", PRODUCTS.encode(), report=crash_after_first)
    db.session.rollback()
    assert db.session.scalar(select(func.count()).select_from(Product)) == 1  # the first batch, whole
    state = bulk_import.apply_file("products", PRODUCTS.encode())
    assert (state["created"], state["same"]) == (2, 1)
    assert db.session.scalar(select(func.count()).select_from(Product)) == 3


def test_the_command_line_previews_asks_and_applies(runner, app, tmp_path, make_price_list, make_product):
    path = tmp_path / "products.csv"
    path.write_text(PRODUCTS, encoding="utf-8")
    dry = runner.invoke(args=["import", "products", str(path), "--dry-run"])
    assert dry.exit_code == 0 and "3 to create, 0 to change" in dry.output and "Nothing was written." in dry.output
    declined = runner.invoke(args=["import", "products", str(path)], input="n\n")
    assert declined.exit_code == 1 and db.session.scalar(select(func.count()).select_from(Product)) == 0
    applied = runner.invoke(args=["import", "products", str(path)], input="y\n")
    assert applied.exit_code == 0 and "Done: 3 created, 0 changed, 0 already as in the file" in applied.output
    assert "Nothing to apply." in runner.invoke(args=["import", "products", str(path)]).output

    make_price_list("Gastro", [])
    bad = runner.invoke(args=["import", "prices", "-", "--yes"], input="price_list,sku,min_qty,price\nNone,X,1,1\n")
    assert "line 2, price_list: there is no price list “None”" in bad.output
    assert runner.invoke(args=["import", "prices", "-"], input="nothing here").exit_code == 1
    out = tmp_path / "products.xlsx"
    assert runner.invoke(args=["export", "products", str(out)]).exit_code == 0
    again = runner.invoke(args=["import", "products", str(out), "--dry-run"])
    assert "0 to create, 0 to change, 3 already as in the file" in again.output
    assert db.session.scalar(select(func.count()).select_from(PriceTier)) == 0
