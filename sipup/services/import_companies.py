"""The customer companies file of a bulk import and export: one line per company and delivery address.

A company with two addresses has two lines; its own columns (VAT id, terms, credit limit, price list) may be
repeated on each or given once, but never differ. `users` lists people to invite, separated by commas,
semicolons or spaces, each as `owner:EMAIL` or `buyer:EMAIL` (a bare address is a buyer): each new one gets
the usual invitation mail, and people who already belong to the company are left as they are. A cell left
empty keeps what the company has; a new company gets the usual terms. Companies, addresses and users are
never removed by an import. Every change goes to the company's audit trail, as the back office's forms do.
"""

import re

from flask_babel import gettext
from sqlalchemy import func, select
from sqlalchemy.orm import selectinload

from ..exceptions import FieldErrors, InvalidInput, LineRefused
from ..extensions import db
from ..i18n import N_, kept_error, role_name, role_named
from ..models import Address, Company, PriceList, Role, User
from . import accounts, audit, users
from .parsing import parse_count, parse_money

COLUMNS = (
    "company",
    "vat_id",
    "payment_terms_days",
    "credit_limit",
    "price_list",
    "address_label",
    "street",
    "postcode",
    "city",
    "country",
    "users",
)
REQUIRED = ("company",)
KEY_COLUMN = "address_label"
TERMS = ("vat_id", "payment_terms_days", "credit_limit", "price_list")
ADDRESS = ("street", "postcode", "city", "country")
DEFAULTS = {"payment_terms_days": 30, "credit_limit": parse_money("5000.00"), "vat_id": None, "price_list": None}
SEPARATORS = re.compile(r"[,;\s]+")
ROLES = (Role.OWNER, Role.BUYER)


def _cell(record, column):
    return (record.get(column) or "").strip()


def _read_users(text, problems):
    people = []
    for entry in filter(None, SEPARATORS.split(text)):
        role, _, email = entry.rpartition(":")
        role = role_named(role) if role else Role.BUYER  # the stored word or the reader's: buyer, Einkäufer
        if role not in ROLES:
            problems.append(
                (
                    "users",
                    gettext(
                        "“%(entry)s”: the role must be %(owner)s or %(buyer)s",
                        entry=entry[:60],
                        owner=role_name(Role.OWNER),
                        buyer=role_name(Role.BUYER),
                    ),
                )
            )
        elif not accounts.EMAIL.match(email) or len(email) > 254:
            problems.append(
                (
                    "users",
                    gettext("“%(entry)s” is not an e-mail address such as owner:anna@example.com", entry=entry[:60]),
                )
            )
        else:
            people.append((email, role))
    return people


def read(record):
    """((company, address label) in lower case, values) of one line; LineRefused naming each wrong cell."""
    problems = []
    values = {"company": _cell(record, "company"), "vat_id": "".join(_cell(record, "vat_id").split()).upper() or None}
    if not values["company"] or len(values["company"]) > 200:
        problems.append(("company", gettext("must be 1 to %(size)s characters", size=200)))
    if values["vat_id"] and len(values["vat_id"]) > 32:
        problems.append(("vat_id", gettext("can have at most 32 characters")))
    for column, parse, args in (
        ("payment_terms_days", parse_count, (gettext("Payment terms"), 0, 365)),
        ("credit_limit", parse_money, (gettext("Credit limit"),)),
    ):
        try:
            values[column] = parse(record.get(column), *args) if _cell(record, column) else None
        except InvalidInput as exc:
            problems.append((column, str(exc)))
    values["price_list"] = _cell(record, "price_list") or None
    if values["price_list"] and len(values["price_list"]) > 120:
        problems.append(("price_list", gettext("must be 1 to %(size)s characters", size=120)))
    values["address"] = _read_address(record, problems)
    values["users"] = _read_users(_cell(record, "users"), problems)
    if problems:
        raise LineRefused(problems)
    label = values["address"]["label"].lower() if values["address"] else ""
    return (values["company"].lower(), label), values


def _read_address(record, problems):
    """The line's delivery address, or None when its street, postcode and city are all empty."""
    address = {column: _cell(record, column) for column in ADDRESS}
    if not any(address[c] for c in ("street", "postcode", "city")):
        return None
    address["label"] = _cell(record, "address_label") or "Main"
    address["country"] = (address["country"] or "DE").upper()
    for column, size in (("address_label", 80), ("street", 200), ("postcode", 20), ("city", 100)):
        text = address["label"] if column == "address_label" else address[column]
        if not text or len(text) > size:
            problems.append(
                (column, gettext("must be 1 to %(size)s characters when the line has an address", size=size))
            )
    if len(address["country"]) != 2 or not address["country"].isalpha() or not address["country"].isascii():
        problems.append(("country", gettext("must be a two-letter code such as DE")))
    return address


def _groups(entries):
    """The lines of each company, in the order the file names the companies."""
    groups = {}
    for line, key, values in entries:
        groups.setdefault(key[0], []).append((line, key, values))
    return groups


def _terms(lines):
    """The company's own values over its lines: the first given of each; a line giving another is refused."""
    terms, source, refused = {}, {}, {}
    for line, _key, values in lines:
        for column in TERMS:
            value = values[column]
            if value is None:
                continue
            if column not in terms:
                terms[column], source[column] = value, line
            elif str(value).lower() != str(terms[column]).lower():
                refused.setdefault(
                    line, (column, gettext("differs from line %(line)s of the same company", line=source[column]))
                )
    return terms, refused


def _existing(names):
    found = {}
    names = sorted(names)
    for start in range(0, len(names), 500):
        stmt = (
            select(Company)
            .options(selectinload(Company.addresses), selectinload(Company.users), selectinload(Company.price_list))
            .where(func.lower(Company.name).in_(names[start : start + 500]))
        )
        for company in db.session.scalars(stmt):
            found[company.name.lower()] = company
    return found


def _lists():
    return {pl.name.lower(): pl for pl in db.session.scalars(select(PriceList))}


def _vat_owner(vat_id, company):
    if not vat_id:
        return None
    stmt = select(Company.name).where(
        func.upper(func.replace(Company.vat_id, " ", "")) == vat_id, Company.id != (company.id if company else -1)
    )
    return db.session.scalar(stmt)


def _term_changes(company, terms):
    """(column, old, new) of each company value the file changes; a new company's every value."""
    changes = []
    for column in TERMS:
        if column not in terms:
            continue
        new = terms[column]
        if company is None:
            changes.append((column, "", new))
            continue
        old = {
            "vat_id": company.vat_id,
            "payment_terms_days": company.payment_terms_days,
            "credit_limit": company.credit_limit,
            "price_list": company.price_list.name if company.price_list else None,
        }[column]
        if (str(old).lower() if old is not None else None) != str(new).lower():
            changes.append((column, old, new))
    return changes


def _address_change(company, address):
    """("create"|"change"|"same", the existing address or None, text) for a line's address."""
    found = next(
        (a for a in (company.addresses if company else ()) if a.label.lower() == address["label"].lower()), None
    )
    text = f"{address['label']}: {address['street']}, {address['postcode']} {address['city']}, {address['country']}"
    if found is None:
        return "create", None, f"address {text}"
    if all(getattr(found, column) == address[column] for column in ADDRESS):
        return "same", found, ""
    return "change", found, f"address {found.one_line()} → {text}"


def plan(entries):
    """What each line would do to its company, address and users; or why it is refused."""
    groups = _groups(entries)
    companies, lists = _existing(groups), _lists()
    emails = {email.lower() for _l, _k, values in entries for email, _r in values["users"]}
    people = {u.email.lower(): u for u in _users(emails)}
    invited, items = {}, []
    for name, lines in groups.items():
        company = companies.get(name)
        terms, refused = _terms(lines)
        first = lines[0][0]
        why = None
        if terms.get("price_list") and terms["price_list"].lower() not in lists:
            why = ("price_list", gettext("there is no price list “%(name)s”", name=terms["price_list"]))
        elif owner := _vat_owner(terms.get("vat_id"), company):
            why = ("vat_id", gettext("VAT id %(vat_id)s belongs to %(owner)s", vat_id=terms["vat_id"], owner=owner))
        changes = [f"{c}: {'' if o is None else o} → {n}" for c, o, n in _term_changes(company, terms)]
        for line, _key, values in lines:
            item = {"line": line, "key": values["company"], "group": name, "values": values, "terms": terms}
            if why or line in refused:
                column, text = why or refused[line]
                reason = (
                    text
                    if (line == first or not why)
                    else gettext("the company's line %(line)s is refused: %(why)s", line=first, why=text)
                )
                items.append(item | {"action": "refused", "column": column, "why": reason})
                continue
            action, notes = ("create" if company is None else "same"), []
            if line == first and company is not None and changes:
                action, notes = "change", list(changes)
            elif line == first and company is None:
                notes = [gettext("new company")] + changes
            if values["address"]:
                what, _found, text = _address_change(company, values["address"])
                if what != "same":
                    notes.append(text)
                    action = "create" if action == "create" or what == "create" else "change"
            problem = _people_problem(values["users"], company, people, invited, line, notes)
            if problem:
                items.append(item | {"action": "refused", "column": "users", "why": problem})
                continue
            if notes and action == "same":
                action = "change"
            items.append(item | {"action": action, "changes": notes})
    return items


def _users(emails):
    emails = sorted(emails)
    found = []
    for start in range(0, len(emails), 500):
        found += db.session.scalars(select(User).where(func.lower(User.email).in_(emails[start : start + 500]))).all()
    return found


def _people_problem(wanted, company, people, invited, line, notes):
    """Why a line's users cannot be invited, else None; new invitations are added to notes."""
    for email, role in wanted:
        known = people.get(email.lower())
        if known is not None and (company is None or known.company_id != company.id):
            return gettext("%(email)s already has an account", email=email)
        if email.lower() in invited and invited[email.lower()] != line:
            return gettext("%(email)s is invited on line %(line)s already", email=email, line=invited[email.lower()])
        invited[email.lower()] = line
        if known is None:
            notes.append(gettext("invite %(role)s %(email)s", role=role_name(role), email=email))
    return None


def apply(items, actor=None, source=""):
    """Create and update the companies, addresses and users of one batch of planned lines (whole companies),
    in the caller's transaction."""
    lists, created, changed = _lists(), 0, 0
    by_company = _groups([(item["line"], (item["group"],), item) for item in items])
    companies = _existing(by_company)
    for name, lines in by_company.items():
        company, terms = companies.get(name), lines[0][2]["terms"]
        is_new = company is None
        if is_new:
            company = Company(name=lines[0][2]["values"]["company"], active=True)
            for column, value in DEFAULTS.items():
                setattr(company, column, value)
            db.session.add(company)
            db.session.flush()  # the id, for the audit trail and the invitations
            audit.record("company", company.id, "created", "", company.name, actor)
        created, changed = created + is_new, changed + (not is_new)
        for column, old, new in _term_changes(company, terms):
            setattr(company, column, lists[new.lower()] if column == "price_list" else new)
            if not is_new:
                audit.record("company", company.id, column, old, new, actor)
        for _line, _key, item in lines:
            _apply_line(company, item["values"], actor)
    db.session.flush()
    return created, changed


def _apply_line(company, values, actor):
    address = values["address"]
    if address:
        what, found, _text = _address_change(company, address)
        if what != "same":
            old = found.one_line() if found else ""
            if found is None:
                found = Address(label=address["label"])
                company.addresses.append(found)
            for column in ADDRESS:
                setattr(found, column, address[column])
            audit.record("company", company.id, "address", old, found.one_line(), actor)
    for email, role in values["users"]:
        if accounts.user_by_email(email) is None:
            try:
                users.add_invited(email, "", role, company=company, actor=actor)
            except FieldErrors as exc:
                raise kept_error(InvalidInput, N_("%(email)s: %(error)s"), email=email, error=str(exc)) from None


def export_rows():
    """Every company as one line per delivery address (one line when it has none), users on its first line."""
    stmt = (
        select(Company)
        .options(selectinload(Company.addresses), selectinload(Company.users), selectinload(Company.price_list))
        .order_by(Company.name)
    )
    for company in db.session.scalars(stmt):
        people = ", ".join(f"{u.role}:{u.email}" for u in company.users if u.active and u.role in ROLES)
        terms = (
            company.name,
            company.vat_id or "",
            company.payment_terms_days,
            company.credit_limit,
            company.price_list.name if company.price_list else "",
        )
        for index, address in enumerate(company.addresses or [None]):
            where = (
                (address.label, address.street, address.postcode, address.city, address.country)
                if address
                else ("", "", "", "", "")
            )
            yield terms + where + (people if index == 0 else "",)


def count():
    """How many companies there are."""
    return db.session.scalar(select(func.count()).select_from(Company))
