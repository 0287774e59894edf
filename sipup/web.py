"""Cross-cutting web behaviour: proxies, versioned static URLs, template helpers, security headers."""
import hashlib
import os
from functools import lru_cache

from flask import g
from flask_login import current_user
from werkzeug.middleware.proxy_fix import ProxyFix

SYMBOLS = {"EUR": "€", "USD": "$", "GBP": "£", "CHF": "CHF "}


def register_web(app):
    """Trust SIPUP_PROXY_HOPS proxies, version static URLs by content, add filters and headers."""
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
        return f"{symbol}{value:,.2f}" if value is not None else "–"

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
        return response


def _cart_count():
    """Lines in the signed-in customer's cart, counted once per request."""
    if "cart_count" not in g:
        from .services import cart

        g.cart_count = cart.count(current_user.id) if current_user.is_authenticated and current_user.is_customer else 0
    return g.cart_count
