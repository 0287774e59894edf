"""SQLAlchemy engine options for the database URL and the replicas' URLs; a wrong URL or option is named."""

import difflib

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

# Query options of a database URL that the driver (or SQLAlchemy for it) understands: anything else is a typo
# that would only fail at the first connection, or be ignored.
from .errors import ENV_PREFIX, ConfigError, shown

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


def check_replicas(url, config):
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
            "pool_reset_on_return": None,  # sipup.database rolls back only a connection whose transaction may be open
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
