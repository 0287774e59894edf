"""The shop in German and English: every template's text marked, the German catalog complete, the language of
a request (account, switch, browser, default), mails in the recipient's language, and numbers as each language
writes them."""

import ast
import io
import os
import re
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest
from babel.messages.extract import DEFAULT_KEYWORDS, extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.pofile import read_po
from babel.numbers import format_decimal
from flask import current_app, render_template_string
from flask_babel import force_locale
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import select, update

from sipup import exceptions
from sipup.exceptions import InvalidInput, InvalidQuantity, LineRefused
from sipup.extensions import db
from sipup.i18n import (
    COOKIE,
    N_,
    Kept,
    compile_catalogs,
    fitted,
    kept,
    kept_parts,
    role_name,
    shown,
    status_name,
    stored_kept,
)
from sipup.jobs.running import _result_text
from sipup.models import Invoice, OrderStatus, User
from sipup.observability import panels as monitor_panels
from sipup.services import import_companies, orders, payments, vat
from sipup.services.parsing import MAX_MONEY, MAX_QUANTITY, parse_money, parse_quantity
from tests.conftest import login
from tests.servers import LocalSmtp

PACKAGE = Path(__file__).resolve().parent.parent / "sipup"
TEMPLATES = PACKAGE / "templates"
TRANSLATIONS = PACKAGE / "translations"
KEYWORDS = {**DEFAULT_KEYWORDS, "lazy_gettext": None}  # as docs/development.md runs pybabel extract
LETTER = re.compile(r"[^\W\d_]")
# Attributes a reader sees or hears (data-label heads a table cell on phones).
SHOWN_ATTRIBUTES = ("title", "placeholder", "aria-label", "alt", "data-label", "hx-confirm", "label")
JINJA = re.compile(r"\{\{.*?\}\}|\{%.*?%\}|\{#.*?#\}", re.S)
# What is not prose: code samples and the markup inside which nothing is read out.
NOT_PROSE = re.compile(r"<(script|style|code)\b.*?</\1>|<!--.*?-->", re.S | re.I)
TAG = re.compile(r"<[a-zA-Z/!][^>]*>")
# Markup that templates pass around as text: a class name for <body>, an attribute the navigation adds.
MARKUP = {"login-body", 'aria-current="page"'}


def _unmarked(source):
    """The pieces of a template's text with letters that are neither inside {{ }}/{% %} nor in code."""
    masked = JINJA.sub(lambda m: "\0" * len(m.group(0)), source)  # keep offsets, hide every Jinja construct
    masked = NOT_PROSE.sub(lambda m: " " * len(m.group(0)), masked)
    found = []
    for tag in TAG.finditer(masked):
        for attribute, value in re.findall(r'\s([\w:-]+)="([^"]*)"', tag.group(0)):
            if attribute in SHOWN_ATTRIBUTES and LETTER.search(value.replace("\0", "")):
                found.append(f'{attribute}="{value.replace(chr(0), "")}"')
    for text in TAG.sub(" ", masked).split("\0"):
        if LETTER.search(text) and text.strip() not in MARKUP:
            found.append(" ".join(text.split()))
    return found


def test_the_check_finds_unmarked_text():
    assert _unmarked('<p class="x">Hello {{ name }}</p><b title="Hi">{{ _("Fine") }}</b>') == ['title="Hi"', "Hello"]
    assert _unmarked("<code>flask queue worker</code>{# a note #}<script>let a = 1;</script>{{ x }}") == []


# The load-test report is a developer's file written by `flask loadtest` outside the app (no request, no
# user, no language): it stays English, like the rest of that command's output.
NOT_TRANSLATED = {"loadtest"}


def test_every_template_marks_its_text_for_translation():
    problems = []
    for path in sorted(TEMPLATES.rglob("*")):
        if path.suffix in (".html", ".txt") and path.relative_to(TEMPLATES).parts[0] not in NOT_TRANSLATED:
            problems += [f"{path.relative_to(TEMPLATES)}: {text}" for text in _unmarked(path.read_text())]
    assert not problems, "Text not marked for translation ({{ _(...) }}):\n" + "\n".join(problems)


# Prose in a Jinja expression: a macro's argument, a dict of labels, a choice's title ('Best match'). Literals
# that are the message of a translation call are taken out first.
JINJA_CODE = re.compile(r"\{\{.*?\}\}|\{%.*?%\}", re.S)
QUOTED = r"""(?:'[^']*'|"[^"]*")"""
TRANSLATED = re.compile(rf"\b(?:_|gettext|lazy_gettext)\(\s*{QUOTED}|\bngettext\(\s*{QUOTED}\s*,\s*{QUOTED}")
PROSE_LITERAL = re.compile(r"""(['"])([A-Z][a-z](?:(?!\1).)*)\1""")


def _unmarked_literals(source):
    """Capitalised string literals inside {{ }} and {% %} that no translation call takes (a dict's keys aside)."""
    found = []
    for code in JINJA_CODE.findall(source):
        code = TRANSLATED.sub("_()", code)
        found += [
            literal.group(2)
            for literal in PROSE_LITERAL.finditer(code)
            if not code[literal.end() :].lstrip().startswith(":")
        ]
    return found


def test_the_check_finds_unmarked_prose_in_expressions():
    source = """{% set words = {'Green': 'All healthy', 'red': _('Act now')} %}{{ save(label='Save to list') }}
    {{ ngettext("%(n)s line", "%(n)s lines", n) }}{{ x if y else 'New' }}{% if s in ('queued', 'Done') %}"""
    assert _unmarked_literals(source) == ["All healthy", "Save to list", "New", "Done"]


def test_templates_pass_no_unmarked_prose_to_macros_and_labels():
    problems = []
    for path in sorted(TEMPLATES.rglob("*")):
        if path.suffix in (".html", ".txt") and path.relative_to(TEMPLATES).parts[0] not in NOT_TRANSLATED:
            problems += [f"{path.relative_to(TEMPLATES)}: {text!r}" for text in _unmarked_literals(path.read_text())]
    assert not problems, "Prose in an expression not marked for translation (_('...')):\n" + "\n".join(problems)


# --- Python sources: what reaches a page, a mail or a user's terminal is marked --------------------------

WORD = re.compile(r"[^\W\d_]{2,}")
DOMAIN_ERRORS = {name for name, value in vars(exceptions).items() if isinstance(value, type)}
CLI_CALLS = {"click.echo", "click.ClickException", "click.UsageError", "click.confirm", "click.prompt"}
# The parsers of typed values name the field in their complaint: a label or message given to them is shown too.
# {function: the position of the first argument that is shown} (services' _field(errors, name, parse, form, label)).
PARSERS = {"parse_money": 1, "parse_count": 1, "parse_quantity": 1, "parse_date": 1, "_field": 4}
# The commands meant for the people who run the shop speak its default language; `flask db stats` and
# `flask db optimize` print diagnostic tables for whoever tunes the database, like the logs: English.
CLI_MODULES = {"cli.py", "imports_cli.py", "jobs/cli.py"}
CLI_NOT_TRANSLATED = {"db_stats", "db_optimize"}


def _prose(node):
    """Whether an expression is text with words written out: a literal, an f-string or a sum holding one."""
    if isinstance(node, ast.Constant):
        return isinstance(node.value, str) and bool(WORD.search(node.value))
    if isinstance(node, ast.JoinedStr):
        return any(_prose(part) for part in node.values if isinstance(part, ast.Constant))
    if isinstance(node, ast.BinOp):
        return _prose(node.left) or _prose(node.right)
    if isinstance(node, ast.Dict):  # FieldErrors({"name": "..."})
        return any(_prose(value) for value in node.values)
    return False


def _unmarked_python(source, module):
    """Calls that show plain text: a domain error, a flash, a stored note, and in the CLI's modules click's
    output, each given a literal or f-string instead of a translated message."""
    found = []
    cli = module in CLI_MODULES

    def visit(node, function):
        for child in ast.iter_child_nodes(node):
            inside = child.name if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)) else function
            if isinstance(child, ast.Call):
                callee = ast.unparse(child.func)
                shows = callee.split(".")[-1] in DOMAIN_ERRORS or callee == "flash"
                shows = shows or (cli and callee in CLI_CALLS and function not in CLI_NOT_TRANSLATED)
                if shows and child.args and _prose(child.args[0]):
                    found.append(f"{module}:{child.lineno}: {callee}({ast.unparse(child.args[0])[:80]})")
                if callee in PARSERS and module.startswith("services/"):
                    found.extend(
                        f"{module}:{child.lineno}: {callee}(..., {ast.unparse(arg)[:80]})"
                        for arg in child.args[PARSERS[callee] :]
                        if _prose(arg)
                    )
                found.extend(
                    f"{module}:{child.lineno}: note={ast.unparse(kw.value)[:80]}"
                    for kw in child.keywords
                    if kw.arg == "note" and _prose(kw.value)
                )
            if isinstance(child, ast.Assign) and _prose(child.value):  # errors["field"] = "..." of a form
                found.extend(
                    f"{module}:{child.lineno}: {ast.unparse(target)} = {ast.unparse(child.value)[:80]}"
                    for target in child.targets
                    if isinstance(target, ast.Subscript) and ast.unparse(target.value) == "errors"
                )
            visit(child, inside)

    visit(ast.parse(source), None)
    return found


def test_the_check_finds_unmarked_python_text():
    source = """
def view():
    flash(f"Saved {n} lines.")
    flash(gettext("Saved %(n)s lines.", n=n))
    raise NotFound("There is no such order.")
    raise NotFound(gettext("There is no such order."))
    OrderEvent(order_id=1, note=f"Paid by transfer {ref}.")
    OrderEvent(order_id=1, note=kept(N_("Paid by transfer %(ref)s."), ref=ref))
    click.echo(f"Done: {summary}.")
    click.echo(f"  {name:<20} {count:>5}")
    _field(errors, "deposit", parse_money, form, "Deposit")
    _field(errors, "price", parse_money, form, gettext("Price"))
    errors["sku"] = f"SKU {sku} is taken."
    raise FieldErrors({"name": "Give the list a name."})
"""
    assert [line.split(": ", 1)[1] for line in _unmarked_python(source, "services/x.py")] == [
        "flash(f'Saved {n} lines.')",
        "NotFound('There is no such order.')",
        "note=f'Paid by transfer {ref}.'",
        "_field(..., 'Deposit')",
        "errors['sku'] = f'SKU {sku} is taken.'",
        "FieldErrors({'name': 'Give the list a name.'})",
    ]
    in_cli = _unmarked_python(source, "jobs/cli.py")
    assert "jobs/cli.py:9: click.echo(f'Done: {summary}.')" in in_cli and not any("{count:>5}" in p for p in in_cli)


def test_python_sources_mark_what_they_show():
    problems = []
    for path in sorted(PACKAGE.rglob("*.py")):
        problems += _unmarked_python(path.read_text(), path.relative_to(PACKAGE).as_posix())
    assert not problems, "Text shown to people but not marked for translation (gettext):\n" + "\n".join(problems)


def _extracted():
    """The messages pybabel extract finds in the package, as babel.cfg maps it."""
    with open(TRANSLATIONS / "babel.cfg") as handle:
        method_map, options_map = parse_mapping_cfg(handle)
    return {
        message[0] if isinstance(message, tuple) else message
        for _, _, message, *_ in extract_from_dir(str(PACKAGE), method_map, options_map, keywords=KEYWORDS)
    }


def test_the_german_catalog_has_every_message_translated():
    with open(TRANSLATIONS / "de" / "LC_MESSAGES" / "messages.po", "rb") as handle:
        catalog = read_po(handle)
    problems = []
    for message in catalog:
        if not message.id:
            continue
        strings = message.string if isinstance(message.string, tuple) else (message.string,)
        if message.fuzzy or not all(strings):
            problems.append(f"fuzzy or empty: {message.id!r}")
    problems += [f"{message.id!r}: {error}" for message, errors in catalog.check() for error in errors]
    known = {message.id[0] if isinstance(message.id, tuple) else message.id for message in catalog}
    problems += [f"missing, run pybabel extract and update: {text!r}" for text in sorted(_extracted() - known)]
    assert not problems, "\n".join(problems)


def test_a_kept_message_is_shown_in_each_readers_language(app):
    payment = kept(
        N_("Payment %(reference)s of %(paid)s applied to %(number)s."), reference="R-1", paid=Decimal("2500"), number=7
    )
    summary = kept_parts(
        kept(N_("%(count)s stock level(s) applied from %(file)s"), count=2, file="stock.csv"),
        kept(
            N_("%(count)s line(s) not applied: %(lines)s"),
            count=2,
            lines=[kept(N_("line %(line)s: %(problem)s"), line=4, problem="unknown SKU"), "as typed"],
        ),
    )
    note = kept(N_("Invoice %(number)s, due %(due)s."), number="INV-1", due=date(2027, 1, 31))
    with force_locale("de"):
        assert shown(payment) == "Zahlung R-1 über 2.500,00\xa0€ auf 7 verbucht."
        assert shown(note) == "Rechnung INV-1, fällig am 31.01.2027."
        assert shown(summary) == (
            "2 Bestandszeile(n) aus stock.csv übernommen; 2 Zeile(n) nicht übernommen: Zeile 4: unknown SKU; as typed"
        )
    with force_locale("en"):
        assert shown(note) == "Invoice INV-1, due 31 Jan 2027." and shown(payment).endswith(
            "of €2,500.00 applied to 7."
        )
    # A person's words, a trace and a kept message cut short by its column are shown as they are.
    for text in ("Ring twice", "KeyError: 'x'", note[:30], None):
        assert shown(text) == text
    # A job's result longer than its column is kept in the shop's default language rather than cut mid-message.
    long = kept_parts(*[kept(N_("line %(line)s: %(problem)s"), line=n, problem="unknown SKU") for n in range(40)])
    assert len(long) > 400 and _result_text(long) == shown(long)[:400] and _result_text(long).startswith("line 0")


def test_typed_text_that_starts_like_a_kept_message_stays_as_typed(app):
    crafted = 'i18n:["%(a)999999999s",{"a":"b"}]'
    for typed in ("i18n:x", crafted, "i18n:", 'i18n:{"parts":3}'):
        note = kept(N_("Paid by bank transfer %(reference)s."), reference=typed)
        assert shown(note) == f"Paid by bank transfer {typed}."
        assert shown(kept_parts(typed, note)) == f"{typed}; Paid by bank transfer {typed}."
    # Stored text that is not a whole kept message is shown as it is, never an error.
    for stored in ("i18n:x", "i18n:[1]", "i18n:[1,2]", 'i18n:{"parts":3}', "i18n:null"):
        assert shown(stored) == stored
    # Only what kept() made is nested; a job's error read back from its record is nested again with stored_kept.
    inner = kept(N_("line %(line)s: %(problem)s"), line=4, problem="unknown SKU")
    assert isinstance(inner, Kept) and stored_kept(str(inner)) == inner and isinstance(stored_kept(str(inner)), Kept)
    assert type(stored_kept("i18n:x")) is str and type(stored_kept("Traceback")) is str
    with force_locale("de"):
        assert shown(
            kept(N_("%(count)s line(s) not applied: %(lines)s"), count=1, lines=[stored_kept(str(inner))])
        ) == ("1 Zeile(n) nicht übernommen: Zeile 4: unknown SKU")
    # Fitted to its column: plain text is cut; a kept message too long is kept in the default language, then cut.
    assert fitted("abcdef", 4) == "abcd" and fitted(inner, 400) == inner and fitted(None, 3) == ""
    long = kept(
        N_("Credit note %(number)s of %(amount)s: %(reason)s"), number="CN-1", amount=Decimal("5"), reason="x" * 300
    )
    with force_locale("de"):
        assert len(long) > 400 and fitted(long, 400) == f"Credit note CN-1 of €5.00: {'x' * 300}"
    assert fitted(long, 30) == "Credit note CN-1 of €5.00: xxx"


def test_catalogs_are_compiled_when_missing_or_older_than_their_po(tmp_path):
    folder = tmp_path / "de" / "LC_MESSAGES"
    folder.mkdir(parents=True)
    (folder / "messages.po").write_bytes((TRANSLATIONS / "de" / "LC_MESSAGES" / "messages.po").read_bytes())
    compile_catalogs(str(tmp_path))
    compiled = folder / "messages.mo"
    assert compiled.stat().st_size > 10_000
    compiled.write_bytes(b"stale")
    (folder / "messages.po").touch()
    compiled_time = compiled.stat().st_mtime - 10
    os.utime(compiled, (compiled_time, compiled_time))
    compile_catalogs(str(tmp_path))
    assert compiled.read_bytes() != b"stale"


# --- the language of a request ------------------------------------------------------------------------


def test_the_browser_language_then_the_switch_decide_for_visitors(client):
    german = client.get("/login", headers={"Accept-Language": "de-DE,de;q=0.9,en;q=0.5"}).get_data(as_text=True)
    assert 'lang="de"' in german and "Passwort vergessen?" in german
    assert "Forgot your password?" in client.get("/login", headers={"Accept-Language": "fr"}).get_data(as_text=True)
    switched = client.post("/language", data={"language": "en", "next": "/login"}, headers={"Accept-Language": "de"})
    assert switched.status_code == 302 and switched.headers["Location"].endswith("/login")
    assert COOKIE in switched.headers["Set-Cookie"]
    assert "Forgot your password?" in client.get("/login", headers={"Accept-Language": "de"}).get_data(as_text=True)
    refused = client.post("/language", data={"language": "xx", "next": "//evil.example"})
    assert refused.status_code == 302 and refused.headers["Location"] == "/"


def test_a_users_language_on_the_account_wins_over_the_browser(client, buyer):
    login(client, buyer)
    assert client.post("/account/language", data={"language": "de"}).status_code == 302
    page = client.get("/account/", headers={"Accept-Language": "en"}).get_data(as_text=True)
    assert "Ihr Konto" in page and "Ihre Sprache ist gespeichert." in page
    assert client.post("/account/language", data={"language": "klingon"}).status_code == 422
    client.post("/account/language", data={"language": ""})
    assert "Your account" in client.get("/account/", headers={"Accept-Language": "en"}).get_data(as_text=True)


def test_money_and_quantities_as_the_language_writes_them(client, shop, make_product, login_as):
    make_product(sku="KEG-1", base_price=Decimal("2500.00"), stock_on_hand=5000)
    login_as(shop.buyer)
    shop.buyer.language = "de"
    db.session.commit()
    page = client.get("/products/KEG-1").get_data(as_text=True)
    assert "2.500,00\xa0€" in page and "In den Warenkorb" in page
    preview = client.post("/quick-order", data={"lines": "KEG-1 1.000"}).get_data(as_text=True)
    assert 'name="quantity" value="1000"' in preview, preview


def test_the_back_office_answers_staff_in_their_language(client, make_user, login_as):
    login_as(make_user("staff"))
    german = {"Accept-Language": "de"}
    page = client.post("/admin/imports", data={"kind": "stock"}, headers=german).get_data(as_text=True)
    assert "Wählen Sie eine CSV-Datei zum Hochladen." in page
    stock = {"kind": "stock", "file": (io.BytesIO(b"sku,stock_on_hand\nA-1,x\nB-2,3\n"), "stock.csv")}
    page = client.post("/admin/imports", data=stock, headers=german).get_data(as_text=True)
    assert "„x“ ist keine ganze Zahl von 0 bis 10.000.000" in page, page
    assert "1 Bestandszeile zur Übernahme eingereiht." in page
    with force_locale("de"):
        assert (vat.percent(Decimal("0.055")), vat.percent(Decimal("0.19")), role_name("buyer")) == (
            "5,5 %",
            "19 %",
            "Einkäufer",
        )
    with force_locale("en"):
        assert (vat.percent(Decimal("0.055")), role_name("buyer")) == ("5.5 %", "buyer")


def test_the_company_import_reads_roles_in_either_language(app):
    users = (
        "Inhaber:anna@example.com, einkäufer:ben@example.com; EINKAUFER:cleo@example.com owner:dan@example.com eve@x.de"
    )
    _key, values = import_companies.read({"company": "Getränke Nord", "users": users})
    assert values["users"] == [
        ("anna@example.com", "owner"),
        ("ben@example.com", "buyer"),
        ("cleo@example.com", "buyer"),
        ("dan@example.com", "owner"),
        ("eve@x.de", "buyer"),
    ]
    for language, refusal in (
        ("de", "„Chef:x@example.com“: Die Rolle muss Inhaber oder Einkäufer sein"),
        ("en", "“Chef:x@example.com”: the role must be owner or buyer"),
    ):
        with force_locale(language), pytest.raises(LineRefused) as refused:
            import_companies.read({"company": "Getränke Nord", "users": "Chef:x@example.com staff:y@example.com"})
        assert refused.value.problems[0] == ("users", refusal)
        assert refused.value.problems[1][1].startswith("„staff:y@example.com“" if language == "de" else "“staff")


def test_an_orders_status_is_named_in_the_readers_language(app):
    statuses = [status.value for status in OrderStatus]
    with app.test_request_context(), force_locale("de"):
        german = [status_name(status) for status in statuses]
        badge = render_template_string('{% from "_macros.html" import status %}{{ status("credit_hold") }}')
    with app.test_request_context(), force_locale("en"):
        english = [status_name(status) for status in statuses]
    assert english == ["Placed", "Credit hold", "Confirmed", "Shipped", "Invoiced", "Paid", "Cancelled"]
    assert german == [
        "Aufgegeben",
        "Kreditprüfung",
        "Bestätigt",
        "Versandt",
        "In Rechnung gestellt",
        "Bezahlt",
        "Storniert",
    ]
    assert badge == '<span class="status status-credit_hold">Kreditprüfung</span>'


@pytest.mark.app_config(DEFAULT_LANGUAGE="de")
def test_the_command_line_speaks_the_shops_default_language(app, runner, make_company):
    make_company(name="Getränke Nord")
    created = runner.invoke(
        args=[
            "user",
            "create",
            "anna@example.com",
            "--role",
            "buyer",
            "--company",
            "getränke nord",
            "--password-stdin",
        ],
        input="a long enough password 1\n",
    )
    assert created.exit_code == 0 and created.output == "Einkäufer anna@example.com bei Getränke Nord angelegt.\n"
    missing = runner.invoke(
        args=["user", "create", "x@example.com", "--role", "buyer", "--password-stdin"],
        input="a long enough password 2\n",
    )
    assert missing.exit_code == 1 and "Ein Einkäufer gehört zu einer Firma: Geben Sie --company an." in missing.output
    assert "Es gibt keinen Job 424242." in runner.invoke(args=["queue", "retry", "424242"]).output
    assert runner.invoke(args=["queue", "pause", "low"]).output == "Jobs der Priorität low sind angehalten.\n"
    runner.invoke(args=["queue", "resume", "low"])
    status = runner.invoke(args=["queue", "status"]).output.splitlines()
    header = status[1].split()
    assert header[0] == "status" and header[-1] == "summe" and "total" not in status[1], status
    states = [line.rsplit(None, 4)[0].strip() for line in status[2:8]]
    assert states == ["wartend", "läuft", "wird wiederholt", "erledigt", "fehlgeschlagen", "abgebrochen"], status


def test_config_names_a_wrong_language(make_app):
    from sipup.config import ConfigError

    with pytest.raises(ConfigError, match="SIPUP_DEFAULT_LANGUAGE"):
        make_app(DEFAULT_LANGUAGE="fr")
    with pytest.raises(ConfigError, match="SIPUP_LANGUAGES"):
        make_app(LANGUAGES="en,zz-nowhere")


# --- mails in the recipient's language ------------------------------------------------------------------


def test_a_german_users_mail_is_german_through_a_real_smtp_server(app, make_app, buyer):
    buyer_id, email = buyer.id, buyer.email
    db.session.commit()  # nothing of this session holds the database while the site writes
    smtp = LocalSmtp().start()
    try:
        site = make_app(MAIL_URL=smtp.url, MAIL_FROM="orders@shop.example.com", PUBLIC_URL="https://shop.example.com")
        with site.app_context():
            site.extensions["queue"].huey.flush()
            db.session.execute(update(User).where(User.id == buyer_id).values(language="de"))
            db.session.commit()
            site.test_client().post("/password/reset", data={"email": email}, headers={"Accept-Language": "en"})
            current_app.extensions["queue"].process(10)
            mail = smtp.messages[-1]
            assert mail["Subject"] == "Setzen Sie Ihr Passwort für sipup zurück"
            assert "Wählen Sie hier ein neues" in mail.get_body(("plain",)).get_content()
    finally:
        smtp.stop()


# --- numbers as each language writes them ---------------------------------------------------------------

CENTS = st.integers(min_value=0, max_value=int(MAX_MONEY * 100) - 1).map(lambda cents: Decimal(cents) / 100)


@pytest.mark.parametrize(
    "language, text, amount",
    [
        ("de", "2.500,00", "2500.00"),
        ("de", "2500,00", "2500.00"),
        ("de", "12.50", "12.50"),  # a lone point is a decimal point, as before
        ("en", "2,500.00", "2500.00"),
        ("en", "12,50", "12.50"),
        ("en", "2500", "2500.00"),
    ],
)
def test_amounts_as_people_write_them(language, text, amount):
    assert parse_money(text, "Price", language=language) == Decimal(amount)


@pytest.mark.parametrize("language, text", [("de", "2,500.00"), ("en", "2.500,00"), ("de", "1.2.3,4"), ("en", "1,2,5")])
def test_amounts_written_for_another_language_are_refused(language, text):
    with pytest.raises(InvalidInput, match="is not an amount"):
        parse_money(text, "Price", language=language)


@given(amount=CENTS, language=st.sampled_from(["de", "en"]))
def test_an_amount_as_the_language_formats_it_reads_back(amount, language):
    written = format_decimal(amount, format="#,##0.00", locale=language)
    assert parse_money(written, "Price", language=language) == amount


@given(quantity=st.integers(min_value=1, max_value=MAX_QUANTITY), language=st.sampled_from(["de", "en"]))
def test_a_quantity_as_the_language_formats_it_reads_back(quantity, language):
    assert parse_quantity(format_decimal(quantity, locale=language), language=language) == quantity


def test_quantities_with_group_separators():
    assert parse_quantity("1.000", language="de") == 1000 and parse_quantity("1,000", language="en") == 1000
    with pytest.raises(InvalidQuantity, match="whole number of packs"):
        parse_quantity("1,5", language="de")
    with pytest.raises(InvalidQuantity, match="more than"):
        parse_quantity("1.000.000", language="de")


# --- a German buyer's and a German clerk's day: nothing of it in English ---------------------------------

# Text the product used to write in English whatever the reader's language: none of it may come back.
ENGLISH = (
    "Best match",
    "List price, low first",
    "Save to list",
    "Save to a list",
    "Confirm</button>",
    "Release from credit hold",
    "Mark shipped",
    "Issue invoice",
    "Mark paid",
    "is not possible now",
    "exceeds the credit left",
    "awaiting credit review",
    ", due ",
    "No single company",
    "Credit hold",
    "Invite a user",
    "All parts healthy",
    "Working, with something",
    "Something needs attention",
    "i18n:",
)


WEEKDAY = r"\b(Mon|Tue|Wed|Thu|Fri|Sat|Sun) \d\d"  # a week's chart labels its days


def _german(client, url, *expected):
    """A page fetched as a German reader, with the German text expected and none of ENGLISH."""
    response = client.get(url, follow_redirects=True)
    page = response.get_data(as_text=True)
    assert response.status_code == 200, (url, response.status_code)
    assert 'lang="de"' in page, url
    for text in expected:
        assert text in page, (url, text)
    english = [text for text in ENGLISH if text in page]
    assert not english, (url, english)
    return page


def test_a_german_buyer_and_clerk_meet_no_english(app, client, make_company, make_user, make_product):
    make_product(sku="PILS-1", name="Hofbräu Pils", base_price=Decimal("50.00"), deposit=Decimal("0"))
    buyer = make_user("buyer", make_company(credit_limit="100.00", name="Getränke Nord"), language="de")
    staff = make_user("staff", language="de")
    admin = make_user("admin", language="de")
    app.extensions["queue"].huey.flush()

    assert login(client, buyer).status_code == 302
    _german(client, "/products?q=pils", "Beste Treffer", "Listenpreis, niedrigster zuerst", "Hofbräu Pils")
    _german(client, "/products/PILS-1", "Auf Liste speichern")
    client.post("/cart/add", data={"sku": "PILS-1", "quantity": "3"})
    _german(client, "/cart", "Auf einer Liste speichern")
    order = orders.checkout(buyer, app.config["VAT_RATE"], address_id=buyer.company.addresses[0].id)
    number = order.number
    _german(client, f"/orders/{number}", "übersteigt den verfügbaren Kreditrahmen", "wartet auf Kreditprüfung")

    client = app.test_client()  # the clerk's browser
    assert login(client, staff).status_code == 302
    _german(client, f"/admin/orders/{number}", "Aus der Kreditprüfung freigeben")
    refused = client.post(f"/admin/orders/{number}/ship", follow_redirects=True).get_data(as_text=True)
    assert f"Bestellung {number} ist in Kreditprüfung; „Als versandt markieren“ ist jetzt nicht möglich." in refused
    for action in ("release", "confirm", "ship", "invoice"):
        assert client.post(f"/admin/orders/{number}/{action}").status_code == 302
    invoice = db.session.scalar(select(Invoice).where(Invoice.order_id == order.id))
    page = _german(client, f"/admin/orders/{number}", f"Rechnung {invoice.number}, fällig am", "Als bezahlt markieren")
    assert f"{invoice.due_date:%d.%m.%Y}" in page
    _german(client, "/admin/", "Kreditprüfung")
    payments.import_bank_csv(b"reference;company;amount\nBANK-9;Nobody Ltd;10.00\n")
    app.extensions["queue"].process(20)

    client = app.test_client()  # the administrator's
    assert login(client, admin).status_code == 302
    _german(client, "/monitor/jobs?state=failed", "Auf „Nobody Ltd“ passt nicht genau eine Firma.", "fehlgeschlagen")
    _german(client, "/monitor")
    # The panels' data is remembered for every reader: an English administrator reads it first, the German one then
    # reads the same data, each in their language (range words, chart legends and tooltips, the bucket, "hour").
    english_admin = app.test_client()
    assert login(english_admin, make_user("admin", language="en")).status_code == 302
    english = ("last hour", "last 24 hours", "last 7 days", "</i>requests ", "</i>server errors ", "</i>done ")
    english += ("</i>enqueued ", "</i>failed ", "</i>hit rate ", ": requests ", ": done ", ": hit rate ", "no data")
    english += ("per minute, ", "per hour, ", "je minute", "je hour", ", hour", "Hit rate, hour")
    for name in [name for name, _title in monitor_panels.panels() if monitor_panels.ranged(name)]:
        for range_ in ("hour", "day", "week"):
            url = f"/monitor/panels/{name}?range={range_}"
            first = english_admin.get(url).get_data(as_text=True)
            if (name, range_) == ("traffic", "hour"):
                assert "last hour" in first and "</i>requests " in first and ": requests " in first
            if (name, range_) == ("traffic", "week"):
                assert re.search(WEEKDAY, first)
            answer = client.get(url)
            page = answer.get_data(as_text=True)
            assert answer.status_code == 200, (url, answer.status_code)
            found = [text for text in english if text in page]
            assert not found, (url, found)
            assert not re.search(WEEKDAY, page), (url, re.search(WEEKDAY, page))
    page = client.get("/monitor/panels/queue?range=day").get_data(as_text=True)
    assert "je Stunde, letzte 24 Stunden" in page and "</i>erledigt " in page and "</i>eingereiht " in page
    assert "Trefferquote, Stunde" in client.get("/monitor/panels/cache").get_data(as_text=True)

    # Health and Recommendations: their checks and rules are computed once and read in each reader's language.
    # (rows that do not depend on the servers the suite runs against, or on what earlier tests left in the counters)
    english_checks = ("Queue processor", "Read replicas", "Statistics")
    english_checks += ("SIPUP_DATABASE_REPLICA_URLS is not set: every read goes to the primary",)
    german_checks = ("Warteschlangen-Verarbeitung", "Lese-Replikate", "Statistiken")
    german_checks += ("SIPUP_DATABASE_REPLICA_URLS ist nicht gesetzt: Alle Lesezugriffe gehen an den Primärserver",)
    english_rules = ("Failed jobs in the last 24 hours", "1 failed", "Read the error in the Queue panel")
    english_rules += ("Cache hit rate under 60%", "Disk almost full", "p95 response time above 500 ms")
    german_rules = ("Fehlgeschlagene Jobs in den letzten 24 Stunden", "1 fehlgeschlagen", "Den Fehler im Feld")
    german_rules += ("Cache-Trefferquote unter 60 %", "Festplatte fast voll", "p95-Antwortzeit über 500 ms")
    for name, english_texts, german_texts in (
        ("health", english_checks, german_checks),
        ("recommendations", english_rules, german_rules),
    ):
        url = f"/monitor/panels/{name}"
        first = english_admin.get(url).get_data(as_text=True)
        assert all(text in first for text in english_texts), (url, [t for t in english_texts if t not in first])
        answer = client.get(url)
        page = answer.get_data(as_text=True)
        assert answer.status_code == 200, (url, answer.status_code)
        assert all(text in page for text in german_texts), (url, [t for t in german_texts if t not in page])
        found = [text for text in english_texts if text in page]
        assert not found, (url, found)
    # Figures are written the reader's way: the disk's free share as 31% in English and 31 % in German.
    assert re.search(r"\d% free", english_admin.get("/monitor/panels/health").get_data(as_text=True))
    assert re.search(r"\d % frei", client.get("/monitor/panels/health").get_data(as_text=True))


def test_templates_translate_as_jinjas_gettext_does(app):
    """`_()` in templates: the translation, its variables escaped, always a format string (`%%` is one %), in the
    language of the request; the same string with other variables or in another language is not mixed up."""
    source = '{{ _("Cart") }}|{{ _("Quantity of %(name)s", name=name) }}|{{ _("100%% sure") }}'
    with app.app_context(), app.test_request_context(headers={"Accept-Language": "de"}):  # a request's own context
        assert render_template_string(source, name="<b>Bier</b>") == (
            "Warenkorb|Menge von &lt;b&gt;Bier&lt;/b&gt;|100% sure"
        )
        assert render_template_string(source, name="Wein") == "Warenkorb|Menge von Wein|100% sure"
    with app.app_context(), app.test_request_context(headers={"Accept-Language": "en"}):
        assert render_template_string(source, name="Wine") == "Cart|Quantity of Wine|100% sure"
