"""Quick order: reading pasted lines and uploaded CSV files, and the preview status of every line."""

from decimal import Decimal

import pytest

from sipup.exceptions import InvalidInput
from sipup.services import quick_order

D = Decimal
VAT = D("0.20")
MAX_LINES = 500
MB = 1_048_576


def parsed(text):
    return quick_order.parse(text, MAX_LINES)


def preview(text, price_list_id=None):
    return quick_order.preview(text, price_list_id, VAT, MAX_LINES)


def refused(call, *args):
    with pytest.raises(InvalidInput) as error:
        call(*args)
    return str(error.value)


# --- reading lines -----------------------------------------------------------------------------


@pytest.mark.parametrize("line", ["BEER-1 5", "BEER-1;5", "BEER-1,5", "BEER-1\t5", "  BEER-1   5  ", "BEER-1 ; 5"])
def test_a_line_is_a_sku_and_a_quantity(line):
    assert parsed(line) == [(1, line.strip(), "BEER-1", "5")]


def test_a_header_row_is_skipped():
    assert parsed("SKU;Quantity\nBEER-1;5") == [(2, "BEER-1;5", "BEER-1", "5")]
    assert parsed("Artikelnummer;Menge\nBEER-1;5") == [(2, "BEER-1;5", "BEER-1", "5")]


def test_only_the_first_line_can_be_a_header():
    assert [sku for _, _, sku, _ in parsed("BEER-1 5\nSKU 3")] == ["BEER-1", "SKU"]


def test_a_utf8_bom_is_ignored():
    assert parsed("\ufeffSKU;Menge\r\nBEER-1;5\r\n") == [(2, "BEER-1;5", "BEER-1", "5")]


def test_excel_csv_with_semicolons_and_quotes():
    text = '"Artikel";"Menge"\r\n"BEER-1";"5"\r\n"WINE-2";"12"\r\n'

    assert parsed(text) == [(2, '"BEER-1";"5"', "BEER-1", "5"), (3, '"WINE-2";"12"', "WINE-2", "12")]


def test_a_decimal_comma_stays_in_the_quantity_with_semicolons():
    assert parsed("BEER-1;2,5") == [(1, "BEER-1;2,5", "BEER-1", "2,5")]


def test_blank_lines_are_skipped_but_line_numbers_kept():
    assert [(n, sku) for n, _, sku, _ in parsed("BEER-1 5\n\n   \nWINE-2 3\n\n")] == [(1, "BEER-1"), (4, "WINE-2")]


def test_nothing_but_blank_lines_asks_for_a_line():
    message = refused(parsed, "\n  \n\t\n")

    assert message == "Enter at least one line: a SKU and a quantity, e.g. “BEE-00001 5”."


def test_a_header_alone_asks_for_a_line():
    assert refused(parsed, "SKU;Quantity\r\n") == (
        "Enter at least one line below the header: a SKU and a quantity, e.g. “BEE-00001 5”."
    )


def test_a_10000_line_paste_is_refused_with_the_limit():
    text = "\n".join(f"BEER-{n} 1" for n in range(10_000))

    assert refused(parsed, text) == "That is 10,000 lines; a quick order takes at most 500. Split it into parts."


# --- preview statuses --------------------------------------------------------------------------


def test_a_known_sku_resolves_to_its_product_and_base_price(app, make_product):
    product = make_product(sku="BEER-1", base_price=D("10.00"))

    [line] = preview("beer-1 3")

    assert line.ok and line.product.id == product.id
    assert (line.quantity, line.unit_price, line.line_total) == (3, D("10.00"), D("30.00"))


def test_the_price_is_the_tier_price_for_the_quantity(app, make_product, make_price_list):
    product = make_product(sku="BEER-1", base_price=D("10.00"))
    price_list = make_price_list("Gastro", [(product, 10, "9.00")])

    small, large = preview("BEER-1 9", price_list.id) + preview("BEER-1 10", price_list.id)

    assert (small.unit_price, small.line_total) == (D("10.00"), D("90.00"))
    assert (large.unit_price, large.line_total) == (D("9.00"), D("90.00"))


def test_an_unknown_sku_is_named(app):
    [line] = preview("NOPE-9 2")

    assert line.problem == "Unknown SKU “NOPE-9”."
    assert not line.ok


def test_an_inactive_sku_is_no_longer_sold(app, make_product):
    make_product(sku="OLD-1", active=False)

    assert preview("OLD-1 2")[0].problem == "OLD-1 is no longer sold."


def test_below_the_minimum(app, make_product):
    make_product(sku="WATER-12", min_qty=5)

    assert preview("WATER-12 2")[0].problem == "The minimum for WATER-12 is 5."


def test_not_a_multiple_of_the_step(app, make_product):
    make_product(sku="COLA-6", min_qty=6, qty_step=6)

    assert preview("COLA-6 8")[0].problem == "COLA-6 comes in steps of 6: order 6 or 12."


def test_short_of_stock(app, make_product):
    make_product(sku="JUICE-1", stock_on_hand=4, stock_reserved=1)

    line = preview("JUICE-1 5")[0]

    assert line.problem == "Only 3 of JUICE-1 in stock."
    assert line.unit_price == D("10.00")  # still priced, so the buyer sees what it would cost


def test_a_missing_quantity(app, make_product):
    make_product(sku="BEER-1")

    assert preview("BEER-1")[0].problem == "No quantity: write the SKU, then the quantity."


def test_a_bad_quantity_is_explained(app, make_product):
    make_product(sku="BEER-1")

    first, second = preview("BEER-1 1.5\nBEER-1 zwei")

    assert first.problem == "Quantity “1.5” is not a whole number of packs."
    assert second.problem == "Quantity “zwei” is not a number."


def test_a_duplicate_sku_points_to_the_first_line(app, make_product):
    make_product(sku="BEER-1")

    first, second = preview("BEER-1 2\n\nbeer-1 3")

    assert first.ok
    assert second.problem == "BEER-1 is already on line 1; put it on one line."


def test_each_line_keeps_its_own_status(app, make_product):
    make_product(sku="BEER-1")
    make_product(sku="COLA-6", qty_step=6)
    text = "SKU;Menge\nBEER-1;2\nNOPE;1\nCOLA-6;7\n"

    lines = preview(text)

    assert [(line.line_no, line.sku, line.problem) for line in lines] == [
        (2, "BEER-1", None),
        (3, "NOPE", "Unknown SKU “NOPE”."),
        (4, "COLA-6", "COLA-6 comes in steps of 6: order 6 or 12."),
    ]


# --- uploads -----------------------------------------------------------------------------------


def test_utf8_upload_with_bom_is_read():
    assert (
        quick_order.read_upload("\ufeffSKU;Menge\r\nBRÄU-1;5\r\n".encode("utf-8"), 2 * MB)
        == "SKU;Menge\r\nBRÄU-1;5\r\n"
    )


def test_utf16_upload_is_read():
    text = "SKU\tMenge\r\nBRÄU-1\t5\r\n"

    assert quick_order.read_upload(text.encode("utf-16"), 2 * MB) == text
    assert quick_order.read_upload(b"\xfe\xff" + text.encode("utf-16-be"), 2 * MB) == text


def test_cp1252_upload_names_the_line_and_how_to_save_utf8():
    data = "SKU;Menge\r\nBEER-1;5\r\nBRÄU-1;3\r\n".encode("cp1252")

    message = refused(quick_order.read_upload, data, 2 * MB)

    assert message == (
        "The file is not UTF-8 text (first odd character on line 3). "
        "In Excel choose Save As → CSV UTF-8 (comma delimited)."
    )


def test_xlsx_upload_asks_for_csv():
    data = b"PK\x03\x04\x14\x00\x06\x00" + b"\x00" * 100

    assert refused(quick_order.read_upload, data, 2 * MB) == (
        "This is an Excel workbook, not a CSV file. In Excel choose Save As → CSV UTF-8."
    )


def test_binary_upload_is_not_text():
    assert refused(quick_order.read_upload, b"\x89PNG\r\n\x1a\n\x00\x00", 2 * MB).startswith("This file is not text.")


def test_upload_over_the_size_limit_names_its_size_and_the_limit():
    data = b"BEER-1 1\n" * (2 * MB // 9 + 1)

    assert len(data) > 2 * MB
    assert refused(quick_order.read_upload, data, 2 * MB) == (
        "The file is 2.1 MB; quick-order files can be at most 2 MB. Split it into smaller files."
    )


def test_upload_at_the_size_limit_is_read():
    data = b"BEER-1 1\n" * (2 * MB // 9)

    assert quick_order.read_upload(data, 2 * MB).count("\n") == 2 * MB // 9


def test_uploaded_excel_csv_previews_like_a_paste(app, make_product):
    make_product(sku="BEER-1")
    data = '\ufeff"Artikelnummer";"Menge"\r\n"BEER-1";"5"\r\n'.encode("utf-8")

    [line] = preview(quick_order.read_upload(data, 2 * MB))

    assert (line.line_no, line.sku, line.quantity, line.ok) == (2, "BEER-1", 5, True)


def test_excel_sep_hint_line_is_skipped():
    assert parsed("sep=;\r\nSKU;Menge\r\nBEER-1;5\r\n") == [(3, "BEER-1;5", "BEER-1", "5")]


def test_an_absurdly_long_line_is_refused_by_number():
    text = "BEER-1 5\n" + "x" * 200_000 + ";5\n"

    assert refused(parsed, text) == "Line 2 has 200,002 characters; a line holds one SKU and its quantity."
