"""Sign-in, sessions, CSRF, redirects, cookies, headers and password storage."""

import os
import pathlib
import re
import subprocess
import sys
import time

import flask
import pytest
from sqlalchemy import select
from werkzeug.security import generate_password_hash

from sipup.extensions import db
from sipup.models import User, UserSession
from tests.conftest import PASSWORD, login

ROOT = pathlib.Path(__file__).resolve().parent.parent


@pytest.fixture
def csrf_client(make_app):
    """A client of an app with CSRF protection on, as in production."""
    return make_app(WTF_CSRF_ENABLED=True).test_client()


def csrf_token(page):
    return re.search(r'name="csrf_token" value="([^"]+)"', page.get_data(as_text=True)).group(1)


# --- CSRF -----------------------------------------------------------------------------------------


def test_form_pages_carry_a_csrf_token(csrf_client):
    assert csrf_token(csrf_client.get("/login"))


def test_post_without_csrf_token_is_refused(app, csrf_client, buyer):
    response = csrf_client.post("/login", data={"email": buyer.email, "password": PASSWORD})
    assert response.status_code == 400
    assert "Bad request" in response.get_data(as_text=True)
    assert csrf_client.get("/orders").status_code == 302


def test_post_with_csrf_token_signs_in(app, csrf_client, buyer):
    token = csrf_token(csrf_client.get("/login"))
    response = csrf_client.post("/login", data={"email": buyer.email, "password": PASSWORD, "csrf_token": token})
    assert response.status_code == 302


def test_signed_in_post_without_token_is_refused(app, csrf_client, buyer, make_product):
    product = make_product()
    token = csrf_token(csrf_client.get("/login"))
    csrf_client.post("/login", data={"email": buyer.email, "password": PASSWORD, "csrf_token": token})
    response = csrf_client.post("/cart/add", data={"sku": product.sku, "quantity": "1"})
    assert response.status_code == 400
    assert "Your cart is empty" in csrf_client.get("/cart").get_data(as_text=True)


def test_a_sessions_csrf_token_is_signed_once_and_still_accepted(app, csrf_client, buyer, make_product):
    # Signed once per session token in the process: the same token on every page (signing again would stamp a
    # new time into it), valid for the forms of either page; another session gets its own.
    product = make_product()
    first = csrf_token(csrf_client.get("/login"))
    time.sleep(1.1)  # a second signing would carry another second
    assert csrf_token(csrf_client.get("/login")) == first
    csrf_client.post("/login", data={"email": buyer.email, "password": PASSWORD, "csrf_token": first})
    signed_in = csrf_token(csrf_client.get(f"/products/{product.sku}"))
    added = csrf_client.post("/cart/add", data={"sku": product.sku, "quantity": "1", "csrf_token": signed_in})
    assert added.status_code == 302
    other = csrf_client.application.test_client()
    assert csrf_token(other.get("/login")) not in (first, signed_in)


def test_a_session_cookie_opened_before_is_still_refused_when_changed_or_too_old(app, monkeypatch):
    # Opened sessions are kept per cookie, so each check must hold for a cookie seen before as well.
    interface, name = app.session_interface, app.config["SESSION_COOKIE_NAME"]
    lifetime = int(app.permanent_session_lifetime.total_seconds())
    signer = interface.get_signing_serializer(app)
    plain = signer.dumps({"csrf_token": "abc", "_user_id": "1:x"})
    flashes = signer.dumps({"_flashes": [["info", "Saved."]]})

    def opened(cookie):
        with app.test_request_context(headers={"Cookie": f"{name}={cookie}"}):
            return interface.open_session(app, flask.request)

    assert dict(opened(plain)) == dict(opened(plain)) == {"csrf_token": "abc", "_user_id": "1:x"}
    assert not opened(plain).modified
    assert dict(opened(plain[:-3] + ("AAA" if not plain.endswith("AAA") else "BBB"))) == {}  # the signature fails
    opened(flashes)["_flashes"].append(["info", "Changed in place."])  # by one request...
    assert opened(flashes)["_flashes"] == [["info", "Saved."]]  # ...and not seen by the next
    later = time.time() + lifetime + 5
    monkeypatch.setattr(time, "time", lambda: later)
    assert dict(opened(plain)) == {}  # too old, though opened before


# --- signing in -----------------------------------------------------------------------------------


def test_sign_in_starts_a_new_session(client, buyer):
    with client.session_transaction() as session:
        session["planted"] = "by an attacker"
    assert login(client, buyer).status_code == 302
    with client.session_transaction() as session:
        assert "planted" not in session
        user_id, _, session_id = session["_user_id"].partition(":")
    assert user_id == str(buyer.id)
    assert db.session.get(UserSession, session_id).user_id == buyer.id


def test_wrong_password_gets_401_a_message_and_keeps_the_email(client, buyer):
    response = client.post("/login", data={"email": buyer.email, "password": "wrong password!"})
    text = response.get_data(as_text=True)
    assert response.status_code == 401
    assert "do not match an active account" in text
    assert f'value="{buyer.email}"' in text
    assert client.get("/orders").status_code == 302


def test_unknown_email_gets_the_same_answer(client, app):
    response = client.post("/login", data={"email": "nobody@example.com", "password": "whatever it is"})
    assert response.status_code == 401
    assert "do not match an active account" in response.get_data(as_text=True)


def test_email_is_matched_without_case_or_spaces(client, buyer):
    response = client.post("/login", data={"email": f"  {buyer.email.upper()} ", "password": PASSWORD})
    assert response.status_code == 302


def test_signed_in_user_opening_login_goes_home(client, buyer, login_as):
    login_as(buyer)
    assert client.get("/login").headers["Location"] == "/"


def test_sign_out_ends_the_session(client, buyer, login_as):
    login_as(buyer)
    assert client.post("/logout").status_code == 302
    assert client.get("/orders").status_code == 302


# --- sessions end when the account changes --------------------------------------------------------


@pytest.fixture
def browser(make_app, app, buyer):
    """A client signed in as the buyer whose requests each get their own app context, as in production.

    The `client` fixture shares the test's app context, so Flask-Login's user cached in `g` would
    outlive the request and hide what the next request really loads.
    """
    client = make_app().test_client()
    assert login(client, buyer).status_code == 302
    assert client.get("/orders").status_code == 200
    return client


def test_password_change_ends_existing_sessions(browser, buyer):
    buyer.set_password("a brand new password")
    db.session.commit()
    response = browser.get("/orders")
    assert response.status_code == 302
    assert response.headers["Location"] == "/login?next=/orders"


def test_deactivated_user_is_signed_out(browser, buyer):
    buyer.active = False
    db.session.commit()
    assert browser.get("/orders").headers["Location"] == "/login?next=/orders"
    assert login(browser, buyer).status_code == 401


def test_deactivated_company_signs_out_its_users(browser, buyer):
    buyer.company.active = False
    db.session.commit()
    assert browser.get("/orders").headers["Location"] == "/login?next=/orders"
    assert login(browser, buyer).status_code == 401


def test_other_changes_keep_the_session(browser, buyer):
    buyer.name = "Renamed"
    db.session.commit()
    assert browser.get("/orders").status_code == 200


# --- where sign-in sends you ----------------------------------------------------------------------


@pytest.mark.parametrize("target", ["/orders", "/products?q=pils&page=2"])
def test_next_sends_the_user_back_to_a_same_site_page(client, buyer, target):
    response = client.post("/login", query_string={"next": target}, data={"email": buyer.email, "password": PASSWORD})
    assert response.headers["Location"] == target


@pytest.mark.parametrize(
    "target",
    [
        "//evil.com",
        "///evil.com",
        "http://evil.com/",
        "https://evil.com/orders",
        "/\\evil.com",
        "\\\\evil.com",
        "/\t/evil.com",
        "javascript:alert(1)",
        "evil.com",
        "",
    ],
)
def test_next_never_leaves_the_site(client, buyer, target):
    response = client.post("/login", query_string={"next": target}, data={"email": buyer.email, "password": PASSWORD})
    assert response.status_code == 302
    assert response.headers["Location"] == "/"


@pytest.mark.parametrize("back", ["//evil.com", "/\\evil.com", "https://evil.com/"])
def test_add_to_cart_never_sends_the_user_off_site(client, buyer, make_product, login_as, back):
    product = make_product()
    login_as(buyer)
    response = client.post("/cart/add", data={"sku": product.sku, "quantity": "1", "back": back})
    assert response.headers["Location"] == "/cart"


def test_add_to_cart_returns_to_the_catalog_page_it_came_from(client, buyer, make_product, login_as):
    product = make_product()
    login_as(buyer)
    response = client.post("/cart/add", data={"sku": product.sku, "quantity": "1", "back": "/products?page=2"})
    assert response.headers["Location"] == "/products?page=2"


# --- cookies and headers --------------------------------------------------------------------------


def test_session_cookie_is_httponly_and_samesite_lax(client, buyer):
    cookie = login(client, buyer).headers["Set-Cookie"]
    assert cookie.startswith("session=")
    assert "HttpOnly" in cookie
    assert "SameSite=Lax" in cookie


def test_secure_cookie_when_configured(make_app, app, buyer):
    client = make_app(SESSION_COOKIE_SECURE="true").test_client()
    cookie = login(client, buyer).headers["Set-Cookie"]
    assert "Secure" in cookie and cookie.startswith("__Host-session=") and "Path=/;" in cookie
    assert "Domain" not in cookie
    assert client.get("/orders").status_code == 200, "the __Host- cookie is the session read back"


@pytest.mark.parametrize("path", ["/login", "/healthz", "/no-such-page"])
def test_security_headers_on_every_response(client, path):
    headers = client.get(path).headers
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["X-Frame-Options"] == "DENY"
    assert headers["Referrer-Policy"] == "same-origin"
    assert "default-src 'self'" in headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]


def test_signed_in_pages_are_not_cached_by_browsers_or_proxies(client, buyer, login_as):
    login_as(buyer)
    assert "no-store" in client.get("/orders").headers.get("Cache-Control", "")


# --- passwords ------------------------------------------------------------------------------------


def test_passwords_are_stored_hashed(app, buyer):
    stored = db.session.scalar(select(User.password_hash).where(User.id == buyer.id))
    assert stored.startswith("$argon2id$v=19$m=19456,t=2,p=1$")  # OWASP's argon2id parameters
    assert PASSWORD not in stored
    assert buyer.check_password(PASSWORD)
    assert not buyer.check_password(PASSWORD.upper())


def test_a_scrypt_hash_of_before_is_upgraded_at_the_next_sign_in(client, buyer):
    elsewhere = client.application.test_client()
    assert login(elsewhere, buyer).status_code == 302
    db.session.get(User, buyer.id).password_hash = generate_password_hash(PASSWORD)  # what earlier releases stored
    db.session.commit()
    assert login(client, buyer, "not the password").status_code == 401
    assert db.session.scalar(select(User.password_hash).where(User.id == buyer.id)).startswith("scrypt:")
    assert login(client, buyer).status_code == 302
    assert db.session.scalar(select(User.password_hash).where(User.id == buyer.id)).startswith("$argon2id$")
    assert elsewhere.get("/orders").status_code == 200  # the upgrade ends no session
    assert login(client.application.test_client(), buyer).status_code == 302


def test_the_queue_processor_computes_no_password_hash_at_import(tmp_path):
    """`flask queue process` runs from cron every minute: importing the app and its jobs must not hash."""
    code = (
        "import sys, argon2, werkzeug.security\n"
        "def refuse(*args, **kwargs): raise SystemExit('a password was hashed at import')\n"
        "argon2.PasswordHasher.hash = refuse\n"
        "werkzeug.security.generate_password_hash = refuse\n"
        "import tasks, sipup.cli, sipup.services.accounts\n"
        "from sipup import create_app\n"
        "create_app({'DATABASE_URL': 'sqlite://', 'SECRET_KEY': 'x' * 32}, instance_path=sys.argv[1])\n"
    )
    environment = {k: v for k, v in os.environ.items() if not k.startswith("SIPUP_")}
    done = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path)], cwd=ROOT, env=environment, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
