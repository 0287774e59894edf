"""Customer companies, their delivery addresses, price lists and tiers, and requests for a business account.

Changes of a company's credit limit, terms and price list, and of a price list's tiers, go to the audit
trail with who made them. Orders copy their delivery address as text, so editing or removing an address
changes no order.
"""

from decimal import Decimal

from flask_babel import gettext, lazy_gettext
from sqlalchemy import delete, func, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import selectinload

from ..database import paginate
from ..exceptions import FieldErrors, InvalidInput, NotFound
from ..extensions import db
from ..models import AccountRequest, Address, Company, PriceList, PriceTier, Product, Role, utcnow
from . import accounts, audit, users
from .backoffice import _field
from .catalog import matching
from .mail import queue_mail
from .parsing import parse_count, parse_money, whole_number

DEFAULT_TERMS, DEFAULT_CREDIT = "30", "5000.00"
CENT = Decimal("0.01")
# What became of an account request, as the sentence "The request ... was already ..." ends.
REQUEST_STATES = {"approved": lazy_gettext("approved"), "rejected": lazy_gettext("rejected")}


# --- companies --------------------------------------------------------------------------------------


def _text(form, name, errors, label, size, required=True):
    value = (form.get(name) or "").strip()
    if (required and not value) or len(value) > size:
        errors[name] = gettext(
            "%(label)s must be %(least)s to %(size)s characters.", label=label, least=1 if required else 0, size=size
        )
    return value


def _normal_vat(text):
    return "".join((text or "").split()).upper()


def _terms(form, errors):
    fields = {
        "name": _text(form, "name", errors, gettext("Name"), 200),
        "vat_id": _normal_vat(form.get("vat_id")),
        "credit_limit": _field(errors, "credit_limit", parse_money, form, gettext("Credit limit")),
        "payment_terms_days": _field(errors, "payment_terms_days", parse_count, form, gettext("Payment terms"), 0),
        "price_list": _chosen_price_list(form, errors),
    }
    if fields["credit_limit"] is not None:  # 7000 and 7000.00 are one amount, in the audit trail too
        fields["credit_limit"] = fields["credit_limit"].quantize(CENT)
    if fields["payment_terms_days"] is not None and fields["payment_terms_days"] > 365:
        errors["payment_terms_days"] = gettext("Payment terms can be at most 365 days.")
    if len(fields["vat_id"]) > 32:
        errors["vat_id"] = gettext("The VAT id can have at most 32 characters.")
    return fields


def _chosen_price_list(form, errors):
    """The price list named by id (forms) or by name (the command line); None for base prices."""
    list_id, name = (form.get("price_list_id") or "").strip(), (form.get("price_list") or "").strip()
    if name:
        price_list = price_list_by_name(name)
        if price_list is None:
            errors["price_list_id"] = gettext("There is no price list “%(name)s”.", name=name[:120])
        return price_list
    if not list_id:
        return None
    price_list = db.session.get(PriceList, whole_number(list_id)) if whole_number(list_id) else None
    if price_list is None:
        errors["price_list_id"] = gettext("Choose a price list or base prices.")
    return price_list


def _check_unique(fields, errors, company_id):
    """Names and VAT ids belong to one company each, whatever their case or spacing."""
    others = select(Company.name).where(Company.id != (company_id or -1))
    if "name" not in errors and fields["name"]:
        if db.session.scalar(others.where(func.lower(Company.name) == fields["name"].lower())):
            errors["name"] = gettext("There is already a company called %(name)s.", name=fields["name"])
    if "vat_id" not in errors and fields["vat_id"]:
        taken = db.session.scalar(others.where(func.upper(func.replace(Company.vat_id, " ", "")) == fields["vat_id"]))
        if taken:
            errors["vat_id"] = gettext(
                "VAT id %(vat_id)s belongs to %(company)s.", vat_id=fields["vat_id"], company=taken
            )


def _apply_terms(company, fields, actor):
    old_list = company.price_list.name if company.price_list else "base prices"
    new_list = fields["price_list"].name if fields["price_list"] else "base prices"
    if company.id is not None:
        audit.record("company", company.id, "credit_limit", company.credit_limit, fields["credit_limit"], actor)
        audit.record(
            "company", company.id, "payment_terms_days", company.payment_terms_days, fields["payment_terms_days"], actor
        )
        audit.record("company", company.id, "price_list", old_list, new_list, actor)
    company.name, company.vat_id = fields["name"], fields["vat_id"] or None
    company.credit_limit, company.payment_terms_days = fields["credit_limit"], fields["payment_terms_days"]
    company.price_list = fields["price_list"]


NAME_TAKEN_MEANWHILE = {"name": lazy_gettext("Another company with this name was saved meanwhile.")}
LIST_TAKEN_MEANWHILE = {"name": lazy_gettext("Another price list with this name was saved meanwhile.")}


def _commit(flush_only=False, taken=NAME_TAKEN_MEANWHILE):
    """Commit (or flush); a name taken meanwhile by another request (the unique index) is the name field's error."""
    try:
        db.session.flush() if flush_only else db.session.commit()
    except IntegrityError:
        db.session.rollback()
        raise FieldErrors({field: str(message) for field, message in taken.items()}) from None


def save_company(company, form, actor=None):
    """Update a company's name, VAT id and commercial terms from form fields; the changes are audited."""
    errors = {}
    fields = _terms(form, errors)
    _check_unique(fields, errors, company.id)
    if errors:
        raise FieldErrors(errors)
    _apply_terms(company, fields, actor)
    if company.active != (form.get("active") == "on"):
        audit.record("company", company.id, "active", company.active, not company.active, actor)
        company.active = not company.active
        if not company.active:  # its users' sessions end for good: reactivating revives no old cookie
            for user in company.users:
                user.sessions.clear()
    _commit()
    return company


def _new_company(form, actor, errors, address_required=True):
    """Check a new company with its first address and add it to the session (no commit)."""
    fields = _terms(form, errors)
    _check_unique(fields, errors, None)
    address = None
    if address_required or any((form.get(k) or "").strip() for k in ("street", "postcode", "city")):
        address = _address_fields(form, errors)
    if errors:
        raise FieldErrors(errors)
    company = Company(active=True)
    _apply_terms(company, fields, actor)
    if address:
        company.addresses.append(Address(**address))
    db.session.add(company)
    _commit(flush_only=True)  # the id, for the audit trail and the owner's invitation
    audit.record("company", company.id, "created", "", company.name, actor)
    return company


def create_company(form, actor=None, address_required=True):
    """A new company from form fields (terms, price list, first delivery address), audited as created by actor."""
    company = _new_company(form, actor, {}, address_required)
    _commit()
    return company


def new_company_defaults(account_request=None):
    """What the New company form starts with: the usual terms, and a request's details when approving one."""
    values = {"payment_terms_days": DEFAULT_TERMS, "credit_limit": DEFAULT_CREDIT, "label": "Main", "country": "DE"}
    if account_request is not None:
        r = account_request
        values.update(
            name=r.company_name,
            vat_id=r.vat_id,
            street=r.street,
            postcode=r.postcode,
            city=r.city,
            country=r.country,
            contact_name=r.contact_name,
            contact_email=r.email,
        )
    return values


def parse_address_line(text):
    """ "STREET, POSTCODE CITY, COUNTRY" (the command line's --address) as address fields."""
    parts = [p.strip() for p in (text or "").rsplit(",", 2)]
    if len(parts) != 3 or len(parts[1].split(None, 1)) != 2:
        raise InvalidInput(
            gettext("Address “%(text)s” must read like “Hauptstr. 1, 10115 Berlin, DE”.", text=(text or "")[:80])
        )
    postcode, city = parts[1].split(None, 1)
    return {"label": "Main", "street": parts[0], "postcode": postcode, "city": city, "country": parts[2]}


# --- delivery addresses ------------------------------------------------------------------------------


def _address_fields(form, errors, with_label=True):
    values = {
        "label": _text(form, "label", errors, gettext("Label"), 80) if with_label else "Main",
        "street": _text(form, "street", errors, gettext("Street"), 200),
        "postcode": _text(form, "postcode", errors, gettext("Postcode"), 20),
        "city": _text(form, "city", errors, gettext("City"), 100),
        "country": (form.get("country") or "").strip().upper(),
    }
    if len(values["country"]) != 2 or not values["country"].isalpha() or not values["country"].isascii():
        errors["country"] = gettext("Country must be a two-letter code such as DE.")
    return values


def company_address(company, address_id):
    """One of this company's addresses, or NotFound (one company's id never reaches another's address)."""
    address = db.session.get(Address, address_id)
    if address is None or address.company_id != company.id:
        raise NotFound(gettext("That address no longer exists."))
    return address


def save_address(company, address_id, form, actor=None):
    """Add a delivery address (address_id None) or change one; orders placed before keep theirs as they were."""
    errors = {}
    values = _address_fields(form, errors)
    if errors:
        raise FieldErrors(errors)
    address = company_address(company, address_id) if address_id else Address(company_id=company.id)
    old = address.one_line() if address_id else ""
    for name, value in values.items():
        setattr(address, name, value)
    db.session.add(address)
    audit.record("company", company.id, "address", old, address.one_line(), actor)
    db.session.commit()
    return address


def remove_address(company, address_id, actor=None):
    """Remove a delivery address; the last one stays, so buyers can always check out."""
    address = company_address(company, address_id)
    if len(company.addresses) <= 1:
        raise InvalidInput(
            gettext("A company needs at least one delivery address: add another before removing this one.")
        )
    audit.record("company", company.id, "address", address.one_line(), "", actor)
    company.addresses.remove(address)
    db.session.commit()


# --- price lists --------------------------------------------------------------------------------------


def price_list_by_name(name):
    """The price list of this name in any case, or None."""
    return db.session.scalar(select(PriceList).where(func.lower(PriceList.name) == name.strip().lower()))


def price_lists():
    """Every price list by name."""
    return db.session.scalars(select(PriceList).order_by(PriceList.name)).all()


def get_price_list(list_id):
    """One price list, or NotFound."""
    price_list = db.session.get(PriceList, list_id)
    if price_list is None:
        raise NotFound(gettext("There is no such price list."))
    return price_list


def _list_name(name, list_id=None):
    name = (name or "").strip()
    if not name or len(name) > 120:
        raise FieldErrors({"name": gettext("Name must be 1 to 120 characters.")})
    other = price_list_by_name(name)
    if other is not None and other.id != list_id:
        raise FieldErrors({"name": gettext("There is already a price list called %(name)s.", name=other.name)})
    return name


def create_price_list(name, copy_from_id=None, actor=None):
    """A new price list, empty or with every tier of an existing one."""
    name = _list_name(name)
    source = None
    if copy_from_id:
        source = db.session.get(PriceList, copy_from_id)
        if source is None:
            raise FieldErrors({"copy_from": gettext("The list to copy no longer exists.")})
    price_list = PriceList(name=name)
    db.session.add(price_list)
    _commit(flush_only=True, taken=LIST_TAKEN_MEANWHILE)
    audit.record(
        "price_list",
        price_list.id,
        "created",
        "",
        gettext("copy of %(name)s", name=source.name) if source else name,
        actor,
    )
    if source is not None:
        db.session.execute(
            insert(PriceTier).from_select(
                ["price_list_id", "product_id", "min_qty", "price"],
                select(price_list.id, PriceTier.product_id, PriceTier.min_qty, PriceTier.price).where(
                    PriceTier.price_list_id == source.id
                ),
            )
        )
    _commit(taken=LIST_TAKEN_MEANWHILE)
    return price_list


def rename_price_list(price_list, name, actor=None):
    """Give a price list another name; companies on it keep it."""
    name = _list_name(name, price_list.id)
    audit.record("price_list", price_list.id, "name", price_list.name, name, actor)
    price_list.name = name
    _commit(taken=LIST_TAKEN_MEANWHILE)
    return price_list


def delete_price_list(price_list):
    """Delete a price list and its tiers, unless a company uses it (those companies are named)."""
    users_of = db.session.scalars(
        select(Company.name).where(Company.price_list_id == price_list.id).order_by(Company.name).limit(11)
    ).all()
    if users_of:
        names = ", ".join(users_of[:10]) + (gettext(" and more") if len(users_of) > 10 else "")
        raise InvalidInput(
            gettext(
                "%(name)s is used by %(companies)s: move them to another list first.",
                name=price_list.name,
                companies=names,
            )
        )
    name = price_list.name
    db.session.execute(delete(PriceTier).where(PriceTier.price_list_id == price_list.id))
    db.session.execute(delete(PriceList).where(PriceList.id == price_list.id))
    try:
        db.session.commit()
    except IntegrityError:  # a company was moved onto it meanwhile
        db.session.rollback()
        raise InvalidInput(gettext("%(name)s was just given to a company; it is kept.", name=name)) from None
    return name


def price_list_tiers(price_list_id, query="", page=1, per_page=50):
    """A price list with a page of its tiers, by SKU then quantity; a search finds products as buyers do."""
    price_list = get_price_list(price_list_id)
    stmt = (
        select(PriceTier)
        .join(Product)
        .options(selectinload(PriceTier.product))
        .where(PriceTier.price_list_id == price_list_id)
    )
    if (query or "").strip():
        stmt = matching(stmt, query)
    tiers = paginate(stmt.order_by(Product.sku, PriceTier.min_qty), page, per_page)
    return price_list, tiers


def _tier_text(sku, tier):
    return f"{sku} from {tier.min_qty} at {tier.price:.2f}"


def save_tier(price_list_id, form, actor=None):
    """Add a tier to a price list, or change the price of the tier with the same minimum; audited."""
    errors = {}
    sku = (form.get("sku") or "").strip().upper()
    product = db.session.scalar(select(Product).where(Product.sku == sku))
    if product is None:
        errors["sku"] = gettext("Unknown SKU “%(sku)s”.", sku=sku[:40])
    min_qty = _field(errors, "min_qty", parse_count, form, gettext("From quantity"), 1)
    price = _field(errors, "price", parse_money, form, gettext("Price"))
    if errors:
        raise FieldErrors(errors)
    tier = db.session.scalar(
        select(PriceTier).where(
            PriceTier.price_list_id == price_list_id, PriceTier.product_id == product.id, PriceTier.min_qty == min_qty
        )
    )
    old = _tier_text(sku, tier) if tier else ""
    if tier is None:
        tier = PriceTier(price_list_id=price_list_id, product_id=product.id, min_qty=min_qty)
        db.session.add(tier)
    tier.price = price
    audit.record("price_list", price_list_id, "tier", old, _tier_text(sku, tier), actor)
    db.session.commit()


def delete_tier(price_list_id, tier_id, actor=None):
    """Remove one tier from a price list; audited."""
    tier = db.session.get(PriceTier, tier_id)
    if tier is None or tier.price_list_id != price_list_id:
        raise InvalidInput(gettext("That tier no longer exists."))
    audit.record("price_list", price_list_id, "tier", _tier_text(tier.product.sku, tier), "", actor)
    db.session.delete(tier)
    db.session.commit()


# --- requests for a business account ---------------------------------------------------------------------

REQUEST_FIELDS = (
    "company_name",
    "vat_id",
    "contact_name",
    "email",
    "phone",
    "street",
    "postcode",
    "city",
    "country",
    "message",
)


def submit_request(form):
    """Store a pending request for a business account from the public form; nothing else exists until approved.

    A filled honeypot field (hidden from people, filled by bots) is accepted without storing anything.
    """
    if (form.get("website") or "").strip():
        return None
    errors = {}
    address = _address_fields(form, errors, with_label=False)
    del address["label"]
    email = accounts.normalise_email(form.get("email"))
    if not accounts.EMAIL.match(email) or len(email) > 254:
        errors["email"] = gettext("Enter an e-mail address such as anna@example.com.")
    request = AccountRequest(
        company_name=_text(form, "company_name", errors, gettext("Company name"), 200),
        vat_id=_normal_vat(form.get("vat_id")),
        contact_name=_text(form, "contact_name", errors, gettext("Your name"), 120),
        email=email,
        phone=_text(form, "phone", errors, gettext("Phone"), 40, required=False),
        message=_text(form, "message", errors, gettext("Message"), 2000, required=False),
        **address,
    )
    if len(request.vat_id) > 32:
        errors["vat_id"] = gettext("The VAT id can have at most 32 characters.")
    if errors:
        raise FieldErrors(errors)
    db.session.add(request)
    db.session.flush()
    queue_mail("account_request_received", request.id, priority="high")  # staff learn of it in the same unit
    db.session.commit()
    return request


def pending_requests(limit=50):
    """Requests waiting for a decision, oldest first."""
    return db.session.scalars(
        select(AccountRequest)
        .where(AccountRequest.status == "pending")
        .order_by(AccountRequest.created_at, AccountRequest.id)
        .limit(limit)
    ).all()


def get_request(request_id, pending=False):
    """One account request, or NotFound; with pending=True, InvalidInput once it has been decided."""
    request = db.session.get(AccountRequest, request_id)
    if request is None:
        raise NotFound(gettext("There is no such account request."))
    if pending and request.status != "pending":
        raise InvalidInput(
            gettext(
                "The request from %(company)s was already %(status)s.",
                company=request.company_name,
                status=REQUEST_STATES.get(request.status, request.status),
            )
        )
    return request


def _decide(request, status, actor):
    request.status, request.decided_at = status, utcnow()
    request.decided_by = actor.id if actor is not None else None


def reject_request(request_id, actor=None):
    """Turn a request down and queue the polite mail that says so."""
    request = get_request(request_id, pending=True)
    _decide(request, "rejected", actor)
    queue_mail("account_request_declined", request.id)
    db.session.commit()
    return request


def approve_request(request_id, form, actor=None):
    """Create the company (with the terms staff chose) and its address, invite the contact as owner, and
    mark the request approved, all in one transaction."""
    request = get_request(request_id, pending=True)
    errors = {}
    contact_email = users.check_email(form.get("contact_email"), errors, field="contact_email")
    company = _new_company(form, actor, errors)
    _decide(request, "approved", actor)
    request.company_id = company.id
    try:
        owner = users.invite(contact_email, form.get("contact_name", ""), Role.OWNER, company=company, actor=actor)
    except FieldErrors as exc:
        raise FieldErrors({f"contact_{k}" if k in ("email", "name") else k: v for k, v in exc.errors.items()}) from None
    except IntegrityError:
        db.session.rollback()
        raise FieldErrors(NAME_TAKEN_MEANWHILE) from None
    return company, owner
