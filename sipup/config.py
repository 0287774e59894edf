"""Layered configuration: defaults here, then instance/sipup.cfg, then SIPUP_* environment variables."""

import difflib
import ipaddress
import json
import os
import re
import secrets
import socket
import sys
import tempfile
import traceback
from collections import namedtuple
from datetime import timedelta
from decimal import Decimal, InvalidOperation
from email.utils import parseaddr
from urllib.parse import parse_qs, unquote, urlsplit

from limits import parse_many
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from .csvfiles import DIALECTS, default_dialect
from .files import open_private, private_file, private_folder

ENV_PREFIX = "SIPUP"


class ConfigError(RuntimeError):
    """A configuration value is missing or wrong; the message names it and says why."""


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
REDIS_SCHEMES = ("redis", "rediss", "unix", "redis+sentinel")
SENTINEL_FORM = "redis+sentinel://[:password@]host1:26379,host2:26379,host3:26379/MASTER_NAME/0"
STORAGE_SCHEMES = {"s3": False, "s3+https": True}  # scheme: TLS
STORAGE_FORM = (
    "must be unset (the instance folder), database, or s3://KEY:SECRET@host:port/bucket (s3+https:// for TLS)"
)
BUCKET_NAME = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
MIN_SECRET_KEY = 32
# Query options of a database URL that the driver (or SQLAlchemy for it) understands: anything else is a typo
# that would only fail at the first connection, or be ignored.
SQLITE_OPTIONS = {
    "timeout",
    "isolation_level",
    "detect_types",
    "check_same_thread",
    "cached_statements",
    "uri",
    "mode",
    "cache",
    "nolock",
    "immutable",
    "vfs",
    "modeof",
}
MYSQL_OPTIONS = {
    "charset",
    "collation",
    "sql_mode",
    "read_default_file",
    "read_default_group",
    "use_unicode",
    "client_flag",
    "init_command",
    "connect_timeout",
    "read_timeout",
    "write_timeout",
    "autocommit",
    "local_infile",
    "max_allowed_packet",
    "bind_address",
    "binary_prefix",
    "program_name",
    "server_public_key",
    "unix_socket",
    "compress",
    "auth_plugin_map",
    "ssl_ca",
    "ssl_cert",
    "ssl_key",
    "ssl_capath",
    "ssl_cipher",
    "ssl_check_hostname",
    "ssl_disabled",
    "ssl_key_password",
    "ssl_verify_cert",
    "ssl_verify_identity",
}
# SIPUP_* variables read outside app.config (they choose the instance folder or feed one command).
OTHER_VARIABLES = {"INSTANCE_PATH", "SEED_PASSWORD"}
LIMIT_BY = ("address", "account", "user")  # whose budget an endpoint rule counts
HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
WINDOW_STRATEGIES = ("sliding-window-counter", "moving-window", "fixed-window")


# How each value must look: a converter that raises ValueError with a reason.
def _int(value, minimum, reason):
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise ValueError(reason) from None
    if number < minimum:
        raise ValueError(reason)
    return number


def _positive_int(value):
    return _int(value, 1, "must be a whole number above 0")


def _port(value):
    number = _int(value, 1, "must be a whole number from 1 to 65535")
    if number > 65535:
        raise ValueError("must be a whole number from 1 to 65535 (a TCP port)")
    return number


def _non_negative_int(value):
    return _int(value, 0, "must be a whole number, 0 or more")


def _processes(value):
    if value in (None, ""):
        return None
    return _int(value, 1, "must be a whole number above 0 (leave it unset: the number of cores with Redis, 1 without)")


def _rate(value):
    try:
        rate = Decimal(str(value))
    except InvalidOperation:
        raise ValueError("must be a decimal number such as 0.20") from None
    if not rate.is_finite() or not 0 <= rate < 1:  # NaN cannot even be compared
        raise ValueError("must be between 0 and 1, e.g. 0.20 for 20%")
    return rate


def _bool(value):
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in {"1", "true", "yes", "on"}:
        return True
    if text in {"0", "false", "no", "off"}:
        return False
    raise ValueError("must be true or false")


def _limit(value):
    check_limit(value)
    return str(value)


def _addresses(value):
    networks = []
    for part in str(value or "").replace(";", ",").split(","):
        if part.strip():
            try:
                networks.append(ipaddress.ip_network(part.strip(), strict=False))
            except ValueError:
                raise ValueError(
                    f"must list addresses or networks such as 127.0.0.1, 10.0.0.0/8 ({part.strip()!r} is neither)"
                ) from None
    return tuple(networks)


def _strategy(value):
    if value not in WINDOW_STRATEGIES:
        raise ValueError("must be one of " + ", ".join(WINDOW_STRATEGIES))
    return value


def _endpoint_limits(value):
    """The per-endpoint map over ENDPOINT_LIMITS: a dict (sipup.cfg) or a JSON object (environment)."""
    if isinstance(value, str):
        try:
            value = json.loads(value or "{}")
        except ValueError:
            raise ValueError('must be a JSON object such as {"POST auth.login": "10 per minute"}') from None
    if not isinstance(value, dict):
        raise ValueError('must be a mapping such as {"POST auth.login": "10 per minute"}')
    merged = {**ENDPOINT_LIMITS, **value}
    for rule, limit in merged.items():
        parse_endpoint_rule(rule, limit)  # raises ValueError naming the entry
    return {rule: limit for rule, limit in merged.items() if limit}


def _expired(value):
    text = str(value).strip().lower()
    if text not in ("keep", "archive", "drop"):
        raise ValueError("must be keep, archive or drop")
    return text


def _mail_url(value):
    if value in (None, ""):
        return None
    parts = urlsplit(str(value))
    if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
        raise ValueError("must read like smtp://user:password@host:587 or smtps://user:password@host:465")
    try:
        port = parts.port  # ValueError for a port that is no number or past 65535
    except ValueError:
        port = 0
    if port == 0:
        raise ValueError("must have a port number from 1 to 65535 after the host (smtp://host:587), or none")
    if parse_qs(parts.query).get("tls", ["starttls"])[0] not in ("starttls", "off"):
        raise ValueError("must leave ?tls= out (STARTTLS) or say ?tls=off (a trusted relay without TLS)")
    return str(value)


def _addresses_list(value):
    addresses = [a.strip() for a in str(value or "").split(",") if a.strip()]
    for address in addresses:
        if "@" not in address.rsplit("<", 1)[-1]:
            raise ValueError(f"must be mail addresses separated by commas ({address!r} is not one)")
    return ", ".join(addresses)


def _one_address(value):
    text = str(value or "").strip()
    if not text:
        return ""
    name, address = parseaddr(text)
    if "," in text or "@" not in address or " " in address:
        raise ValueError("must be one mail address (orders@example.com, or Getränke Nord <orders@example.com>)")
    return text


def _public_url(value):
    if value in (None, ""):
        return None
    parts = urlsplit(str(value))
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
        raise ValueError("must read like https://shop.example.com (the address buyers open)")
    return str(value).rstrip("/")


def _host_name(value):
    name = socket.gethostname()[:64] if value in (None, "") else str(value).strip()
    if not name or len(name) > 64 or any(c in name for c in " |:\t\n"):
        raise ValueError("must be a short name such as app-1 (no spaces, | or :), at most 64 characters")
    return name


VAT_CLASSES = ("standard", "reduced", "zero")
VAT_RATES_FORM = (
    'must read like "DE: standard=0.19, reduced=0.07, zero=0; AT: standard=0.20, reduced=0.10, zero=0" '
    'or {"DE": {"standard": "0.19", "reduced": "0.07", "zero": "0"}}'
)


def _vat_rates(value):
    """{country: {class: rate}} from a dict, JSON text or the compact "DE: standard=0.19, ...; AT: ..." form."""
    if isinstance(value, str) and value.strip().startswith("{"):
        try:
            value = json.loads(value)
        except ValueError:
            raise ValueError(VAT_RATES_FORM) from None
    if isinstance(value, str):
        table = {}
        for part in filter(str.strip, value.split(";")):
            country, colon, pairs = part.partition(":")
            if not colon:
                raise ValueError(VAT_RATES_FORM)
            entries = [pair.partition("=") for pair in pairs.split(",") if pair.strip()]
            if any(not sign for _name, sign, _rate in entries):
                raise ValueError(VAT_RATES_FORM)
            table[country.strip()] = {name.strip(): rate.strip() for name, _sign, rate in entries}
        value = table
    if not isinstance(value, dict) or not value or not all(isinstance(each, dict) for each in value.values()):
        raise ValueError(VAT_RATES_FORM)
    rates = {}
    for country, classes in value.items():
        if not re.fullmatch(r"[A-Z]{2}", str(country)):
            raise ValueError(f"must name countries by two capital letters such as DE, not {country!r}")
        if set(classes) != set(VAT_CLASSES):
            raise ValueError(f"must give exactly the rates standard, reduced and zero for {country}")
        try:
            rates[country] = {name: _rate(rate) for name, rate in classes.items()}
        except ValueError as exc:
            raise ValueError(f"{exc} ({country})") from None
    return rates


def _country(value):
    text = str(value).strip().upper()
    if not re.fullmatch(r"[A-Z]{2}", text):
        raise ValueError("must be a country as two letters, e.g. DE")
    return text


def _vat_deposit(value):
    text = str(value).strip().lower()
    if text not in ("product", *VAT_CLASSES):
        raise ValueError("must be product (the rate of what the deposit holds), standard, reduced or zero")
    return text


def _csv_dialect(value):
    if value in (None, ""):
        return None
    if value not in DIALECTS:
        raise ValueError("must be excel (, and .) or excel-eu (; and ,)")
    return value


def _url_list(value):
    """Comma-separated URLs (a list in sipup.cfg) as a list, empty entries left out."""
    if isinstance(value, (list, tuple)):
        return [str(item).strip() for item in value if str(item).strip()]
    return [item.strip() for item in str(value or "").split(",") if item.strip()]


def _redis_url(value):
    if value in (None, ""):
        return None
    scheme = urlsplit(str(value)).scheme
    if scheme not in REDIS_SCHEMES:
        raise ValueError(
            "must read like redis://host:6379/0 (rediss:// for TLS, unix:///path/redis.sock, "
            f"{SENTINEL_FORM} for Redis Sentinel)"
        )
    if scheme == "redis+sentinel":
        parse_sentinel_url(str(value))  # raises ValueError saying what is wrong
    return str(value)


# Where a redis+sentinel:// URL points: the sentinels as (host, port), the master's name, the database number.
SentinelAddress = namedtuple("SentinelAddress", "sentinels master db username password")


def parse_sentinel_url(url):
    """The parts of redis+sentinel://[:password@]host:26379,host2:26379/MASTER_NAME/DB; ValueError says what is
    wrong (never repeating the password). The password is the primary's and replicas' (requirepass)."""
    rest = url.split("://", 1)[1]
    where, _, path = rest.partition("/")
    credentials, _, hosts = where.rpartition("@")
    username, _, password = credentials.partition(":")
    sentinels = []
    for item in hosts.split(","):
        host, _, port = item.strip().rpartition(":")
        if not item.strip():
            continue
        if not host:
            host, port = item.strip(), "26379"
        if not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"must give each sentinel a port from 1 to 65535, not {item.strip()!r}: {SENTINEL_FORM}")
        sentinels.append((host.strip("[]"), int(port)))
    if not sentinels:
        raise ValueError(f"must name at least one sentinel before the master's name: {SENTINEL_FORM}")
    master, _, db = path.split("?", 1)[0].strip("/").partition("/")
    if not master:
        raise ValueError(f"must name the master the sentinels watch after the hosts: {SENTINEL_FORM}")
    if not (db or "0").isdigit():
        raise ValueError(f"must end with the database number after the master's name, not {db!r}: {SENTINEL_FORM}")
    return SentinelAddress(
        sentinels, unquote(master), int(db or 0), unquote(username) or None, unquote(password) or None
    )


def _storage_url(value):
    if value in (None, ""):
        return None
    if str(value).strip() == "database":
        return "database"
    parse_storage_url(str(value))  # raises ValueError saying what is wrong
    return str(value)


# Where an s3:// storage URL points; `endpoint` is host:port, `prefix` the start of every key in the bucket.
ObjectStore = namedtuple("ObjectStore", "endpoint access_key secret_key bucket prefix secure region")


def parse_storage_url(url):
    """The parts of s3://KEY:SECRET@host:port/bucket[/prefix][?region=...]; ValueError says what is wrong (never
    repeating the secret)."""
    parts = urlsplit(url)
    if parts.scheme not in STORAGE_SCHEMES:
        raise ValueError(STORAGE_FORM)
    try:
        port = parts.port
    except ValueError:
        port = 0
    if port == 0:
        raise ValueError("must have a port from 1 to 65535, as in s3://KEY:SECRET@host:9000/bucket")
    if not parts.hostname:
        raise ValueError("must name a host, as in s3://KEY:SECRET@host:port/bucket")
    if not parts.username or not parts.password:
        raise ValueError(
            "must carry the access key and the secret key before the host: s3://KEY:SECRET@host:port/bucket"
        )
    bucket, _, prefix = parts.path.strip("/").partition("/")
    if not bucket:
        raise ValueError("must name a bucket after the host, as in s3://KEY:SECRET@host:port/bucket")
    if not BUCKET_NAME.match(bucket):
        raise ValueError(f"must name a bucket of 3-63 lower-case letters, digits, dots and dashes, not {bucket!r}")
    options = parse_qs(parts.query)
    if set(options) - {"region"}:
        raise ValueError(f"must leave out the option {sorted(set(options) - {'region'})[0]!r}; only ?region= is known")
    secure = STORAGE_SCHEMES[parts.scheme]
    endpoint = f"{parts.hostname}:{port or (443 if secure else 80)}"
    if ":" in parts.hostname:  # an IPv6 address
        endpoint = f"[{parts.hostname}]:{port or (443 if secure else 80)}"
    region = options.get("region", ["us-east-1"])[0]
    return ObjectStore(
        endpoint, unquote(parts.username), unquote(parts.password), bucket, prefix.strip("/"), secure, region
    )


def shown(value):
    """A setting's value as an error message may repeat it: the password of a URL replaced by ***."""
    text = str(value)
    if "://" in text and "@" in text:
        return re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", text)
    return text


def _url(value):
    if value in (None, ""):
        return None
    return str(value)


def parse_endpoint_rule(rule, limit):
    """("POST auth.login by account", "5 per minute") -> (["POST"], "auth.login", "account"); ValueError says why."""
    words = str(rule).split()
    methods = None
    if words and words[0].isupper():
        methods = words.pop(0).split(",")
    by = "address"
    if len(words) == 3 and words[1] == "by":
        by = words.pop()
        words.pop()
    if len(words) != 1 or by not in LIMIT_BY or not set(methods or ()) <= HTTP_METHODS:
        raise ValueError(f'must have entries like "POST auth.login by account", not {rule!r}')
    if limit:
        try:
            check_limit(limit)
        except ValueError as exc:
            raise ValueError(f"{exc}, not {limit!r} for {rule!r}") from None
    return methods, words[0], by


def check_limit(text):
    """The parsed limits of a setting such as "100 per minute; 1000 per hour"; ValueError says what is wrong,
    including a limit of 0, which would refuse every request."""
    try:
        items = parse_many(str(text))
    except ValueError:
        raise ValueError('must read like "100 per minute" or "1000/hour"') from None
    for item in items:
        if item.amount < 1:
            raise ValueError(
                f'must allow at least 1 request ({str(text)!r} would refuse every one), e.g. "100 per minute"'
            )
    return items


CONVERTERS = {
    "PROXY_HOPS": _non_negative_int,
    "PORT": _port,
    "THREADS": _positive_int,
    "PROCESSES": _processes,
    "CONNECTION_LIMIT": _positive_int,
    "CHANNEL_TIMEOUT": _positive_int,
    "MAX_REQUEST_MB": _positive_int,
    "DRAIN_SECONDS": _non_negative_int,
    "HOST_NAME": _host_name,
    "SLOW_QUERY_MS": _non_negative_int,
    "QUERY_WARN_PER_REQUEST": _positive_int,
    "DB_STATS": _bool,
    "REQUEST_STATS": _bool,
    "DB_POOL_SIZE": _positive_int,
    "DB_MAX_OVERFLOW": _non_negative_int,
    "DB_POOL_TIMEOUT": _positive_int,
    "DB_POOL_RECYCLE": _positive_int,
    "VAT_RATES": _vat_rates,
    "DB_CONNECT_TIMEOUT": _positive_int,
    "DB_READ_TIMEOUT": _positive_int,
    "DB_WRITE_TIMEOUT": _positive_int,
    "DB_STATEMENT_TIMEOUT": _non_negative_int,
    "DB_JOB_TIMEOUT": _non_negative_int,
    "VAT_RATE": _rate,
    "VAT_COUNTRY": _country,
    "VAT_DEPOSIT": _vat_deposit,
    "VAT_REVERSE_CHARGE": _bool,
    "VAT_REVERSE_CHARGE_NOTE": str,
    "CSV_DIALECT": _csv_dialect,
    "PAGE_SIZE": _positive_int,
    "QUICK_ORDER_MAX_LINES": _positive_int,
    "QUICK_ORDER_MAX_FILE_MB": _positive_int,
    "IMPORT_MAX_MB": _positive_int,
    "IMAGE_MAX_MB": _positive_int,
    "IMAGE_MAX_SIDE": _positive_int,
    "IMAGE_FOLDER": str,
    "SESSION_COOKIE_SECURE": _bool,
    "SESSION_HOURS": _positive_int,
    "RATELIMIT_IP": _limit,
    "RATELIMIT_USER": _limit,
    "RATELIMIT_ENABLED": _bool,
    "RATELIMIT_STRATEGY": _strategy,
    "RATELIMIT_ENDPOINTS": _endpoint_limits,
    "RATELIMIT_BLOCK_AFTER": _limit,
    "RATELIMIT_BLOCK_SECONDS": _positive_int,
    "RATELIMIT_BLOCK_MAX_SECONDS": _positive_int,
    "RATELIMIT_BLOCK_DECAY_SECONDS": _positive_int,
    "DB_PARTITION_MONTHS": _positive_int,
    "DB_PARTITION_AHEAD": _positive_int,
    "DB_PARTITION_EXPIRED": _expired,
    "DB_OPTIMIZE_LOCK_WAIT": _positive_int,
    "DATABASE_URL": _url,
    "DATABASE_REPLICA_URLS": _url_list,
    "REPLICA_MAX_LAG": _non_negative_int,
    "REDIS_URL": _redis_url,
    "CACHE_URL": _url,
    "STORAGE_URL": _storage_url,
    "MAIL_URL": _mail_url,
    "MAIL_FROM": _one_address,
    "MAIL_REPLY_TO": _one_address,
    "MAIL_STAFF": _addresses_list,
    "SITE_NAME": str,
    "INVOICE_ISSUER": str,
    "PUBLIC_URL": _public_url,
    "INVITE_HOURS": _positive_int,
    "MONITOR_REFRESH_SECONDS": _positive_int,
    "MONITOR_PANEL_SECONDS": _non_negative_int,
    "MONITOR_ALERTS": _bool,
    "METRICS_TOKEN": _url,
    "METRICS_ALLOW": _addresses,
    "QUEUE_MAX_ATTEMPTS": _positive_int,
    "QUEUE_RETRY_DELAY": _non_negative_int,
    "QUEUE_LEASE_SECONDS": _positive_int,
    "QUEUE_BATCH": _positive_int,
    "QUEUE_WORKERS": _positive_int,
    "WORKER_STOP_SECONDS": _non_negative_int,
    "QUEUE_KEEP_DAYS": _positive_int,
    "BACKUP_KEEP": _positive_int,
    "CACHE_TTL_PRODUCTS": _positive_int,
    "CACHE_TTL_PRICES": _positive_int,
    "CACHE_TTL_USERS": _positive_int,
    "CACHE_TTL_ORDERS": _positive_int,
    "CACHE_TTL_DASHBOARD": _positive_int,
    "CACHE_TIMEOUT_MS": _positive_int,
    "CACHE_RETRY_SECONDS": _positive_int,
    "CACHE_FALLBACK_TTL": _non_negative_int,
}


def load_config(app, overrides=None):
    """Fill app.config from the three layers plus test overrides, then check and derive values."""
    app.config.update(DEFAULTS)
    _read_file(app)
    for key, value in os.environ.items():
        if key.startswith(ENV_PREFIX + "_") and not key.startswith(ENV_PREFIX + "_TEST_"):
            name = key[len(ENV_PREFIX) + 1 :]
            if name in DEFAULTS:
                app.config[name] = value
            elif name not in OTHER_VARIABLES:
                _warn_unknown(key)
    app.config.update(overrides or {})
    _check(app.config)
    _derive(app)


def _read_file(app):
    """instance/sipup.cfg, if there is one; a mistake in it is one line with the file and line number."""
    path = os.path.join(app.config.root_path, "sipup.cfg")
    try:
        app.config.from_pyfile("sipup.cfg", silent=True)
    except SyntaxError as exc:
        raise ConfigError(
            f"{path}, line {exc.lineno}: {exc.msg}; write NAME = value lines, text in quotes (PORT = 8080, "
            "SITE_NAME = 'Getränke Nord')."
        ) from None
    except Exception as exc:  # it ran and failed, e.g. NameError for text without quotes
        lines = [frame.lineno for frame in traceback.extract_tb(exc.__traceback__) if frame.filename == path]
        raise ConfigError(
            f"{path}, line {lines[-1] if lines else '?'}: {type(exc).__name__}: {exc}; write NAME = value lines, "
            "text in quotes (SITE_NAME = 'Getränke Nord')."
        ) from None


_WARNED = set()


def _warn_unknown(key):
    """Once per process, one line on standard error (logging is not set up yet): a SIPUP_* variable sipup does
    not read, with the closest name it does."""
    if key in _WARNED:
        return
    _WARNED.add(key)
    known = [f"{ENV_PREFIX}_{name}" for name in (*DEFAULTS, *OTHER_VARIABLES)]
    closest = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    hint = f"; did you mean {closest[0]}?" if closest else "; it is ignored (docs/settings.md lists the settings)."
    print(f"sipup: warning: {key} is not a sipup setting{hint}", file=sys.stderr)


def _check(config):
    for key, convert in CONVERTERS.items():
        try:
            config[key] = convert(config[key])
        except (TypeError, ValueError) as exc:
            reason = str(exc) if "must" in str(exc) else "has the wrong form"
            raise ConfigError(f"{ENV_PREFIX}_{key}={shown(config[key])!r} {reason}.") from None
    if config["MAIL_URL"] and not config["MAIL_FROM"]:
        raise ConfigError(
            f"{ENV_PREFIX}_MAIL_URL is set but {ENV_PREFIX}_MAIL_FROM is not: set the shop's sender address, "
            f"e.g. {ENV_PREFIX}_MAIL_FROM=orders@example.com (mail servers refuse or spam-file @localhost senders)."
        )
    if config["VAT_COUNTRY"] not in config["VAT_RATES"]:
        raise ConfigError(
            f"{ENV_PREFIX}_VAT_COUNTRY={config['VAT_COUNTRY']!r} has no rates in {ENV_PREFIX}_VAT_RATES; "
            f'add them, e.g. "{config["VAT_COUNTRY"]}: standard=0.20, reduced=0.10, zero=0".'
        )


def _derive(app):
    config = app.config
    _writable_instance(app.instance_path)
    url = config["DATABASE_URL"] or "sqlite:///" + os.path.join(app.instance_path, "sipup.db")
    config["DATABASE_URL"] = url
    config["SQLALCHEMY_DATABASE_URI"] = url
    config["SQLALCHEMY_ENGINE_OPTIONS"] = engine_options(url, config)
    _check_replicas(url, config)
    _private_sqlite_file(url)
    config["SECRET_KEY"] = config["SECRET_KEY"] or _embedded_secret_key(app, url)
    if len(str(config["SECRET_KEY"])) < MIN_SECRET_KEY and not url.startswith("sqlite"):
        raise ConfigError(
            f"{ENV_PREFIX}_SECRET_KEY has {len(str(config['SECRET_KEY']))} characters; outside the embedded default "
            f'it needs at least {MIN_SECRET_KEY}, e.g. python -c "import secrets; print(secrets.token_hex(32))".'
        )
    config["CSV_DIALECT"] = config["CSV_DIALECT"] or default_dialect(config["CURRENCY"])
    config["MAX_CONTENT_LENGTH"] = config["MAX_REQUEST_MB"] * 1024 * 1024
    # Pasted quick orders are form fields, not files: allow a generous paste.
    config["MAX_FORM_MEMORY_SIZE"] = 4 * 1024 * 1024
    config["SESSION_COOKIE_HTTPONLY"] = True
    config["SESSION_COOKIE_SAMESITE"] = "Lax"
    config["REMEMBER_COOKIE_HTTPONLY"] = True
    config["REMEMBER_COOKIE_SECURE"] = config["SESSION_COOKIE_SECURE"]

    config["PERMANENT_SESSION_LIFETIME"] = timedelta(hours=config["SESSION_HOURS"])
    # The cookie lasts SESSION_HOURS from sign-in, as the session on the server does (user_sessions): sent
    # again only when the session changes, not re-signed on every answer.
    config["SESSION_REFRESH_EACH_REQUEST"] = False
    # Static files carry a content hash in their URL, so browsers may keep them for a year.
    config["SEND_FILE_MAX_AGE_DEFAULT"] = 365 * 24 * 3600
    config["WTF_CSRF_TIME_LIMIT"] = None


def _check_replicas(url, config):
    """Replica URLs must be MySQL/MariaDB URLs (PyMySQL) like the primary's, and none the primary itself."""
    replicas = config["DATABASE_REPLICA_URLS"]
    if not replicas:
        return
    setting = f"{ENV_PREFIX}_DATABASE_REPLICA_URLS"
    if make_url(url).get_backend_name() not in ("mysql", "mariadb"):
        raise ConfigError(
            f"{setting} needs a MySQL/MariaDB primary; {ENV_PREFIX}_DATABASE_URL is {make_url(url).get_backend_name()}."
        )
    for replica in replicas:
        if not replica.startswith(("mysql", "mariadb")):
            raise ConfigError(
                f"{setting}: {shown(replica)!r} is not a MySQL/MariaDB URL; write mysql+pymysql://user:pass@host/db."
            )
        engine_options(replica, config, setting="DATABASE_REPLICA_URLS")
        if make_url(replica) == make_url(url):
            raise ConfigError(f"{setting}: {shown(replica)!r} is {ENV_PREFIX}_DATABASE_URL itself, not a replica.")


def engine_options(url, config, setting="DATABASE_URL"):
    """SQLAlchemy engine options for the configured database (or a replica's); names a wrong URL clearly."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ConfigError(
            f"{ENV_PREFIX}_{setting}={shown(url)!r} is not a database URL; "
            "use e.g. mysql+pymysql://user:password@host/sipup or sqlite:///path/sipup.db."
        ) from None

    backend = parsed.get_backend_name()
    known = SQLITE_OPTIONS if backend == "sqlite" else MYSQL_OPTIONS if backend in ("mysql", "mariadb") else None
    unknown = sorted(set(parsed.query) - known) if known is not None else []
    if unknown:
        closest = difflib.get_close_matches(unknown[0], sorted(known), n=1)
        hint = f"did you mean {closest[0]}?" if closest else f"known ones are e.g. {', '.join(sorted(known)[:6])}."
        raise ConfigError(f"{ENV_PREFIX}_{setting} has the unknown option {unknown[0]!r}; {hint}")
    if backend == "sqlite":
        return {"connect_args": {"timeout": 30, "check_same_thread": False}}
    if backend in ("mysql", "mariadb"):
        if parsed.get_driver_name() not in ("pymysql",):
            raise ConfigError(
                f"{ENV_PREFIX}_{setting} uses the driver {parsed.get_driver_name()!r}; "
                "sipup ships PyMySQL, so write mysql+pymysql://..."
            )
        return {
            "pool_size": config["DB_POOL_SIZE"],
            "max_overflow": config["DB_MAX_OVERFLOW"],
            "pool_timeout": config["DB_POOL_TIMEOUT"],
            "pool_recycle": config["DB_POOL_RECYCLE"],
            "pool_pre_ping": True,  # sipup.database makes the pool a MeasuredQueuePool, which counts waits
            # Each statement sees what others committed: credit and stock checks read fresh figures.
            "isolation_level": "READ COMMITTED",
            # Reads wait DB_CONNECT_TIMEOUT while connecting (the server's greeting); sipup.database sets the read
            # timeout of each checkout by who uses it: a web request or the worker and commands.
            "connect_args": {
                "charset": "utf8mb4",
                "connect_timeout": config["DB_CONNECT_TIMEOUT"],
                "read_timeout": config["DB_CONNECT_TIMEOUT"],
                "write_timeout": config["DB_WRITE_TIMEOUT"],
            },
        }
    raise ConfigError(
        f"{ENV_PREFIX}_{setting} uses {backend!r}; sipup runs on sqlite or mysql+pymysql (MySQL/MariaDB)."
    )


def _writable_instance(path):
    """Create the instance folder (mode 0700) and make sure files can be written there."""
    try:
        private_folder(path)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as exc:
        raise ConfigError(
            f"The instance folder {path} cannot be written ({exc.strerror or exc}); give the service account "
            f"write access to it, or point {ENV_PREFIX}_INSTANCE_PATH at a folder it may write."
        ) from None


def _private_sqlite_file(url):
    """A SQLite database file not there yet is created mode 0600 (SQLite would make it 0644)."""
    database = make_url(url).database
    if (
        make_url(url).get_backend_name() == "sqlite"
        and database
        and database != ":memory:"
        and not database.startswith("file:")
        and os.path.isdir(os.path.dirname(os.path.abspath(database)))
    ):
        private_file(database)


def _embedded_secret_key(app, url):
    """On the embedded default, keep a generated key in instance/; elsewhere demand one."""
    if not url.startswith("sqlite"):
        raise ConfigError(
            f"{ENV_PREFIX}_SECRET_KEY is not set. Production needs a long random value shared by all hosts, "
            'e.g. python -c "import secrets; print(secrets.token_hex(32))".'
        )
    path = os.path.join(app.instance_path, "secret_key")
    if not os.path.exists(path):
        with open_private(path, "w", encoding="ascii") as handle:
            handle.write(secrets.token_hex(32))
    with open(path, encoding="ascii") as handle:
        return handle.read().strip()
