"""The floor of sipup's stack: a minimal Flask app doing only what every signed-in cached page must do, for
benchmarks.pages to measure sipup's pages against.

Per request: the signed session cookie read, the Flask-Login user loaded with the cached body in one read
(one Redis MGET with FLOOR_REDIS_URL, else a dict), Flask-Limiter counting one limit (in Redis, else in
memory), a CSRF token (Flask-WTF) put into the body's forms, and the 35 KB cached body rendered in a Jinja
layout with the user's name. Served by waitress with the same threads as sipup. GET /login?user=1 signs in.

Environment: FLOOR_REDIS_URL (none: in-process), FLOOR_NAMESPACE (the Redis keys' prefix, default "floor"),
FLOOR_SECRET_KEY.
"""

import json
import os

import redis
from flask import Flask, g, render_template, request
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_login import LoginManager, UserMixin, login_required, login_user
from flask_wtf.csrf import CSRFProtect, generate_csrf
from jinja2 import DictLoader
from markupsafe import Markup

SLOT = "<!--csrf-->"
ROW = (
    '<tr><td><a href="/products/SKU-{n:05d}">Product {n} of the floor, 24 x 0.33 l crate</a></td>'
    "<td>SKU-{n:05d}</td><td>In stock</td><td>12,{n:02d} EUR</td>"
    '<td><form method="post" action="/cart/add"><input type="hidden" name="csrf_token" value="' + SLOT + '">'
    '<input type="hidden" name="sku" value="SKU-{n:05d}"><input name="quantity" value="1" size="3">'
    "<button>Add to cart</button></form></td></tr>\n"
)
BODY = "<table>\n" + "".join(ROW.format(n=n % 100) for n in range(80)) + "</table>\n"  # about 35 KB, as the catalog
LAYOUT = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Products</title>
<meta name="csrf-token" content="{{ csrf_token() }}"></head>
<body><header><nav><a href="/">Dashboard</a> <a href="/products">Products</a>
<span>{{ current_user.name }}</span></nav></header>
<main>{{ body }}</main></body></html>
"""
USER = {"id": 1, "name": "Floor Buyer", "email": "buyer@floor.example"}


class User(UserMixin):
    """A signed-in user made of plain cached values."""

    def __init__(self, values):
        self.id, self.name, self.email = values["id"], values["name"], values["email"]


def create_app():
    app = Flask(__name__)
    app.secret_key = os.environ.get("FLOOR_SECRET_KEY", "floor secret key, never used in production")
    app.jinja_loader = DictLoader({"layout.html": LAYOUT})
    redis_url = os.environ.get("FLOOR_REDIS_URL")
    namespace = os.environ.get("FLOOR_NAMESPACE", "floor")
    keys = (f"{namespace}:user:1", f"{namespace}:body")
    values = (json.dumps(USER), BODY)
    if redis_url:
        store = redis.Redis.from_url(redis_url)
        store.mset(dict(zip(keys, values)))
        read = store.mget
    else:
        memory = dict(zip(keys, values))

        def read(wanted):
            return [memory.get(key) for key in wanted]

    CSRFProtect(app)
    Limiter(
        get_remote_address,
        app=app,
        default_limits=["1000000 per minute"],  # counted, out of reach: every request comes from one address
        storage_uri=redis_url or "memory://",
        storage_options={"key_prefix": namespace} if redis_url else {},
    )
    login = LoginManager(app)

    @login.user_loader
    def load_user(user_id):
        user, body = read([f"{namespace}:user:{int(user_id)}", keys[1]])
        g.body = body.decode() if isinstance(body, bytes) else body
        return User(json.loads(user)) if user else None

    @app.route("/login")
    def login_page():
        """Sign in as the one user (?user=1); the session cookie is what the load generator sends back."""
        login_user(User(USER))
        return "signed in"

    @app.route("/products")
    @login_required
    def products():
        """The cached body in the layout, with this visitor's CSRF token in its forms."""
        body = Markup(g.body.replace(SLOT, generate_csrf()))
        return render_template("layout.html", body=body)

    @app.route("/healthz")
    def healthz():
        return request.method

    return app


app = create_app()
