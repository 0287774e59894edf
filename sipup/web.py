"""Cross-cutting web behaviour: teardowns that never replace an answer, proxies, versioned static URLs, template
helpers, security headers."""

import functools
import hashlib
import ipaddress
import logging
import os
import re
import threading
import time
from functools import lru_cache

from flask import (
    Flask,
    current_app,
    g,
    get_flashed_messages,
    get_template_attribute,
    has_request_context,
    render_template,
    request,
    session,
)
from flask.sessions import SecureCookieSessionInterface
from flask_login import current_user
from flask_wtf.csrf import generate_csrf
from itsdangerous import BadSignature
from markupsafe import Markup, escape
from sqlalchemy.exc import DBAPIError
from werkzeug.middleware.proxy_fix import ProxyFix
from werkzeug.routing import IntegerConverter

from . import i18n
from .compat import csrf_tokens, use_signed_csrf
from .database import DATABASE
from .metrics.outages import outage
from .services import cart
from .services.parsing import MAX_ID

log = logging.getLogger("sipup.web")


class Sipup(Flask):
    """Flask whose teardown functions (its extensions' too) log what they raise instead of raising it: the
    answer is made by then, and an error while cleaning up (a rollback on a database that just died) must not
    turn a placed order into waitress's bare "Internal Server Error"."""

    def teardown_request(self, f):
        """Register f to run after each request, guarded."""
        super().teardown_request(_guarded_teardown(f))
        return f

    def teardown_appcontext(self, f):
        """Register f to run when each app context ends, guarded."""
        super().teardown_appcontext(_guarded_teardown(f))
        return f


def _guarded_teardown(func):
    """func(exc), with what it raises logged: one line for a database that went away, a traceback otherwise."""

    @functools.wraps(func)
    def guarded(exc):
        try:
            func(exc)
        except DBAPIError as error:
            outage(DATABASE).failed(error, where=f" (clean-up {func.__qualname__} after the answer)")
        except Exception:
            log.exception("Clean-up %s after the answer failed", func.__qualname__)

    return guarded


class IdConverter(IntegerConverter):
    """`<id:name>` in a route: an id from 1 to MAX_ID; anything else is a 404, not a database error."""

    def __init__(self, url_map):
        super().__init__(url_map, min=1, max=MAX_ID)


def register_web(app):
    """Trust SIPUP_PROXY_HOPS proxies, add `<id:...>` routes, version static URLs, add filters and headers."""
    app.url_map.converters["id"] = IdConverter
    register_proxies(app)

    @lru_cache(maxsize=256)
    def static_version(filename):
        path = os.path.join(app.static_folder, filename)
        try:
            with open(path, "rb") as handle:
                return hashlib.sha256(handle.read()).hexdigest()[:10]
        except OSError:
            return None

    @app.url_defaults
    def _version_static(endpoint, values):
        if endpoint == "static" and "filename" in values and "v" not in values:
            version = static_version(values["filename"])
            if version:
                values["v"] = version

    app.add_template_filter(i18n.money, "money")
    app.add_template_filter(i18n.number, "number")
    app.add_template_filter(i18n.date, "date")
    app.add_template_filter(i18n.role_name, "role")
    app.add_template_filter(i18n.status_name, "status_name")
    app.add_template_filter(i18n.datetime, "datetime")
    app.add_template_filter(i18n.shown, "shown")
    app.add_template_filter(i18n.shown_field, "shown_field")
    app.add_template_filter(i18n.status_in_sentence, "status_sentence")
    app.add_template_filter(i18n.job_status_name, "job_status")

    # Templates take the CSRF token signed once per session token (Flask-WTF's own processor comes first).
    app.jinja_env.globals["csrf_token"] = csrf_token

    @app.context_processor
    def _globals():
        return {"topbar": _topbar, "head_links": _head_links, "csrf_token": csrf_token}

    @app.after_request
    def _headers(response):
        # The names present, read once: Werkzeug's `in` and setdefault() raise and catch an error per absent header.
        headers = response.headers
        present = {name.lower() for name in headers.keys()}
        for name, value in SECURITY_HEADERS:
            if name.lower() not in present:
                headers[name] = value
        # A company's prices and orders must not stay in a shared browser's cache after sign-out.
        if request.endpoint != "static" and "cache-control" not in present and current_user.is_authenticated:
            headers["Cache-Control"] = "no-store"
        return response


SECURITY_HEADERS = (
    ("X-Content-Type-Options", "nosniff"),
    ("X-Frame-Options", "DENY"),
    ("Referrer-Policy", "same-origin"),
    (
        "Content-Security-Policy",
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; frame-ancestors 'none'",
    ),
)


# --- proxies ------------------------------------------------------------------------------------
# ProxyFix is the one place that reads X-Forwarded-*: it runs the same under waitress (which `flask serve`
# tells to pass those headers on untouched), any other WSGI server and the test client, and it counts
# proxies (SIPUP_PROXY_HOPS) rather than naming their addresses, which change behind a balancer.
PROXY_GROUP = "proxy"
UNTRUSTED_FORWARD = "loopback-forwarded"  # requests from loopback with X-Forwarded-For while hops are 0
WARN_EVERY_SECONDS = 60


def register_proxies(app):
    """Trust SIPUP_PROXY_HOPS proxies; with none, notice a same-host proxy whose headers go unused."""
    app.session_interface = HttpsAwareSessions()
    hops = app.config["PROXY_HOPS"]
    if hops:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops, x_prefix=hops)
        return
    warned = {"at": float("-inf")}
    lock = threading.Lock()

    @app.before_request
    def _notice_untrusted_proxy():
        if "HTTP_X_FORWARDED_FOR" not in request.environ or not _is_loopback(request.remote_addr):
            return
        current_app.extensions["counters"].incr(PROXY_GROUP, UNTRUSTED_FORWARD)
        now = time.monotonic()
        with lock:
            if now - warned["at"] < WARN_EVERY_SECONDS:
                return
            warned["at"] = now
        log.warning(
            "A request from %s carries X-Forwarded-For but SIPUP_PROXY_HOPS=0: a proxy on this host is not "
            "trusted, so every client shares its address and one rate-limit budget. Set SIPUP_PROXY_HOPS=1 "
            "(the number of proxies in front).",
            request.remote_addr,
        )


SECURE_SESSION_COOKIE = "__Host-session"  # browsers keep a __Host- cookie only if Secure, on Path=/, with no Domain


OPENED_KEPT = 10_000
PLAIN_VALUES = (str, int, float, bool, type(None))


def _signing_keys(app):
    return (app.secret_key, tuple(app.config["SECRET_KEY_FALLBACKS"] or ()))


class HttpsAwareSessions(SecureCookieSessionInterface):
    """Session cookies marked Secure when SIPUP_SESSION_COOKIE_SECURE says so, and also whenever the request came
    over HTTPS, as the trusted proxies report it: a site behind a TLS proxy gets them without a second setting.
    A Secure one is named __Host-session, so no subdomain and no plain-HTTP page can set or overwrite it."""

    def __init__(self):
        self._serializers = {}
        self._opened = {}  # (cookie, keys) -> (the session's values, when the cookie was signed)

    def get_signing_serializer(self, app):
        # Flask builds a serializer for every request (about 3% of a cached page); one per set of keys serves them
        # all, as a serializer keeps nothing between calls.
        keys = _signing_keys(app)
        serializer = self._serializers.get(keys)
        if serializer is None:
            serializer = self._serializers[keys] = super().get_signing_serializer(app)
        return serializer

    def open_session(self, app, request):
        # A cookie this process has verified before is not verified and decoded again (a twentieth of a cached
        # page): the same cookie under the same keys holds the same values, and its age is checked as Flask does.
        # Only sessions of plain values are kept, so that no request can change what another one opens.
        cookie = request.cookies.get(self.get_cookie_name(app))
        if not cookie or not app.secret_key:
            return super().open_session(app, request)
        max_age = int(app.permanent_session_lifetime.total_seconds())
        key = (cookie, _signing_keys(app))
        opened = self._opened.get(key)
        if opened is not None:
            values, signed_at = opened
            if 0 <= int(time.time()) - signed_at <= max_age:  # itsdangerous's own check of a signature's age
                return self.session_class(values)
        try:
            values, signed_at = self.get_signing_serializer(app).loads(cookie, max_age=max_age, return_timestamp=True)
        except BadSignature:
            return self.session_class()
        if all(isinstance(value, PLAIN_VALUES) for value in values.values()):
            if len(self._opened) >= OPENED_KEPT:
                self._opened.clear()
            self._opened[key] = (values, int(signed_at.timestamp()))
        return self.session_class(values)

    def get_cookie_secure(self, app):
        return super().get_cookie_secure(app) or (has_request_context() and request.is_secure)

    def get_cookie_name(self, app):
        return SECURE_SESSION_COOKIE if self.get_cookie_secure(app) else super().get_cookie_name(app)

    def get_cookie_domain(self, app):
        return None if self.get_cookie_secure(app) else super().get_cookie_domain(app)

    def get_cookie_path(self, app):
        return "/" if self.get_cookie_secure(app) else super().get_cookie_path(app)


def untrusted_proxy_requests(minutes=60):
    """Requests in the last minutes that came through a same-host proxy while SIPUP_PROXY_HOPS is 0."""
    if current_app.config["PROXY_HOPS"]:
        return 0
    return current_app.extensions["counters"].totals(PROXY_GROUP, "minute", minutes).get(UNTRUSTED_FORWARD, 0)


def _is_loopback(address):
    try:
        return ipaddress.ip_address(address or "").is_loopback
    except ValueError:
        return False


CART_SLOT = "<!--cart-count-->"
PARTS_KEPT = 1000
MACROS_KEPT = 10_000  # a few products' parts in each of their states: bounded, then begun again


SIGNED_CSRF_KEPT = 10_000


def csrf_token():
    """This request's CSRF token, as Flask-WTF's generate_csrf() makes it, but signed once per session token and
    key in this process: signing (a serializer, JSON, base64, an HMAC) was a tenth of a cached page. A token
    signed earlier validates the same, as tokens do not expire here (WTF_CSRF_TIME_LIMIT is None)."""
    config = current_app.config
    token, raw = csrf_tokens(config, session)
    if token is None:
        if raw is None:  # a new session: generate_csrf() makes its session token (and signs it)
            generate_csrf()
            raw = csrf_tokens(config, session)[1]
        secret = config.get("WTF_CSRF_SECRET_KEY") or current_app.secret_key
        token = _kept("sipup_signed_csrf", SIGNED_CSRF_KEPT, (secret, raw), generate_csrf)
        use_signed_csrf(config, token)
    return token


def page_language():
    """The language this request's page is rendered in: every cache of rendered text is keyed by it, from here."""
    return i18n.current_language()


def kept_render(name, key, **context):
    """The template rendered once per key (with the page language and script root added) and kept in this app's
    memory; `context` must be the same for every request with that key."""
    # Script roots come from proxies' headers: the memory is kept bounded.
    key = (name, page_language(), request.script_root, *key)
    return _kept("sipup_layout_parts", PARTS_KEPT, key, lambda: render_template(name, **context))


def kept_macro(name, macro, *args):
    """A template's macro called once per arguments (a dict counts by its items) in the page language, and kept in
    this app's memory apart from kept_render's parts: the stock shown of a product in one state, for instance."""
    key = (name, macro, page_language(), *(tuple(a.items()) if isinstance(a, dict) else a for a in args))
    return _kept("sipup_kept_macros", MACROS_KEPT, key, lambda: str(get_template_attribute(name, macro)(*args)))


def _kept(store, most, key, make):
    """make() once per key, kept in this app's memory; a store holding `most` values is begun again."""
    kept = current_app.extensions.setdefault(store, {})
    value = kept.get(key)
    if value is None:
        if len(kept) >= most:
            kept.clear()
        value = kept[key] = make()
    return value


# Where the kept layout (kept_page) takes a page's per-request parts; escaped data can never read like these.
PAGE_TITLE, PAGE_TOPBAR = Markup("<!--page-title-->"), Markup("<!--page-topbar-->")
PAGE_CSRF, PAGE_NEXT, PAGE_BODY = Markup("<!--page-csrf-->"), Markup("<!--page-next-->"), Markup("<!--page-body-->")


class _SlotRequest:
    """What the layout reads of the request, as slots: the language switch's `next` path."""

    full_path = path = PAGE_NEXT
    query_string = b"?"


def kept_page(title, body, notice=None):
    """The HTML `_page.html` makes of a title and a body (Markup; or a list of HTML fragments in UTF-8 to join,
    which gives the page in UTF-8), as render_template would: the layout around them is rendered once per language
    and script root and kept, and the title, the top bar, the CSRF token and the language switch's return path are
    filled in per request. A page with a notice or flash messages to show is rendered in full."""
    encoded = isinstance(body, list)
    if notice or get_flashed_messages():  # the messages are kept for the request: the full render shows them
        text = b"".join(body).decode() if encoded else body
        return render_template("_page.html", title=title, body=Markup(text), notice=notice)
    shell = kept_render(
        "_page.html",
        ("page",),
        title=PAGE_TITLE,
        body=PAGE_BODY,
        topbar=lambda: PAGE_TOPBAR,
        csrf_token=lambda: PAGE_CSRF,
        request=_SlotRequest,
        get_flashed_messages=lambda **_: [],
    )
    here = request.full_path if request.query_string else request.path
    filled = {
        PAGE_TITLE: escape(title),
        PAGE_TOPBAR: _topbar(),
        PAGE_CSRF: escape(csrf_token()),
        PAGE_NEXT: escape(here),
    }
    head, _, tail = fill_slots(shell, filled).partition(PAGE_BODY)
    if encoded:
        return b"".join((head.encode(), *body, tail.encode()))  # one copy of a large page
    return "".join((head, body, tail))  # str + Markup would escape the layout


def render_page(title, name, notice=None, **context):
    """A page of the layout whose body the template `name` renders with `context`, in the kept layout (kept_page)."""
    return kept_page(title, Markup(render_template(name, **context)), notice)


def _head_links():
    """The layout's icons, style sheet and script: the same on every page."""
    return Markup(kept_render("_head_links.html", ()))


def _topbar():
    """The layout's top bar: the brand and, when signed in, the main navigation of the user's role on this page and
    the sign-out form. It is the same for everyone with that role there, so it is rendered once per role, page,
    script root and language and kept; the user's name and address, the CSRF token and the cart's count are
    filled in per request (escaped)."""
    user = current_user._get_current_object()  # read once: each read of the proxy looks the user up again
    if not user.is_authenticated:
        return Markup(kept_render("_topbar.html", (None,)))
    html = kept_render("_topbar.html", (user.role, user.is_customer, request.endpoint))
    who = user.name or user.email
    company = user.company
    if company is not None and company.name not in who:
        who = f"{who} · {company.name}"
    count = _cart_count()
    filled = {
        "<!--who-->": escape(who),
        "<!--email-->": escape(user.email),
        "<!--csrf-token-->": escape(csrf_token()),
        CART_SLOT: f' <span class="badge">{count}</span>' if count else "",
    }
    return Markup(fill_slots(html, filled))


def fill_slots(html, filled):
    """Kept HTML with each slot (a key of `filled`: an HTML comment escaped data can never read like) replaced by
    its value, in one pass."""
    return _slots_pattern(tuple(filled)).sub(lambda found: filled[found.group(0)], html)


@lru_cache(maxsize=32)
def _slots_pattern(slots):
    return re.compile("|".join(re.escape(slot) for slot in slots))


def _cart_count():
    """Lines in the signed-in customer's cart, counted once per request."""
    if "cart_count" not in g:
        user = current_user._get_current_object()
        g.cart_count = cart.count(user.id) if user.is_authenticated and user.is_customer else 0
    return g.cart_count
