"""E-invoices (EN 16931): invoices and credit notes as CII XML made by the factur-x library, embedded into
their PDF as Factur-X (PDF/A-3), and as XRechnung CII XML for download.

Goods and deposit are separate invoice lines, each at its own VAT rate, so the XML's VAT breakdown matches
the summary per rate printed on the PDF.
"""

import io
from decimal import Decimal

from flask import current_app

from .compat import add_indirect
from .pricing import money

EN16931 = "urn:cen.eu:en16931:2017"
XRECHNUNG = "urn:cen.eu:en16931:2017#compliant#urn:xeinkauf.de:kosit:xrechnung_3.0"
INVOICE, CREDIT_NOTE = "380", "381"
UNIT = "C62"  # one (a pack)
RAM = "urn:un:unece:uncefact:data:standard:ReusableAggregateBusinessInformationEntity:100"


def _text(value):
    return f"{Decimal(value):.2f}"


def _party(name, address, vat_id):
    """A seller or buyer: name, postal address and VAT id."""
    party = {"name": name, "country_code": address.get("country") or "DE"}
    for key in ("addr_l1", "postcode", "city"):
        if address.get(key):
            party[key] = address[key]
    if vat_id:
        party["vat_identifier"] = vat_id.replace(" ", "").upper()
    return party


def _address(address):
    if address is None:
        return {}
    return {"addr_l1": address.street, "postcode": address.postcode, "city": address.city, "country": address.country}


def _category(rate, reverse):
    """The VAT category: K (intra-Community supply, reverse charge), Z (zero rate) or S (standard)."""
    if reverse:
        return "K"
    return "Z" if not rate else "S"


def _lines(lines, fallback_rate, reverse):
    """Invoice lines: each order or credit note line's goods, and its deposit as a line of its own."""
    result, index = [], 0
    for line in lines:
        rate = line.vat_rate if line.vat_rate is not None else fallback_rate
        deposit_rate = line.deposit_vat_rate if line.deposit_vat_rate is not None else fallback_rate
        parts = [(line.name, line.sku, line.unit_price, line.line_total, rate)]
        deposit = money(line.unit_deposit * line.quantity)
        if deposit:
            parts.append((f"Deposit: {line.name}", f"{line.sku}-DEPOSIT", line.unit_deposit, deposit, deposit_rate))
        for name, sku, price, net, each_rate in parts:
            index += 1
            result.append(
                {
                    "BT-126": str(index),
                    "BT-129": str(line.quantity),
                    "BT-130": UNIT,
                    "BT-131": _text(net),
                    "BT-146": _text(price),
                    "BT-151": _category(each_rate, reverse),
                    "BT-152": f"{Decimal(each_rate) * 100:.2f}",
                    "BT-153": name[:200],
                    "BT-155": sku,
                    "_rate": Decimal(each_rate),
                    "_net": Decimal(net),
                }
            )
    return result


def _breakdown(lines, vat_rows, reverse):
    """The VAT breakdown per category and rate, with the VAT amounts printed on the PDF."""
    printed = {row.rate: row.vat for row in vat_rows if row.rate is not None}
    bases = {}
    for line in lines:
        bases[line["_rate"]] = bases.get(line["_rate"], Decimal("0.00")) + line["_net"]
    breakdown = []
    for rate, base in sorted(bases.items(), reverse=True):
        entry = {
            "BT-116": _text(base),
            "BT-117": _text(printed.get(rate, money(base * rate))),
            "BT-118": _category(rate, reverse),
            "BT-119": f"{rate * 100:.2f}",
        }
        if reverse:
            entry["BT-120"] = current_app.config["VAT_REVERSE_CHARGE_NOTE"][:300]
            entry["BT-121"] = "VATEX-EU-IC"
        breakdown.append(entry)
    for line in lines:
        del line["_rate"], line["_net"]
    return breakdown


def _document(number, type_code, issued, issuer, company, billing, delivery, lines, vat_rows, totals, reverse):
    """The data the factur-x library turns into CII XML."""
    goods_and_deposit, tax, total, paid = totals
    data = {
        "BT-1": number,
        "BT-2": issued,
        "BT-3": type_code,
        "BT-5": current_app.config["CURRENCY"],
        "BT-24": EN16931,
        "BG-4": _party(
            issuer.name,
            {"addr_l1": issuer.street, "postcode": issuer.postcode, "city": issuer.city, "country": issuer.country},
            issuer.vat_id,
        ),
        "BG-7": _party(company.name, _address(billing), company.vat_id),
        "BG-25": _lines(lines, current_app.config["VAT_RATE"], reverse),
        "BT-106": _text(goods_and_deposit),
        "BT-109": _text(goods_and_deposit),
        "BT-110": _text(tax),
        "BT-112": _text(total),
        "BT-113": _text(paid),
        "BT-115": _text(total - paid),
    }
    data["BG-23"] = _breakdown(data["BG-25"], vat_rows, reverse)
    data.update(delivery)
    return data


def invoice_data(document):
    """An invoice's EN 16931 data: parties, date of supply, lines, VAT per rate, totals and payments."""
    invoice, order = document.invoice, document.order
    lines = order.lines if order is not None else []
    delivery = {"BT-72": invoice.delivery_date or invoice.issued_at.date(), "BT-9": invoice.due_date}
    if order is not None and order.po_reference:
        delivery["BT-13"] = order.po_reference
    if order is not None:  # "Label: street, postcode city, CC" as copied at checkout
        country = order.delivery_address.rpartition(", ")[2]
        delivery["BG-13"] = {"name": document.company.name, "country_code": country if len(country) == 2 else "DE"}
    paid = invoice.paid_amount or Decimal("0.00")
    base = (order.goods_total + order.deposit_total) if order is not None else invoice.amount
    tax = order.vat_total if order is not None else Decimal("0.00")
    return _document(
        invoice.number,
        INVOICE,
        invoice.issued_at.date(),
        document.issuer,
        document.company,
        document.billing_address,
        delivery,
        lines,
        document.vat_rows,
        (base, tax, invoice.amount, paid),
        bool(order is not None and order.reverse_charge),
    )


def credit_note_data(document):
    """A credit note's EN 16931 data: the invoice it corrects, its reason, lines and VAT per rate."""
    note, invoice = document.note, document.invoice
    order = invoice.order
    delivery = {
        "BG-3": [{"BT-25": invoice.number, "BT-26": invoice.issued_at.date()}],
        "BG-1": [{"BT-22": note.reason}],
        "BT-72": invoice.delivery_date or invoice.issued_at.date(),  # the supply the credit note corrects
    }
    return _document(
        note.number,
        CREDIT_NOTE,
        note.issued_at.date(),
        document.issuer,
        document.company,
        document.billing_address,
        delivery,
        note.lines,
        document.vat_rows,
        (note.goods_total + note.deposit_total, note.vat_total, note.amount, Decimal("0.00")),
        bool(order is not None and order.reverse_charge),
    )


def _xml(data, guideline=EN16931):
    """CII XML bytes of the data, checked against the Factur-X EN 16931 XSD; guideline: BT-24 as written."""
    from facturx.generate_xml import generate_cii_xml  # lazy: factur-x and lxml take 0.2 s to import
    from lxml import etree  # lazy: a start-up cost only e-invoices pay

    xml = generate_cii_xml(data, level="en16931", check_xsd=True, check_schematron=False)
    if guideline != EN16931:
        root = etree.fromstring(xml)
        (element,) = root.iter(f"{{{RAM}}}GuidelineSpecifiedDocumentContextParameter")
        element.find(f"{{{RAM}}}ID").text = guideline
        xml = etree.tostring(root, xml_declaration=True, encoding="UTF-8")
    return xml


def invoice_xml(document, guideline=EN16931):
    """The invoice as EN 16931 CII XML (guideline=XRECHNUNG for the XRechnung download)."""
    return _xml(invoice_data(document), guideline)


def credit_note_xml(document, guideline=EN16931):
    """The credit note as EN 16931 CII XML (guideline=XRECHNUNG for the XRechnung download)."""
    return _xml(credit_note_data(document), guideline)


def check_xsd(xml):
    """True when the XML validates against the official CII schema of the EN 16931 profile (factur-x ships it)."""
    from facturx import xml_check_xsd  # lazy: factur-x takes 0.2 s to import

    return xml_check_xsd(xml, flavor="factur-x", level="en16931")


def factur_x(pdf, xml, title, author):
    """A PDF with the XML embedded as factur-x.xml, the PDF/A-3 metadata and an sRGB output intent."""
    from facturx import generate_from_binary  # lazy: factur-x takes 0.2 s to import

    combined = generate_from_binary(
        _with_output_intent(pdf),
        xml,
        flavor="factur-x",
        level="en16931",
        check_xsd=False,  # _xml() checked it already
        pdf_metadata={"author": author, "keywords": "Factur-X", "title": title, "subject": title},
        lang="en-GB",
    )
    return combined


def _with_output_intent(pdf):
    """PDF/A wants an output intent naming the colour space of the page colours: sRGB (made by Pillow)."""
    from PIL import ImageCms  # lazy: a start-up cost only e-invoices pay
    from pypdf import PdfReader, PdfWriter  # lazy: a start-up cost only e-invoices pay
    from pypdf.generic import (  # lazy: a start-up cost only e-invoices pay
        ArrayObject,
        DictionaryObject,
        NameObject,
        NumberObject,
        StreamObject,
        TextStringObject,
    )

    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(pdf)))
    profile = StreamObject()
    profile.set_data(ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes())
    profile[NameObject("/N")] = NumberObject(3)
    intent = DictionaryObject(
        {
            NameObject("/Type"): NameObject("/OutputIntent"),
            NameObject("/S"): NameObject("/GTS_PDFA1"),
            NameObject("/OutputConditionIdentifier"): TextStringObject("sRGB"),
            NameObject("/Info"): TextStringObject("sRGB IEC61966-2.1"),
            NameObject("/DestOutputProfile"): add_indirect(writer, profile),
        }
    )
    writer.root_object[NameObject("/OutputIntents")] = ArrayObject([intent])
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()
