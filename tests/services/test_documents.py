"""A buyer's documents: the invoice page and PDF (its text read back with pdftotext), CSV exports of orders
and invoices, the favicon and the site's name."""

import csv
import io
import shutil
import subprocess

import pytest

from sipup.services import cart as carts
from sipup.services import orders

PDFTOTEXT = shutil.which("pdftotext")


def pdf_text(data, tmp_path):
    """The text of a PDF as poppler's pdftotext reads it, page breaks as form feeds."""
    if PDFTOTEXT is None:
        pytest.fail("pdftotext (poppler-utils) is not installed; .ci/run installs it")
    path = tmp_path / "invoice.pdf"
    path.write_bytes(data)
    return subprocess.run([PDFTOTEXT, "-layout", str(path), "-"], capture_output=True, text=True, check=True).stdout


@pytest.fixture
def invoiced(app, make_company, make_user, make_product):
    """An invoiced order of 50 lines at a company with a VAT id, and its buyer."""
    company = make_company(name="Getränke Müller GmbH", vat_id="DE123456789")
    buyer, staff = make_user("buyer", company), make_user("staff")
    for n in range(50):
        carts.add(buyer.id, make_product(sku=f"BEE-{n:05d}", name=f"Kellerbier naturtrüb {n}"), 2)
    order = orders.checkout(buyer, app.config["VAT_RATE"], po_reference="PO-77", address_id=company.addresses[0].id)
    for action in ("confirm", "ship", "invoice"):
        order = orders.transition(order.number, action, staff.id)
    invoice = orders.company_invoices(company.id).items[0]
    return buyer, order, invoice


def test_the_invoice_pdf_holds_everything_a_bookkeeper_needs(client, login_as, invoiced, tmp_path):
    buyer, order, invoice = invoiced
    login_as(buyer)
    page = client.get(f"/invoices/{invoice.number}")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "DE123456789" in html and "Payment reference" in html and "Download PDF" in html

    answer = client.get(f"/invoices/{invoice.number}.pdf")
    assert answer.mimetype == "application/pdf"
    assert answer.headers["Content-Disposition"] == f'attachment; filename="{invoice.number}.pdf"'
    text = pdf_text(answer.data, tmp_path)
    pages = text.split("\f")[:-1]
    assert len(pages) >= 2  # 50 lines do not fit on one page
    for number, page_text in enumerate(pages, start=1):
        assert f"Page {number} of {len(pages)}" in page_text
    for expected in (
        "Getränke Müller GmbH",
        "VAT id DE123456789",
        "Street 1, 10115 Berlin",
        order.number,
        "PO-77",
        "Kellerbier naturtrüb 0",
        "Kellerbier naturtrüb 49",
        "BEE-00049",
        "Deposit",
        "VAT",
        f"Due {invoice.due_date:%d.%m.%Y}",
        f"payment reference {invoice.number}",
    ):
        assert expected in text, expected
    assert f"€{order.total:,.2f}" in text and f"€{order.deposit_total:,.2f}" in text


def test_the_invoice_issuer_comes_from_the_setting(make_app, invoiced, tmp_path):
    from sipup.services import documents

    buyer, _order, invoice = invoiced
    app = make_app(INVOICE_ISSUER="Hofbräu Großhandel GmbH | Hafenstraße 1, 20457 Hamburg | VAT id DE999")
    with app.app_context():
        document = documents.invoice_document(invoice.number, buyer.company_id)
        text = pdf_text(documents.invoice_pdf(document), tmp_path)
    assert "Hofbräu Großhandel GmbH" in text and "Hafenstraße 1, 20457 Hamburg" in text and "VAT id DE999" in text


def test_another_companys_invoice_is_not_found(client, login_as, invoiced, make_company, make_user):
    _buyer, _order, invoice = invoiced
    login_as(make_user("buyer", make_company()))
    assert client.get(f"/invoices/{invoice.number}").status_code == 404
    assert client.get(f"/invoices/{invoice.number}.pdf").status_code == 404
    assert client.get("/invoices/NOPE").status_code == 404
    assert invoice.number not in client.get("/invoices.csv").get_data(as_text=True)


def rows_of(response):
    """The rows of a CSV download in the default dialect for EUR (excel-eu: ";" and decimal commas), BOM first."""
    text = response.get_data(as_text=True)
    assert text.startswith("\ufeff")
    return list(csv.DictReader(io.StringIO(text[1:]), delimiter=";"))


def comma(amount):
    return str(amount).replace(".", ",")


def test_orders_and_invoices_export_as_csv(client, login_as, invoiced):
    buyer, order, invoice = invoiced
    login_as(buyer)
    rows = rows_of(client.get("/orders.csv"))
    assert rows == [
        {
            "order": order.number,
            "date": f"{order.created_at:%Y-%m-%d}",
            "status": "invoiced",
            "po_reference": "PO-77",
            "goods": comma(order.goods_total),
            "deposit": comma(order.deposit_total),
            "vat": comma(order.vat_total),
            "total": comma(order.total),
        }
    ]
    answer = client.get("/invoices.csv")
    assert (
        answer.mimetype == "text/csv" and answer.headers["Content-Disposition"] == 'attachment; filename="invoices.csv"'
    )
    (row,) = rows_of(answer)
    assert (row["invoice"], row["order"], row["amount"], row["open"], row["paid_on"]) == (
        invoice.number,
        order.number,
        comma(invoice.amount),
        comma(invoice.amount),
        "",
    )


def test_a_po_reference_that_looks_like_a_formula_is_exported_as_text(app, client, login_as, buyer, make_product):
    carts.add(buyer.id, make_product(), 1)
    orders.checkout(
        buyer, app.config["VAT_RATE"], po_reference="=cmd|' /C calc'!A0", address_id=buyer.company.addresses[0].id
    )
    login_as(buyer)
    (row,) = rows_of(client.get("/orders.csv"))
    assert row["po_reference"] == "'=cmd|' /C calc'!A0"


def test_favicon_and_the_sites_name(make_app, login_as, buyer):
    app = make_app(SITE_NAME="Getränkeportal Nord")
    client = app.test_client()
    icon = client.get("/favicon.ico")
    assert icon.mimetype == "image/vnd.microsoft.icon" and icon.data.startswith(b"\x00\x00\x01\x00")
    icon.close()
    page = client.get("/login").get_data(as_text=True)
    assert "<title>Sign in · Getränkeportal Nord</title>" in page
    assert 'rel="icon"' in page and ">Getränkeportal Nord</a>" in page
