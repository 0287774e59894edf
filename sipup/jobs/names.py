"""The names of the jobs in sipup/tasks.py, as the `jobs` table stores them and enqueue() takes them.

The jobs call services, so they sit above them: a service enqueues by one of these constants
(`enqueue(SEND_MAIL, "invoice", invoice.id)`) and each job is declared with its constant
(`@job(name=SEND_MAIL)`), so either side leads to the other.
"""

SEND_MAIL = "send_mail"
BUILD_REPORT = "build_report"
APPLY_PAYMENT = "apply_payment"
APPLY_STOCK_FILE = "apply_stock_file"
APPLY_IMPORT = "apply_import"
NIGHTLY_BACKUP = "nightly_backup"
MONTHLY_REPORTS = "monthly_reports"
OVERDUE_REMINDERS = "overdue_reminders"
CACHE_CLEANUP = "cache_cleanup"
MONITOR_ALERTS = "monitor_alerts"
PING = "ping"
