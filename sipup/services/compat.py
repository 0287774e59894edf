"""The pypdf internal the e-invoices rely on, in one place (requirements.txt pins pypdf); tests/test_compat.py
checks it against the installed version.

- `add_indirect`: pypdf has no public way to add an indirect object (the PDF/A output intent's ICC profile,
  a stream, must be one), so this calls PdfWriter._add_object."""


def add_indirect(writer, pdf_object):
    """Add an object to the PDF being written and return the indirect reference to it."""
    return writer._add_object(pdf_object)
