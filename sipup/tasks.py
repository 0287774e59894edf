"""Background jobs. Each is a few lines that take ids and call a service; sipup.jobs.queue records, leases,
retries and runs each in an app context of its own. Periodic times are UTC.

Each job is declared with its name from sipup.jobs.names, the constant services enqueue it by. create_app()'s
module imports this one, so every process that has the app knows every job (Huey drops a message whose task it
does not know)."""

from sipup.jobs import crontab, housekeeping, job, names
from sipup.observability import alerts
from sipup.services import backup, bulk_import, mail, payments, reports, stock_import


@job(name=names.SEND_MAIL, priority="normal")
def send_mail(kind, object_id):
    """Send one customer or staff mail (order confirmation, status, invoice, reminder, low stock)."""
    return mail.send(kind, object_id)


@job(name=names.BUILD_REPORT, priority="low", lease=3600)
def build_report(kind, start=None, end=None):
    """Build one CSV report into the file storage."""
    return reports.build(kind, start, end)


@job(name=names.APPLY_PAYMENT, priority="high")
def apply_payment(reference, company, amount):
    """Apply one incoming payment to the company's oldest open invoices (once per reference)."""
    return payments.apply_payment(reference, company, amount)


@job(name=names.APPLY_STOCK_FILE, priority="normal", lease=3600)
def apply_stock_file(filename):
    """Apply a warehouse stock file, recheck reservations and alert staff about low stock."""
    summary, low = stock_import.apply_stock_file(filename)
    stock_import.alert_low_stock(low)
    return summary


@job(name=names.APPLY_IMPORT, priority="normal", lease=3600)
def apply_import(kind, name, actor_id=None):
    """Apply a confirmed products, prices or companies file a batch at a time; a re-run skips what is applied."""
    return bulk_import.apply_stored(kind, name, actor_id)


@job(name=names.NIGHTLY_BACKUP, priority="low", periodic=crontab(minute="30", hour="2"), lease=3 * 3600)
def nightly_backup():
    """Back up the database, verify it by a restore, keep the last SIPUP_BACKUP_KEEP."""
    return backup.run_backup()


@job(name=names.MONTHLY_REPORTS, priority="low", periodic=crontab(minute="0", hour="4", day="1"))
def monthly_reports():
    """Queue last month's sales reports and today's receivables ageing."""
    return reports.queue_monthly()


@job(name=names.OVERDUE_REMINDERS, priority="low", periodic=crontab(minute="0", hour="7"))
def overdue_reminders():
    """Queue one reminder mail per overdue invoice (once a day each)."""
    return mail.queue_overdue_reminders()


@job(name=names.CACHE_CLEANUP, priority="low", periodic=crontab(minute="15"))
def cache_cleanup():
    """Purge expired filesystem-cache entries, old statistics buckets, old job history and old checkout keys."""
    return housekeeping.cache_cleanup()


@job(name=names.MONITOR_ALERTS, priority="high", periodic=crontab())
def monitor_alerts():
    """Mail staff once when the monitor's health turns red or a recommendation stays red, once when it clears."""
    return alerts.run()


@job(name=names.PING, priority="low")
def ping(seconds=0):
    """Do nothing, for `seconds` if given: checks the queue end to end (`flask queue enqueue ping`, then
    `flask queue status`) and a worker's graceful stop (`flask queue enqueue ping 20`, then stop the worker)."""
    return housekeeping.pause(seconds)
