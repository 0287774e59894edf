"""Cross-cutting web behaviour: proxies, versioned static URLs, template helpers, security headers."""
import hashlib
import os
from functools import lru_cache

from flask import g, request
from flask_login import current_user
from werkzeug.middleware.proxy_fix import ProxyFix
from werkzeug.routing import IntegerConverter

SYMBOLS = {"EUR": "€", "USD": "$", "GBP": "£", "CHF": "CHF "}
# Ids are INT columns: a longer number is no id of ours, and SQLite cannot even bind one past 2**63.
MAX_ID = 2**31 - 1


def whole_number(text):
    """A positive id or page number typed into a form or URL, else None ("²" and 30 digits are None too)."""
    text = (text or "").strip()
    if text.isascii() and text.isdigit() and len(text) <= len(str(MAX_ID)) and 1 <= int(text) <= MAX_ID:
        return int(text)
    return None


class IdConverter(IntegerConverter):
    """`<id:name>` in a route: an id from 1 to MAX_ID; anything else is a 404, not a database error."""

    def __init__(self, url_map):
        super().__init__(url_map, min=1, max=MAX_ID)


def register_web(app):
    """Trust SIPUP_PROXY_HOPS proxies, add `<id:...>` routes, version static URLs, add filters and headers."""
    app.url_map.converters["id"] = IdConverter
    hops = app.config["PROXY_HOPS"]
    if hops:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops, x_prefix=hops)

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

    symbol = SYMBOLS.get(app.config["CURRENCY"], app.config["CURRENCY"] + " ")

    @app.template_filter("money")
    def _money(value):
        if value is None:
            return "–"
        return f"−{symbol}{-value:,.2f}" if value < 0 else f"{symbol}{value:,.2f}"

    @app.template_filter("date")
    def _date(value):
        return value.strftime("%d %b %Y") if value else "–"

    @app.template_filter("datetime")
    def _datetime(value):
        return value.strftime("%d %b %Y, %H:%M") if value else "–"

    @app.context_processor
    def _globals():
        return {"cart_count": _cart_count}

    @app.after_request
    def _headers(response):
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        response.headers.setdefault(
            "Content-Security-Policy",
            "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; frame-ancestors 'none'",
        )
        # A company's prices and orders must not stay in a shared browser's cache after sign-out.
        if request.endpoint != "static" and "Cache-Control" not in response.headers and current_user.is_authenticated:
            response.headers["Cache-Control"] = "no-store"
        return response


def _cart_count():
    """Lines in the signed-in customer's cart, counted once per request."""
    if "cart_count" not in g:
        from .services import cart

        g.cart_count = cart.count(current_user.id) if current_user.is_authenticated and current_user.is_customer else 0
    return g.cart_count
