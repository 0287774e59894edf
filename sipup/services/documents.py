"""A buyer's invoice as a page and as a PDF (reportlab), also attached to the invoice mail."""

import io
from dataclasses import dataclass
from xml.sax.saxutils import escape

from flask import current_app
from reportlab.lib import colors
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle, getSampleStyleSheet
from reportlab.lib.units import mm
from reportlab.pdfgen.canvas import Canvas
from reportlab.platypus import Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from ..extensions import db
from ..models import Company, Invoice, Order
from .errors import NotFound


@dataclass
class InvoiceDocument:
    """What an invoice shows: the invoice, its order with lines, the customer, and who issues it."""

    invoice: Invoice
    order: Order | None
    company: Company
    billing_address: str
    issuer: list

    @property
    def payment_reference(self):
        return self.invoice.number


def issuer_lines():
    """Who issues invoices: SIPUP_INVOICE_ISSUER split at "|" (name, address, VAT id, bank), else SITE_NAME."""
    configured = [part.strip() for part in current_app.config["INVOICE_ISSUER"].split("|") if part.strip()]
    return configured or [current_app.config["SITE_NAME"]]


def invoice_document(number, company_id):
    """A company's invoice by number with everything its page and PDF show; another company's is NotFound."""
    invoice = db.session.scalar(
        select(Invoice).where(Invoice.number == (number or "")[:20], Invoice.company_id == company_id)
    )
    if invoice is None:
        raise NotFound(f"There is no invoice “{number}”.")
    order = db.session.scalar(
        select(Order)
        .options(selectinload(Order.lines))
        .where(Order.id == invoice.order_id, Order.company_id == company_id)
    )
    company = invoice.company
    billing = company.addresses[0].one_line() if company.addresses else ""
    return InvoiceDocument(invoice, order, company, billing, issuer_lines())


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
            self.setFont("Helvetica", 8)
            self.drawRightString(
                A4[0] - 18 * mm, 10 * mm, f"{self._invoice_number} · Page {self._pageNumber} of {total}"
            )
            super().showPage()
        super().save()


def invoice_pdf(document):
    """The invoice as PDF bytes: issuer, customer with addresses and VAT id, lines with deposit, totals,
    due date and payment reference, every page numbered."""
    money = current_app.jinja_env.filters["money"]
    invoice, order, company = document.invoice, document.order, document.company
    styles = getSampleStyleSheet()
    small = ParagraphStyle("small", parent=styles["Normal"], fontSize=8.5, leading=11)

    def para(text, style=small):
        return Paragraph(escape(str(text)).replace("\n", "<br/>"), style)

    story = [
        Table(
            [
                [
                    para("\n".join(document.issuer)),
                    para(
                        f"Invoice {invoice.number}\nIssued {invoice.issued_at:%d.%m.%Y}"
                        f"\nDue {invoice.due_date:%d.%m.%Y}"
                    ),
                ]
            ],
            colWidths=[110 * mm, 64 * mm],
            style=[("VALIGN", (0, 0), (-1, -1), "TOP")],
        ),
        Spacer(1, 6 * mm),
        Paragraph(f"Invoice {escape(invoice.number)}", styles["Heading1"]),
        Table(
            [
                [
                    para(
                        "Bill to\n"
                        + "\n".join(
                            filter(
                                None,
                                [
                                    company.name,
                                    document.billing_address,
                                    f"VAT id {company.vat_id}" if company.vat_id else "",
                                ],
                            )
                        )
                    ),
                    para("Deliver to\n" + (order.delivery_address if order else "–")),
                ]
            ],
            colWidths=[87 * mm, 87 * mm],
            style=[("VALIGN", (0, 0), (-1, -1), "TOP")],
        ),
        Spacer(1, 4 * mm),
    ]
    if order is not None:
        story.append(
            para(
                f"Order {order.number} of {order.created_at:%d.%m.%Y}"
                + (f", your reference {order.po_reference}" if order.po_reference else "")
            )
        )
        story.append(Spacer(1, 3 * mm))
        rows = [["SKU", "Product", "Qty", "Price", "Deposit", "Total"]]
        rows += [
            [
                line.sku,
                para(f"{line.name}\n{line.sell_unit}"),
                line.quantity,
                money(line.unit_price),
                money(line.unit_deposit),
                money(line.line_total),
            ]
            for line in order.lines
        ]
        table = Table(rows, colWidths=[24 * mm, 74 * mm, 12 * mm, 22 * mm, 20 * mm, 22 * mm], repeatRows=1)
        table.setStyle(
            TableStyle(
                [
                    ("FONT", (0, 0), (-1, -1), "Helvetica", 8.5),
                    ("FONT", (0, 0), (-1, 0), "Helvetica-Bold", 8.5),
                    ("ALIGN", (2, 0), (-1, -1), "RIGHT"),
                    ("VALIGN", (0, 0), (-1, -1), "TOP"),
                    ("LINEBELOW", (0, 0), (-1, 0), 0.5, colors.black),
                    ("LINEBELOW", (0, 1), (-1, -1), 0.25, colors.lightgrey),
                ]
            )
        )
        story += [table, Spacer(1, 4 * mm)]
        totals = [
            ["Goods", money(order.goods_total)],
            ["Deposit", money(order.deposit_total)],
            ["VAT", money(order.vat_total)],
            ["Total", money(order.total)],
        ]
    else:
        totals = [["Total", money(invoice.amount)]]
    if invoice.paid_amount:
        totals += [["Paid", money(invoice.paid_amount)], ["Open", money(invoice.open_amount)]]
    story.append(
        Table(
            totals,
            colWidths=[40 * mm, 30 * mm],
            hAlign="RIGHT",
            style=[
                ("ALIGN", (1, 0), (1, -1), "RIGHT"),
                ("FONT", (0, 0), (-1, -1), "Helvetica", 9),
                ("FONT", (0, 3 if order else 0), (-1, 3 if order else 0), "Helvetica-Bold", 9),
            ],
        )
    )
    story += [
        Spacer(1, 6 * mm),
        para(
            f"Please pay {money(invoice.open_amount)} by {invoice.due_date:%d.%m.%Y} "
            f"with the payment reference {document.payment_reference}."
        ),
    ]
    out = io.BytesIO()

    def numbered(*args, **kwargs):
        canvas = _NumberedCanvas(*args, **kwargs)
        canvas._invoice_number = invoice.number
        return canvas

    SimpleDocTemplate(
        out,
        pagesize=A4,
        title=f"Invoice {invoice.number}",
        author=current_app.config["SITE_NAME"],
        leftMargin=18 * mm,
        rightMargin=18 * mm,
        topMargin=16 * mm,
        bottomMargin=18 * mm,
    ).build(story, canvasmaker=numbered)
    return out.getvalue()
