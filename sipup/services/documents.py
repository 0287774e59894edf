"""Invoices and credit notes as pages and as Factur-X PDFs (reportlab, the e-invoice inside), also attached
to the invoice mail."""

import io
import re
from dataclasses import dataclass, field
from xml.sax.saxutils import escape

from flask import current_app
from flask_babel import gettext
from reportlab.lib import colors
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle, getSampleStyleSheet
from reportlab.lib.units import mm
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import TTFont
from reportlab.pdfgen.canvas import Canvas
from reportlab.platypus import Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from .. import i18n
from ..exceptions import NotFound
from ..extensions import db
from ..models import Address, Company, CreditNote, Invoice, Order
from . import credit_notes, einvoice, vat


@dataclass
class Issuer:
    """Who issues invoices, from SIPUP_INVOICE_ISSUER: its lines as printed, and the parts e-invoices need."""

    lines: list
    name: str
    street: str = ""
    postcode: str = ""
    city: str = ""
    country: str = ""
    vat_id: str = ""


@dataclass
class InvoiceDocument:
    """What an invoice shows: the invoice, its order with lines, the customer, who issues it, VAT per rate,
    its payments and credit notes."""

    invoice: Invoice
    order: Order | None
    company: Company
    billing_address: Address | None
    issuer: Issuer
    vat_rows: list = field(default_factory=list)

    @property
    def payment_reference(self):
        return self.invoice.number

    @property
    def number(self):
        return self.invoice.number

    @property
    def billing_line(self):
        return self.billing_address.one_line() if self.billing_address else ""


@dataclass
class CreditNoteDocument:
    """What a credit note shows: its lines, the invoice it corrects, the customer, who issues it, VAT per rate."""

    note: CreditNote
    invoice: Invoice
    company: Company
    billing_address: Address | None
    issuer: Issuer
    vat_rows: list = field(default_factory=list)

    @property
    def number(self):
        return self.note.number

    @property
    def billing_line(self):
        return self.billing_address.one_line() if self.billing_address else ""


ADDRESS = re.compile(r"(?P<street>[^,]+),\s*(?P<postcode>[\w-]+)\s+(?P<city>[^,]+?)(?:,\s*(?P<country>[A-Z]{2}))?")
VAT_ID_PART = re.compile(r"(?:VAT id|VAT|USt-IdNr\.?)\s*:?\s*(?P<id>[A-Z]{2}[0-9A-Z+*]{2,12})", re.IGNORECASE)


def issuer():
    """Who issues invoices: SIPUP_INVOICE_ISSUER split at "|" (name | street, postcode city[, country] |
    VAT id DE... | bank ...), else SITE_NAME; the address and VAT id are found among the parts."""
    config = current_app.config
    lines = [part.strip() for part in config["INVOICE_ISSUER"].split("|") if part.strip()]
    found = Issuer(lines or [config["SITE_NAME"]], (lines or [config["SITE_NAME"]])[0], country=config["VAT_COUNTRY"])
    for part in lines[1:]:
        address, vat_id = ADDRESS.fullmatch(part), VAT_ID_PART.fullmatch(part)
        if vat_id and not found.vat_id:
            found.vat_id = vat_id.group("id").upper()
        elif address and not found.street:
            found.street, found.postcode, found.city = address["street"], address["postcode"], address["city"]
            found.country = address["country"] or found.country
    return found


def _billing(company):
    return company.addresses[0] if company.addresses else None


def invoice_document(number, company_id=None):
    """An invoice by number (of one company when given) with everything its page, PDF and e-invoice show;
    another company's is NotFound."""
    stmt = select(Invoice).where(Invoice.number == (number or "")[:20])
    if company_id is not None:
        stmt = stmt.where(Invoice.company_id == company_id)
    invoice = db.session.scalar(stmt)
    if invoice is None:
        raise NotFound(f"There is no invoice “{number}”.")
    order = db.session.scalar(
        select(Order)
        .options(selectinload(Order.lines))
        .where(Order.id == invoice.order_id, Order.company_id == invoice.company_id)
    )
    company = invoice.company
    rows = vat.order_summary(order) if order is not None else []
    return InvoiceDocument(invoice, order, company, _billing(company), issuer(), rows)


def credit_note_document(number, company_id=None):
    """A credit note by number (of one company when given) with everything its page, PDF and e-invoice show."""
    note = credit_notes.credit_note(number, company_id)
    company = note.company
    return CreditNoteDocument(note, note.invoice, company, _billing(company), issuer(), credit_notes.summary(note))


class _NumberedCanvas(Canvas):
    """A canvas that writes "Page n of m" on every page once it knows how many there are."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._pages = []

    def showPage(self):
        self._pages.append(dict(self.__dict__))
        self._startPage()

    def save(self):
        total = len(self._pages)
        for state in self._pages:
            self.__dict__.update(state)
            self.setFont(FONT, 8)
            self.drawRightString(
                A4[0] - 18 * mm,
                10 * mm,
                gettext(
                    "%(number)s · Page %(page)s of %(pages)s",
                    number=self._invoice_number,
                    page=self._pageNumber,
                    pages=total,
                ),
            )
            super().showPage()
        super().save()


FONT, BOLD = "SipupSans", "SipupSans-Bold"


def _fonts():
    """Embed the Bitstream Vera fonts reportlab ships (PDF/A wants every font embedded; they have € and umlauts)."""
    if FONT not in pdfmetrics.getRegisteredFontNames():
        pdfmetrics.registerFont(TTFont(FONT, "Vera.ttf"))
        pdfmetrics.registerFont(TTFont(BOLD, "VeraBd.ttf"))


def _date(value):
    return f"{value:%d.%m.%Y}" if value else "–"


def invoice_pdf(document):
    """The invoice as a Factur-X PDF: issuer, customer with addresses and VAT ids, date of supply, lines with
    deposit and VAT rate, VAT per rate, totals, payments and credit notes, what is still to pay (or when it
    was paid), every page numbered, and the EN 16931 XML inside."""
    money = i18n.money
    invoice, order = document.invoice, document.order
    head = [
        gettext("Invoice %(number)s", number=invoice.number),
        gettext("Issued %(date)s", date=_date(invoice.issued_at)),
        gettext("Delivered %(date)s", date=_date(invoice.delivery_date or invoice.issued_at)),
        gettext("Due %(date)s", date=_date(invoice.due_date)),
    ]
    intro = ""
    rows, totals = [], []
    if order is not None:
        intro = gettext("Order %(number)s of %(date)s", number=order.number, date=_date(order.created_at)) + (
            gettext(", your reference %(reference)s", reference=order.po_reference) if order.po_reference else ""
        )
        rows = [_row(line, money) for line in order.lines]
        totals = [[gettext("Goods"), money(order.goods_total)], [gettext("Deposit"), money(order.deposit_total)]]
    totals += _vat_totals(document.vat_rows, money)
    totals.append([gettext("Total"), money(invoice.amount)])
    for note in invoice.credit_notes:
        totals.append([gettext("Credit note %(number)s", number=note.number), money(-note.amount)])
    if invoice.paid_amount:
        totals.append([gettext("Paid"), money(invoice.paid_amount)])
    if invoice.paid_amount or invoice.credit_notes:
        totals.append([gettext("Open"), money(invoice.open_amount)])
    closing = []
    if order is not None and order.reverse_charge:
        closing.append(current_app.config["VAT_REVERSE_CHARGE_NOTE"])
    if invoice.paid_at is not None and invoice.paid_amount:
        closing.append(gettext("Paid on %(date)s. Thank you.", date=_date(invoice.paid_at)))
    elif invoice.paid_at is not None:
        closing.append(
            gettext("Settled on %(date)s by credit notes; nothing is to be paid.", date=_date(invoice.paid_at))
        )
    else:
        closing.append(
            gettext(
                "Please pay %(amount)s by %(date)s with the payment reference %(reference)s.",
                amount=money(invoice.open_amount),
                date=_date(invoice.due_date),
                reference=document.payment_reference,
            )
        )
    title = gettext("Invoice")
    plain = _pdf(document, title, head, order.delivery_address if order else "–", intro, rows, totals, closing)
    return einvoice.factur_x(plain, einvoice.invoice_xml(document), f"{title} {invoice.number}", document.issuer.name)


def credit_note_pdf(document):
    """The credit note as a Factur-X PDF: the invoice it corrects, its reason, the lines and quantities taken
    back with their VAT rates, VAT per rate and the amount credited, with the EN 16931 XML inside."""
    money = i18n.money
    note, invoice = document.note, document.invoice
    title = gettext("Credit note")
    head = [
        gettext("Credit note %(number)s", number=note.number),
        gettext("Issued %(date)s", date=_date(note.issued_at)),
        gettext("For invoice %(number)s", number=invoice.number),
    ]
    intro = gettext(
        "Credit note for invoice %(number)s of %(date)s. Reason: %(reason)s",
        number=invoice.number,
        date=_date(invoice.issued_at),
        reason=note.reason,
    )
    totals = [[gettext("Goods"), money(note.goods_total)], [gettext("Deposit"), money(note.deposit_total)]]
    totals += _vat_totals(document.vat_rows, money)
    totals.append([gettext("Credited"), money(note.amount)])
    closing = [
        gettext(
            "%(amount)s is taken off invoice %(number)s; what was paid beyond it is refunded.",
            amount=money(note.amount),
            number=invoice.number,
        )
    ]
    order = invoice.order
    plain = _pdf(
        document,
        title,
        head,
        order.delivery_address if order else "–",
        intro,
        [_row(line, money) for line in note.lines],
        totals,
        closing,
    )
    return einvoice.factur_x(plain, einvoice.credit_note_xml(document), f"{title} {note.number}", document.issuer.name)


def _row(line, money):
    return [
        line.sku,
        f"{line.name}\n{line.sell_unit}",
        line.quantity,
        money(line.unit_price),
        money(line.unit_deposit),
        vat.percent(line.vat_rate) or "–",
        money(line.line_total),
    ]


def _vat_totals(rows, money):
    return [
        [
            gettext("VAT %(rate)s on %(base)s", rate=row.percent, base=money(row.base))
            if row.rate is not None
            else gettext("VAT"),
            money(row.vat),
        ]
        for row in rows
    ]


def _pdf(document, title, head, deliver_to, intro, rows, totals, closing):
    """The PDF of an invoice or credit note, laid out alike."""
    _fonts()
    company = document.company
    styles = getSampleStyleSheet()
    small = ParagraphStyle("small", parent=styles["Normal"], fontName=FONT, fontSize=8.5, leading=11)
    heading = ParagraphStyle("heading", parent=styles["Heading1"], fontName=BOLD)

    def para(text, style=small):
        return Paragraph(escape(str(text)).replace("\n", "<br/>"), style)

    bill_to = [
        company.name,
        document.billing_line,
        gettext("VAT id %(id)s", id=company.vat_id) if company.vat_id else "",
    ]
    story = [
        Table(
            [[para("\n".join(document.issuer.lines)), para("\n".join(head))]],
            colWidths=[110 * mm, 64 * mm],
            style=[("VALIGN", (0, 0), (-1, -1), "TOP")],
        ),
        Spacer(1, 6 * mm),
        Paragraph(f"{title} {escape(document.number)}", heading),
        Table(
            [
                [
                    para(gettext("Bill to") + "\n" + "\n".join(filter(None, bill_to))),
                    para(gettext("Deliver to") + "\n" + deliver_to),
                ]
            ],
            colWidths=[87 * mm, 87 * mm],
            style=[("VALIGN", (0, 0), (-1, -1), "TOP")],
        ),
        Spacer(1, 4 * mm),
    ]
    if intro:
        story += [para(intro), Spacer(1, 3 * mm)]
    if rows:
        header = [gettext(name) for name in ("SKU", "Product", "Qty", "Price", "Deposit", "VAT", "Total")]
        body = [[sku, para(name), *rest] for sku, name, *rest in rows]
        table = Table(
            [header, *body], colWidths=[24 * mm, 66 * mm, 12 * mm, 20 * mm, 18 * mm, 14 * mm, 20 * mm], repeatRows=1
        )
        table.setStyle(
            TableStyle(
                [
                    ("FONT", (0, 0), (-1, -1), FONT, 8.5),
                    ("FONT", (0, 0), (-1, 0), BOLD, 8.5),
                    ("ALIGN", (2, 0), (-1, -1), "RIGHT"),
                    ("VALIGN", (0, 0), (-1, -1), "TOP"),
                    ("LINEBELOW", (0, 0), (-1, 0), 0.5, colors.black),
                    ("LINEBELOW", (0, 1), (-1, -1), 0.25, colors.lightgrey),
                ]
            )
        )
        story += [table, Spacer(1, 4 * mm)]
    grand = next(index for index, (label, _) in enumerate(totals) if label in (gettext("Total"), gettext("Credited")))
    story.append(
        Table(
            totals,
            colWidths=[60 * mm, 30 * mm],
            hAlign="RIGHT",
            style=[
                ("ALIGN", (1, 0), (1, -1), "RIGHT"),
                ("FONT", (0, 0), (-1, -1), FONT, 9),
                ("FONT", (0, grand), (-1, grand), BOLD, 9),
            ],
        )
    )
    story.append(Spacer(1, 6 * mm))
    story += [para(text) for text in closing]
    out = io.BytesIO()

    def numbered(*args, **kwargs):
        canvas = _NumberedCanvas(*args, **kwargs)
        canvas._invoice_number = document.number
        return canvas

    SimpleDocTemplate(
        out,
        pagesize=A4,
        title=f"{title} {document.number}",
        author=document.issuer.name,
        leftMargin=18 * mm,
        rightMargin=18 * mm,
        topMargin=16 * mm,
        bottomMargin=18 * mm,
    ).build(story, canvasmaker=numbered)
    return out.getvalue()


def document_file(kind, extension, number, company_id=None):
    """(bytes, file name, media type) of an invoice or credit note ("invoice", "credit_note") as PDF with its
    e-invoice inside (Factur-X) or as XRechnung XML ("pdf", "xml"); NotFound unless it exists (and, given a
    company, is that company's)."""
    find, pdf, xml = {
        "invoice": (invoice_document, invoice_pdf, einvoice.invoice_xml),
        "credit_note": (credit_note_document, credit_note_pdf, einvoice.credit_note_xml),
    }[kind]
    document = find(number, company_id)
    if extension == "pdf":
        return pdf(document), f"{document.number}.pdf", "application/pdf"
    return xml(document, einvoice.XRECHNUNG), f"{document.number}.xml", "application/xml"
