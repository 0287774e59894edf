"""CSV that spreadsheets read safely: formula cells neutralised, numbers kept, the dialect of the setting, a BOM."""

import os
import stat
from datetime import date
from decimal import Decimal

import pytest

from sipup.config import ConfigError
from sipup.csvfiles import cell, to_text, write_file
from sipup.models import utcnow
from sipup.services import cart as carts
from sipup.services import orders, reports


@pytest.mark.parametrize("text", ["=1+1", "+1", "-2+3", "@SUM(A1)", "\tx", "\rx", '=HYPERLINK("http://x")'])
def test_text_that_excel_would_run_starts_with_an_apostrophe(text):
    assert cell(text) == "'" + text


def test_numbers_stay_numbers_negative_ones_too():
    assert cell(Decimal("-12.50")) == "-12.50"
    assert cell(Decimal("-12.50"), ",") == "-12,50"
    assert cell(-3) == "-3" and cell(2.5, ",") == "2,5"
    assert cell(Decimal("1E+3")) == "1000", "no exponent that Excel would read as text"
    assert cell(None) == "" and cell(date(2026, 1, 31)) == "2026-01-31"
    assert cell("Müller - Getränke") == "Müller - Getränke", "a dash inside text is no formula"


def test_the_two_dialects():
    rows = [["Acme", Decimal("-1.50"), 2]]
    assert to_text(["Customer", "Open", "Orders"], rows, "excel") == "Customer,Open,Orders\r\nAcme,-1.50,2\r\n"
    assert to_text(["Customer", "Open", "Orders"], rows, "excel-eu") == "Customer;Open;Orders\r\nAcme;-1,50;2\r\n"


def test_files_carry_a_bom_and_are_private(tmp_path):
    path = write_file(str(tmp_path / "r.csv"), ["Kunde"], [["Getränke Müller"]], "excel-eu")
    with open(path, "rb") as handle:
        assert handle.read() == "\ufeffKunde\r\nGetränke Müller\r\n".encode("utf-8")
    if os.name == "posix":
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert os.listdir(tmp_path) == ["r.csv"], "no temporary file left behind"


@pytest.mark.parametrize("currency, dialect", [("EUR", "excel-eu"), ("GBP", "excel"), ("USD", "excel")])
def test_the_dialect_follows_the_currency_unless_set(make_app, currency, dialect):
    assert make_app(CURRENCY=currency).config["CSV_DIALECT"] == dialect
    assert make_app(CURRENCY=currency, CSV_DIALECT="excel").config["CSV_DIALECT"] == "excel"


def test_an_unknown_dialect_stops_start_up(make_app):
    with pytest.raises(ConfigError, match=r"^SIPUP_CSV_DIALECT='semicolon' must be excel \(, and \.\) or excel-eu"):
        make_app(CSV_DIALECT="semicolon")


@pytest.mark.app_config(CSV_DIALECT="excel")
def test_a_report_neutralises_a_customer_named_like_a_formula(app, make_product, make_company, make_user):
    company = make_company(name='=HYPERLINK("http://evil.example","Click")')
    buyer = make_user("buyer", company)
    carts.add(buyer.id, make_product(), 2)
    orders.checkout(buyer, Decimal("0.20"), "", None, company.addresses[0].id)
    today = utcnow().date().isoformat()
    name = reports.build("sales_by_customer", today, today)
    lines = reports.read(name).decode("utf-8-sig").splitlines()
    assert lines[1].startswith('"\'=HYPERLINK(""http://evil.example"",""Click"")",1,20.00,')
