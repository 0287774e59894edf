"""Layered configuration: defaults, then instance/sipup.cfg, then SIPUP_* environment variables.

- defaults.py: the default of every setting (DEFAULTS) and the endpoint-limit rules (ENDPOINT_LIMITS)
- converters.py: how each value must look (CONVERTERS); the Redis, Sentinel and storage URLs parsed
- rate_limits.py: limits, window strategies and the endpoint rules ("POST auth.login by account")
- engines.py: SQLAlchemy engine options for the database and replica URLs
- instance.py: the instance folder, a new SQLite file's mode, the embedded default's secret key
- loading.py: load_config(app), which reads the layers, converts and checks them, and derives the rest
- errors.py: ConfigError, ENV_PREFIX, shown() (a URL's password hidden in a message)
"""

from .converters import VAT_CLASSES, parse_sentinel_url, parse_storage_url
from .defaults import DEFAULTS, ENDPOINT_LIMITS, OTHER_VARIABLES
from .engines import engine_options
from .errors import ENV_PREFIX, ConfigError, shown
from .loading import load_config
from .rate_limits import HTTP_METHODS, check_limit, parse_endpoint_rule

__all__ = [
    "DEFAULTS",
    "ENDPOINT_LIMITS",
    "ENV_PREFIX",
    "HTTP_METHODS",
    "OTHER_VARIABLES",
    "VAT_CLASSES",
    "ConfigError",
    "check_limit",
    "engine_options",
    "load_config",
    "parse_endpoint_rule",
    "parse_sentinel_url",
    "parse_storage_url",
    "shown",
]
