"""sipup: a B2B ordering platform for wholesalers. create_app() is the table of contents."""

import os

from sipup.cache import register_cache
from sipup.jobs import register_queue
from sipup.limits import register_limits
from sipup.metrics import register_counters, register_logging, register_traffic
from sipup.storage import register_storage

from . import tasks  # noqa: F401  (declares the jobs, so every process that builds the app knows them)
from .blueprints import register_blueprints
from .cli import register_cli
from .config import load_config
from .database import register_database
from .errors import register_error_handlers
from .i18n import register_i18n
from .security import register_security
from .web import Sipup, register_web


def create_app(overrides=None, instance_path=None):
    """Build the app: configuration, logging, extensions, blueprints, errors, CLI."""
    instance_path = instance_path or os.environ.get("SIPUP_INSTANCE_PATH") or None
    app = Sipup(__name__, instance_relative_config=True, instance_path=instance_path)
    load_config(app, overrides)

    for register in (
        register_logging,
        register_counters,
        register_traffic,
        register_database,
        register_storage,
        register_queue,
        register_cache,
        register_security,
        register_i18n,
        register_web,
        register_blueprints,
        register_limits,
        register_error_handlers,
        register_cli,
    ):
        register(app)
    return app
