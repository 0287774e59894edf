"""One blueprint per audience: auth, account (everyone signed in), shop and lists (buyers), backoffice (staff), monitor
(admins), ops (probes)."""

from .account import bp as account
from .auth import bp as auth
from .backoffice import bp as admin
from .lists import bp as lists
from .monitor import bp as monitor
from .ops import bp as ops
from .shop import bp as shop


def register_blueprints(app):
    """Attach every blueprint to the app."""
    for blueprint in (auth, account, shop, lists, admin, monitor, ops):
        app.register_blueprint(blueprint)
