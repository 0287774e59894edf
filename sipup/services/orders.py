"""Orders on account: checkout with stock reservation and credit check, reorder, and status changes."""

import functools
import secrets
from datetime import datetime, timedelta
from decimal import Decimal

from flask_babel import gettext, lazy_gettext
from sqlalchemy import Integer, bindparam, case, func, select, update
from sqlalchemy.orm import selectinload
from sqlalchemy.orm.attributes import set_committed_value

from sipup.cache import PageOf, Plain, cached

from ..database import kept_loaded, paginate, run_in_transaction
from ..exceptions import AlreadyPlaced, DomainError, EmptyCart, InvalidInput, InvalidTransition, NotFound, OutOfStock
from ..extensions import db
from ..i18n import N_, fitted, kept, status_in_sentence
from ..i18n import money as written
from ..i18n import number as written_number
from ..models import (
    Address,
    CartItem,
    CheckoutKey,
    Company,
    Invoice,
    Order,
    OrderEvent,
    OrderLine,
    OrderStatus,
    Payment,
    Product,
    address_line,
    utcnow,
)
from . import cart as carts
from . import mail
from .numbers import next_number
from .parsing import parse_date
from .pricing import load_tiers, money, unit_price
from .quantities import stock_problem

S = OrderStatus
# Orders that use credit but have no invoice yet.
UNINVOICED = (S.PLACED, S.CONFIRMED, S.SHIPPED)
OPEN = (S.PLACED, S.CREDIT_HOLD, S.CONFIRMED, S.SHIPPED, S.INVOICED)
# What reserving and moving stock renews in the cache: the stock shown, not the rest of the catalog.
STOCK = ("stock",)
# action: (statuses it starts from, status it leads to, button label)
TRANSITIONS = {
    "confirm": ((S.PLACED,), S.CONFIRMED, lazy_gettext("Confirm")),
    "release": ((S.CREDIT_HOLD,), S.PLACED, lazy_gettext("Release from credit hold")),
    "ship": ((S.CONFIRMED,), S.SHIPPED, lazy_gettext("Mark shipped")),
    "invoice": ((S.SHIPPED,), S.INVOICED, lazy_gettext("Issue invoice")),
    "pay": ((S.INVOICED,), S.PAID, lazy_gettext("Mark paid")),
    "cancel": ((S.PLACED, S.CREDIT_HOLD, S.CONFIRMED), S.CANCELLED, lazy_gettext("Cancel")),
}


def order_number(order_id, created_at):
    """Human-readable and unique because the id is: year, month, then the id."""
    return f"{created_at:%y%m}-{order_id:06d}"


def parse_order_number(number):
    """The id inside an order number, or NotFound."""
    head, _, tail = (number or "").partition("-")
    digits = head + tail
    if len(head) != 4 or not tail or len(tail) > 18 or not (digits.isascii() and digits.isdigit()):
        raise NotFound(gettext("There is no order “%(number)s”.", number=number))
    return int(tail)


def order_month(number):
    """[start, end) of the month an order number names (YYMM-id), or None when it names no real month."""
    year, month = 2000 + int(number[:2]), int(number[2:4])
    if not 1 <= month <= 12:
        return None
    start = datetime(year, month, 1)
    return start, datetime(year + month // 12, month % 12 + 1, 1)


def order_query(number):
    """The statement finding one order by number (also timed by `flask db optimize`); NotFound if malformed."""
    order_id, month = parse_order_number(number), order_month(number)
    if month is None:
        raise NotFound(gettext("There is no order “%(number)s”.", number=number))
    # The number carries the month of created_at: on a partitioned table the lookup reads one partition.
    return select(Order).where(
        Order.id == order_id, Order.number == number, Order.created_at >= month[0], Order.created_at < month[1]
    )


def get_order(number, company_id=None):
    """One order by number, limited to a company when given (another company's order is NotFound)."""
    stmt = order_query(number).options(selectinload(Order.lines), selectinload(Order.events))
    if company_id is not None:
        stmt = stmt.where(Order.company_id == company_id)
    order = db.session.scalar(stmt)
    if order is None:
        raise NotFound(gettext("There is no order “%(number)s”.", number=number))
    return order


def history_query(company_id, status=None):
    """The statement behind a company's order history (also timed by `flask db optimize`)."""
    stmt = select(Order).where(Order.company_id == company_id)
    if status:
        stmt = stmt.where(Order.status == status)
    return stmt.order_by(Order.created_at.desc(), Order.id.desc())


def company_orders(company_id, page=1, per_page=20, status=None):
    """A company's orders, newest first."""
    return paginate(history_query(company_id, status), page, per_page)


def order_row(order, company_name=None):
    """An order as plain data for lists and dashboards."""
    row = Plain(
        number=order.number,
        created_at=order.created_at,
        po_reference=order.po_reference,
        requested_date=order.requested_date,
        status=order.status,
        total=order.total,
    )
    if company_name is not None:
        row["company"] = Plain(name=company_name)
    return row


def history_page(company_id, page=1, per_page=20):
    """company_orders() as plain rows, through the cache; fresh after any change to the company's orders."""
    return cached(
        "orders",
        "history",
        (company_id, page, per_page),
        ["orders", f"orders:{company_id}"],
        lambda: PageOf.of(company_orders(company_id, page=page, per_page=per_page), order_row),
    )


def account_position(company):
    """credit_position() for showing, through the cache; checkout and staff decisions use credit_position()."""
    return cached(*credit_entry(company.id), lambda: credit_position(company))


def credit_entry(company_id):
    """The cache entry (type, name, args, depends) of a company's credit position, for cached() and reading ahead."""
    return ("users", "credit", company_id, ["orders", f"orders:{company_id}", "companies"])


def uninvoiced_query(company_id):
    """What a company's orders not yet invoiced add up to: the credit check at checkout (also timed by
    `flask db optimize`)."""
    return select(func.coalesce(func.sum(Order.total), 0)).where(
        Order.company_id == company_id, Order.status.in_(UNINVOICED)
    )


def credit_used(company_id):
    """The two sums credit_position() needs, as columns for a select: open invoices, orders not yet invoiced."""
    open_invoices = select(
        func.coalesce(func.sum(Invoice.amount - Invoice.paid_amount - Invoice.credited_amount), 0)
    ).where(Invoice.company_id == company_id, Invoice.paid_at.is_(None))
    return open_invoices.scalar_subquery(), uninvoiced_query(company_id).scalar_subquery()


def credit_position(company, sums=None):
    """Credit limit, what is used (open invoices plus orders not yet invoiced) and what is left. sums: those of
    credit_used() when another read brought them (checkout's read under the company lock); else one read here."""
    open_invoices, uninvoiced = sums or db.session.execute(select(*credit_used(company.id))).one()
    open_balance = money(open_invoices)
    used = money(open_balance + money(uninvoiced))
    return {
        "limit": company.credit_limit,
        "open_balance": open_balance,
        "uninvoiced": money(uninvoiced),
        "used": used,
        "left": money(company.credit_limit - used),
    }


def new_checkout_key():
    """A one-time key for a checkout form: the order it places is found again by it."""
    return secrets.token_urlsafe(16)


def checkout(user, vat_rules, po_reference="", requested_date=None, address_id=None, note="", checkout_key=None):
    """Turn the user's cart into an order: reserve stock, check credit, clear the cart, in one unit; a
    checkout_key that placed an order before raises AlreadyPlaced instead of placing another.

    vat_rules: vat.VatRules (or one rate for every class); the delivery address's country decides the rates."""
    args = (user.id, user.company_id, vat_rules, po_reference[:60], requested_date, address_id, note[:1000])
    with kept_loaded():  # the order as placed: its number and status are shown without reading it again
        try:
            return run_in_transaction(_checkout, *args, checkout_key)
        except _LinesRefused:
            # Rare: stock ran short since the cart was filled. Try again one line at a time, which names the
            # line that does not fit under lock (or places the order if stock came back meanwhile).
            return run_in_transaction(_checkout, *args, checkout_key, one_line_at_a_time=True)


def _checkout(
    user_id,
    company_id,
    vat_rules,
    po_reference,
    requested_date,
    address_id,
    note,
    checkout_key=None,
    one_line_at_a_time=False,
):
    # Lock the company first: checkouts of one company run one at a time, so the credit check holds, and a
    # repeated form waits for the first one and then finds the order it placed.
    db.session.execute(_LOCK_COMPANY, {"company_id": company_id})
    found = _read_under_lock(company_id, checkout_key, address_id)
    if found.placed is not None:
        raise AlreadyPlaced(found.placed)
    if found.address_id is None:
        raise InvalidInput(gettext("Choose one of your delivery addresses."))
    if requested_date is not None and requested_date < utcnow().date() + timedelta(days=1):
        raise InvalidInput(gettext("The requested delivery date must be tomorrow or later."))
    pairs, tiers = carts.shown_lines(user_id, found.price_list_id)  # plain products, as committed now
    if not pairs:
        raise EmptyCart(gettext("Your cart is empty."))
    priced = carts.price_lines(found.price_list_id, pairs, vat_rules, found.country, found.vat_id, tiers)
    problems = priced.problems  # stock is checked by the reservation below, under lock
    if problems:
        raise InvalidInput(" ".join(problems))
    # Reserve in product order so concurrent checkouts take row locks in the same order.
    lines = sorted(priced.lines, key=lambda each: each.product.id)
    for batch in ([line] for line in lines) if one_line_at_a_time else [lines]:
        _reserve(batch)
    credit = credit_position(found, found[-2:])
    status = S.PLACED if priced.total <= credit["left"] else S.CREDIT_HOLD
    # Whole seconds: DATETIME keeps no fraction, and MySQL rounds it, which could carry the last second of a
    # month into the next one, away from the month the order number names.
    now = utcnow().replace(microsecond=0)
    order = Order(
        company_id=company_id,
        buyer_id=user_id,
        status=status,
        po_reference=po_reference.strip(),
        requested_date=requested_date,
        delivery_address=address_line(found.label, found.street, found.postcode, found.city, found.country),
        note=note.strip(),
        goods_total=priced.goods_total,
        deposit_total=priced.deposit_total,
        vat_total=priced.vat_total,
        total=priced.total,
        reverse_charge=priced.reverse_charge,
        created_at=now,
    )
    db.session.add(order)
    db.session.flush()
    # The number is written by a plain statement; the order as loaded is told it is stored (no flush to come).
    numbered = {"order_id": order.id, "new_number": order_number(order.id, now), "now": now}
    db.session.execute(_NUMBERED, numbered)
    set_committed_value(order, "number", numbered["new_number"])
    # The lines in one multi-row insert, on every backend, without objects this unit never uses (order.lines
    # reads them when shown); the order itself renews what order lists show.
    written = OrderLine.__table__.insert().execution_options(cache_touches=("orders-all",))
    db.session.execute(
        written,
        [
            {
                "order_id": order.id,
                "created_at": now,
                "product_id": line.product.id,
                "sku": line.product.sku,
                "name": line.product.name,
                "sell_unit": line.product.sell_unit,
                "quantity": line.quantity,
                "unit_price": line.unit_price,
                "unit_deposit": line.unit_deposit,
                "line_total": line.line_total,
                "vat_rate": line.vat_rate,
                "deposit_vat_rate": line.deposit_vat_rate,
            }
            for line in priced.lines
        ],
    )
    hold_note = ""
    if status == S.CREDIT_HOLD:
        hold_note = kept(
            N_("Order total %(total)s exceeds the credit left (%(left)s); awaiting credit review."),
            total=priced.total,
            left=credit["left"],
        )
    event = {"order_id": order.id, "status": status, "user_id": user_id, "note": fitted(hold_note, 400)}
    db.session.execute(_NEW_EVENT, {**event, "created_at": now})
    if checkout_key:
        key = {"company_id": company_id, "key": checkout_key, "order_id": order.id, "order_number": order.number}
        db.session.execute(_NEW_CHECKOUT_KEY, {**key, "created_at": now})
    db.session.execute(_EMPTIED, {"user_id": user_id}, execution_options={"cache_touches": (f"cart:{user_id}",)})
    mail.queue_mail("order_confirmation", order.id, priority="high", new_object=True)  # sent only if this commits
    return order


class _LinesRefused(Exception):
    """Stock refused at least one of several lines reserved together; which one is found line by line."""


def _read_under_lock(company_id, checkout_key, address_id):
    """One read after the company lock, as one row: the number of the order this checkout key placed (`placed`,
    or None), the company's price list, VAT id and credit limit as they are now, the delivery address if it is one
    of the company's (`address_id` None if not), and last the two sums of the credit it uses (the lock holds its
    other checkouts off, so they stand until this one commits)."""
    values = {"company_id": company_id, "key": checkout_key, "address_id": address_id}
    return db.session.execute(_under_lock_query(), values).one()


@functools.cache
def _under_lock_query():
    # Built once with bound values: SQLAlchemy then works out its cache key once, not on every checkout. A key
    # or address of None matches nothing (= NULL is never true).
    company_id, address = bindparam("company_id"), Address.__table__.c
    return (
        select(
            CheckoutKey.order_number.label("placed"),
            *(_COMPANIES.price_list_id, _COMPANIES.vat_id, _COMPANIES.credit_limit),
            address.id.label("address_id"),
            *(address.label, address.street, address.postcode, address.city, address.country),
            *credit_used(company_id),
        )
        .select_from(Company.__table__)
        .outerjoin(CheckoutKey, (CheckoutKey.company_id == _COMPANIES.id) & (CheckoutKey.key == bindparam("key")))
        .outerjoin(Address.__table__, (address.id == bindparam("address_id")) & (address.company_id == _COMPANIES.id))
        .where(_COMPANIES.id == company_id)
    )


# What a checkout writes besides the order, as plain statements built once (no ORM unit of work to run). The
# company row is locked by an update that changes nothing; the order's events and lines renew what order lists show.
_COMPANIES, _ORDERS, _STOCK = Company.__table__.c, Order.__table__.c, Product.__table__.c
_LOCK_COMPANY = (
    Company.__table__.update()
    .where(_COMPANIES.id == bindparam("company_id"))
    .values(id=_COMPANIES.id)
    .execution_options(cache_touches=())
)
_NUMBERED = (
    Order.__table__.update()
    .where(_ORDERS.id == bindparam("order_id"))
    .values(number=bindparam("new_number"), updated_at=bindparam("now"))
    .execution_options(cache_touches=())  # the order's insert renewed its company's order lists already
)
_NEW_EVENT = OrderEvent.__table__.insert().execution_options(cache_touches=("orders-all",))
_NEW_CHECKOUT_KEY = CheckoutKey.__table__.insert().execution_options(cache_touches=())
_EMPTIED = CartItem.__table__.delete().where(CartItem.__table__.c.user_id == bindparam("user_id"))
# The stock of one product as committed now, locked until the transaction ends.
_LOCKED_STOCK = (
    select(_STOCK.stock_on_hand - _STOCK.stock_reserved).where(_STOCK.id == bindparam("id")).with_for_update()
)


def _reserve(lines):
    """One conditional update for all lines: each product reserves its line's quantity, and only if on hand minus
    reserved covers it (or backorder is on). A refused single line raises OutOfStock naming it; a refusal among
    several lines raises _LinesRefused, since the update does not say which of them it left alone."""
    values = {"ids": [line.product.id for line in lines]}
    for i, line in enumerate(lines):
        values[f"id_{i}"], values[f"quantity_{i}"] = line.product.id, line.quantity
    result = db.session.execute(_reservation(len(lines)), values)
    if result.rowcount == len(lines):
        return
    if len(lines) > 1:
        raise _LinesRefused()
    product = lines[0].product
    available = db.session.execute(_LOCKED_STOCK, {"id": product.id}).scalar_one()  # the latest, not as read
    if available <= 0:
        message = gettext(
            "%(name)s (%(sku)s) went out of stock after you added it; remove it from your cart to order the rest.",
            name=product.name,
            sku=product.sku,
        )
    else:
        message = gettext(
            "Only %(available)s of %(name)s (%(sku)s) left: another buyer ordered meanwhile. Change the quantity "
            "to %(available)s or fewer and try again.",
            available=written_number(available),
            name=product.name,
            sku=product.sku,
        )
    raise OutOfStock(message, product.id)


@functools.lru_cache(maxsize=64)
def _reservation(count):
    # Built once per number of lines, with bound values (ids, id_0, quantity_0, ...): its cache key is then not
    # worked out again on every checkout.
    quantity = case(
        *((_STOCK.id == bindparam(f"id_{i}"), bindparam(f"quantity_{i}", type_=Integer)) for i in range(count))
    )
    return (
        Product.__table__.update()
        .where(
            _STOCK.id.in_(bindparam("ids", expanding=True)),
            (_STOCK.stock_on_hand - _STOCK.stock_reserved >= quantity) | _STOCK.backorder_allowed.is_(True),
        )
        .values(stock_reserved=_STOCK.stock_reserved + quantity)
        .execution_options(cache_touches=STOCK)
    )


def _record(order, status, user_id, note=""):
    event = OrderEvent(order_id=order.id, status=status, user_id=user_id, note=fitted(note, 400))  # its column
    db.session.add(event)
    return event


def reorder(user, order):
    """Put an earlier order's lines in the cart at today's prices; say what changed."""
    ids = [line.product_id for line in order.lines]
    products = {p.id: p for p in db.session.scalars(select(Product).where(Product.id.in_(ids)))}
    tiers = load_tiers(user.company.price_list_id, list(products))
    added, changes = 0, []
    for line in order.lines:
        product = products.get(line.product_id)
        if product is None or not product.active:
            changes.append(
                gettext("%(sku)s %(name)s is no longer sold and was left out.", sku=line.sku, name=line.name)
            )
            continue
        try:
            carts.add(user.id, product, line.quantity)
        except DomainError as exc:
            changes.append(gettext("%(error)s %(sku)s was left out.", error=exc, sku=line.sku))
            continue
        added += 1
        today = unit_price(product.base_price, tiers.get(product.id, []), line.quantity)
        if today != line.unit_price:
            change = (
                gettext("%(sku)s %(name)s: price up from %(before)s to %(now)s.")
                if today > line.unit_price
                else gettext("%(sku)s %(name)s: price down from %(before)s to %(now)s.")
            )
            changes.append(
                change % {"sku": line.sku, "name": line.name, "before": written(line.unit_price), "now": written(today)}
            )
        shortage = stock_problem(product, line.quantity)
        if shortage:
            changes.append(shortage)
    return added, changes


def transition(order_number_text, action, staff_user_id, payment_reference=""):
    """Move an order along its life: confirm, release, ship, invoice, pay or cancel."""
    if action not in TRANSITIONS:
        raise InvalidTransition(gettext("“%(action)s” is not something an order can do.", action=action))
    return run_in_transaction(_transition, order_number_text, action, staff_user_id, payment_reference)


def _transition(number, action, staff_user_id, payment_reference):
    order = get_order(number)
    sources, target, _label = TRANSITIONS[action]
    # A conditional update: two clerks clicking at once cannot both apply the same step.
    changed = db.session.execute(
        update(Order)
        .where(Order.id == order.id, Order.created_at == order.created_at, Order.status.in_(sources))
        .values(status=target, updated_at=utcnow())
        .execution_options(synchronize_session=False, cache_touches=(f"orders:{order.company_id}", "orders-all"))
    ).rowcount
    if changed != 1:
        raise InvalidTransition(
            gettext(
                "Order %(number)s is %(status)s; “%(action)s” is not possible now.",
                number=order.number,
                status=status_in_sentence(order.status),
                action=TRANSITIONS[action][2],
            )
        )
    note = ""
    if action == "cancel":
        for line in sorted(order.lines, key=lambda each: each.product_id):  # the lock order checkout uses
            _move_stock(line, reserved=-line.quantity)
    elif action == "ship":
        for line in sorted(order.lines, key=lambda each: each.product_id):
            _move_stock(line, reserved=-line.quantity, on_hand=-line.quantity)
    elif action == "invoice":
        invoice = _issue_invoice(order)
        note = kept(N_("Invoice %(number)s, due %(due)s."), number=invoice.number, due=invoice.due_date)
        db.session.flush()
        mail.queue_mail("invoice_issued", invoice.id)
    elif action == "pay":
        note = _pay_invoice(order, payment_reference)
    db.session.refresh(order)
    event = _record(order, target, staff_user_id, note)
    if action != "invoice":
        db.session.flush()
        mail.queue_mail("order_status", event.id)
    return order


def _move_stock(line, reserved=0, on_hand=0):
    result = db.session.execute(
        update(Product)
        .where(
            Product.id == line.product_id,
            Product.stock_reserved + reserved >= 0,
            Product.stock_on_hand + on_hand >= 0,
        )
        .values(stock_reserved=Product.stock_reserved + reserved, stock_on_hand=Product.stock_on_hand + on_hand)
        .execution_options(synchronize_session=False, cache_touches=STOCK)
    )
    if result.rowcount != 1:
        raise InvalidTransition(
            gettext(
                "Not enough %(sku)s on hand to ship %(quantity)s; correct the stock first.",
                sku=line.sku,
                quantity=line.quantity,
            )
        )


def _issue_invoice(order):
    company = db.session.get(Company, order.company_id)
    today = utcnow()
    value = next_number(f"invoice-{today:%Y}")
    shipped = [event.created_at for event in order.events if event.status == S.SHIPPED]
    invoice = Invoice(
        number=f"INV-{today:%Y}-{value:06d}",
        order_id=order.id,
        company_id=order.company_id,
        amount=order.total,
        paid_amount=Decimal("0.00"),
        credited_amount=Decimal("0.00"),
        issued_at=today,
        due_date=today.date() + timedelta(days=company.payment_terms_days),
        delivery_date=(shipped[-1] if shipped else today).date(),  # the date of supply
    )
    db.session.add(invoice)
    return invoice


def _pay_invoice(order, reference):
    # Locking read: two clerks booking the same payment wait for each other.
    invoice = db.session.scalar(select(Invoice).where(Invoice.order_id == order.id).with_for_update())
    reference = ((reference or "").strip() or f"MANUAL-{invoice.number}-{secrets.token_hex(3)}")[:80]
    if db.session.scalar(select(Payment.id).where(Payment.reference == reference)):
        raise InvalidInput(gettext("Payment reference “%(reference)s” was already used.", reference=reference))
    paid = max(invoice.open_amount, Decimal("0.00"))
    if paid > 0:  # a zero invoice (all credited) is settled without a payment
        db.session.add(Payment(reference=reference, company_id=order.company_id, invoice_id=invoice.id, amount=paid))
    invoice.paid_amount += paid
    invoice.paid_at = utcnow()
    return kept(
        N_("Payment %(reference)s of %(paid)s applied to %(number)s."),
        reference=reference,
        paid=paid,
        number=invoice.number,
    )


INVOICES_PER_PAGE = 50


def company_invoices(company_id, page=1, per_page=INVOICES_PER_PAGE):
    """A page of a company's invoices, open ones first, newest first."""
    stmt = (
        select(Invoice)
        .options(selectinload(Invoice.order))
        .where(Invoice.company_id == company_id)
        .order_by(Invoice.paid_at.is_not(None), Invoice.issued_at.desc(), Invoice.id.desc())
    )
    return paginate(stmt, page, per_page, count=True)


def invoice_row(invoice):
    """An invoice as plain data for the buyer's list (whether it is overdue is decided when shown)."""
    return Plain(
        number=invoice.number,
        order_number=invoice.order.number if invoice.order else None,
        issued_at=invoice.issued_at,
        due_date=invoice.due_date,
        amount=invoice.amount,
        open_amount=invoice.open_amount,
        paid_at=invoice.paid_at,
    )


def invoices_page(company_id, page=1, per_page=INVOICES_PER_PAGE):
    """company_invoices() as plain rows, through the cache; fresh after any change to the company's orders."""
    return cached(
        "orders",
        "invoices",
        (company_id, page, per_page),
        ["orders", f"orders:{company_id}"],
        lambda: PageOf.of(company_invoices(company_id, page, per_page), invoice_row),
    )


def parse_requested_date(text):
    """An ISO date from a form field, or None when empty; names a bad value."""
    return parse_date(text, gettext("“{text}” is not a date; use the date picker or YYYY-MM-DD."))


def available_transitions(order):
    """The actions staff can take on an order now: [(action, label)]."""
    return [(action, label) for action, (sources, _t, label) in TRANSITIONS.items() if order.status in sources]
