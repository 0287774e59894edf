"""The jobs where Huey's idiom looks for them (`import tasks`, then `tasks.ping()` or
`tasks.build_report.schedule(args, delay=60)`): they live in sipup/tasks.py, which the app imports itself."""

from sipup.tasks import (
    apply_import,
    apply_payment,
    apply_stock_file,
    build_report,
    cache_cleanup,
    monitor_alerts,
    monthly_reports,
    nightly_backup,
    overdue_reminders,
    ping,
    send_mail,
)

__all__ = [
    "apply_import",
    "apply_payment",
    "apply_stock_file",
    "build_report",
    "cache_cleanup",
    "monitor_alerts",
    "monthly_reports",
    "nightly_backup",
    "overdue_reminders",
    "ping",
    "send_mail",
]
