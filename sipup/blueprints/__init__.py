"""One blueprint per audience: auth, shop (buyers), admin (staff), ops (probes)."""


def register_blueprints(app):
    """Attach every blueprint to the app."""
    from .admin import bp as admin
    from .auth import bp as auth
    from .ops import bp as ops
    from .shop import bp as shop

    for blueprint in (auth, shop, admin, ops):
        app.register_blueprint(blueprint)
