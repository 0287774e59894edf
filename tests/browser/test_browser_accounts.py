"""Go-live in a real browser: on a fresh production-style database (`flask db upgrade`, one admin from
`flask user create`), the admin onboards a customer company and its buyer in the back office; the buyer
chooses a password from the invitation mail (a real SMTP server) and orders. Then password reset,
sign-out against a copied cookie, an owner managing buyers, the last admin, and an account request.
The tests run in order on one site: later ones use the company the first one onboards.

`flask serve` (waitress) and `flask queue worker` run as subprocesses; Chromium is driven by Playwright.
Runs on one footprint: MariaDB + Redis (production's) when SIPUP_TEST_DATABASE_URL and SIPUP_TEST_REDIS_URL
are set, else the embedded default. The browser sees the same pages on both; what differs between the
footprints (sessions, mail jobs, invitations on SQLite and MariaDB) is covered in tests/services/test_accounts.py.
"""

import os
import re
import secrets
import subprocess
import sys
import time

import pytest

from tests.browser.test_browser import CHROMIUM, DESKTOP, ROOT, _wait_until_healthy, expect, shot, sign_in
from tests.servers import LocalSmtp, end_all, flask_in_process, free_port

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"no system Chromium at {CHROMIUM}"),
]
ADMIN = ("boss@wholesale.example", "admin password 1")
NEW_PASSWORD = "a good new passphrase"
FOOTPRINTS = (
    ["mariadb-redis"]
    if os.environ.get("SIPUP_TEST_DATABASE_URL") and os.environ.get("SIPUP_TEST_REDIS_URL")
    else ["embedded"]
)


@pytest.fixture(scope="module")
def smtp():
    server = LocalSmtp().start()
    yield server
    server.stop()


@pytest.fixture(scope="module", params=FOOTPRINTS)
def site(request, tmp_path_factory, smtp):
    """A fresh production-style site: schema, one admin, a small catalog; waitress and a queue worker."""
    instance = tmp_path_factory.mktemp(f"golive-{request.param}")
    env = {key: value for key, value in os.environ.items() if not key.startswith("SIPUP_")}
    env.update(
        SIPUP_INSTANCE_PATH=str(instance),
        SIPUP_MAIL_URL=smtp.url,
        SIPUP_MAIL_FROM="orders@getraenke-nord.example",
        SIPUP_RATELIMIT_IP="10000 per minute",
        SIPUP_SECRET_KEY=secrets.token_hex(32),
        # The admin signs in once per test, more often than a person would in a minute.
        SIPUP_RATELIMIT_ENDPOINTS='{"POST auth.login by account": "100 per minute"}',
        SIPUP_SITE_NAME="Getränke Nord",
    )
    drop = None
    if request.param == "mariadb-redis":
        from sipup.database import scratch_database

        database, drop = scratch_database(os.environ["SIPUP_TEST_DATABASE_URL"])
        env.update(
            SIPUP_DATABASE_URL=database,
            SIPUP_REDIS_URL=os.environ["SIPUP_TEST_REDIS_URL"],
            SIPUP_REDIS_NAMESPACE=f"sipuptest-{secrets.token_hex(6)}",
            SIPUP_PROCESSES="1",  # with Redis the default is a process per core; one is enough for the browser
        )
    # The set-up commands run in this process (the site's own processes are what the tests are about).
    flask_in_process(env, "db", "upgrade")
    assert flask_in_process(
        env, "user", "create", ADMIN[0], "--role", "admin", "--password-stdin", stdin=ADMIN[1] + "\n"
    ).startswith(f"Created admin {ADMIN[0]}")
    flask_in_process(env, "seed", "--companies", "0", "--products", "6", "--orders", "0")
    # The port is chosen just before the server starts: chosen before the set-up, another program may take it.
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env["SIPUP_PUBLIC_URL"] = url
    logs = {name: open(instance / f"{name}.log", "wb") for name in ("serve", "worker")}
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "flask", "serve", "--port", str(port)],
            cwd=ROOT,
            env=env,
            stdout=logs["serve"],
            stderr=subprocess.STDOUT,
        ),
        subprocess.Popen(
            [sys.executable, "-m", "flask", "queue", "worker"],
            cwd=ROOT,
            env=env,
            stdout=logs["worker"],
            stderr=subprocess.STDOUT,
        ),
    ]
    try:
        _wait_until_healthy(url, processes[0], instance / "serve.log")
        yield url
    finally:
        end_all(processes, timeout=20)
        for log in logs.values():
            log.close()
        if request.param == "mariadb-redis":
            import redis

            client = redis.Redis.from_url(env["SIPUP_REDIS_URL"])
            keys = list(client.scan_iter(match=f"{env['SIPUP_REDIS_NAMESPACE']}:*"))
            if keys:
                client.delete(*keys)
            client.close()
            drop()


def mailed_link(smtp, to, after=0, timeout=30):
    """The site link in the first mail to `to` that arrived after the first `after` messages."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for message in smtp.messages[after:]:
            if to.lower() in message["To"].lower():
                text = message.get_body(("plain",)).get_content()
                link = re.search(r"http://127\.0\.0\.1:\d+/\S+", text)
                assert link, text
                return message, link.group(0)
        time.sleep(0.2)
    raise AssertionError(f"no mail to {to} within {timeout}s: {[m['To'] for m in smtp.messages]}")


def new_context(browser, base_url):
    context = browser.new_context(base_url=base_url, viewport=DESKTOP, locale="en-GB")
    context.set_default_timeout(15_000)
    return context, context.new_page()


def choose_password(page, link, password=NEW_PASSWORD):
    page.goto(link)
    page.get_by_label("Password", exact=False).first.fill(password)
    page.get_by_label("The same again").fill(password)
    page.get_by_role("button", name="Save and sign in").click()


def invite_on_company_page(page, email, name, role="buyer"):
    form = page.locator("form", has=page.get_by_role("heading", name="Invite a user"))
    form.get_by_label("E-mail").fill(email)
    form.get_by_label("Name").fill(name)
    form.get_by_label("Role").select_option(role)
    form.get_by_role("button", name="Send invitation").click()
    expect(page.get_by_text(f"Invitation to {email} is on its way.")).to_be_visible()


def test_admin_onboards_a_company_whose_buyer_orders(site, browser, smtp):
    admin, page = sign_in(browser, site, *ADMIN)
    expect(page.get_by_role("heading", name="Back office")).to_be_visible()
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Companies").click()
    page.get_by_role("link", name="New company").click()
    page.get_by_label("Name", exact=True).first.fill("Bar Linde")
    page.get_by_label("VAT id").fill("DE123456789")
    page.get_by_label("Payment terms (days)").fill("14")
    page.get_by_label("Credit limit").fill("-5")
    page.get_by_label("Street").fill("Lindenstraße 1")
    page.get_by_label("Postcode").fill("20095")
    page.get_by_label("City").fill("Hamburg")
    page.get_by_role("button", name="Create company").click()
    expect(page.locator(".field-error").first).to_be_visible()  # negative credit named, the rest kept
    expect(page.get_by_label("Street")).to_have_value("Lindenstraße 1")
    page.get_by_label("Credit limit").fill("5000")
    page.get_by_role("button", name="Create company").click()
    expect(page.get_by_role("heading", name="Bar Linde")).to_be_visible()
    expect(page.get_by_text("Lindenstraße 1")).to_be_visible()
    shot(page, "20-company-created")

    before = len(smtp.messages)
    invite_on_company_page(page, "Anna.Berg@Bar-Linde.example", "Anna Berg")
    expect(page.get_by_text("not accepted yet")).to_be_visible()
    shot(page, "21-company-invited")
    message, link = mailed_link(smtp, "anna.berg@bar-linde.example", before)
    assert "Bar Linde" in message["Subject"] and "Getränke Nord" in message["Subject"]
    assert link.startswith(site + "/invite/")

    buyer, page = new_context(browser, site)
    page.goto(link)
    expect(page.get_by_role("heading", name="Choose your password")).to_be_visible()
    shot(page, "22-choose-password")
    page.get_by_label("Password", exact=False).first.fill("short")
    page.get_by_label("The same again").fill("short")
    page.get_by_role("button", name="Save and sign in").click()
    expect(page.get_by_text("The password must have at least 12 characters.")).to_be_visible()
    choose_password(page, link)
    expect(page.get_by_text("Welcome! Your password is set")).to_be_visible()
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Catalog").click()
    page.locator("article.product").first.get_by_role("button", name="Add").click()
    expect(page.get_by_text("in your cart")).to_be_visible()
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Cart").click()
    page.get_by_role("link", name="Check out on account").click()
    page.get_by_label("Your PO reference").fill("PO-GO-LIVE")
    page.get_by_role("button", name="Place order").click()
    expect(page.get_by_text("PO-GO-LIVE")).to_be_visible()
    shot(page, "23-first-order")
    buyer.close()
    admin.close()


def test_password_reset_ends_the_old_sessions(site, browser, smtp):
    old, old_page = sign_in(browser, site, *ADMIN)
    expect(old_page.get_by_role("heading", name="Back office")).to_be_visible()
    visitor, page = new_context(browser, site)
    page.goto("/login")
    page.get_by_role("link", name="Forgot your password?").click()
    page.get_by_label("E-mail").fill(ADMIN[0].upper())
    before = len(smtp.messages)
    page.get_by_role("button", name="Send the link").click()
    expect(page.get_by_role("heading", name="Check your mail")).to_be_visible()
    shot(page, "24-reset-sent")
    _message, link = mailed_link(smtp, ADMIN[0], before)
    page.goto(link)
    expect(page.get_by_role("heading", name="Choose a new password")).to_be_visible()
    page.get_by_label("Password", exact=False).first.fill(NEW_PASSWORD)
    page.get_by_label("The same again").fill(NEW_PASSWORD)
    page.get_by_role("button", name="Save and sign in").click()
    expect(page.get_by_text("Your new password is set")).to_be_visible()
    old_page.reload()
    expect(old_page.get_by_role("heading", name="Sign in")).to_be_visible()  # the session before the reset ended
    page.goto(link)
    expect(page.get_by_text("This link has already been used.")).to_be_visible()
    expect(page.get_by_role("button", name="Mail me a new link")).to_be_visible()  # to the address the link was for
    # Back to the password the other tests use.
    page.goto("/account/")
    form = page.locator("form").filter(has=page.get_by_role("button", name="Change password"))
    form.get_by_label("Current password").fill(NEW_PASSWORD)
    form.get_by_label("New password").fill(ADMIN[1])
    form.get_by_label("The same again").fill(ADMIN[1])
    form.get_by_role("button", name="Change password").click()
    expect(page.get_by_text("Your password is changed.")).to_be_visible()
    old.close()
    visitor.close()


def test_a_copied_cookie_is_refused_after_sign_out(site, browser):
    context, page = sign_in(browser, site, *ADMIN)
    expect(page.get_by_role("heading", name="Back office")).to_be_visible()
    copied = context.cookies()
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_text("You are signed out.")).to_be_visible()
    thief = browser.new_context(base_url=site, viewport=DESKTOP)
    thief.add_cookies(copied)
    stolen = thief.new_page()
    stolen.goto("/admin/")
    expect(stolen.get_by_role("heading", name="Sign in")).to_be_visible()
    thief.close()
    context.close()


def test_owner_manages_buyers_and_a_buyer_cannot(site, browser, smtp):
    admin, page = sign_in(browser, site, *ADMIN)
    page.goto("/admin/companies")
    page.get_by_role("link", name="Bar Linde").click()
    before = len(smtp.messages)
    invite_on_company_page(page, "owner@bar-linde.example", "Olga Owner", role="owner")
    _message, link = mailed_link(smtp, "owner@bar-linde.example", before)
    owner, owner_page = new_context(browser, site)
    choose_password(owner_page, link)
    owner_page.get_by_role("link", name=re.compile("Olga Owner")).click()
    owner_page.get_by_role("link", name="Your company's users").click()
    expect(owner_page.get_by_role("heading", name="Users of Bar Linde")).to_be_visible()
    before = len(smtp.messages)
    form = owner_page.locator("form", has=owner_page.get_by_role("heading", name="Invite a buyer"))
    form.get_by_label("E-mail").fill("tom@bar-linde.example")
    form.get_by_label("Name").fill("Tom Tresen")
    form.get_by_role("button", name="Send invitation").click()
    expect(owner_page.get_by_text("Invitation to tom@bar-linde.example is on its way.")).to_be_visible()
    shot(owner_page, "25-owner-users")
    _message, link = mailed_link(smtp, "tom@bar-linde.example", before)
    tom, tom_page = new_context(browser, site)
    choose_password(tom_page, link)
    tom_page.goto("/account/users")
    expect(tom_page.get_by_text("Not for this account")).to_be_visible()  # a buyer manages nobody
    row = owner_page.locator("tr", has_text="tom@bar-linde.example")
    row.get_by_role("button", name="Deactivate").click()
    expect(owner_page.get_by_text("tom@bar-linde.example can no longer sign in")).to_be_visible()
    tom_page.goto("/orders")
    expect(tom_page.get_by_role("heading", name="Sign in")).to_be_visible()
    for context in (admin, owner, tom):
        context.close()


def test_the_last_admin_cannot_demote_themself(site, browser):
    context, page = sign_in(browser, site, *ADMIN)
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Staff").click()
    row = page.locator("tr", has_text=ADMIN[0])
    row.get_by_label(f"Role of {ADMIN[0]}").select_option("staff")
    row.get_by_role("button", name="Change").click()
    expect(page.get_by_text("is the last active admin")).to_be_visible()
    shot(page, "26-staff-users")
    expect(page.locator("tr", has_text=ADMIN[0])).to_contain_text("admin")
    context.close()


def test_an_account_request_approved_invites_the_owner(site, browser, smtp):
    visitor, page = new_context(browser, site)
    page.goto("/login")
    page.get_by_role("link", name=re.compile("business account", re.I)).click()
    page.get_by_label("Company name").fill("Café Süd")
    page.get_by_label("Your name").fill("Sven Süd")
    page.get_by_label("E-mail").fill("sven@cafe-sued.example")
    page.get_by_label("Street").fill("Hafenweg 2")
    page.get_by_label("Postcode").fill("20457")
    page.get_by_label("City").fill("Hamburg")
    page.get_by_role("button", name=re.compile("request", re.I)).click()
    expect(page.get_by_text(re.compile("thank", re.I)).first).to_be_visible()
    visitor.close()

    admin, page = sign_in(browser, site, *ADMIN)
    expect(page.get_by_text("Café Süd")).to_be_visible()  # the queue on the dashboard
    shot(page, "27-dashboard-requests")
    page.get_by_role("link", name=re.compile("Café Süd")).click()
    page.get_by_role("link", name=re.compile("Approve", re.I)).click()
    before = len(smtp.messages)
    page.get_by_role("button", name="Approve and invite the owner").click()
    expect(page.get_by_role("heading", name="Café Süd")).to_be_visible()
    _message, link = mailed_link(smtp, "sven@cafe-sued.example", before)
    owner, owner_page = new_context(browser, site)
    choose_password(owner_page, link)
    expect(owner_page.get_by_text("Welcome! Your password is set")).to_be_visible()
    owner.close()
    admin.close()
