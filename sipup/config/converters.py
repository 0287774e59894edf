"""How each value must look: a converter per setting (CONVERTERS) that returns the value parsed or raises
ValueError with a reason; the Redis, Sentinel and storage URLs parsed for the code that connects."""

import ipaddress
import json
import re
import socket
from collections import namedtuple
from decimal import Decimal, InvalidOperation
from email.utils import parseaddr
from urllib.parse import parse_qs, unquote, urlsplit

from ..csvfiles import DIALECTS
from .rate_limits import parse_endpoint_limits, parse_limit, parse_strategy

REDIS_SCHEMES = ("redis", "rediss", "unix", "redis+sentinel")
SENTINEL_FORM = "redis+sentinel://[:password@]host1:26379,host2:26379,host3:26379/MASTER_NAME/0"
STORAGE_SCHEMES = {"s3": False, "s3+https": True}  # scheme: TLS
STORAGE_FORM = (
    "must be unset (the instance folder), database, or s3://KEY:SECRET@host:port/bucket (s3+https:// for TLS)"
)
BUCKET_NAME = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


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


def _url(value):
    if value in (None, ""):
        return None
    return str(value)


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
    "RATELIMIT_IP": parse_limit,
    "RATELIMIT_USER": parse_limit,
    "RATELIMIT_ENABLED": _bool,
    "RATELIMIT_STRATEGY": parse_strategy,
    "RATELIMIT_ENDPOINTS": parse_endpoint_limits,
    "RATELIMIT_BLOCK_AFTER": parse_limit,
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
