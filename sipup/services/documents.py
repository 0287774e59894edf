"""Invoices and credit notes as pages and as Factur-X PDFs (reportlab, the e-invoice inside), also attached
to the invoice mail."""

import re
from dataclasses import dataclass, field

from flask import current_app
from flask_babel import gettext
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
        raise NotFound(gettext("There is no invoice “%(number)s”.", number=number))
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
    from . import pdf_layout  # lazy: reportlab takes 0.1 s to import; only a PDF needs it

    title = gettext("Invoice")
    plain = pdf_layout.document_pdf(
        document, title, head, order.delivery_address if order else "–", intro, rows, totals, closing
    )
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
    from . import pdf_layout  # lazy: reportlab takes 0.1 s to import; only a PDF needs it

    plain = pdf_layout.document_pdf(
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
