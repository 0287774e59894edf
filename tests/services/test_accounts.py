"""Accounts: sign-out that ends the session, invitations, password resets, self-service and user management.

Mails go through the job queue to a real SMTP server (aiosmtpd); links are read from the mails as a user
would click them. Every test runs on SQLite and MariaDB, with the cache and queue in-process and on Redis.
"""

import re
import time
from datetime import timedelta

import pytest
from flask import current_app
from sqlalchemy import func, select

from sipup.extensions import db
from sipup.models import AccountLink, AuditEvent, Job, LinkPurpose, User, UserSession, utcnow
from sipup.services import links
from tests.conftest import PASSWORD, REDIS_URL, login, set_queue_clock
from tests.servers import LocalSmtp

NEW_PASSWORD = "a much better passphrase"


@pytest.fixture
def smtp():
    server = LocalSmtp().start()
    yield server
    server.stop()


@pytest.fixture(params=["local", "redis"])
def site(request, app, make_app, smtp):
    """An app whose mails go to the real SMTP server; with Redis for cache, limits and queue in one variant."""
    extra = {"MAIL_URL": smtp.url, "MAIL_FROM": "orders@shop.example.com", "PUBLIC_URL": "https://shop.example.com"}
    if request.param == "redis":
        if not REDIS_URL:
            pytest.skip("SIPUP_TEST_REDIS_URL is not set: no shared Redis to test on")
        extra.update(REDIS_URL=REDIS_URL, REDIS_NAMESPACE=request.getfixturevalue("redis_namespace"))
    site = make_app(**extra)
    site.smtp = smtp
    with site.app_context():
        site.extensions["queue"].huey.flush()
        yield site


def run_jobs():
    return current_app.extensions["queue"].process(100)


def link_in_last_mail(smtp, to):
    """The link of the newest mail to this address, as a path on the site."""
    run_jobs()
    mails = [m for m in smtp.messages if to.lower() in m["To"].lower()]
    assert mails, f"no mail to {to}: {[m['To'] for m in smtp.messages]}"
    text = mails[-1].get_body(("plain",)).get_content()
    url = re.search(r"https://shop\.example\.com(/\S+)", text)
    assert url, text
    return url.group(1)


def last_mail_text(smtp, to):
    """The text of the newest mail to this address, after the queued mails are sent."""
    run_jobs()
    mails = [m for m in smtp.messages if to.lower() in m["To"].lower()]
    assert mails, f"no mail to {to}: {[m['To'] for m in smtp.messages]}"
    return mails[-1].get_body(("plain",)).get_content()


def signed_in(site, user, password=PASSWORD):
    client = site.test_client()
    assert login(client, user, password).status_code == 302
    return client


def live_sessions(user):
    db.session.expire_all()
    return db.session.scalar(select(func.count()).select_from(UserSession).where(UserSession.user_id == user.id))


# --- sign-out --------------------------------------------------------------------------------------


def test_a_copied_cookie_opens_nothing_after_sign_out(site, buyer):
    client = signed_in(site, buyer)
    assert client.get("/orders").status_code == 200
    copied = client.get_cookie("session").value
    assert client.post("/logout").status_code == 302
    thief = site.test_client()
    thief.set_cookie("session", copied)
    response = thief.get("/orders")
    assert response.status_code == 302 and "/login" in response.headers["Location"]


def test_sign_out_ends_only_that_browser(site, buyer):
    office, phone = signed_in(site, buyer), signed_in(site, buyer)
    assert live_sessions(buyer) == 2
    office.post("/logout")
    assert live_sessions(buyer) == 1
    assert phone.get("/orders").status_code == 200
    assert office.get("/orders").status_code == 302


def test_a_session_older_than_the_lifetime_is_refused(site, buyer):
    client = signed_in(site, buyer)
    db.session.execute(UserSession.__table__.update().values(created_at=utcnow() - timedelta(hours=13)))
    db.session.commit()
    site.extensions["sipup_cache"].clear()
    assert client.get("/orders").status_code == 302


def test_signing_in_again_and_again_keeps_a_bounded_number_of_sessions(site, buyer):
    from sipup.services import accounts

    for _ in range(accounts.MAX_SESSIONS + 5):
        accounts.start_session(buyer)
    assert live_sessions(buyer) == accounts.MAX_SESSIONS


def test_signing_in_ends_the_sessions_older_than_the_lifetime(site, buyer):
    from sipup.services import accounts

    for _ in range(3):
        accounts.start_session(buyer)
    db.session.execute(UserSession.__table__.update().values(created_at=utcnow() - timedelta(hours=13)))
    db.session.commit()
    accounts.start_session(buyer)
    assert live_sessions(buyer) == 1


# --- password reset ----------------------------------------------------------------------------------


def test_password_reset_by_mail_ends_every_other_session(site, buyer):
    old = signed_in(site, buyer)
    page = site.test_client().get("/login").get_data(as_text=True)
    assert 'href="/password/reset"' in page
    visitor = site.test_client()
    answer = visitor.post("/password/reset", data={"email": buyer.email.upper()})
    assert answer.status_code == 200 and "If" in answer.get_data(as_text=True)
    path = link_in_last_mail(site.smtp, buyer.email)
    mail = site.smtp.messages[-1]
    assert mail["Subject"] == "Reset your sipup password"
    assert mail.get_body(("html",)) is not None
    assert visitor.get(path).status_code == 200
    done = visitor.post(path, data={"password": NEW_PASSWORD, "confirm": NEW_PASSWORD})
    assert done.status_code == 302
    assert visitor.get("/orders").status_code == 200  # signed in with a new session
    assert old.get("/orders").status_code == 302  # the session from before the reset has ended
    assert login(site.test_client(), buyer, NEW_PASSWORD).status_code == 302
    assert login(site.test_client(), buyer, PASSWORD).status_code == 401
    again = site.test_client().get(path)
    assert again.status_code == 410 and "already been used" in again.get_data(as_text=True)


def test_reset_answers_the_same_for_an_unknown_address(site, buyer):
    known = site.test_client().post("/password/reset", data={"email": buyer.email})
    unknown = site.test_client().post("/password/reset", data={"email": "nobody@example.com"})
    strip = lambda response: (  # noqa: E731
        response.get_data(as_text=True).replace(buyer.email, "X").replace("nobody@example.com", "X")
    )
    assert known.status_code == unknown.status_code == 200
    assert re.sub(r'value="[^"]+"', "", strip(known)) == re.sub(r'value="[^"]+"', "", strip(unknown))
    # The request itself does the same work for both: one high-priority job each, looked up later.
    jobs = db.session.scalars(select(Job).where(Job.name == "send_mail")).all()
    assert sorted(j.args for j in jobs) == sorted(
        ['["password_reset", "%s"]' % buyer.email, '["password_reset", "nobody@example.com"]']
    )
    assert {j.priority for j in jobs} == {2}
    run_jobs()
    assert [m["To"] for m in site.smtp.messages] == [buyer.email]


def test_reset_link_expires_after_an_hour(site, buyer):
    site.test_client().post("/password/reset", data={"email": buyer.email})
    path = link_in_last_mail(site.smtp, buyer.email)
    db.session.execute(AccountLink.__table__.update().values(expires_at=utcnow() - timedelta(seconds=1)))
    db.session.commit()
    response = site.test_client().get(path)
    assert response.status_code == 410 and "expired" in response.get_data(as_text=True)
    assert 'href="/password/reset"' in response.get_data(as_text=True)  # a way to ask for a new link
    assert f'name="email" value="{buyer.email}"' in response.get_data(as_text=True)  # for the address it was for


def test_an_expired_invitation_opens_the_reset_form_with_its_address(site, make_user):
    invited = make_user("buyer", email="late@example.com")
    path = links.issue(links.prepare(invited, LinkPurpose.INVITE)).split("example.com", 1)[-1]
    db.session.execute(AccountLink.__table__.update().values(expires_at=utcnow() - timedelta(seconds=1)))
    db.session.commit()
    client = site.test_client()
    page = client.get(path).get_data(as_text=True)
    assert "Mail me a new link" in page and 'action="/password/reset"' in page
    form = client.get("/password/reset", query_string={"email": "late@example.com"}).get_data(as_text=True)
    assert 'name="email" value="late@example.com"' in form


def test_a_tampered_or_replaced_link_is_refused_with_a_way_on(site, buyer):
    site.test_client().post("/password/reset", data={"email": buyer.email})
    first = link_in_last_mail(site.smtp, buyer.email)
    tampered = site.test_client().get(first[:-3] + ("AAA" if not first.endswith("AAA") else "BBB"))
    assert tampered.status_code == 400 and "not valid" in tampered.get_data(as_text=True)
    site.test_client().post("/password/reset", data={"email": buyer.email})
    second = link_in_last_mail(site.smtp, buyer.email)
    assert second != first
    replaced = site.test_client().get(first)
    assert replaced.status_code == 410 and "newer link" in replaced.get_data(as_text=True)
    assert site.test_client().get(second).status_code == 200


def test_a_link_of_a_deactivated_user_says_so(site, buyer):
    from sipup.services import users

    site.test_client().post("/password/reset", data={"email": buyer.email})
    path = link_in_last_mail(site.smtp, buyer.email)
    users.set_active(db.session.get(User, buyer.id), False)
    response = site.test_client().get(path)
    assert response.status_code == 410 and "can no longer sign in" in response.get_data(as_text=True)


def test_reset_form_names_a_bad_address_and_short_passwords(site, buyer):
    bad = site.test_client().post("/password/reset", data={"email": "not an address"})
    assert bad.status_code == 422 and "Enter the e-mail address" in bad.get_data(as_text=True)
    site.test_client().post("/password/reset", data={"email": buyer.email})
    path = link_in_last_mail(site.smtp, buyer.email)
    client = site.test_client()
    short = client.post(path, data={"password": "short", "confirm": "short"})
    assert short.status_code == 422 and "at least 12 characters" in short.get_data(as_text=True)
    own = client.post(path, data={"password": buyer.email, "confirm": buyer.email})
    assert own.status_code == 422 and "must not be your e-mail address" in own.get_data(as_text=True)
    differ = client.post(path, data={"password": NEW_PASSWORD, "confirm": NEW_PASSWORD + "!"})
    assert differ.status_code == 422 and "differ" in differ.get_data(as_text=True)
    assert client.post(path, data={"password": NEW_PASSWORD, "confirm": NEW_PASSWORD}).status_code == 302


def test_reset_requests_are_limited_per_account(site, buyer):
    codes = [site.test_client().post("/password/reset", data={"email": buyer.email}).status_code for _ in range(4)]
    assert codes == [200, 200, 200, 429]


# --- invitations ---------------------------------------------------------------------------------------


def test_staff_invite_a_buyer_who_chooses_a_password_and_orders(site, make_company, make_user, make_product):
    company, staff = make_company(name="Bar Linde"), make_user("staff")
    make_product(sku="BEER-1")
    office = signed_in(site, staff)
    page = office.get(f"/admin/companies/{company.id}").get_data(as_text=True)
    assert "flask user create" not in page and "Invite a user" in page
    sent = office.post(
        f"/admin/companies/{company.id}/users",
        data={"email": "Anna.Berg@Bar-Linde.example", "name": "Anna Berg", "role": "buyer"},
    )
    assert sent.status_code == 302
    anna = db.session.scalar(select(User).where(User.email == "anna.berg@bar-linde.example"))
    assert anna.email == "Anna.Berg@Bar-Linde.example" and not anna.has_password  # stored as entered
    assert "not accepted yet" in office.get(f"/admin/companies/{company.id}").get_data(as_text=True)
    path = link_in_last_mail(site.smtp, anna.email)
    assert "Bar Linde" in site.smtp.messages[-1]["Subject"]
    newcomer = site.test_client()
    form = newcomer.get(path).get_data(as_text=True)
    assert "Choose your password" in form and "Bar Linde" in form
    assert newcomer.post(path, data={"password": NEW_PASSWORD, "confirm": NEW_PASSWORD}).status_code == 302
    assert newcomer.post("/cart/add", data={"sku": "BEER-1", "quantity": "2"}).status_code == 302
    address = company.addresses[0].id
    placed = newcomer.post("/checkout", data={"address_id": address, "po_reference": "PO-1"})
    assert placed.status_code == 302 and "/orders/" in placed.headers["Location"]
    assert newcomer.get(path).status_code == 410  # the invitation is spent
    history = db.session.scalars(select(AuditEvent).where(AuditEvent.subject == "user")).all()
    assert [(e.field, e.new_value, e.actor) for e in history] == [("role", "buyer", staff.email)]


def test_a_second_invitation_replaces_the_first(site, make_company, make_user):
    company, staff = make_company(), make_user("staff")
    office = signed_in(site, staff)
    office.post(f"/admin/companies/{company.id}/users", data={"email": "new@example.com", "role": "owner"})
    first = link_in_last_mail(site.smtp, "new@example.com")
    invited = db.session.scalar(select(User).where(User.email == "new@example.com"))
    assert office.post(f"/admin/companies/{company.id}/users/{invited.id}/resend").status_code == 302
    second = link_in_last_mail(site.smtp, "new@example.com")
    assert site.test_client().get(first).status_code == 410
    assert site.test_client().get(second).status_code == 200


def test_invitation_form_names_each_wrong_field_and_keeps_the_rest(site, make_company, make_user):
    company, staff = make_company(), make_user("staff")
    taken = make_user("buyer", company, email="taken@example.com")
    office = signed_in(site, staff)
    response = office.post(
        f"/admin/companies/{company.id}/users",
        data={"email": "TAKEN@example.com", "name": "Kept Name", "role": "admin"},
    )
    text = response.get_data(as_text=True)
    assert response.status_code == 422
    assert "TAKEN@example.com already has an account" in text and taken.active
    assert "Choose owner or buyer" in text and 'value="Kept Name"' in text
    bad = office.post(f"/admin/companies/{company.id}/users", data={"email": "nope", "role": "buyer"})
    assert bad.status_code == 422 and "Enter an e-mail address" in bad.get_data(as_text=True)


def test_invitations_wait_in_the_outbox_while_the_mail_server_is_down(site, make_company, make_user, monkeypatch):
    company, staff = make_company(), make_user("staff")
    office = signed_in(site, staff)
    site.smtp.stop()
    response = office.post(
        f"/admin/companies/{company.id}/users",
        data={"email": "later@example.com", "role": "buyer"},
        follow_redirects=True,
    )
    assert "is on its way" in response.get_data(as_text=True)
    run_jobs()
    job = db.session.scalar(select(Job).where(Job.name == "send_mail"))
    assert job.status == "retrying" and job.attempts == 1
    site.smtp.start()
    later = utcnow() + timedelta(seconds=61)  # the first retry is due a minute later
    set_queue_clock(monkeypatch, lambda: later)
    assert link_in_last_mail(site.smtp, "later@example.com").startswith("/invite/")


# --- owners and their buyers -------------------------------------------------------------------------


def test_owner_invites_and_deactivates_a_buyer_and_a_buyer_cannot(site, make_company, make_user):
    company = make_company()
    owner, buyer = make_user("owner", company), make_user("buyer", company)
    office = signed_in(site, owner)
    assert office.get("/account/users").status_code == 200
    assert office.post("/account/users", data={"email": "third@example.com", "name": "Third"}).status_code == 302
    third = db.session.scalar(select(User).where(User.email == "third@example.com"))
    assert third.role == "buyer" and third.company_id == company.id
    buyer_browser = signed_in(site, buyer)
    assert office.post(f"/account/users/{buyer.id}/deactivate").status_code == 302
    assert buyer_browser.get("/orders").status_code == 302  # signed out at once
    assert login(site.test_client(), buyer).status_code == 401
    assert office.post(f"/account/users/{buyer.id}/activate").status_code == 302
    assert login(site.test_client(), buyer).status_code == 302
    # An owner cannot act on another owner, nor on another company's user.
    other_owner = make_user("owner", company)
    office.post(f"/account/users/{other_owner.id}/deactivate")
    assert db.session.get(User, other_owner.id).active
    stranger = make_user("buyer", make_company())
    assert office.post(f"/account/users/{stranger.id}/deactivate").status_code == 404
    # A buyer has no user management.
    assert signed_in(site, make_user("buyer", company)).get("/account/users").status_code == 403


# --- staff and admins ----------------------------------------------------------------------------------


def test_the_last_admin_cannot_demote_or_deactivate_themself(site, make_user):
    admin = make_user("admin")
    office = signed_in(site, admin)
    page = office.post(f"/admin/users/{admin.id}/role", data={"role": "staff"}, follow_redirects=True)
    assert "last active admin" in page.get_data(as_text=True)
    office.post(f"/admin/users/{admin.id}/deactivate")
    db.session.expire_all()
    assert db.session.get(User, admin.id).role == "admin" and db.session.get(User, admin.id).active
    second = make_user("admin")
    assert office.post(f"/admin/users/{admin.id}/role", data={"role": "staff"}).status_code == 302
    db.session.expire_all()
    assert db.session.get(User, admin.id).role == "staff"
    assert office.get("/admin/users").status_code == 403  # no longer an admin
    events = db.session.scalars(select(AuditEvent).where(AuditEvent.subject_id == admin.id)).all()
    assert [(e.old_value, e.new_value, e.actor) for e in events] == [("admin", "staff", admin.email)]
    assert second.active


def test_admin_invites_staff_and_staff_cannot_manage_people(site, make_user):
    admin, staff = make_user("admin"), make_user("staff")
    office = signed_in(site, admin)
    assert office.post("/admin/users", data={"email": "clerk@wholesale.example", "role": "staff"}).status_code == 302
    assert link_in_last_mail(site.smtp, "clerk@wholesale.example").startswith("/invite/")
    bad = office.post("/admin/users", data={"email": "x@example.com", "role": "owner"})
    assert bad.status_code == 422 and "Choose staff or admin" in bad.get_data(as_text=True)
    assert signed_in(site, staff).get("/admin/users").status_code == 403


# --- account self-service ---------------------------------------------------------------------------


def test_password_change_needs_the_current_one_and_ends_other_sessions(site, buyer):
    here, elsewhere = signed_in(site, buyer), signed_in(site, buyer)
    wrong = here.post("/account/password", data={"current": "wrong", "new": NEW_PASSWORD, "confirm": NEW_PASSWORD})
    assert wrong.status_code == 422 and "not your current password" in wrong.get_data(as_text=True)
    assert (
        here.post(
            "/account/password", data={"current": PASSWORD, "new": NEW_PASSWORD, "confirm": NEW_PASSWORD}
        ).status_code
        == 302
    )
    assert here.get("/account/").status_code == 200
    assert elsewhere.get("/orders").status_code == 302
    assert live_sessions(buyer) == 1
    notice = last_mail_text(site.smtp, buyer.email)
    assert "password of" in notice and "was changed" in notice and "/password/reset" in notice


WEAK_PASSWORDS = [
    ("password123", "at least 12 characters"),
    ("1234567890", "at least 12 characters"),
    (" " * 10, "at least 12 characters"),
    ("a  b  c  d  e  f", "A run of spaces counts as one."),
    ("x" * 129, "at most 128 characters"),
    ("password1234", "This is a very common password."),
    ("qwertyuiop12", "too easy to guess"),
    ("{email}", "must not be your e-mail address"),
    ("{name} 2024", "too easy to guess"),
]


def test_weak_passwords_are_refused_with_the_reason(client, make_company, make_user):
    buyer = make_user("buyer", make_company(), email="anna.schmidt@example.com")
    buyer.name = "Anna Schmidt"
    db.session.commit()
    login(client, buyer)
    runner = current_app.test_cli_runner()
    for weak, reason in WEAK_PASSWORDS:
        weak = weak.format(email=buyer.email, name=buyer.name)
        answer = client.post("/account/password", data={"current": PASSWORD, "new": weak, "confirm": weak})
        assert answer.status_code == 422 and reason in answer.get_data(as_text=True), weak
        result = runner.invoke(args=["user", "set-password", buyer.email, "--password-stdin"], input=weak + "\n")
        assert result.exit_code == 1 and reason in result.output, weak
    db.session.expire_all()
    assert db.session.get(User, buyer.id).check_password(PASSWORD)


def test_a_long_passphrase_of_any_characters_is_taken(client, buyer):
    login(client, buyer)
    phrase = "Hofbräu, Kölsch & Weißbier   bis 22 Uhr!" + "x7Qp" * 20
    assert len(phrase) <= 128
    answer = client.post("/account/password", data={"current": PASSWORD, "new": phrase, "confirm": phrase})
    assert answer.status_code == 302
    assert login(current_app.test_client(), buyer, phrase).status_code == 302


def test_email_change_is_confirmed_from_the_new_address(site, buyer):
    client = signed_in(site, buyer)
    page = client.get("/account/").get_data(as_text=True)
    assert buyer.company.name in page and "Payment terms" in page
    old_email = buyer.email
    without = client.post("/account/email", data={"new_email": "Fresh@Example.com", "email_password": "wrong"})
    page = without.get_data(as_text=True)
    assert without.status_code == 422 and "not your current password" in page and 'value="Fresh@Example.com"' in page
    assert run_jobs()["run"] == 0  # no link went out
    change = {"new_email": "Fresh@Example.com", "email_password": PASSWORD}
    assert client.post("/account/email", data=change).status_code == 302
    assert db.session.get(User, buyer.id).email == buyer.email  # not before the link is opened
    path = link_in_last_mail(site.smtp, "Fresh@Example.com")
    assert client.get(path).status_code == 302
    db.session.expire_all()
    assert db.session.get(User, buyer.id).email == "Fresh@Example.com"
    assert client.get(path).status_code == 410
    taken = client.post("/account/email", data=change)
    assert taken.status_code == 422 and "already your address" in taken.get_data(as_text=True)
    notice = last_mail_text(site.smtp, old_email)
    assert f"from {old_email} to Fresh@Example.com" in notice and "replying to this mail" in notice
    job = db.session.scalar(select(Job).where(Job.dedupe_key.like("mail:email_changed:%")))
    assert job.status == "done" and old_email in job.result


def test_name_change_is_shown_at_once(site, buyer):
    client = signed_in(site, buyer)
    assert client.post("/account/profile", data={"name": "Renamed Buyer"}).status_code == 302
    assert "Renamed Buyer" in client.get("/orders").get_data(as_text=True)
    empty = client.post("/account/profile", data={"name": "   "})
    assert empty.status_code == 422 and "Enter your name" in empty.get_data(as_text=True)


# --- command line --------------------------------------------------------------------------------------


def test_user_commands_invite_list_deactivate_and_set_password(app, make_company, make_user):
    company = make_company(name="Bar Linde")
    runner = app.test_cli_runner()
    invited = runner.invoke(args=["user", "invite", "new@example.com", "--role", "buyer", "--company", "bar linde"])
    assert invited.exit_code == 0, invited.output
    link = re.search(r"http://127\.0\.0\.1:8080(/invite/\S+)", invited.output)
    assert link and "No mail server is set" in invited.output
    assert app.test_client().get(link.group(1)).status_code == 200
    listed = runner.invoke(args=["user", "list", "--company", "Bar Linde"])
    assert re.search(r"new@example.com\s+buyer\s+invited\s+Bar Linde", listed.output)
    make_user("buyer", company, email="kim@example.com")
    assert (
        runner.invoke(args=["user", "deactivate", "KIM@example.com"]).output
        == "Deactivated kim@example.com; their sessions have ended.\n"
    )
    set_pw = runner.invoke(
        args=["user", "set-password", "new@example.com", "--password-stdin"], input=NEW_PASSWORD + "\n"
    )
    assert set_pw.exit_code == 0 and set_pw.output.startswith("Password of new@example.com set")
    assert (
        login(
            app.test_client(), db.session.scalar(select(User).where(User.email == "new@example.com")), NEW_PASSWORD
        ).status_code
        == 302
    )
    for args, message in (
        (["user", "deactivate", "ghost@example.com"], "There is no user ghost@example.com."),
        (["user", "invite", "x@example.com", "--role", "buyer"], "give --company"),
        (["user", "invite", "new@example.com", "--role", "buyer", "--company", "Bar Linde"], "already has an account"),
        (["user", "set-password", "new@example.com", "--password-stdin"], "at least 12 characters"),
    ):
        result = runner.invoke(args=args, input="short\n")
        assert result.exit_code == 1 and message in result.output and len(result.output.strip().splitlines()) == 1


def test_user_invite_with_a_mail_server_queues_the_mail(site, make_company):
    make_company(name="Bar Linde")
    result = site.test_cli_runner().invoke(
        args=["user", "invite", "a@example.com", "--role", "owner", "--company", "Bar Linde"]
    )
    assert result.output == "Invited owner a@example.com at Bar Linde; the mail is queued.\n"
    assert link_in_last_mail(site.smtp, "a@example.com").startswith("/invite/")


def test_sign_out_check_costs_no_query_on_a_cached_page(site, buyer, make_product):
    """The session check rides on the cached user row: a page served from the cache asks the database nothing
    for it (the per-request cost is measured by benchmarks/accounts.py)."""
    from sqlalchemy import event

    make_product()
    client = signed_in(site, buyer)
    client.get("/products")
    statements = []
    listener = lambda *args: statements.append(args[2])  # noqa: E731
    event.listen(db.engine, "before_cursor_execute", listener)
    try:
        time.sleep(0)  # the second request reads the user and its sessions from the cache
        assert client.get("/products").status_code == 200
    finally:
        event.remove(db.engine, "before_cursor_execute", listener)
    assert not [s for s in statements if "user_sessions" in s or "FROM users" in s], statements


def test_a_deactivated_company_signs_its_users_out_for_good(site, buyer, make_user):
    staff = make_user("staff")
    client, office = signed_in(site, buyer), signed_in(site, staff)
    company = buyer.company
    form = {"name": company.name, "credit_limit": "10000.00", "payment_terms_days": "30", "price_list_id": ""}
    assert office.post(f"/admin/companies/{company.id}", data=form).status_code == 302  # "active" left unticked
    assert client.get("/orders").status_code == 302
    assert live_sessions(buyer) == 0
    assert office.post(f"/admin/companies/{company.id}", data={**form, "active": "on"}).status_code == 302
    assert client.get("/orders").status_code == 302  # the old cookie stays dead after reactivation
    assert signed_in(site, buyer).get("/orders").status_code == 200
