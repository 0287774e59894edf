"""Tables people upload and download as spreadsheets: CSV (both Excel dialects, through sipup.csvfiles) or XLSX.

Reading takes the file as it came and tells which it is by its content, never its name. An XLSX workbook is
read with openpyxl in read-only mode with data_only=False, so a cell holding a formula reads as the formula's
text (`=SUM(A1:A3)`), never as a value Excel (or anyone) computed: nothing in an upload is evaluated. XML
bombs are defused (defusedxml, which openpyxl uses when it is installed), and a workbook that unpacks to more
than MAX_UNPACKED_BYTES is refused before openpyxl opens it.

    read_upload(data, ("sku", "name"), max_bytes, max_lines)  # [(line, {column: text})], else InvalidInput
    xlsx_bytes(header, rows)                                  # a workbook of one sheet; text stays text
"""

import io
import logging
import math
import zipfile
from datetime import date, datetime
from decimal import Decimal

from flask_babel import format_decimal, gettext, lazy_gettext

from .csvfiles import read_table, uncell
from .exceptions import InvalidInput

log = logging.getLogger("sipup.spreadsheets")

XLSX_START = b"PK\x03\x04"
UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")
MAX_UNPACKED_BYTES = 200 * 1_048_576
NOT_A_TABLE = lazy_gettext(
    "This file is neither CSV nor XLSX. In Excel choose Save As → CSV UTF-8 or Excel Workbook (.xlsx)."
)


def read_upload(data, columns, max_bytes, max_lines, size=None):
    """The lines of an uploaded CSV or XLSX file whose first line names the columns (at least `columns`), as
    (line number, {column: text}); InvalidInput saying why for a file too large, of another kind or unreadable.
    size: the file's whole length when only its first max_bytes + 1 were read."""
    size = len(data) if size is None else size
    if size > max_bytes:
        shown = math.ceil(size * 10 / 1_048_576) / 10  # rounded up: 1.02 MB is not "1.0 MB; at most 1 MB"
        raise InvalidInput(
            gettext(
                "The file is %(size)s MB; import files can be at most %(most)s MB (SIPUP_IMPORT_MAX_MB). "
                "Split it into smaller files.",
                size=format_decimal(shown, "0.0"),
                most=max_bytes // 1_048_576,
            )
        )
    if not data.strip():
        raise InvalidInput(gettext("The file is empty."))
    if data.startswith(XLSX_START):
        lines = _xlsx_lines(data, columns, max_lines)
    else:
        lines = []
        for number, record in read_table(_csv_text(data), columns):
            lines.append((number, {name: uncell(value) for name, value in record.items()}))
            _check_length(lines, max_lines)
    if not lines:
        raise InvalidInput(gettext("The file has a header line but no line below it."))
    return lines


def _csv_text(data):
    """CSV bytes as text (UTF-8 with or without BOM, UTF-16 with its BOM, else Windows' code page)."""
    if data.startswith(UTF16_BOMS):
        try:
            return data.decode("utf-16")
        except UnicodeDecodeError:
            raise InvalidInput(
                gettext("The file starts like UTF-16 text but is not valid UTF-16.") + " " + NOT_A_TABLE
            ) from None
    if b"\x00" in data:  # old .xls, .ods, PDF, pictures: no CSV a spreadsheet writes has a NUL byte
        raise InvalidInput(str(NOT_A_TABLE))
    return data


def _check_length(lines, max_lines):
    if len(lines) > max_lines:
        raise InvalidInput(
            gettext(
                "The file has more than %(most)s lines; split it into smaller files.", most=format_decimal(max_lines)
            )
        )


def _xlsx_lines(data, columns, max_lines):
    """The first sheet's rows, each cell as text; formulas stay the text they are."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            unpacked = sum(info.file_size for info in archive.infolist())
    except (zipfile.BadZipFile, ValueError, OSError, EOFError):
        raise InvalidInput(str(NOT_A_TABLE)) from None
    if unpacked > MAX_UNPACKED_BYTES:
        raise InvalidInput(
            gettext("The workbook unpacks to more than %(most)s MB; split it.", most=MAX_UNPACKED_BYTES // 1_048_576)
        )
    import openpyxl  # lazy: openpyxl takes 0.1 s to import; only a workbook needs it

    lines = []
    try:
        workbook = openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=False)
        try:
            rows = workbook.worksheets[0].iter_rows(values_only=True)
            names = [_text(value).strip().lower() for value in next(rows, None) or ()]
            missing = [c for c in columns if c not in names]
            if missing:
                raise InvalidInput(
                    gettext(
                        "The first line must name the columns %(columns)s; missing: %(missing)s.",
                        columns=", ".join(columns),
                        missing=", ".join(missing),
                    )
                )
            for number, row in enumerate(rows, start=2):
                values = [_text(value) for value in row]
                if any(value.strip() for value in values):
                    lines.append((number, dict(zip(names, values))))
                    _check_length(lines, max_lines)
        finally:
            workbook.close()
    except InvalidInput:
        raise
    # openpyxl reports a broken workbook with whatever its parser met (KeyError for a missing part, ValueError,
    # TypeError, XML errors, ...): for an upload each of them means the same thing to the person who sent it.
    except Exception as exc:  # noqa: BLE001
        log.info("An uploaded workbook could not be read: %r", exc)
        raise InvalidInput(
            gettext("The workbook cannot be read (%(why)s).", why=type(exc).__name__) + " " + NOT_A_TABLE
        ) from None
    return lines


def _text(value):
    """A cell's value as the text a person would have typed: 24.0 is 24, True is yes, a formula its own text."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    if isinstance(value, datetime):
        return value.date().isoformat() if value.time() == datetime.min.time() else value.isoformat()
    if isinstance(value, (int, Decimal, date, str)):
        return str(value) if not isinstance(value, date) else value.isoformat()
    return str(getattr(value, "text", value))  # an array formula: its text


def xlsx_bytes(header, rows, title="Sheet1"):
    """A workbook of one sheet: the header, then the rows; numbers stay numbers, text (even `=...`) stays text."""
    import openpyxl  # lazy: openpyxl takes 0.1 s to import; only a workbook needs it

    workbook = openpyxl.Workbook(write_only=True)
    sheet = workbook.create_sheet(title[:31])
    sheet.append(list(header))
    for row in rows:
        sheet.append([_cell(sheet, value) for value in row])
    out = io.BytesIO()
    workbook.save(out)
    return out.getvalue()


def _cell(sheet, value):
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, str):
        from openpyxl.cell import WriteOnlyCell  # lazy: openpyxl takes 0.1 s to import; only a workbook needs it
        from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE  # lazy: as above

        # XML 1.0 has no control characters (a pasted NUL or escape): left out, or the workbook could not be made.
        cell = WriteOnlyCell(sheet, value=ILLEGAL_CHARACTERS_RE.sub("", value))
        cell.data_type = "s"  # openpyxl makes a formula of any text starting with "=": this one is text
        return cell
    return value
