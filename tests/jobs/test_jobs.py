"""The six job types end to end: mail (real SMTP server), reports, payments, inventory, backup, cache cleanup,
plus the periodic jobs and the long-running worker."""

import email
import email.policy
import glob
import os
import re
import secrets
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from contextlib import closing
from datetime import timedelta
from decimal import Decimal

import pytest
from flask_babel import force_locale
from sqlalchemy import func, select, text
from sqlalchemy.engine import make_url

from sipup.exceptions import InvalidInput
from sipup.extensions import db
from sipup.i18n import money, shown
from sipup.jobs import enqueue
from sipup.models import Invoice, Job, Order, OrderStatus, Payment, Product, utcnow
from sipup.services import backup, mail, orders, payments, reports, stock_import
from sipup.services import cart as carts
from tests.conftest import BACKENDS, REDIS_URL, _empty_tables, set_queue_clock
from tests.servers import LocalSmtp, free_port

D = Decimal
SENDER = "Getränke Müller Shop <orders@shop.example>"


@pytest.fixture(params=["huey-sqlite", "huey-redis"])
def app(request, backend, make_app):
    """Every job type on both queue footprints: Huey on SQLite in instance/, and Huey on the shared Redis."""
    extra = {}
    if request.param == "huey-redis":
        extra = {"REDIS_URL": REDIS_URL, "REDIS_NAMESPACE": request.getfixturevalue("redis_namespace")}
    app = make_app(**extra)
    app.backend, app.queue_settings = backend[0], extra
    with app.app_context():
        yield app
        db.session.remove()
        _empty_tables()


@pytest.fixture
def run_jobs(app):
    """Process queued jobs of the current app, as cron's `flask queue process` would."""
    app.extensions["queue"].huey.flush()

    def run(limit=100):
        from flask import current_app

        return current_app.extensions["queue"].process(limit)

    yield run
    app.extensions["queue"].huey.flush()


@pytest.fixture
def smtp():
    server = LocalSmtp().start()
    yield server
    server.stop()


@pytest.fixture
def shop(make_company, make_user, make_product):
    """A company with an owner and a buyer, staff, and two products."""
    company = make_company(name="Getränke Müller GmbH")
    owner = make_user("owner", company)
    buyer = make_user("buyer", company)
    staff = make_user("staff")
    beer = make_product(sku="BEER-1", name="Pils 24 x 0.33", stock_on_hand=100, low_stock_threshold=10)
    water = make_product(sku="WATER-1", name="Water 12 x 1.0", stock_on_hand=50, low_stock_threshold=5)
    return {"company": company, "owner": owner, "buyer": buyer, "staff": staff, "beer": beer, "water": water}


def place(app, user, *items):
    for product, quantity in items:
        carts.add(user.id, product, quantity)
    return orders.checkout(user, app.config["VAT_RATE"], address_id=user.company.addresses[0].id)


def invoiced(app, shop, *items):
    order = place(app, shop["buyer"], *items)
    for action in ("confirm", "ship", "invoice"):
        order = orders.transition(order.number, action, shop["staff"].id)
    return db.session.scalar(select(Invoice).where(Invoice.order_id == order.id))


def outbox(app):
    return sorted(glob.glob(os.path.join(app.instance_path, "outbox", "*.eml")))


def job_of(name):
    db.session.expire_all()
    return db.session.scalars(select(Job).where(Job.name == name).order_by(Job.id.desc())).first()


def one_pairing_each(app):
    """Skip the pairings of job database and queue store that repeat another, for tests whose subject depends on
    the queue store (Huey on SQLite or on Redis) and the database (where job records are claimed, what a backup
    copies), not on how the two are paired: a worker's start and stop, the nightly backup. Where MariaDB is
    configured with Redis it runs the Redis queue and SQLite the embedded one (the production and the
    embedded footprints), so each store and each database still runs the test."""
    redis_queue = bool(app.queue_settings)
    if app.backend == "mariadb" and not redis_queue and REDIS_URL:
        pytest.skip("repeats another pairing: the SQLite queue runs on SQLite, MariaDB with the Redis queue")
    if app.backend == "sqlite" and redis_queue and "mariadb" in BACKENDS:
        pytest.skip("repeats another pairing: the Redis queue runs on MariaDB, SQLite with the SQLite queue")


# --- email -----------------------------------------------------------------------------------------


def test_order_mails_go_through_a_real_smtp_server_with_login(app, make_app, run_jobs, smtp, shop):
    mailer = make_app(
        MAIL_URL=smtp.url,
        MAIL_FROM="orders@getraenke-nord.example",
        MAIL_REPLY_TO="service@getraenke-nord.example",
        SITE_NAME="Getränke Nord",
        **app.queue_settings,
    )
    with mailer.app_context():
        order = place(mailer, shop["buyer"], (shop["beer"], 3))
        run_jobs()
        assert len(smtp.messages) == 1, job_of("send_mail").error
        message = smtp.messages[0]
        assert message["From"] == "Getränke Nord <orders@getraenke-nord.example>"  # the shop, by its name
        assert message["Reply-To"] == "service@getraenke-nord.example"
        assert smtp.senders == ["orders@getraenke-nord.example"]
        assert message["Subject"] == f"Order {order.number} received"
        assert message["To"] == shop["buyer"].email
        assert "3 x BEER-1 Pils 24 x 0.33" in message.get_body(("plain",)).get_content()
        assert f"<strong>{order.number}</strong>" in message.get_body(("html",)).get_content()
        assert smtp.logins == [("mailer", True)]

        orders.transition(order.number, "confirm", shop["staff"].id)
        invoice_order = orders.transition(
            orders.transition(order.number, "ship", shop["staff"].id).number, "invoice", shop["staff"].id
        )
        run_jobs()
        subjects = [m["Subject"] for m in smtp.messages]
        assert f"Order {order.number} is now confirmed" in subjects
        assert f"Order {order.number} is now shipped" in subjects
        invoice = db.session.scalar(select(Invoice).where(Invoice.order_id == invoice_order.id))
        invoice_mail = next(m for m in smtp.messages if m["Subject"].startswith("Invoice"))
        assert invoice.number in invoice_mail["Subject"]
        assert shop["owner"].email in invoice_mail["To"] and shop["buyer"].email in invoice_mail["To"]
        (attachment,) = invoice_mail.iter_attachments()
        assert attachment.get_content_type() == "application/pdf"
        assert attachment.get_filename() == f"{invoice.number}.pdf"
        text = subprocess.run(
            ["pdftotext", "-", "-"], input=attachment.get_content(), capture_output=True, check=True
        ).stdout.decode()
        assert invoice.number in text and "Getränke Müller GmbH" in text and "Page 1 of 1" in text
        db.session.remove()


def test_a_late_confirmation_mail_tells_the_status_the_order_was_placed_in(app, run_jobs, shop):
    order = place(app, shop["buyer"], (shop["beer"], 2))
    for action in ("confirm", "ship", "invoice", "pay"):
        orders.transition(order.number, action, shop["staff"].id)
    db.session.commit()
    summary = mail.send("order_confirmation", order.id)  # as a queue that ran late would send it
    path = summary.rsplit("written to ", 1)[1].rstrip(")")
    with open(path, "rb") as handle:
        message = email.message_from_bytes(handle.read(), policy=email.policy.default)
    body = message.get_body(("plain",)).get_content()
    assert "Status: Placed" in body and "Paid" not in body


def test_order_mails_name_the_company_the_po_reference_the_currency_and_link_to_the_order(app, run_jobs, shop):
    carts.add(shop["buyer"].id, shop["beer"], 2)
    order = orders.checkout(
        shop["buyer"], app.config["VAT_RATE"], po_reference="PO-4711", address_id=shop["company"].addresses[0].id
    )
    orders.transition(order.number, "confirm", shop["staff"].id)
    db.session.commit()
    for kind, object_id in (("order_confirmation", order.id), ("order_status", order.events[-1].id)):
        path = mail.send(kind, object_id).rsplit("written to ", 1)[1].rstrip(")")
        with open(path, "rb") as handle:
            message = email.message_from_bytes(handle.read(), policy=email.policy.default)
        for body in (message.get_body(("plain",)).get_content(), message.get_body(("html",)).get_content()):
            assert shop["company"].name in body and "PO-4711" in body, kind
            assert f"{order.total} {app.config['CURRENCY']}" in body, kind
            assert f"/orders/{order.number}" in body and "http" in body, kind


def test_smtp_down_retries_then_fails_visibly_and_the_order_stands(app, make_app, run_jobs, shop, monkeypatch):
    mailer = make_app(MAIL_URL=f"smtp://127.0.0.1:{free_port()}?tls=off", MAIL_FROM=SENDER, **app.queue_settings)
    now = [utcnow().replace(microsecond=0)]
    set_queue_clock(monkeypatch, lambda: now[0])
    with mailer.app_context():
        order = place(mailer, shop["buyer"], (shop["beer"], 1))
        run_jobs()
        first = job_of("send_mail")
        assert (first.status, first.attempts) == ("retrying", 1)
        assert "ConnectionRefusedError" in first.error
        for seconds in (61, 121):
            now[0] += timedelta(seconds=seconds)
            run_jobs()
        failed = job_of("send_mail")
        assert (failed.status, failed.attempts) == ("failed", 3)
        assert db.session.get(Order, order.id).status == OrderStatus.PLACED
        db.session.remove()


def test_without_mail_url_mails_are_written_to_the_outbox_folder(app, run_jobs, shop):
    before = set(outbox(app))
    order = place(app, shop["buyer"], (shop["water"], 2))
    run_jobs()
    new = sorted(set(outbox(app)) - before)
    assert len(new) == 1
    with open(new[0], "rb") as handle:
        text = handle.read().decode()
    assert f"Subject: Order {order.number} received" in text and "multipart/alternative" in text


def test_no_mail_for_an_order_that_rolled_back(app, run_jobs, shop):
    carts.add(shop["buyer"].id, shop["beer"], 500)  # more than in stock: checkout fails and rolls back
    with pytest.raises(Exception):
        orders.checkout(shop["buyer"], app.config["VAT_RATE"], address_id=shop["company"].addresses[0].id)
    assert db.session.scalar(select(func.count()).select_from(Job)) == 0
    assert app.extensions["queue"].huey.pending_count() == 0


def test_overdue_reminders_are_queued_once_a_day(app, run_jobs, shop):
    invoice = invoiced(app, shop, (shop["beer"], 1))
    invoice.due_date = utcnow().date() - timedelta(days=3)
    db.session.commit()
    run_jobs()
    assert mail.queue_overdue_reminders() == "1 reminder(s) queued for 1 overdue invoice(s)"
    assert mail.queue_overdue_reminders() == "0 reminder(s) queued for 1 overdue invoice(s)"
    before = set(outbox(app))
    run_jobs()
    new = sorted(set(outbox(app)) - before)
    with open(new[0], "rb") as handle:
        assert f"invoice {invoice.number} is 3 day(s) overdue" in handle.read().decode()


# --- reports ---------------------------------------------------------------------------------------


def test_reports_are_csv_with_bom_and_downloadable(app, run_jobs, shop, client, login_as):
    invoiced(app, shop, (shop["beer"], 2))
    place(app, shop["buyer"], (shop["water"], 1))
    today = utcnow().date()
    for kind in reports.KINDS:
        enqueue("build_report", kind, today.isoformat(), today.isoformat())
    db.session.commit()
    run_jobs()
    assert {j.status for j in db.session.scalars(select(Job).where(Job.name == "build_report"))} == {"done"}
    names = [name for name, _size, _mtime in reports.available()]
    by_customer = next(n for n in names if n.startswith("sales_by_customer"))
    data = reports.read(by_customer)
    assert data.startswith(b"\xef\xbb\xbf")  # the BOM that makes Excel read UTF-8
    lines = data.decode("utf-8-sig").splitlines()
    assert lines[0] == "Customer;Orders;Goods;Total"  # EUR: the delimiter of Excel where "," is the decimal mark
    assert lines[1].startswith("Getränke Müller GmbH;2;")
    ageing = next(n for n in names if n.startswith("receivables_ageing"))
    rows = reports.read(ageing).decode("utf-8-sig").splitlines()
    assert rows[0] == "Customer;0-30 days;31-60 days;over 60 days;Overdue;Open total"
    assert rows[1].startswith("Getränke Müller GmbH;")

    login_as(shop["staff"])
    response = client.get(f"/admin/reports/{by_customer}")
    assert response.status_code == 200 and response.data == data
    assert "attachment" in response.headers["Content-Disposition"]
    response.close()
    assert client.get("/admin/reports/..%2Fsipup.db").status_code == 404
    page = client.get("/admin/reports").get_data(as_text=True)
    assert by_customer in page
    response = client.post("/admin/reports", data={"kind": "sales_by_product", "start": "2026-13-01", "end": "x"})
    assert response.status_code == 302


def test_report_with_bad_dates_fails_at_once(app, run_jobs):
    record = enqueue("build_report", "sales_by_period", "2026-02-30", "2026-03-01")
    db.session.commit()
    run_jobs()
    failed = job_of("build_report")
    assert (failed.status, failed.attempts) == ("failed", 1) and "Dates must look like" in failed.error
    assert record.id == failed.id


# --- payments --------------------------------------------------------------------------------------


def test_bank_csv_reports_bad_lines_and_applies_good_ones_once(app, run_jobs, shop):
    first = invoiced(app, shop, (shop["beer"], 2))
    second = invoiced(app, shop, (shop["water"], 1))
    run_jobs()
    paid = first.amount + D("5.00")
    csv_text = (
        "reference;company;amount\n"
        f"BANK-1;Getränke Müller GmbH;{str(paid).replace('.', ',')}\n"
        "BANK-2;Getränke Müller GmbH;abc\n"
        "BANK-3;;10.00\n"
        "BANK-4;Nobody Ltd;10.00\n"
    )
    queued, known, problems = payments.import_bank_csv(csv_text.encode("utf-8"))
    assert (queued, known) == (2, 0)
    assert [n for n, _ in problems] == [3, 4]
    run_jobs()
    db.session.expire_all()
    assert db.session.get(Invoice, first.id).paid_at is not None
    assert db.session.get(Invoice, second.id).paid_amount == D("5.00")
    assert db.session.get(Order, first.order_id).status == OrderStatus.PAID
    unknown = db.session.scalar(select(Job).where(Job.args.contains("BANK-4")))
    assert unknown.status == "failed" and "No single company" in unknown.error

    count = db.session.scalar(select(func.count()).select_from(Payment))
    assert payments.import_bank_csv(csv_text.encode("utf-8"))[:2] == (0, 2)  # the same file again
    assert shown(payments.apply_payment("BANK-1", "Getränke Müller GmbH", str(paid))) == "BANK-1: already applied"
    assert db.session.scalar(select(func.count()).select_from(Payment)) == count


def test_a_reference_that_looks_like_another_ones_part_is_its_own_payment(app, run_jobs, shop):
    invoiced(app, shop, (shop["beer"], 2))
    run_jobs()
    company = "Getränke Müller GmbH"
    assert "already applied" not in payments.apply_payment("2026/11", company, "10.00")
    assert "already applied" not in payments.apply_payment("2026", company, "20.00")  # not a part of 2026/11
    assert shown(payments.apply_payment("2026", company, "20.00")) == "2026: already applied"
    assert {p.reference for p in db.session.scalars(select(Payment))} >= {"2026/11", "2026"}


def test_a_payment_split_over_invoices_is_applied_once(app, run_jobs, shop):
    first = invoiced(app, shop, (shop["beer"], 2))
    second = invoiced(app, shop, (shop["water"], 1))
    run_jobs()
    total = first.amount + second.amount
    applied = payments.apply_payment("SPLIT-1", "Getränke Müller GmbH", str(total))
    with force_locale("de"):  # what the back office shows, in the reader's language and way with amounts
        assert shown(applied) == (
            f"SPLIT-1: {money(total)} von Getränke Müller GmbH: {money(first.amount)} auf {first.number}; "
            f"{money(second.amount)} auf {second.number}"
        )
    assert sorted(p.reference for p in db.session.scalars(select(Payment))) == ["SPLIT-1", "SPLIT-1 [part 2]"]
    assert shown(payments.apply_payment("SPLIT-1", "Getränke Müller GmbH", str(total))) == "SPLIT-1: already applied"


@pytest.mark.parametrize("kind", ["payments", "stock"])
def test_an_upload_in_no_known_encoding_is_refused_with_a_message(app, client, login_as, shop, kind):
    from io import BytesIO

    login_as(shop["staff"])
    response = client.post(
        "/admin/imports",
        data={"kind": kind, "file": (BytesIO(b"A\x81\x8d,1\n"), "x.csv")},
        content_type="multipart/form-data",
    )
    assert response.status_code in (200, 422) and "first line must name the columns" in response.get_data(as_text=True)


def test_a_stock_count_in_other_digits_is_reported(app):
    with pytest.raises(InvalidInput, match="line 2: “²” is not a whole number from 0 to 10,000,000"):
        stock_import.import_stock_file("sku,stock_on_hand\nBEER-1,²\n".encode())


def test_bank_csv_without_header_is_refused(app):
    with pytest.raises(InvalidInput, match="first line must name the columns"):
        payments.import_bank_csv(b"BANK-1,Acme,10.00\n")


def test_admin_imports_page_shows_bad_lines(app, client, login_as, shop, run_jobs):
    login_as(shop["staff"])
    from io import BytesIO

    response = client.post(
        "/admin/imports",
        data={"kind": "payments", "file": (BytesIO(b"reference,company,amount\nX-1,Nobody,-3\n"), "bank.csv")},
        content_type="multipart/form-data",
    )
    page = response.get_data(as_text=True)
    assert response.status_code == 200 and "Lines not imported" in page and '<td class="num">2</td>' in page


# --- inventory -------------------------------------------------------------------------------------


def test_stock_file_applies_good_lines_reports_bad_ones_and_alerts_staff(app, run_jobs, shop):
    place(app, shop["buyer"], (shop["beer"], 8))  # 8 reserved
    run_jobs()
    data = (
        "sku,stock_on_hand\n"
        "beer-1,5\n"  # below the reservation and the threshold
        "WATER-1,40\n"
        "NOPE-9,3\n"  # unknown: reported by the job
        "WATER-1,41\n"  # duplicate: reported at upload
        "BEER-2,x\n"
    ).encode()  # not a number: reported at upload
    record, good, problems = stock_import.import_stock_file(data)
    assert good == 3 and [n for n, _ in problems] == [5, 6]
    before = set(outbox(app))
    run_jobs()
    done = job_of("apply_stock_file")
    assert done.status == "done", done.error
    summary = shown(done.result)  # kept as messages where it fits the column, else in the default language
    assert "2 stock level(s) applied" in summary and "BEER-1 (5 on hand, 8 reserved)" in summary
    assert "line 4: unknown SKU NOPE-9" in summary
    db.session.expire_all()
    assert (
        db.session.get(Product, shop["beer"].id).stock_on_hand,
        db.session.get(Product, shop["water"].id).stock_on_hand,
    ) == (5, 40)
    alert = [p for p in sorted(set(outbox(app)) - before)]
    assert len(alert) == 1
    with open(alert[0], "rb") as handle:
        text = handle.read().decode()
    assert "Subject: Low stock: 1 product(s)" in text and shop["staff"].email in text
    run_jobs()  # the same file again changes nothing and alerts no one twice the same day
    stock_import.alert_low_stock([shop["beer"].id])
    assert db.session.scalar(select(func.count()).select_from(Job).where(Job.args.contains("low_stock"))) == 1


def test_staff_see_a_stock_files_unknown_skus_and_bad_lines_once_it_has_run(app, client, login_as, run_jobs, shop):
    from io import BytesIO

    login_as(shop["staff"])
    lines = "".join(f"GHOST-{n},1\n" for n in range(30))  # more than the job's result has room for
    data = f"sku,stock_on_hand\nBEER-1,70\n{lines}WATER-1,x\n".encode()
    client.post(
        "/admin/imports",
        data={"kind": "stock", "file": (BytesIO(data), "count.csv")},
        content_type="multipart/form-data",
    )
    waiting = client.get("/admin/imports").get_data(as_text=True)
    assert "Recent stock files" in waiting and "Waiting for the queue to apply it" in waiting
    run_jobs()
    page = client.get("/admin/imports").get_data(as_text=True)
    assert "1 stock level(s) applied" in page
    for n in range(30):
        assert f"unknown SKU GHOST-{n}<" in page
    assert '<td class="num">33</td><td>“x” is not a whole number' in page


# --- backup ----------------------------------------------------------------------------------------


def test_backup_is_verified_by_restore_and_rotated(app, make_app, run_jobs, shop):
    one_pairing_each(app)
    keeper = make_app(BACKUP_KEEP=1, **app.queue_settings)
    with keeper.app_context():
        for _ in range(2):
            enqueue("nightly_backup")
            db.session.commit()
            run_jobs()
            time.sleep(1.05)  # backups are named by the second
        results = db.session.scalars(select(Job.result).where(Job.name == "nightly_backup", Job.status == "done")).all()
        assert len(results) == 2, job_of("nightly_backup").error
        assert "verified by restore" in results[0] and "1 old backup(s) removed" in results[1]
        assert len(backup.list_backups()) == 1
        db.session.remove()


def test_the_backup_verifies_with_the_documented_grants_and_names_the_one_it_lacks(app, make_app):
    if app.backend != "mariadb" or app.config["REDIS_URL"]:
        pytest.skip("the grants are MariaDB's; once is enough, whichever queue carries the job")
    live = make_url(app.config["DATABASE_URL"])
    user, password = f"sipup_{secrets.token_hex(4)}", secrets.token_hex(12)
    with db.engine.begin() as conn:  # docs/production.md's: CREATE USER sipup ...; GRANT ALL ON sipup.* TO sipup
        conn.execute(text(f"CREATE USER '{user}'@'%' IDENTIFIED BY '{password}'"))
        conn.execute(text(f"GRANT ALL ON `{live.database}`.* TO '{user}'@'%'"))
    try:
        service = make_app(DATABASE_URL=live.set(username=user, password=password).render_as_string(False))
        with service.app_context():
            line = (
                f"The backup is verified by a restore into the database {live.database}_verify, which {user}@% may "
                f"not create: as root run GRANT ALL ON {live.database}_verify.* TO '{user}'@'%' "
                "(docs/jobs.md: Mail and backups)."
            )
            assert backup.verification_problem() == line
            upgraded = service.test_cli_runner().invoke(args=["db", "upgrade"])
            assert upgraded.exit_code == 0 and f"sipup: warning: {line}" in upgraded.output
            with pytest.raises(backup.VerificationNotAllowed):  # a DomainError: the job fails at once, no retries
                backup.run_backup()
            db.engine.dispose()
        with db.engine.begin() as conn:  # docs/production.md's one extra grant
            conn.execute(text(f"GRANT ALL ON {live.database}_verify.* TO '{user}'@'%'"))
        with service.app_context():
            assert backup.verification_problem() is None
            assert "verified by restore" in backup.run_backup()
            db.engine.dispose()
    finally:
        with db.engine.begin() as conn:
            conn.execute(text(f"DROP USER IF EXISTS '{user}'@'%'"))
            conn.execute(text(f"DROP DATABASE IF EXISTS `{live.database}_verify`"))


def test_processes_starting_together_check_the_backup_grant_without_tripping_over_each_other(app):
    if app.backend != "mariadb" or app.config["REDIS_URL"]:
        pytest.skip("the scratch database is MariaDB's; once is enough, whichever queue carries the job")
    errors = []

    def start_up_check():
        with app.app_context():
            try:
                for _ in range(5):
                    assert backup.verification_problem() is None
            except Exception as exc:  # noqa: BLE001 - any failure of a start-up check is this test's
                errors.append(exc)
            finally:
                db.engine.dispose()

    threads = [threading.Thread(target=start_up_check) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    scratch = make_url(app.config["DATABASE_URL"])
    scratch = scratch.set(database=backup.scratch_name(scratch))
    backup._drop(scratch)  # gone already, as when another process dropped it: nothing to connect to is needed


def test_backup_verification_catches_missing_rows(app, tmp_path):
    path = tmp_path / "sipup-x.sqlite3"
    path.write_bytes(b"")
    with pytest.raises(backup.BackupError, match="products has 1 rows, expected 2"):
        backup._verify({"products": 2}, {"products": 2}, {"products": 1}, str(path))
    assert os.path.exists(str(path) + ".bad")


# --- cache cleanup ---------------------------------------------------------------------------------


def test_cache_cleanup_purges_old_statistics_and_job_history(app, run_jobs):
    counters = app.extensions["counters"]
    counters.incr("queue", "old", now=time.time() - 10 * 86400)
    counters.flush()
    old_id = enqueue("build_report", "receivables_ageing").id
    db.session.commit()
    run_jobs()
    db.session.execute(Job.__table__.update().where(Job.id == old_id).values(finished_at=utcnow() - timedelta(days=40)))
    db.session.commit()
    cache = app.extensions["sipup_cache"]
    if cache.kind == "filesystem":
        cache.primary.set("expired-entry", 1, timeout=-10)  # written already expired
        expired_file = cache.primary._get_filename("expired-entry")
        assert os.path.exists(expired_file)
    enqueue("cache_cleanup")
    db.session.commit()
    run_jobs()
    done = job_of("cache_cleanup")
    assert done.status == "done", done.error
    assert "1 finished jobs past retention removed" in done.result
    if cache.kind == "filesystem":
        assert re.search(r"\b[1-9]\d* expired cache files", done.result) and not os.path.exists(expired_file)
    else:
        assert "the cache server expires its own entries" in done.result
    assert db.session.scalar(select(Job.id).where(Job.id == old_id)) is None
    if not app.config["REDIS_URL"]:  # Redis statistics expire by themselves
        with closing(sqlite3.connect(os.path.join(app.instance_path, "metrics.db"))) as conn:
            assert conn.execute("SELECT COUNT(*) FROM counters WHERE name = 'old'").fetchone()[0] == 0


def test_monthly_reports_queue_all_four(app, run_jobs):
    assert reports.queue_monthly().startswith("queued sales_by_period, sales_by_customer")
    assert db.session.scalar(select(func.count()).select_from(Job).where(Job.name == "build_report")) == 4
    assert reports.queue_monthly().startswith("queued nothing")


# --- the long-running worker -----------------------------------------------------------------------


def start_worker(app, backend, *options, **settings):
    """A real `flask queue worker` on the test's database and queue store."""
    _name, url, instance = backend
    env = {
        **os.environ,
        "SIPUP_DATABASE_URL": url,
        "SIPUP_INSTANCE_PATH": instance,
        "SIPUP_SECRET_KEY": "test-secret-of-at-least-32-characters",
        "FLASK_APP": "wsgi",
    }
    for key, value in {**app.queue_settings, **settings}.items():
        env[f"SIPUP_{key}"] = str(value)
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    return subprocess.Popen(
        [sys.executable, "-m", "flask", "queue", "worker", *options],
        cwd=root,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def wait_for(condition, seconds=30):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        db.session.expire_all()
        if condition():
            return True
        time.sleep(0.1)
    return False


def statuses_of(name):
    return db.session.scalars(select(Job.status).where(Job.name == name)).all()


def test_worker_runs_jobs_until_interrupted(app, backend, run_jobs):
    one_pairing_each(app)
    for _ in range(3):
        enqueue("build_report", "receivables_ageing", priority="high")
    db.session.commit()
    worker = start_worker(app, backend, "--workers", "2")
    try:
        assert wait_for(lambda: set(statuses_of("build_report")) == {"done"})
    finally:
        worker.send_signal(signal.SIGINT)
        output = worker.communicate(timeout=30)[0].decode()
    assert worker.returncode == 0
    assert f"sipup queue worker on {app.extensions['queue'].backend} with 2 thread(s)" in output


def test_sigterm_lets_the_running_job_finish_and_takes_no_new_one(app, backend, run_jobs):
    one_pairing_each(app)
    slow = enqueue("ping", "3")
    db.session.commit()
    worker = start_worker(app, backend, "--workers", "1")
    try:
        assert wait_for(lambda: statuses_of("ping") == ["running"])
        later = enqueue("ping")  # arrives while the worker stops: left for the next processor
        db.session.commit()
        worker.send_signal(signal.SIGTERM)
        worker.communicate(timeout=30)
    finally:
        if worker.poll() is None:
            worker.kill()
    assert worker.returncode == 0
    db.session.expire_all()
    done = db.session.get(Job, slow.id)
    assert (done.status, done.attempts, done.result) == ("done", 1, "pong")
    assert db.session.get(Job, later.id).status == "queued"
    run_jobs()  # the next processor runs the new one, and not the finished one again
    db.session.expire_all()
    assert db.session.get(Job, later.id).status == "done"
    assert (db.session.get(Job, slow.id).attempts, db.session.get(Job, slow.id).finished_at) == (1, done.finished_at)


def test_a_job_still_running_at_the_stop_timeout_is_queued_again_at_once(app, backend, run_jobs):
    one_pairing_each(app)
    slow = enqueue("ping", "5")
    db.session.commit()
    worker = start_worker(app, backend, "--workers", "1", WORKER_STOP_SECONDS=1)
    try:
        assert wait_for(lambda: statuses_of("ping") == ["running"])
        stopped_at = time.monotonic()
        worker.send_signal(signal.SIGTERM)
        worker.communicate(timeout=30)
        took = time.monotonic() - stopped_at
    finally:
        if worker.poll() is None:
            worker.kill()
    assert worker.returncode == 0 and took < 4  # did not wait for the 5-second job
    db.session.expire_all()
    returned = db.session.get(Job, slow.id)
    assert returned.status == "retrying" and returned.dispatched_at is not None and returned.lease_until is None
    assert "worker stopped before this run finished" in returned.error
    run_jobs()  # sent back to the queue: the next run takes it, no lease to wait for
    db.session.expire_all()
    again = db.session.get(Job, slow.id)
    assert (again.status, again.attempts) == ("done", 2)


def test_international_domains_are_sent_in_idna_form(app, make_app, run_jobs, smtp, make_company, make_user):
    mailer = make_app(MAIL_URL=smtp.url, MAIL_FROM=SENDER, **app.queue_settings)
    with mailer.app_context():
        company = make_company(name="Café Centrale")
        make_user("owner", company, email="owner@cafécentrale.example")
        assert mail.ascii_address("owner@cafécentrale.example") == "owner@xn--cafcentrale-dbb.example"
        with pytest.raises(InvalidInput, match="needs SMTPUTF8"):
            mail.ascii_address("müller@example.com")
        message = mail.build_message(["owner@cafécentrale.example"], "Hallo", "text", "<p>html</p>")
        mail.deliver(message)
        assert smtp.messages[-1]["To"] == "owner@xn--cafcentrale-dbb.example"
        db.session.remove()


def test_mail_over_starttls_with_a_verified_certificate_and_login(app, make_app, tmp_path, monkeypatch):
    import ssl

    from tests.servers import self_signed_certificate

    cert, key = self_signed_certificate(tmp_path)
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(cert, key)
    server = LocalSmtp(tls_context=server_context).start()
    monkeypatch.setenv("SSL_CERT_FILE", cert)  # the client trusts this server's certificate, and only that
    mail._tls_context.cache_clear()
    try:
        mailer = make_app(MAIL_URL=server.url, MAIL_FROM=SENDER, **app.queue_settings)
        with mailer.app_context():
            message = mail.build_message(["buyer@example.com"], "Over TLS", "text", "<p>html</p>")
            assert mail.deliver(message) == f"sent via 127.0.0.1:{server.port}"
            assert server.messages[-1]["Subject"] == "Over TLS" and server.logins == [("mailer", True)]
    finally:
        server.stop()
        mail._tls_context.cache_clear()
