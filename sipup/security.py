"""Sign-in, CSRF and the guards that keep each audience in its own area."""

from functools import wraps

from flask import abort, g, redirect, request, session, url_for
from flask_login import current_user

from .compat import signed_in_id
from .extensions import csrf, login_manager
from .limits.limiter import RIDING
from .services import accounts

# endpoint -> extras(price_list_id or None, company_id or None): the cache entries its view will read for a
# buyer of that company on that price list, read ahead with the user's row (see read_ahead); the blueprints fill it in.
READ_AHEAD = {}


def register_security(app):
    """Flask-Login with tokens that end on password change, and CSRF on every form."""
    csrf.init_app(app)
    login_manager.init_app(app)
    login_manager.login_view = "auth.login"
    login_manager.login_message = "Please sign in to see your prices and order."
    login_manager.login_message_category = "info"
    login_manager.session_protection = "basic"
    login_manager.user_loader(load_user)
    login_manager.unauthorized_handler(sign_in_first)
    app.before_request(read_ahead)
    app.extensions[RIDING] = read_ahead_riding


def load_user(token):
    """The user behind a login cookie (see accounts.load_user); their ids are what the request's usage counts under."""
    user = accounts.load_user(token)
    if user is not None:
        g.usage_ids = (user.company_id, user.id)
    return user


READ = "sipup.read_ahead"  # in the WSGI environ: this request's reads ahead were sent already


def read_ahead():
    """A signed-in request's cache reads in one round trip before the view: the user, the cart's line count,
    and what READ_AHEAD names for the endpoint. Nothing is decided here; the reads only come sooner. On Redis
    they usually went with the rate limits' round trip already (read_ahead_riding)."""
    if request.environ.get(READ):
        return
    user_id = signed_in_id(session)
    if user_id is not None and request.endpoint != "static":
        accounts.prefetch_signed_in(user_id, READ_AHEAD.get(request.endpoint))


def read_ahead_riding(client):
    """read_ahead()'s reads as the rate limits send them in their own pipeline to the same Redis (the limits
    are counted first, before any other hook): (keys, done) or None when they cannot go that way."""
    user_id = signed_in_id(session)
    if user_id is None or request.endpoint == "static":
        return None
    rider = accounts.prefetch_signed_in(user_id, READ_AHEAD.get(request.endpoint), client=client)
    if rider is None:
        return None
    keys, done = rider

    def read(values):
        done(values)
        request.environ[READ] = True

    return keys, read


def sign_in_first():
    """Send an anonymous visitor to the sign-in page and back; HTMX gets HX-Redirect, not a swapped-in form."""
    here = request.full_path if request.query_string else request.path
    target = url_for("auth.login", next=here if request.method == "GET" else None)
    if request.headers.get("HX-Request"):
        return "", 401, {"HX-Redirect": target}
    return redirect(target)


def same_site_path(target):
    """target when it is a path on this site, else None, so a crafted link cannot send a user elsewhere."""
    # Browsers read "\" as "/" and drop tabs and newlines: "/\evil.com" and "/\t/evil.com" mean //evil.com.
    target = target or ""
    if target.startswith("/") and not target.startswith("//") and "\\" not in target and target.isprintable():
        return target
    return None


def _require(check):
    def decorator(view):
        @wraps(view)
        def wrapped(*args, **kwargs):
            user = current_user._get_current_object()
            if not user.is_authenticated:
                return sign_in_first()
            if not check(user):
                abort(403)
            return view(*args, **kwargs)

        return wrapped

    return decorator


customer_required = _require(lambda user: user.is_customer)
owner_required = _require(lambda user: user.is_customer and user.role == "owner")
staff_required = _require(lambda user: user.is_staff)
admin_required = _require(lambda user: user.is_admin)
