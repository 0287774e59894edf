"""The shop in the reader's language (Flask-Babel): which language a request, mail or PDF is in, the catalogs
compiled at start when missing or stale, and money, numbers and dates as that language writes them.

The language of a request, first that applies: the signed-in user's choice on /account, the visitor's switch
(a cookie), the browser's Accept-Language, SIPUP_DEFAULT_LANGUAGE. Mails and PDFs use their recipient's
(`in_language_of(user)`). Contributors: docs/development.md, "Translations".
"""

import json
import logging
import os
from contextlib import contextmanager
from datetime import date as date_type
from decimal import Decimal
from functools import lru_cache

from babel import Locale, UnknownLocaleError
from babel.dates import format_date as babel_date
from babel.dates import format_datetime as babel_datetime
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.numbers import format_currency, format_decimal
from flask import current_app, has_app_context, has_request_context, request
from flask_babel import force_locale, get_locale, get_translations, gettext, lazy_gettext, pgettext
from flask_login import current_user
from jinja2 import pass_context
from markupsafe import Markup
from werkzeug.datastructures import LanguageAccept
from werkzeug.http import parse_accept_header

from .config import ConfigError
from .extensions import babel
from .searchtext import folded

log = logging.getLogger("sipup.i18n")
COOKIE = "sipup_language"
COOKIE_DAYS = 365
TRANSLATIONS = os.path.join(os.path.dirname(__file__), "translations")
# Dates as each language writes them in the shop; others get their CLDR "medium" form.
DATE_FORMATS = {"en": "dd MMM y", "de": "dd.MM.y"}
DATETIME_FORMATS = {"en": "dd MMM y, HH:mm", "de": "dd.MM.y, HH:mm"}
ROLE_NAMES = {
    "admin": lazy_gettext("admin"),
    "staff": lazy_gettext("staff"),
    "owner": lazy_gettext("owner"),
    "buyer": lazy_gettext("buyer"),
}
# An order's status as the reader reads it (the stored value stays the English word).
STATUS_NAMES = {
    "placed": lazy_gettext("Placed"),
    "credit_hold": lazy_gettext("Credit hold"),
    "confirmed": lazy_gettext("Confirmed"),
    "shipped": lazy_gettext("Shipped"),
    "invoiced": lazy_gettext("Invoiced"),
    "paid": lazy_gettext("Paid"),
    "cancelled": lazy_gettext("Cancelled"),
}
# The same status inside a sentence ("Order 2612-000001 is now …"): German does not lower-case its nouns, and a
# hold reads "in Kreditprüfung", not "ist kreditprüfung".
STATUS_IN_SENTENCE = {
    "placed": lazy_gettext("placed"),
    "credit_hold": lazy_gettext("on credit hold"),
    "confirmed": lazy_gettext("confirmed"),
    "shipped": lazy_gettext("shipped"),
    "invoiced": lazy_gettext("invoiced"),
    "paid": lazy_gettext("paid"),
    "cancelled": lazy_gettext("cancelled"),
}
# What the product writes into the database for people to read later (an order's history note, a job's result or
# error) is kept as its message id and values behind this mark, and translated for each reader by shown().
KEPT = "i18n:"
MINUS = "\u2212"  # a real minus sign, as the shop has always printed negative amounts


def register_i18n(app):
    """Check SIPUP_LANGUAGES and SIPUP_DEFAULT_LANGUAGE, compile stale catalogs, pick each request's language."""
    languages = configured_languages(app.config)
    default = app.config["DEFAULT_LANGUAGE"]
    if default not in languages:
        raise ConfigError(
            f"SIPUP_DEFAULT_LANGUAGE={default!r} must be one of SIPUP_LANGUAGES ({', '.join(languages)})."
        )
    compile_catalogs()
    babel.init_app(app, locale_selector=_request_locale, default_locale=default)
    # Templates translate through the catalog of the request's locale, kept per locale, rather than finding it
    # through Flask-Babel's lookups again for every string (a tenth of the checkout page).
    app.jinja_env.install_gettext_callables(
        gettext=lambda s: _translations().ugettext(s),
        ngettext=lambda s, p, n: _translations().ungettext(s, p, n),
        pgettext=lambda c, s: _translations().upgettext(c, s),
        npgettext=lambda c, s, p, n: _translations().unpgettext(c, s, p, n),
        newstyle=True,
    )
    app.jinja_env.globals["_"] = _template_gettext  # in place of Jinja's alias of gettext, two calls deep

    @app.context_processor
    def _languages():
        return {"languages": language_names(), "language": current_language()}


@pass_context
def _template_gettext(context, string, **variables):
    """`_()` in templates, as Jinja's newstyle gettext makes it (the translation escapes the variables and is always
    a format string), in one call rather than three; a string without variables is made once per locale."""
    if not variables and context.eval_ctx.autoescape:
        return _made(_translations(), string)
    translated = _translations().ugettext(string)
    return (Markup(translated) if context.eval_ctx.autoescape else translated) % variables


@lru_cache(maxsize=4096)
def _made(translations, string):
    return Markup(translations.ugettext(string)) % {}


def _translations():
    """Flask-Babel's translations for the current locale (the request's, or one forced for a mail), found once per
    locale in this app."""
    locale = get_locale()
    if locale is None:
        return get_translations()
    kept = current_app.extensions.setdefault("sipup_translations", {})
    found = kept.get(locale)
    if found is None:
        found = kept[locale] = get_translations()
    return found


def configured_languages(config):
    """SIPUP_LANGUAGES as a list of language codes Babel knows, else ConfigError naming the wrong one."""
    return list(_parsed_languages(str(config["LANGUAGES"])))


@lru_cache(maxsize=16)
def _parsed_languages(setting):
    """The codes of a SIPUP_LANGUAGES value, each checked once (pages ask for them several times a request)."""
    codes = [code.strip() for code in setting.split(",") if code.strip()]
    for code in codes:
        try:
            Locale.parse(code)
        except (ValueError, UnknownLocaleError):
            raise ConfigError(f"SIPUP_LANGUAGES: {code!r} is not a language code such as en or de.") from None
    if not codes:
        raise ConfigError("SIPUP_LANGUAGES must name at least one language, e.g. en,de.")
    return tuple(codes)


def languages():
    """The language codes this shop offers."""
    return configured_languages(current_app.config)


def language_names():
    """(code, the language's own name) for each offered language, for the switch and the account form."""
    return list(_language_names(_parsed_languages(str(current_app.config["LANGUAGES"]))))


@lru_cache(maxsize=16)
def _language_names(codes):
    return tuple((code, Locale.parse(code).get_display_name(code).capitalize()) for code in codes)


def offered(code):
    """code when the shop offers it, else None."""
    return code if code and code in _parsed_languages(str(current_app.config["LANGUAGES"])) else None


def request_language():
    """The language of this request: the user's, the visitor's switch, the browser's, the default."""
    if not has_request_context():
        return current_app.config["DEFAULT_LANGUAGE"]
    user_language = getattr(current_user, "language", None) if current_user else None
    return offered(user_language) or visitor_language()


def _request_locale():
    """Flask-Babel's locale selector: request_language() as a Locale made once per code (Babel takes a Locale as
    it is; from a code it would parse one again on every request)."""
    return _locale(request_language())


@lru_cache(maxsize=64)
def _locale(code):
    return Locale.parse(code)


VISITOR_LANGUAGE = "sipup.visitor_language"  # in the WSGI environ: the request's visitor language, worked out once


def visitor_language():
    """The language of this request before the user is known: the switch's, the browser's, the default."""
    environ = request.environ
    language = environ.get(VISITOR_LANGUAGE)
    if language is None:
        config = current_app.config
        language = environ[VISITOR_LANGUAGE] = _visitor_language(
            request.cookies.get(COOKIE),
            environ.get("HTTP_ACCEPT_LANGUAGE", ""),
            str(config["LANGUAGES"]),
            config["DEFAULT_LANGUAGE"],
        )
    return language


@lru_cache(maxsize=1024)
def _visitor_language(switched, accept_language, languages, default):
    """visitor_language() worked out once per switch cookie, Accept-Language header and setting: browsers send a
    handful of distinct headers, and parsing one costs more than the rest of a cached page's language work."""
    offered_codes = _parsed_languages(languages)
    if switched and switched in offered_codes:
        return switched
    return parse_accept_header(accept_language, LanguageAccept).best_match(offered_codes) or default


def language_of(user):
    """The language mails and PDFs for a user are written in: theirs, else the shop's default."""
    return offered(getattr(user, "language", None)) or current_app.config["DEFAULT_LANGUAGE"]


@contextmanager
def in_language_of(user):
    """Render mails and PDFs for user in their language, whatever the request's is."""
    with force_locale(language_of(user)):
        yield


def current_language():
    """The language code in use now (the default outside an app context)."""
    if not has_app_context():
        return "en"
    locale = get_locale()
    if locale is None:
        return str(current_app.config["DEFAULT_LANGUAGE"])
    return _code_of(locale)


@lru_cache(maxsize=64)
def _code_of(locale):
    if locale.territory or locale.script or locale.variant or getattr(locale, "modifier", None):
        return str(locale)
    return locale.language  # what str() makes of a plain language, without Babel's formatting


def money(value, currency=None):
    """An amount with its currency as the current language writes it: €2,500.00 or 2.500,00 €."""
    if value is None:
        return "–"
    return _money(value, currency or current_app.config["CURRENCY"], current_language())


@lru_cache(maxsize=4096)
def _money(value, currency, language):
    """money() of an amount in a currency and language, formatted once: Babel takes longer than the rest of
    showing a price, and a shop shows the same few amounts over and over."""
    text = format_currency(value, currency, locale=language)
    return text.replace("-", MINUS, 1) if value < 0 else text


def number(value, decimals=None):
    """A quantity or other number as the current language writes it (1,000 or 1.000)."""
    if value is None:
        return "–"
    return _number(value, decimals, current_language())


@lru_cache(maxsize=4096, typed=True)
def _number(value, decimals, language):
    """number() of a value in a language, formatted once (typed: 1 and 1.0 are kept apart)."""
    pattern = None if decimals is None else "#,##0." + "0" * decimals if decimals else "#,##0"
    return format_decimal(value, format=pattern, locale=language)


def percent(rate):
    """A rate such as 0.19 as the shop writes it: 19 %, 5.5 % (5,5 % in German); "" when not recorded."""
    if rate is None:
        return ""
    return _percent(rate, current_language())


@lru_cache(maxsize=256)
def _percent(rate, language):
    """percent() of a rate in a language, formatted once (the shop has a handful of rates)."""
    return f"{format_decimal((Decimal(rate) * 100).normalize(), locale=language)} %"


def role_name(role):
    """A user's role (admin, staff, owner, buyer) in the current language; an unknown one as it is."""
    return str(ROLE_NAMES.get(str(role), role))


def role_named(text):
    """The role (admin, staff, owner, buyer) that text names, as stored or as any offered language calls it
    (`Einkäufer`, `einkaufer`), in any case and with or without accents; None when it names none."""
    wanted = folded(text)
    return wanted if wanted in ROLE_NAMES else _role_words(tuple(languages())).get(wanted)


@lru_cache(maxsize=8)
def _role_words(codes):
    """{folded role name: role} in each of these languages (the catalogs do not change while the app runs)."""
    words = {}
    for language in codes:
        with force_locale(language):
            words.update({folded(role_name(role)): role for role in ROLE_NAMES})
    return words


def status_name(status):
    """An order's status (placed, confirmed...) in the current language; an unknown one as it is."""
    return str(STATUS_NAMES.get(str(status), status))


def status_in_sentence(status):
    """An order's status as a sentence names it after "is": placed, on credit hold... (in the current language)."""
    return str(STATUS_IN_SENTENCE.get(str(status), status))


def job_status_name(status):
    """A job's state (queued, done, failed...) in the current language; an unknown one as it is. (With a context:
    a cancelled job is "abgebrochen", a cancelled order "storniert".)"""
    names = {
        "queued": pgettext("job state", "queued"),
        "running": pgettext("job state", "running"),
        "retrying": pgettext("job state", "retrying"),
        "done": pgettext("job state", "done"),
        "failed": pgettext("job state", "failed"),
        "cancelled": pgettext("job state", "cancelled"),
    }
    return names.get(str(status), status)


def date(value):
    """A date as the current language writes it."""
    if not value:
        return "–"
    language = current_language()
    return babel_date(value, DATE_FORMATS.get(language, "medium"), locale=language)


def datetime(value):
    """A date and time (naive, as stored) as the current language writes it."""
    if not value:
        return "–"
    language = current_language()
    return babel_datetime(value, DATETIME_FORMATS.get(language, "medium"), locale=language)


def compile_catalogs(directory=TRANSLATIONS):
    """Compile each messages.po whose messages.mo is missing or older (a fresh clone has none); the .po files
    are what is kept in git. A read-only install keeps what it has and says so once."""
    for language in sorted(os.listdir(directory)) if os.path.isdir(directory) else ():
        folder = os.path.join(directory, language, "LC_MESSAGES")
        po, mo = os.path.join(folder, "messages.po"), os.path.join(folder, "messages.mo")
        if not os.path.exists(po):
            continue
        if os.path.exists(mo) and os.path.getmtime(mo) >= os.path.getmtime(po):
            continue
        with open(po, "rb") as handle:
            catalog = read_po(handle, locale=language)
        partial = f"{mo}.{os.getpid()}.tmp"  # processes starting together each write their own, then swap it in
        try:
            with open(partial, "wb") as handle:
                write_mo(handle, catalog)
            os.replace(partial, mo)
        except OSError as error:
            log.warning(
                "The %s catalog could not be compiled (%s); run pybabel compile -d sipup/translations", language, error
            )


def N_(message):
    """Mark a message for the catalogs without translating it now (Babel's extractor knows N_)."""
    return message


class Kept(str):
    """A text kept() or kept_parts() produced (or one the product stored that way, read back with `stored_kept`).
    Only these are nested as messages when given as a value of another kept message: a person's words stay their
    words, whatever they start with."""

    __slots__ = ()


def kept(message, **values):
    """A message (marked with N_) and its values as stored for shown() to translate for each reader: amounts
    (Decimal) and dates are written in the reader's way then, and a value that is itself kept is shown too."""
    return Kept(KEPT + _json([message, {name: _kept(value) for name, value in values.items()}]))


def _json(value):
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


class Figure:
    """A measured number given to kept(), written when shown as the reader's language does: 1,234.5 or 1.234,5;
    a share (0.31) as 31% or 31 %."""

    __slots__ = ("value", "decimals", "share")

    def __init__(self, value, decimals=0, share=False):
        self.value, self.decimals, self.share = float(value), int(decimals), bool(share)


def figure_text(value, decimals=0, share=False, language=None):
    """A number as language (the current one by default) writes it, with `decimals` places; a share in percent."""
    language = language or current_language()
    number_ = value * 100 if share else value
    pattern = "#,##0" + ("." + "0" * decimals if decimals else "")
    text = format_decimal(round(number_, decimals), format=pattern, locale=language)
    if not share:
        return text
    # the language's own percent sign and spacing (31% in English, 31 % in German), with a plain space
    return Locale.parse(language).percent_formats[None].pattern.replace("\xa0", " ").replace("#,##0", text, 1)


def _kept(value):
    if isinstance(value, Figure):
        return {"figure": value.value, "decimals": value.decimals, "share": value.share}
    if isinstance(value, Decimal):
        return {"money": str(value)}
    if isinstance(value, date_type):
        return {"date": value.isoformat()}
    if isinstance(value, (list, tuple)):
        return [_kept(each) for each in value]
    if isinstance(value, Kept):  # nested as it is, not as a string to escape again
        return {"kept": json.loads(value[len(KEPT) :])}
    return value if isinstance(value, (int, float, type(None))) else str(value)


def kept_parts(*parts):
    """Kept messages shown as one text, separated by "; " (a summary whose parts depend on what happened)."""
    return Kept(KEPT + _json({"parts": [_kept(part) for part in parts]}))


def stored_kept(text):
    """A text the product itself stored (a job's error) as Kept when it is a whole kept message, so that it can be
    nested in another one; anything else (a trace, a message cut short) as the plain text it is."""
    if isinstance(text, Kept) or not isinstance(text, str) or not text.startswith(KEPT):
        return text
    try:
        json.loads(text[len(KEPT) :])
    except ValueError:
        return text
    return Kept(text)


def fitted(text, length):
    """text as a column of `length` characters keeps it: a kept message that does not fit is stored as shown() in
    the shop's default language instead (a kept message cut short could not be read back), then cut; any other
    text is just cut."""
    text = "" if text is None else text
    if len(text) <= length:
        return text
    if text.startswith(KEPT):  # shown() reads it back as a message (or, if it is none, as it is)
        with force_locale(current_app.config["DEFAULT_LANGUAGE"] if has_app_context() else "en"):
            text = str(shown(text))
    return str(text)[:length]


def kept_error(error_class, message, **values):
    """A domain error whose text is the message in the current language and whose `kept` form is what a job's
    record stores, to be shown in each reader's language."""
    error = error_class(gettext(message, **values))
    error.kept = kept(message, **values)
    return error


def shown(text):
    """Stored text in the current language: a kept message translated with its values, anything else (a person's
    own words, a trace, a message cut short by its column) as it is."""
    return _read(text, english=False)


def english(text):
    """A kept message as English text (its message id with its values), whatever the reader's language: what
    probes, logs, metrics' labels and the job history keep. Any other text as it is."""
    return _read(text, english=True)


def _read(text, english):
    if not isinstance(text, str) or not text.startswith(KEPT):
        return text
    try:
        return str(_translated(json.loads(text[len(KEPT) :]), english))
    except (ValueError, TypeError, KeyError, IndexError, AttributeError, OverflowError, MemoryError):
        return text  # not a message the product kept (or one cut short): shown as it is, never an error


def _translated(stored, english=False):
    """A kept message's stored form in the current language, or in English without the catalogs (the message ids
    are English, so that needs no app or locale); TypeError when it is not one."""
    if isinstance(stored, dict) and isinstance(stored.get("parts"), list):
        return _shown(stored["parts"], english)
    if not (
        isinstance(stored, list) and len(stored) == 2 and isinstance(stored[0], str) and isinstance(stored[1], dict)
    ):
        raise TypeError("not a kept message")
    message, values = stored
    values = {name: _shown(value, english) for name, value in values.items()}
    if english:
        return message % values if values else message
    return gettext(message, **values)


def _shown(value, english=False):
    """A kept value as the reader writes it; in English, amounts and dates as stored."""
    if isinstance(value, dict) and "figure" in value:
        language = "en" if english else None
        return figure_text(float(value["figure"]), int(value.get("decimals", 0)), bool(value.get("share")), language)
    if isinstance(value, dict) and "money" in value:
        return value["money"] if english else money(Decimal(value["money"]))
    if isinstance(value, dict) and "date" in value:
        return value["date"] if english else date(date_type.fromisoformat(value["date"]))
    if isinstance(value, dict) and "kept" in value:
        return _translated(value["kept"], english)
    if isinstance(value, list):
        return "; ".join(str(_shown(each, english)) for each in value)
    return value  # a plain value as it was given, even one that starts with the mark


def shown_field(row, field):
    """A row's field in the current language: its kept form (row["kept"][field]) translated when the row has one
    (panel data shared by readers of every language, an alert mail's), else the field as it is."""
    kept_forms = row.get("kept") if isinstance(row, dict) else None
    if isinstance(kept_forms, dict) and kept_forms.get(field) is not None:
        return shown(kept_forms[field])
    return row.get(field) if isinstance(row, dict) else getattr(row, field, None)
