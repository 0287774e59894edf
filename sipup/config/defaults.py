"""The default of every setting (docs/settings.md describes each) and of the endpoint-limit rules."""

DEFAULTS = {
    # Storage. Unset DATABASE_URL means the embedded SQLite file in instance/.
    "DATABASE_URL": None,
    # MariaDB/MySQL replicas of DATABASE_URL (comma-separated URLs) for reads that tolerate a second of lag
    # (sipup/replicas.py); a replica further behind than REPLICA_MAX_LAG seconds is skipped until it catches up.
    "DATABASE_REPLICA_URLS": "",
    "REPLICA_MAX_LAG": 5,
    "REDIS_URL": None,
    # Prefix of every Redis key sipup writes, so several sites (or test runs) can share one Redis.
    "REDIS_NAMESPACE": "sipup",
    "CACHE_URL": None,
    # Pictures, reports and uploaded files: unset = the instance folder (one host), "database", or
    # s3://KEY:SECRET@host:port/bucket (s3+https:// with TLS) shared by every host (sipup/storage/).
    "STORAGE_URL": None,
    "MAIL_URL": None,
    "SECRET_KEY": None,
    # Network and waitress.
    "PROXY_HOPS": 0,
    "HOST": "127.0.0.1",
    "PORT": 8080,
    "THREADS": 8,
    # Waitress processes on the one port (flask serve --processes); unset: every core where Redis shares the
    # rate-limit budgets, cache and statistics, 1 on the embedded default, where each process keeps its own.
    "PROCESSES": None,
    "CONNECTION_LIMIT": 200,
    "CHANNEL_TIMEOUT": 120,
    "MAX_REQUEST_MB": 32,
    # After SIGTERM, /readyz answers 503 this long while requests are still served (behind a balancer: its
    # check interval x fall, so its checks take the host out first), then the server stops.
    "DRAIN_SECONDS": 0,
    # This host's name on /monitor and in /metrics (every process of one host adds to its series); unset:
    # the machine's host name. Give each one its own where several sipup sites share a machine.
    "HOST_NAME": None,
    # Scaling layer (used by later parts; defaults are the seed's numbers).
    "RATELIMIT_IP": "100 per minute",
    "RATELIMIT_USER": "1000 per hour",
    "SLOW_QUERY_MS": 200,
    "QUERY_WARN_PER_REQUEST": 50,
    "DB_STATS": True,
    "REQUEST_STATS": True,
    "DB_POOL_SIZE": 50,
    "DB_MAX_OVERFLOW": 50,
    "DB_POOL_TIMEOUT": 10,
    "DB_POOL_RECYCLE": 1800,
    # Seconds a database may stay silent. Web requests give up soon (a 503 page, not a hung request): to open a
    # connection, to read, to write; the server stops a web request's statement after DB_STATEMENT_TIMEOUT
    # (0: no limit). The worker and commands (reports, optimize) wait up to DB_JOB_TIMEOUT (0: for ever).
    "DB_CONNECT_TIMEOUT": 2,
    "DB_READ_TIMEOUT": 3,
    "DB_WRITE_TIMEOUT": 3,
    "DB_STATEMENT_TIMEOUT": 2,
    "DB_JOB_TIMEOUT": 3600,
    # /monitor and /metrics.
    "MONITOR_REFRESH_SECONDS": 30,
    "MONITOR_PANEL_SECONDS": 10,
    "MONITOR_ALERTS": True,
    "METRICS_TOKEN": None,
    "METRICS_ALLOW": "127.0.0.1, ::1",
    # flask db optimize: months of order partitions kept online, months created ahead, what happens to
    # older ones (keep, archive into a table of their own, or drop), and the longest wait for a lock.
    "DB_PARTITION_MONTHS": 13,
    "DB_PARTITION_AHEAD": 3,
    "DB_PARTITION_EXPIRED": "keep",
    "DB_OPTIMIZE_LOCK_WAIT": 10,
    # Business rules.
    # VAT per class (standard, reduced, zero) and country of delivery; SIPUP_VAT_RATE is every class's rate in
    # a country not listed. The deposit follows the product's class ("product") or is charged at one class.
    "VAT_RATES": "DE: standard=0.19, reduced=0.07, zero=0",
    "VAT_RATE": "0.20",
    "VAT_COUNTRY": "DE",
    "VAT_DEPOSIT": "product",
    "VAT_REVERSE_CHARGE": False,
    "VAT_REVERSE_CHARGE_NOTE": "Reverse charge: tax-free intra-Community supply (Art. 138 Directive 2006/112/EC); "
    "the recipient accounts for the VAT.",
    "CURRENCY": "EUR",
    "LANGUAGES": "en,de",  # the languages offered (sipup/i18n.py); each user picks one on /account
    "DEFAULT_LANGUAGE": "en",  # for whom neither an account, the switch nor the browser names one
    "CSV_DIALECT": None,  # excel or excel-eu; unset: excel-eu for EUR, else excel (sipup/csvfiles.py)
    "PAGE_SIZE": 24,
    "QUICK_ORDER_MAX_LINES": 500,
    "QUICK_ORDER_MAX_FILE_MB": 2,
    "IMPORT_MAX_MB": 20,  # largest products, prices or companies file at /admin/imports and `flask import`
    # Product images: the largest upload, the longest side accepted, and where originals and renditions
    # live while files are kept in the instance folder (empty: instance/images; unused with STORAGE_URL).
    "IMAGE_MAX_MB": 5,
    "IMAGE_MAX_SIDE": 6000,
    "IMAGE_FOLDER": "",
    "SESSION_COOKIE_SECURE": False,
    "SESSION_HOURS": 12,
    # Rate limits (sipup/limits/). RATELIMIT_IP and RATELIMIT_USER above are the site-wide budgets.
    "RATELIMIT_ENABLED": True,
    "RATELIMIT_STRATEGY": "sliding-window-counter",
    # {"[METHOD ]endpoint[ by address|account|user]": limit} merged over ENDPOINT_LIMITS; "" removes one.
    "RATELIMIT_ENDPOINTS": {},
    # A client refused this often is blocked: 1 block period, then 2, 4, ... up to the cap; each
    # decay period without a block takes one doubling off again.
    "RATELIMIT_BLOCK_AFTER": "10 per minute",
    "RATELIMIT_BLOCK_SECONDS": 60,
    "RATELIMIT_BLOCK_MAX_SECONDS": 3600,
    "RATELIMIT_BLOCK_DECAY_SECONDS": 3600,
    # Job queue (Huey on Redis when REDIS_URL is set, else on SQLite in instance/) and its jobs.
    "QUEUE_MAX_ATTEMPTS": 3,
    "QUEUE_RETRY_DELAY": 60,  # seconds x attempt number
    "QUEUE_LEASE_SECONDS": 900,  # a running job whose process died is retried after this long
    "QUEUE_BATCH": 10,  # jobs per `flask queue process` run
    "QUEUE_WORKERS": 2,  # threads of `flask queue worker`
    "WORKER_STOP_SECONDS": 30,  # a stopping worker lets running jobs finish this long, then queues them again
    "QUEUE_KEEP_DAYS": 30,  # finished jobs kept in the history
    # The shop's sender address (required with MAIL_URL: servers refuse @localhost senders), shown under
    # SITE_NAME unless it names itself ("Getränke Nord <orders@example.com>"); where replies go if elsewhere.
    "MAIL_FROM": "",
    "MAIL_REPLY_TO": "",
    # Accounts: the site's name in pages and mails, the address links in mails point to (behind a proxy
    # the request's own host must not decide where a reset link goes), how long an invitation lasts.
    "SITE_NAME": "sipup",
    # Who issues invoices, as the PDF's letterhead: name | address | VAT id | bank, parts split at "|".
    "INVOICE_ISSUER": "",
    "PUBLIC_URL": None,
    "INVITE_HOURS": 72,
    "MAIL_STAFF": "",  # comma-separated addresses for staff alerts; empty means every active staff user
    "BACKUP_KEEP": 7,
    # Cache (sipup/cache/): lifetimes per type in seconds (the seed's: products 30 min, users 10 min,
    # orders 5 min, dashboard 2 min), the cache server's socket timeout, how long a failed server is left
    # alone, and how long a process keeps its own results meanwhile (0: recompute, exact across processes).
    "CACHE_TTL_PRODUCTS": 1800,
    "CACHE_TTL_PRICES": 1800,
    "CACHE_TTL_USERS": 600,
    "CACHE_TTL_ORDERS": 300,
    "CACHE_TTL_DASHBOARD": 120,
    "CACHE_TIMEOUT_MS": 250,
    "CACHE_RETRY_SECONDS": 10,
    "CACHE_FALLBACK_TTL": 0,
}

# Sensitive endpoints: password guessing per address and per account, uploads, orders.
ENDPOINT_LIMITS = {
    "POST auth.login": "10 per minute; 50 per hour",
    "POST auth.login by account": "5 per minute; 20 per hour",
    "POST shop.quick_order_page": "20 per minute",
    "POST shop.checkout": "10 per minute",
    "POST auth.password_reset": "5 per minute; 20 per hour",
    "POST auth.password_reset by account": "3 per hour",
    "POST account.password by user": "10 per hour",
    "POST account.email by user": "10 per hour",
    "POST auth.register": "3 per minute; 10 per hour",
}


# SIPUP_* variables read outside app.config (they choose the instance folder or feed one command).
OTHER_VARIABLES = {"INSTANCE_PATH", "SEED_PASSWORD"}
