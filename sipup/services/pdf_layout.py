"""The printed layout of invoices and credit notes (reportlab): page numbers, embedded fonts, the tables.
Imported by `documents` only when a PDF is made, since reportlab costs a tenth of a second to import."""

import io
from xml.sax.saxutils import escape

from flask_babel import gettext
from reportlab.lib import colors
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle, getSampleStyleSheet
from reportlab.lib.units import mm
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import TTFont
from reportlab.pdfgen.canvas import Canvas
from reportlab.platypus import Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle


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


def document_pdf(document, title, head, deliver_to, intro, rows, totals, closing):
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
