"""The command line: seed, user create and db upgrade, through Click's runner."""

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import func, inspect, select

from sipup import create_app
from sipup.extensions import db
from sipup.models import Company, Order, OrderLine, OrderStatus, Product, Role, User, in_models

PASSWORD = "a long enough password"


# --- flask seed -----------------------------------------------------------------------------------


def count(model):
    return db.session.scalar(select(func.count()).select_from(model))


def test_seed_creates_the_rows_asked_for(runner):
    result = runner.invoke(
        args=["seed", "--companies", "3", "--products", "40", "--orders", "200", "--months", "3"],
        env={"SIPUP_SEED_PASSWORD": PASSWORD},
    )
    assert result.exit_code == 0, result.output
    assert "Done." in result.output
    assert count(Company) == 3
    assert count(Product) == 40
    assert count(Order) == 200
    assert db.session.scalar(select(func.count(User.id)).where(User.role.in_([Role.OWNER, Role.BUYER]))) == 6
    assert db.session.scalar(select(func.min(Order.created_at))) is not None


def test_seeded_reservations_match_open_orders(runner):
    runner.invoke(
        args=["seed", "--companies", "3", "--products", "40", "--orders", "200", "--months", "3"],
        env={"SIPUP_SEED_PASSWORD": PASSWORD},
    )
    open_statuses = [OrderStatus.PLACED, OrderStatus.CREDIT_HOLD, OrderStatus.CONFIRMED]
    held = dict(
        db.session.execute(
            select(OrderLine.product_id, func.sum(OrderLine.quantity))
            .join(Order, Order.id == OrderLine.order_id)
            .where(Order.status.in_(open_statuses))
            .group_by(OrderLine.product_id)
        ).all()
    )
    assert held, "200 orders over 3 months should leave some open"
    for product in db.session.scalars(select(Product)):
        assert product.stock_reserved == held.get(product.id, 0), product.sku
        assert product.stock_on_hand >= product.stock_reserved


def test_seeded_customers_sign_in_with_the_chosen_password(runner, client):
    runner.invoke(
        args=["seed", "--companies", "1", "--products", "5", "--orders", "0"], env={"SIPUP_SEED_PASSWORD": PASSWORD}
    )
    buyer = db.session.scalar(select(User).where(User.role == Role.BUYER))
    response = client.post("/login", data={"email": buyer.email, "password": PASSWORD})
    assert response.status_code == 302


@pytest.mark.parametrize("args", [["--companies", "0", "--products", "3"], ["--companies", "2", "--products", "0"]])
def test_seed_explains_orders_need_companies_and_products(runner, args):
    result = runner.invoke(args=["seed", *args, "--orders", "5"], env={"SIPUP_SEED_PASSWORD": PASSWORD})
    assert result.exit_code == 1
    assert isinstance(result.exception, SystemExit)
    assert "Seed companies and products before orders." in result.output
    assert count(Order) == 0


def test_seed_needs_the_schema(tmp_path):
    app = create_app(
        {"TESTING": True, "DATABASE_URL": f"sqlite:///{tmp_path / 'empty.db'}", "SECRET_KEY": "x"},
        instance_path=str(tmp_path),
    )
    with app.app_context():
        result = app.test_cli_runner().invoke(args=["seed"])
        db.engine.dispose()
    assert result.exit_code == 1
    assert "Run `flask db upgrade` first." in result.output


def test_seed_rejects_nonsense_counts(runner):
    result = runner.invoke(args=["seed", "--orders", "-5"])
    assert result.exit_code == 2
    assert "--orders" in result.output


# --- flask user create ----------------------------------------------------------------------------


@pytest.fixture
def company(make_company):
    return make_company(name="Bar Linde")


@pytest.mark.parametrize(
    "role, company_args",
    [
        ("admin", []),
        ("staff", []),
        ("owner", ["--company", "Bar Linde"]),
        ("buyer", ["--company", "bar linde"]),
    ],
)
def test_user_create_makes_each_role(runner, company, client, role, company_args):
    email = f"New.{role}@Example.com"
    result = runner.invoke(
        args=["user", "create", email, "--role", role, *company_args, "--password-stdin"], input=PASSWORD + "\n"
    )
    assert result.exit_code == 0, result.output
    user = db.session.scalar(select(User).where(User.email == email.lower()))
    assert user.role == role
    assert (user.company_id == company.id) if company_args else user.company_id is None
    assert f"Created {role} {email}" in result.output  # stored as entered, found in any case
    assert client.post("/login", data={"email": email, "password": PASSWORD}).status_code == 302


@pytest.mark.parametrize(
    "args, message",
    [
        (["x@example.com", "--role", "boss"], "Invalid value for '--role'"),
        (["x@example.com", "--role", "buyer", "--company", "Nowhere GmbH"], "There is no company “Nowhere GmbH”"),
        (["x@example.com", "--role", "buyer"], "give --company"),
        (["x@example.com", "--role", "staff", "--company", "Bar Linde"], "leave out --company"),
        (["taken@example.com", "--role", "admin"], "There is already a user taken@example.com"),
        (["TAKEN@example.com", "--role", "admin"], "There is already a user taken@example.com"),
        (["not-an-email", "--role", "admin"], "is not an e-mail address"),
    ],
)
def test_user_create_explains_what_is_wrong(runner, company, make_user, args, message):
    make_user("admin", email="taken@example.com")
    before = count(User)
    result = runner.invoke(args=["user", "create", *args, "--password-stdin"], input=PASSWORD + "\n")
    assert result.exit_code != 0
    assert message in result.output
    assert "Traceback" not in result.output
    assert count(User) == before


@pytest.mark.parametrize("password", ["short", "", "nine char"])
def test_user_create_refuses_a_short_password(runner, password):
    result = runner.invoke(
        args=["user", "create", "x@example.com", "--role", "admin", "--password-stdin"], input=password + "\n"
    )
    assert result.exit_code == 1
    assert "at least 12 characters" in result.output
    assert count(User) == 0


def test_user_create_refuses_a_common_password(runner):
    result = runner.invoke(
        args=["user", "create", "x@example.com", "--role", "admin", "--password-stdin"], input="password1234\n"
    )
    assert result.exit_code == 1
    assert "This is a very common password." in result.output
    assert count(User) == 0


def test_user_create_asks_for_the_password_twice(runner):
    result = runner.invoke(
        args=["user", "create", "x@example.com", "--role", "admin"], input=f"{PASSWORD}\n{PASSWORD}\n"
    )
    assert result.exit_code == 0, result.output
    assert db.session.scalar(select(User)).check_password(PASSWORD)


# --- flask db upgrade -----------------------------------------------------------------------------


def test_db_upgrade_builds_the_schema_on_a_fresh_sqlite_file(tmp_path):
    path = tmp_path / "fresh.db"
    app = create_app(
        {"TESTING": True, "DATABASE_URL": f"sqlite:///{path}", "SECRET_KEY": "x"}, instance_path=str(tmp_path)
    )
    with app.app_context():
        result = app.test_cli_runner().invoke(args=["db", "upgrade"])
        assert result.exit_code == 0, result.output
        tables = set(inspect(db.engine).get_table_names())
        assert set(db.metadata.tables) <= tables
        assert "alembic_version" in tables
        assert differences_from_models() == []
        db.engine.dispose()


def differences_from_models():
    """What alembic autogenerate would change to make the database match the models."""
    with db.engine.connect() as connection:
        context = MigrationContext.configure(
            connection, opts={"compare_type": True, "render_as_batch": True, "include_name": in_models}
        )
        return compare_metadata(context, db.metadata)


def test_models_match_the_migrations(app):
    assert differences_from_models() == []
