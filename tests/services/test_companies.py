"""Customer companies, addresses, price lists and requests for an account, through the back office, the public
form and `flask company create`: happy paths, bad input named next to its field, and the audit trail."""

import email
import email.policy
import json
import re
from decimal import Decimal

import pytest
from sqlalchemy import select

from sipup.extensions import db
from sipup.models import AccountRequest, Address, AuditEvent, Company, Job, Order, PriceList, PriceTier, User
from sipup.services import mail

NEW = {
    "name": "Kiosk Nord",
    "vat_id": "de 123 456 789",
    "payment_terms_days": "14",
    "credit_limit": "2500.00",
    "price_list_id": "",
    "label": "Shop",
    "street": "Hafenstr. 3",
    "postcode": "20457",
    "city": "Hamburg",
    "country": "de",
}


@pytest.fixture
def staff(login_as, make_user):
    """The test client signed in as a staff member."""
    member = make_user("staff")
    login_as(member)
    return member


def events(subject, subject_id, field=None):
    stmt = select(AuditEvent).where(AuditEvent.subject == subject, AuditEvent.subject_id == subject_id)
    if field:
        stmt = stmt.where(AuditEvent.field == field)
    return db.session.scalars(stmt.order_by(AuditEvent.id)).all()


def mail_jobs(kind):
    return [j for j in db.session.scalars(select(Job).where(Job.name == "send_mail")) if json.loads(j.args)[0] == kind]


# --- companies ---------------------------------------------------------------------------------------------


def test_staff_create_a_company_with_its_first_address(client, staff, make_price_list, make_product):
    assert "New company" in client.get("/admin/companies").get_data(as_text=True)
    assert client.get("/admin/companies/new").status_code == 200
    trade = make_price_list("Trade", [(make_product(), 1, "8.00")])
    response = client.post("/admin/companies/new", data={**NEW, "price_list_id": trade.id})
    company = db.session.scalar(select(Company).where(Company.name == "Kiosk Nord"))
    assert response.status_code == 302 and response.location.endswith(f"/admin/companies/{company.id}")
    assert (company.vat_id, company.payment_terms_days, company.credit_limit) == ("DE123456789", 14, Decimal("2500.00"))
    assert company.price_list_id == trade.id and company.active
    assert [a.one_line() for a in company.addresses] == ["Shop: Hafenstr. 3, 20457 Hamburg, DE"]
    created = events("company", company.id, "created")
    assert [(e.new_value, e.actor) for e in created] == [("Kiosk Nord", staff.email)]
    assert staff.email in client.get(f"/admin/companies/{company.id}").get_data(as_text=True)


@pytest.mark.parametrize(
    "change, field, message",
    [
        ({"name": "kiosk SÜD"}, "name", "There is already a company called kiosk SÜD"),
        ({"vat_id": "DE999 999999"}, "vat_id", "VAT id DE999999999 belongs to Kiosk Süd"),
        ({"credit_limit": "-5"}, "credit_limit", "Credit limit must be 0 or more"),
        ({"credit_limit": "lots"}, "credit_limit", "is not an amount"),
        ({"payment_terms_days": "400"}, "payment_terms_days", "at most 365 days"),
        ({"price_list_id": "99999"}, "price_list_id", "Choose a price list"),
        ({"price_list_id": "9" * 40}, "price_list_id", "Choose a price list"),
        ({"street": ""}, "street", "Street must be 1 to 200"),
        ({"country": "Germany"}, "country", "two-letter code"),
    ],
)
def test_bad_company_input_is_named_next_to_its_field_and_the_rest_is_kept(
    client, staff, make_company, change, field, message
):
    make_company(name="Kiosk Süd", vat_id="DE999999999")
    response = client.post("/admin/companies/new", data={**NEW, **change})
    page = response.get_data(as_text=True)
    assert response.status_code == 422
    assert f'id="{field}-error">' in page and message in page
    kept = {"street": 'value="Hafenstr. 3"', "name": 'value="Kiosk Nord"'}
    assert all(value in page for name, value in kept.items() if name != field)
    assert f'value="{change[field]}"' in page or field in ("price_list_id", "vat_id")  # what was typed stays
    assert db.session.scalar(select(Company).where(Company.name == "Kiosk Nord")) is None


def test_a_name_taken_meanwhile_is_named_not_a_500(client, staff, make_company, monkeypatch):
    from sipup.services import companies

    make_company(name="Kiosk Nord")
    # Another request saved the same name between this one's check and its commit: the unique index decides.
    monkeypatch.setattr(companies, "_check_unique", lambda fields, errors, company_id: None)
    response = client.post("/admin/companies/new", data=NEW)
    assert response.status_code == 422
    assert 'id="name-error">Another company with this name was saved meanwhile.' in response.get_data(as_text=True)
    assert len(db.session.scalars(select(Company)).all()) == 1


def test_editing_terms_is_audited_and_duplicates_are_refused(
    client, staff, make_company, make_price_list, make_product
):
    company, other = make_company(name="Alpha"), make_company(name="Beta", vat_id="DE111")
    trade = make_price_list("Trade", [(make_product(), 1, "8.00")])
    form = {
        "name": "Alpha",
        "vat_id": "",
        "credit_limit": "7000",
        "payment_terms_days": "45",
        "price_list_id": trade.id,
        "active": "on",
    }
    assert client.post(f"/admin/companies/{company.id}", data=form).status_code == 302
    changes = {(e.field, e.old_value, e.new_value, e.actor) for e in events("company", company.id)}
    assert changes == {
        ("credit_limit", "10000.00", "7000.00", staff.email),
        ("payment_terms_days", "30", "45", staff.email),
        ("price_list", "base prices", "Trade", staff.email),
    }
    page = client.get(f"/admin/companies/{company.id}").get_data(as_text=True)
    assert "payment terms days" in page and "7000.00" in page
    taken = client.post(f"/admin/companies/{company.id}", data={**form, "name": "BETA", "vat_id": "de 111"})
    assert taken.status_code == 422
    assert "There is already a company called BETA" in taken.get_data(as_text=True)
    assert "VAT id DE111 belongs to Beta" in taken.get_data(as_text=True)
    assert len(events("company", company.id)) == 3 and db.session.get(Company, other.id).name == "Beta"


def test_addresses_are_added_changed_and_removed_and_orders_keep_theirs(client, staff, make_company):
    company = make_company()
    first = company.addresses[0]
    order = Order(number="2601-000001", company_id=company.id, delivery_address=first.one_line())
    db.session.add(order)
    db.session.commit()
    kept = first.one_line()
    url = f"/admin/companies/{company.id}/addresses"
    assert client.post(url, data={**NEW, "label": "Depot"}).status_code == 302
    assert client.post(f"{url}/{first.id}", data={**NEW, "label": "Office", "street": "Neuer Weg 1"}).status_code == 302
    lines = [a.one_line() for a in db.session.get(Company, company.id).addresses]
    assert lines == ["Office: Neuer Weg 1, 20457 Hamburg, DE", "Depot: Hafenstr. 3, 20457 Hamburg, DE"]
    assert client.post(f"{url}/{first.id}", data={"remove": "1"}).status_code == 302
    remaining = db.session.get(Company, company.id).addresses
    assert [a.label for a in remaining] == ["Depot"]
    assert db.session.get(Order, order.id).delivery_address == kept
    # The last address stays, so buyers can always check out.
    refused = client.post(f"{url}/{remaining[0].id}", data={"remove": "1"}, follow_redirects=True)
    assert "at least one delivery address" in refused.get_data(as_text=True)
    assert len(db.session.get(Company, company.id).addresses) == 1
    assert [e.new_value for e in events("company", company.id, "address")][:2] == [
        "Depot: Hafenstr. 3, 20457 Hamburg, DE",
        "Office: Neuer Weg 1, 20457 Hamburg, DE",
    ]


def test_bad_address_input_is_named_and_another_companys_address_is_out_of_reach(client, staff, make_company):
    company, other = make_company(), make_company()
    response = client.post(f"/admin/companies/{company.id}/addresses", data={**NEW, "postcode": "", "country": "D"})
    page = response.get_data(as_text=True)
    assert response.status_code == 422
    assert 'id="postcode-error">Postcode must be 1 to 20' in page and 'id="country-error">Country must be' in page
    assert 'value="Hafenstr. 3"' in page
    assert client.post(f"/admin/companies/{company.id}/addresses/{other.addresses[0].id}", data=NEW).status_code == 404
    assert (
        client.post(
            f"/admin/companies/{company.id}/addresses/{other.addresses[0].id}", data={"remove": "1"}
        ).status_code
        == 404
    )
    assert db.session.scalar(select(Address).where(Address.id == other.addresses[0].id)) is not None


def test_checkout_says_when_a_company_has_no_address(client, login_as, make_user, make_product, app):
    company = Company(name="No address yet", credit_limit=Decimal("1000"))
    db.session.add(company)
    db.session.commit()
    buyer = make_user("buyer", company)
    login_as(buyer)
    product = make_product()
    assert client.post("/cart/add", data={"sku": product.sku, "quantity": "1"}).status_code in (200, 302)
    page = client.get("/checkout").get_data(as_text=True)
    assert "no delivery address yet" in page
    response = client.post("/checkout", data={"address_id": ""})
    assert response.status_code == 422 and db.session.scalar(select(Order)) is None


# --- price lists -----------------------------------------------------------------------------------------


def test_price_lists_are_created_copied_renamed_and_deleted(client, staff, make_price_list, make_product, make_company):
    beer, wine = make_product(sku="BEER-1"), make_product(sku="WINE-1")
    source = make_price_list("Trade", [(beer, 1, "8.00"), (beer, 10, "7.50"), (wine, 1, "4.00")])
    assert "New price list" in client.get("/admin/price-lists").get_data(as_text=True)
    assert client.post("/admin/price-lists/new", data={"name": "Empty"}).status_code == 302
    copied = client.post("/admin/price-lists/new", data={"name": "Trade 2027", "copy_from": source.id})
    copy = db.session.scalar(select(PriceList).where(PriceList.name == "Trade 2027"))
    assert copied.location.endswith(f"/admin/price-lists/{copy.id}")
    tiers = sorted(
        (t.product_id, t.min_qty, t.price)
        for t in db.session.scalars(select(PriceTier).where(PriceTier.price_list_id == copy.id))
    )
    assert tiers == [(beer.id, 1, Decimal("8.00")), (beer.id, 10, Decimal("7.50")), (wine.id, 1, Decimal("4.00"))]
    assert len(db.session.get(PriceList, source.id).tiers) == 3
    assert client.post(f"/admin/price-lists/{copy.id}", data={"rename": "1", "name": "Trade 2028"}).status_code == 302
    assert db.session.get(PriceList, copy.id).name == "Trade 2028"
    assert [(e.old_value, e.new_value) for e in events("price_list", copy.id, "name")] == [("Trade 2027", "Trade 2028")]
    make_company(name="Zeta Bar", price_list=db.session.get(PriceList, source.id))
    refused = client.post(f"/admin/price-lists/{source.id}", data={"delete_list": "1"}, follow_redirects=True)
    assert "Trade is used by Zeta Bar" in refused.get_data(as_text=True)
    assert db.session.get(PriceList, source.id) is not None
    copy_id = copy.id
    assert client.post(f"/admin/price-lists/{copy_id}", data={"delete_list": "1"}).status_code == 302
    db.session.expunge_all()
    assert db.session.get(PriceList, copy_id) is None
    assert db.session.scalar(select(PriceTier).where(PriceTier.price_list_id == copy_id)) is None


@pytest.mark.parametrize(
    "data, message",
    [
        ({"name": ""}, "Name must be 1 to 120 characters."),
        ({"name": "trade"}, "There is already a price list called Trade."),
        ({"name": "Fresh", "copy_from": "999999"}, "The list to copy no longer exists."),
    ],
)
def test_bad_price_list_input_is_named(client, staff, make_price_list, data, message):
    make_price_list("Trade", [])
    response = client.post("/admin/price-lists/new", data=data)
    assert response.status_code == 422 and message in response.get_data(as_text=True)
    assert db.session.scalar(select(PriceList).where(PriceList.name == "Fresh")) is None


def test_renaming_onto_another_list_is_refused_with_the_name_kept(client, staff, make_price_list):
    make_price_list("Trade", [])
    other = make_price_list("Retail", [])
    response = client.post(f"/admin/price-lists/{other.id}", data={"rename": "1", "name": "TRADE"})
    page = response.get_data(as_text=True)
    assert response.status_code == 422 and 'id="name-error">There is already a price list called Trade.' in page
    assert 'value="TRADE"' in page and db.session.get(PriceList, other.id).name == "Retail"


def test_tier_changes_are_audited_and_shown_on_the_price_list(client, staff, make_price_list, make_product):
    beer = make_product(sku="BEER-1")
    price_list = make_price_list("Trade", [])
    url = f"/admin/price-lists/{price_list.id}"
    client.post(url, data={"sku": "beer-1", "min_qty": "10", "price": "7.50"})
    client.post(url, data={"sku": "BEER-1", "min_qty": "10", "price": "7.20"})
    client.post(url, data={"sku": "BEER-1", "min_qty": "10", "price": "7.20"})  # no change, nothing recorded
    tier = db.session.scalar(select(PriceTier).where(PriceTier.product_id == beer.id))
    client.post(url, data={"delete": tier.id})
    trail = [(e.old_value, e.new_value, e.actor) for e in events("price_list", price_list.id, "tier")]
    assert trail == [
        ("", "BEER-1 from 10 at 7.50", staff.email),
        ("BEER-1 from 10 at 7.50", "BEER-1 from 10 at 7.20", staff.email),
        ("BEER-1 from 10 at 7.20", "", staff.email),
    ]
    page = client.get(url).get_data(as_text=True)
    assert "History" in page and "BEER-1 from 10 at 7.20" in page


# --- requests for an account --------------------------------------------------------------------------

REQUEST = {
    "company_name": "Bar Centrale",
    "vat_id": "IT 0123",
    "contact_name": "Giulia Rossi",
    "email": "Giulia@Example.com",
    "phone": "+39 06 1234",
    "street": "Via Roma 1",
    "postcode": "00184",
    "city": "Roma",
    "country": "it",
    "message": "We serve 300 guests a day.",
}


def _request(client, address="10.9.0.1", **change):
    return client.post("/register", data={**REQUEST, **change}, environ_base={"REMOTE_ADDR": address})


def test_a_visitor_requests_an_account_and_nothing_else_exists_yet(client):
    assert "Request a business account" in client.get("/login").get_data(as_text=True)
    assert client.get("/register").status_code == 200
    response = _request(client)
    assert response.status_code == 200 and "Thank you" in response.get_data(as_text=True)
    stored = db.session.scalar(select(AccountRequest))
    assert (stored.company_name, stored.email, stored.vat_id, stored.country, stored.status) == (
        "Bar Centrale",
        "Giulia@Example.com",
        "IT0123",
        "IT",
        "pending",
    )
    assert db.session.scalar(select(Company)) is None and db.session.scalar(select(User)) is None


def test_a_filled_honeypot_is_thanked_and_stores_nothing(client):
    response = _request(client, website="http://spam.example")
    assert response.status_code == 200 and "Thank you" in response.get_data(as_text=True)
    assert db.session.scalar(select(AccountRequest)) is None


@pytest.mark.parametrize(
    "change, field",
    [
        ({"company_name": ""}, "company_name"),
        ({"email": "not-an-address"}, "email"),
        ({"contact_name": ""}, "contact_name"),
        ({"city": ""}, "city"),
        ({"country": "Italia"}, "country"),
        ({"phone": "1" * 41}, "phone"),
    ],
)
def test_bad_request_input_is_named_and_the_rest_kept(client, change, field):
    response = _request(client, **change)
    page = response.get_data(as_text=True)
    assert response.status_code == 422 and f'id="{field}-error">' in page
    assert "We serve 300 guests a day." in page and 'value="Via Roma 1"' in page
    assert db.session.scalar(select(AccountRequest)) is None


def test_requests_are_limited_per_address(client):
    codes = [_request(client, company_name=f"Bar {n}").status_code for n in range(4)]
    assert codes == [200, 200, 200, 429]
    assert _request(client, address="10.9.0.2", company_name="Bar 5").status_code == 200
    assert client.get("/register", environ_base={"REMOTE_ADDR": "10.9.0.1"}).status_code == 200


def test_the_form_needs_its_csrf_token(app, make_app):
    protected = make_app(WTF_CSRF_ENABLED=True).test_client()
    assert protected.post("/register", data=REQUEST).status_code == 400
    assert db.session.scalar(select(AccountRequest)) is None


def test_staff_approve_a_request_the_company_is_made_and_the_owner_invited(client, staff, make_price_list):
    _request(client)
    pending = db.session.scalar(select(AccountRequest))
    dashboard = client.get("/admin/").get_data(as_text=True)
    assert "Requests for an account" in dashboard and "Bar Centrale" in dashboard
    assert "We serve 300 guests a day." in client.get(f"/admin/account-requests/{pending.id}").get_data(as_text=True)
    form_page = client.get(f"/admin/companies/new?request={pending.id}").get_data(as_text=True)
    assert 'value="Bar Centrale"' in form_page and 'value="Giulia@Example.com"' in form_page
    trade = make_price_list("Trade", [])
    form = {
        "request": pending.id,
        "name": "Bar Centrale",
        "vat_id": "IT0123",
        "payment_terms_days": "10",
        "credit_limit": "800",
        "price_list_id": trade.id,
        "label": "Main",
        "street": "Via Roma 1",
        "postcode": "00184",
        "city": "Roma",
        "country": "IT",
        "contact_name": "Giulia Rossi",
        "contact_email": "Giulia@Example.com",
    }
    response = client.post("/admin/companies/new", data=form)
    assert response.status_code == 302
    company = db.session.scalar(select(Company))
    owner = db.session.scalar(select(User).where(User.company_id == company.id))
    assert (company.name, company.credit_limit, company.price_list_id) == ("Bar Centrale", Decimal("800.00"), trade.id)
    assert (owner.email, owner.role, owner.has_password) == ("Giulia@Example.com", "owner", False)
    assert len(mail_jobs("invitation")) == 1
    decided = db.session.get(AccountRequest, pending.id)
    assert (decided.status, decided.company_id, decided.decided_by) == ("approved", company.id, staff.id)
    assert "Requests for an account" not in client.get("/admin/").get_data(as_text=True)
    again = client.get(f"/admin/companies/new?request={pending.id}", follow_redirects=True)
    assert "already approved" in again.get_data(as_text=True)


def test_approving_with_a_taken_address_creates_nothing(client, staff, make_user):
    make_user("buyer", email="giulia@example.com", company=None)
    _request(client)
    pending = db.session.scalar(select(AccountRequest))
    form = {
        "request": pending.id,
        "name": "Bar Centrale",
        "payment_terms_days": "10",
        "credit_limit": "-1",
        "label": "Main",
        "street": "Via Roma 1",
        "postcode": "00184",
        "city": "Roma",
        "country": "IT",
        "contact_name": "Giulia",
        "contact_email": "GIULIA@example.com",
    }
    response = client.post("/admin/companies/new", data=form)
    page = response.get_data(as_text=True)
    assert response.status_code == 422
    assert 'id="contact_email-error">GIULIA@example.com already has an account.' in page
    assert 'id="credit_limit-error">' in page and 'value="Via Roma 1"' in page
    assert db.session.scalar(select(Company)) is None and mail_jobs("invitation") == []
    assert db.session.get(AccountRequest, pending.id).status == "pending"


def test_staff_reject_a_request_and_a_polite_mail_is_queued(client, staff):
    _request(client)
    pending = db.session.scalar(select(AccountRequest))
    response = client.post(f"/admin/account-requests/{pending.id}/reject", follow_redirects=True)
    assert "is rejected" in response.get_data(as_text=True)
    assert db.session.get(AccountRequest, pending.id).status == "rejected"
    assert [json.loads(j.args)[1] for j in mail_jobs("account_request_declined")] == [pending.id]
    assert mail.send("account_request_declined", pending.id).startswith(
        "account_request_declined to Giulia@Example.com"
    )
    twice = client.post(f"/admin/account-requests/{pending.id}/reject", follow_redirects=True)
    assert "already rejected" in twice.get_data(as_text=True) and len(mail_jobs("account_request_declined")) == 1
    assert db.session.scalar(select(Company)) is None


def test_staff_hear_of_a_new_request_with_a_link_to_it(client, staff):
    _request(client)
    pending = db.session.scalar(select(AccountRequest))
    assert [json.loads(j.args)[1] for j in mail_jobs("account_request_received")] == [pending.id]
    summary = mail.send("account_request_received", pending.id)
    assert summary.startswith(f"account_request_received to {staff.email}")
    with open(summary.rsplit("written to ", 1)[1].rstrip(")"), "rb") as handle:
        message = email.message_from_bytes(handle.read(), policy=email.policy.default)
    assert message["Subject"] == "Account request from Bar Centrale"
    text = message.get_body(("plain",)).get_content()
    assert f"/admin/account-requests/{pending.id}" in text and "Giulia Rossi" in text


def test_buyers_cannot_reach_the_new_forms(client, login_as, buyer):
    login_as(buyer)
    for url in ("/admin/companies/new", "/admin/price-lists/new"):
        assert client.post(url, data=NEW).status_code == 403
    assert db.session.scalar(select(Company).where(Company.name == "Kiosk Nord")) is None


# --- command line ---------------------------------------------------------------------------------------


def test_flask_company_create_says_what_it_did(runner, make_price_list):
    make_price_list("Trade", [])
    result = runner.invoke(
        args=[
            "company",
            "create",
            "Kiosk Nord",
            "--vat",
            "DE 42",
            "--terms",
            "14",
            "--credit",
            "2500",
            "--price-list",
            "trade",
            "--address",
            "Hafenstr. 3, 20457 Hamburg, DE",
        ]
    )
    assert result.exit_code == 0, result.output
    company = db.session.scalar(select(Company))
    assert result.output == (
        f"Created company Kiosk Nord (id {company.id}): 14 days, credit 2500.00, Trade, "
        "delivering to Main: Hafenstr. 3, 20457 Hamburg, DE.\n"
    )
    assert company.vat_id == "DE42" and events("company", company.id, "created")[0].actor == "command line"
    bare = runner.invoke(args=["company", "create", "Bar"])
    assert bare.exit_code == 0 and "30 days, credit 5000.00, base prices, no delivery address yet" in bare.output


@pytest.mark.parametrize(
    "args, message",
    [
        (["--credit", "-1"], "Credit limit must be 0 or more"),
        (["--price-list", "Nope"], "There is no price list “Nope”."),
        (["--address", "Hafenstr. 3 Hamburg"], "must read like"),
        (["--address", "Hafenstr. 3, 20457 Hamburg, Germany"], "Country must be a two-letter code"),
        (["--terms", "soon"], "Payment terms “soon” is not a whole number."),
    ],
)
def test_flask_company_create_fails_in_one_line(runner, args, message):
    result = runner.invoke(args=["company", "create", "Kiosk", *args])
    assert result.exit_code == 1
    assert message in result.output and result.output.count("\n") == 1
    assert db.session.scalar(select(Company)) is None


def test_flask_company_create_refuses_a_taken_name(runner, make_company):
    make_company(name="Kiosk Nord")
    result = runner.invoke(args=["company", "create", "KIOSK NORD"])
    assert result.exit_code == 1 and result.output == "Error: There is already a company called KIOSK NORD.\n"


def test_register_form_starts_with_a_country(client):
    page = client.get("/register").get_data(as_text=True)
    assert re.search(r'name="country" value="DE"', page)
