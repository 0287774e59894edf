"""Mail to customers and staff: templated text and HTML, sent by SMTP or written to instance/outbox/.

SIPUP_MAIL_URL chooses the way out:
  smtp://user:password@host:587     SMTP with STARTTLS (required) and login
  smtps://user:password@host:465    SMTP over TLS and login
  smtp://host:25?tls=off            a trusted relay without TLS (a local smarthost)
Unset (the embedded default), each message is written as an .eml file to instance/outbox/.
"""

import functools
import json
import os
import secrets
import smtplib
import socket
import ssl
from datetime import datetime, timezone
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import formatdate, make_msgid, parseaddr
from urllib.parse import parse_qs, unquote, urlsplit

from flask import current_app, render_template
from flask_babel import force_locale, gettext
from sqlalchemy import select

from sipup.jobs import enqueue
from sipup.jobs.names import SEND_MAIL

from ..exceptions import InvalidInput, NotFound
from ..extensions import db
from ..files import open_private, private_folder
from ..i18n import N_, kept_error, offered
from ..models import (
    AccountLink,
    AccountRequest,
    AuditEvent,
    Invoice,
    LinkPurpose,
    Order,
    OrderEvent,
    Product,
    Role,
    User,
    utcnow,
)
from . import documents, links
from .accounts import user_by_email


def send(kind, object_id):
    """Build the mail of this kind for one order, invoice or product list, and send it; returns a summary."""
    if kind not in BUILDERS:
        raise kept_error(InvalidInput, N_("Unknown mail kind “%(kind)s”."), kind=kind)
    recipients, context = BUILDERS[kind](object_id)
    if not recipients:
        return f"{kind}: nobody to send to"
    attachments = context.pop("attachments", [])
    with force_locale(recipient_language(recipients)):
        subject = render_template(f"mail/{kind}.subject.txt", **context).strip()
        text = render_template(f"mail/{kind}.txt", **context)
        html = render_template(f"mail/{kind}.html", **context)
        # Attachments (an invoice's PDF) are made here, in the recipient's language too.
        attachments = [(name, data() if callable(data) else data) for name, data in attachments]
    message = build_message(recipients, subject, text, html, attachments)
    db.session.commit()  # a link's secret is kept before its mail leaves, so the link works once it arrives
    where = deliver(message)
    return f"{kind} to {', '.join(recipients)} ({where})"


def _order(order_id):
    order = db.session.get(Order, order_id)
    if order is None:
        raise kept_error(NotFound, N_("Order %(id)s does not exist."), id=order_id)
    return order


def _order_context(order):
    """What every order mail names: the order, its company and PO reference (in the template), and its page."""
    return {"order": order, "order_url": links.public_url("shop.order_detail", number=order.number)}


def _order_confirmation(order_id):
    order = _order(order_id)
    # The order as it was placed: a mail sent late must not show the status it has reached since.
    placed = order.events[0] if order.events else None
    return _buyer_of(order), {**_order_context(order), "status": (placed or order).status}


def _order_status(event_id):
    event = db.session.get(OrderEvent, event_id)
    if event is None:
        raise kept_error(NotFound, N_("Order event %(id)s does not exist."), id=event_id)
    order = _order(event.order_id)
    return _buyer_of(order), {**_order_context(order), "event": event}


def _invoice(invoice_id):
    invoice = db.session.get(Invoice, invoice_id)
    if invoice is None:
        raise kept_error(NotFound, N_("Invoice %(id)s does not exist."), id=invoice_id)
    return invoice


def _invoice_issued(invoice_id):
    invoice = _invoice(invoice_id)
    pdf = (
        f"{invoice.number}.pdf",
        lambda: documents.invoice_pdf(documents.invoice_document(invoice.number, invoice.company_id)),
    )
    return _company_contacts(invoice.company_id, invoice.order), {"invoice": invoice, "attachments": [pdf]}


def _overdue_reminder(invoice_id):
    invoice = _invoice(invoice_id)
    if invoice.paid_at is not None:
        return [], {}  # paid since the reminder was queued
    days = (utcnow().date() - invoice.due_date).days
    return _company_contacts(invoice.company_id, invoice.order), {"invoice": invoice, "days": days}


def _low_stock(product_ids):
    ids = [int(i) for i in str(product_ids).split(",") if i.strip().isdigit()]
    products = db.session.scalars(select(Product).where(Product.id.in_(ids)).order_by(Product.sku)).all()
    if not products:
        return [], {}
    return staff_addresses(), {"products": products}


def _monitor_alert(incident):
    """incident: the JSON that sipup.observability.alerts wrote when it opened or cleared an incident."""
    try:
        data = json.loads(incident)
        start = datetime.fromtimestamp(int(data["start"]), timezone.utc)
        opened = data["state"] == "opened"
    except (TypeError, ValueError, KeyError):
        raise kept_error(
            InvalidInput, N_("“%(incident)s” is not an incident of the monitor."), incident=str(incident)[:80]
        ) from None
    return admin_addresses(), {
        "opened": opened,
        "start": start,
        "red": data.get("red", []),
        "lasting": data.get("lasting", []),
    }


def _link_mail(link_id, purpose):
    """The recipient and context of a link's mail, issuing its secret; nobody if it was replaced since."""
    link = db.session.get(AccountLink, int(link_id))
    if link is None or link.purpose != purpose or link.used_at is not None or not link.user.active:
        return [], {}
    recipient = link.new_email or link.user.email
    return [recipient], {
        "user": link.user,
        "url": links.issue(link),
        "hours": int(links.lifetime(purpose).total_seconds() // 3600),
        "new_email": link.new_email,
    }


def _invitation(link_id):
    return _link_mail(link_id, LinkPurpose.INVITE)


def _email_change(link_id):
    return _link_mail(link_id, LinkPurpose.EMAIL)


def _account_change(event_id, field):
    """The user and audit event of a change of their e-mail address or password, for its notice."""
    event = db.session.get(AuditEvent, int(event_id))
    if event is None or event.subject != "user" or event.field != field:
        raise kept_error(
            NotFound, N_("There is no change of a user's %(field)s numbered %(id)s."), field=field, id=event_id
        )
    user = db.session.get(User, event.subject_id)
    if user is None:
        return None, {}
    return user, {
        "user": user,
        "event": event,
        "by_staff": event.actor_id != user.id,
        "issuer": documents.issuer().lines[:2],  # name and address; not the VAT id or bank
        "reply_to": reply_address(),
        "reset_url": links.public_url("auth.password_reset"),
    }


def _email_changed(event_id):
    """The notice to the old address that the sign-in address changed: whoever changed it cannot stop it."""
    user, context = _account_change(event_id, "email")
    return ([context["event"].old_value] if user is not None else []), context


def _password_changed(event_id):
    """The notice to the account that its password changed."""
    user, context = _account_change(event_id, "password")
    return ([user.email] if user is not None and user.active else []), context


def _password_reset(email):
    """email: the address typed into the reset form; an unknown or stopped one gets no mail (and no answer says so)."""
    user = user_by_email(email)
    if user is None or not user.is_active:
        return [], {}
    return _link_mail(links.prepare(user, LinkPurpose.RESET).id, LinkPurpose.RESET)


def _account_request(request_id):
    request = db.session.get(AccountRequest, int(request_id))
    if request is None:
        raise kept_error(NotFound, N_("Account request %(id)s does not exist."), id=request_id)
    return request


def _account_request_declined(request_id):
    request = _account_request(request_id)
    return [request.email], {"account_request": request}


def _account_request_received(request_id):
    """Staff learn of a new request for a business account, with a link to where they approve or reject it."""
    request = _account_request(request_id)
    url = links.public_url("admin.account_request", request_id=request.id)
    return staff_addresses(), {"account_request": request, "request_url": url}


# Each kind of mail: the function that finds its recipients and the context of its templates (mail/<kind>.*).
BUILDERS = {
    "order_confirmation": _order_confirmation,
    "order_status": _order_status,
    "invoice_issued": _invoice_issued,
    "overdue_reminder": _overdue_reminder,
    "low_stock": _low_stock,
    "monitor_alert": _monitor_alert,
    "invitation": _invitation,
    "email_change": _email_change,
    "email_changed": _email_changed,
    "password_changed": _password_changed,
    "password_reset": _password_reset,
    "account_request_declined": _account_request_declined,
    "account_request_received": _account_request_received,
}
KINDS = tuple(BUILDERS)


def _buyer_of(order):
    buyer = db.session.get(User, order.buyer_id) if order.buyer_id else None
    if buyer is not None and buyer.active:
        return [buyer.email]
    return _company_contacts(order.company_id, None)


def _company_contacts(company_id, order):
    """The order's buyer and the company's owners: who gets invoices and reminders."""
    users = db.session.scalars(
        select(User).where(User.company_id == company_id, User.active.is_(True), User.role == Role.OWNER)
    ).all()
    emails = [u.email for u in users]
    if order is not None and order.buyer_id:
        buyer = db.session.get(User, order.buyer_id)
        if buyer is not None and buyer.active and buyer.email not in emails:
            emails.insert(0, buyer.email)
    return emails


def recipient_language(recipients):
    """The language of a mail: that of the first recipient who has an account and chose one, else the default."""
    chosen = dict(
        db.session.execute(
            select(User.email, User.language).where(User.email.in_(recipients), User.language != "")
        ).all()
    )
    return (
        next((offered(chosen[address]) for address in recipients if address in chosen), None)
        or (current_app.config["DEFAULT_LANGUAGE"])
    )


def staff_addresses():
    """SIPUP_MAIL_STAFF, or every active staff member and admin."""
    configured = [a.strip() for a in current_app.config["MAIL_STAFF"].split(",") if a.strip()]
    if configured:
        return configured
    return list(
        db.session.scalars(
            select(User.email)
            .where(User.role.in_((Role.ADMIN, Role.STAFF)), User.active.is_(True))
            .order_by(User.email)
        )
    )


def admin_addresses():
    """Every active admin: alerts about /monitor go to those who can open it."""
    return list(
        db.session.scalars(
            select(User.email).where(User.role == Role.ADMIN, User.active.is_(True)).order_by(User.email)
        )
    )


def ascii_address(address):
    """The address with its domain in IDNA form (cafécentrale.example -> xn--cafcentrale-dbb.example), so servers
    without SMTPUTF8 accept it; a non-ASCII local part cannot be sent that way and is refused as bad data."""
    local, _, domain = address.rpartition("@")
    if not local.isascii():
        raise InvalidInput(
            gettext("The address %(address)s needs SMTPUTF8, which sipup does not use; correct it.", address=address)
        )
    try:
        return f"{local}@{domain.encode('idna').decode('ascii')}"
    except UnicodeError:
        raise InvalidInput(gettext("The address %(address)s has an invalid domain.", address=address)) from None


def sender():
    """The shop as sender: SIPUP_MAIL_FROM under SIPUP_SITE_NAME unless it names itself; in the outbox of the
    embedded default, where nothing leaves, orders@localhost stands in."""
    name, address = parseaddr(current_app.config["MAIL_FROM"] or "orders@localhost")
    return Address(display_name=name or current_app.config["SITE_NAME"], addr_spec=ascii_address(address))


def reply_address():
    """Where answers to the shop's mails go: SIPUP_MAIL_REPLY_TO, else the sender's address; None without either."""
    return parseaddr(current_app.config["MAIL_REPLY_TO"] or current_app.config["MAIL_FROM"])[1] or None


def build_message(recipients, subject, text, html, attachments=()):
    """A multipart message from the shop: text, its HTML alternative, then (file name, PDF bytes) attachments."""
    message = EmailMessage()
    message["From"] = sender()
    if current_app.config["MAIL_REPLY_TO"]:
        message["Reply-To"] = ascii_address(parseaddr(current_app.config["MAIL_REPLY_TO"])[1])
    message["To"] = ", ".join(ascii_address(r) for r in recipients)
    message["Subject"] = subject
    message["Date"] = formatdate(localtime=False)
    message["Message-ID"] = make_msgid(domain="sipup")
    message.set_content(text)
    message.add_alternative(html, subtype="html")
    for filename, data in attachments:
        message.add_attachment(data, maintype="application", subtype="pdf", filename=filename)
    return message


@functools.cache
def _tls_context():
    """One verifying TLS context per process: loading the system's CA certificates takes 50 ms each time."""
    return ssl.create_default_context()


def deliver(message):
    """Send through SIPUP_MAIL_URL, or write an .eml file on the embedded default; returns where it went."""
    url = current_app.config["MAIL_URL"]
    if not url:
        folder = private_folder(os.path.join(current_app.instance_path, "outbox"))
        path = os.path.join(folder, f"{utcnow():%Y%m%d-%H%M%S}-{secrets.token_hex(4)}.eml")
        with open_private(path, "wb") as handle:
            handle.write(bytes(message))
        return f"written to {path}"
    parts = urlsplit(url)
    if parts.scheme not in ("smtp", "smtps"):
        raise kept_error(
            InvalidInput,
            N_("SIPUP_MAIL_URL must start with smtp:// or smtps://, not %(scheme)s://."),
            scheme=parts.scheme,
        )
    tls = parse_qs(parts.query).get("tls", ["starttls"])[0]
    context = _tls_context() if parts.scheme == "smtps" or tls != "off" else None
    # The name we greet with: smtplib's default, socket.getfqdn(), can wait seconds on a host without DNS.
    name = socket.gethostname()
    if parts.scheme == "smtps":
        client = smtplib.SMTP_SSL(parts.hostname, parts.port or 465, local_hostname=name, timeout=20, context=context)
    else:
        client = smtplib.SMTP(parts.hostname, parts.port or 587, local_hostname=name, timeout=20)
    with client:
        if parts.scheme == "smtp" and tls != "off":
            client.starttls(context=context)
        if parts.username:
            client.login(unquote(parts.username), unquote(parts.password or ""))
        try:
            client.send_message(message)
        except smtplib.SMTPRecipientsRefused as exc:
            permanent = all(code >= 500 for code, _text in exc.recipients.values())
            if permanent:  # the server will never take these addresses: retrying cannot help
                raise kept_error(
                    InvalidInput, N_("The mail server refused %(recipients)s."), recipients=", ".join(exc.recipients)
                ) from exc
            raise
    return f"sent via {parts.hostname}:{parts.port or (465 if parts.scheme == 'smtps' else 587)}"


def queue_overdue_reminders(today=None):
    """Enqueue one reminder per overdue open invoice, at most once a day each; returns a summary."""
    today = today or utcnow().date()
    ids = db.session.scalars(
        select(Invoice.id).where(Invoice.paid_at.is_(None), Invoice.due_date < today).order_by(Invoice.id)
    ).all()
    queued = sum(
        enqueue(
            SEND_MAIL,
            "overdue_reminder",
            invoice_id,
            priority="low",
            dedupe_key=f"mail:overdue_reminder:{invoice_id}:{today:%Y-%m-%d}",
        )
        is not None
        for invoice_id in ids
    )
    db.session.commit()
    return f"{queued} reminder(s) queued for {len(ids)} overdue invoice(s)"


def queue_mail(kind, object_id, priority="normal", key_suffix="", new_object=False):
    """Enqueue a mail in the caller's transaction, once per kind, object and suffix. new_object: the object was
    made in this transaction, so no mail of it can be queued yet (see enqueue's new_key)."""
    return enqueue(
        SEND_MAIL,
        kind,
        object_id,
        priority=priority,
        dedupe_key=f"mail:{kind}:{object_id}{':' + key_suffix if key_suffix else ''}",
        new_key=new_object,
    )
