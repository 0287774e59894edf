"""One blueprint per audience: auth, account (everyone signed in), shop and lists (buyers), admin (staff), monitor
(admins), ops (probes)."""


def register_blueprints(app):
    """Attach every blueprint to the app."""
    from .account import bp as account
    from .admin import bp as admin
    from .auth import bp as auth
    from .monitor import bp as monitor
    from .lists import bp as lists
    from .ops import bp as ops
    from .shop import bp as shop

    for blueprint in (auth, account, shop, lists, admin, monitor, ops):
        app.register_blueprint(blueprint)
