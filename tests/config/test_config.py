"""Configuration: defaults, then instance/sipup.cfg, then SIPUP_* variables; wrong values are named."""

import os
import stat
from decimal import Decimal

import pytest

from sipup import create_app
from sipup.config import ConfigError
from sipup.extensions import db

MYSQL_URL = "mysql+pymysql://sipup:secret@db.example:3306/sipup"


@pytest.fixture
def environment(monkeypatch):
    """A clean SIPUP_* environment; returns monkeypatch to set variables."""
    for key in list(os.environ):
        if key.startswith("SIPUP_") and not key.startswith("SIPUP_TEST_"):
            monkeypatch.delenv(key)
    return monkeypatch


@pytest.fixture
def build(environment, tmp_path):
    """create_app on a fresh instance folder with no test overrides."""

    def build(overrides=None):
        return create_app(overrides, instance_path=str(tmp_path))

    return build


def test_defaults_apply_without_any_configuration(build, tmp_path):
    config = build().config
    assert config["RATELIMIT_IP"] == "100 per minute"
    assert config["RATELIMIT_USER"] == "1000 per hour"
    assert config["DB_POOL_SIZE"] == 50 and config["DB_MAX_OVERFLOW"] == 50
    assert config["VAT_RATE"] == Decimal("0.20")
    assert config["DATABASE_URL"] == f"sqlite:///{tmp_path / 'sipup.db'}"
    assert config["MAX_CONTENT_LENGTH"] == 32 * 1024 * 1024


def test_instance_file_overrides_defaults_and_environment_overrides_both(build, environment, tmp_path):
    (tmp_path / "sipup.cfg").write_text('PAGE_SIZE = 12\nCURRENCY = "GBP"\nTHREADS = 4\n', encoding="utf-8")
    environment.setenv("SIPUP_PAGE_SIZE", "30")
    config = build().config
    assert config["PAGE_SIZE"] == 30  # environment
    assert config["CURRENCY"] == "GBP"  # instance file
    assert config["THREADS"] == 4  # instance file
    assert config["PORT"] == 8080  # default


def test_environment_values_are_converted(build, environment):
    environment.setenv("SIPUP_VAT_RATE", "0.07")
    environment.setenv("SIPUP_SESSION_COOKIE_SECURE", "yes")
    environment.setenv("SIPUP_DB_POOL_SIZE", "12")
    config = build().config
    assert config["VAT_RATE"] == Decimal("0.07")
    assert config["SESSION_COOKIE_SECURE"] is True
    assert config["DB_POOL_SIZE"] == 12


def test_test_variables_are_not_configuration(build, environment):
    environment.setenv("SIPUP_TEST_DATABASE_URL", MYSQL_URL)
    assert build().config["DATABASE_URL"].startswith("sqlite:///")


@pytest.mark.parametrize(
    "variable, value, reason",
    [
        ("SIPUP_DB_POOL_SIZE", "abc", "whole number"),
        ("SIPUP_DB_POOL_SIZE", "0", "above 0"),
        ("SIPUP_DB_MAX_OVERFLOW", "-1", "0 or more"),
        ("SIPUP_PORT", "eighty", "whole number"),
        ("SIPUP_PORT", "70000", "from 1 to 65535"),
        ("SIPUP_RATELIMIT_IP", "lots", "100 per minute"),
        ("SIPUP_RATELIMIT_USER", "1000 per fortnight", "1000/hour"),
        ("SIPUP_VAT_RATE", "2", "between 0 and 1"),
        ("SIPUP_VAT_RATE", "twenty", "decimal number"),
        ("SIPUP_VAT_RATE", "NaN", "between 0 and 1"),
        ("SIPUP_VAT_RATES", "DE 19 7 0", "must read like"),
        ("SIPUP_VAT_RATES", '{"DE": 0.19}', "must read like"),
        ("SIPUP_VAT_RATES", "DE: standard=0.19, reduced=0.07", "standard, reduced and zero for DE"),
        ("SIPUP_VAT_RATES", "de: standard=0.19, reduced=0.07, zero=0", "two capital letters"),
        ("SIPUP_VAT_RATES", "DE: standard=19, reduced=0.07, zero=0", "between 0 and 1"),
        ("SIPUP_VAT_COUNTRY", "FR", "has no rates in SIPUP_VAT_RATES"),
        ("SIPUP_VAT_DEPOSIT", "half", "must be product"),
        ("SIPUP_SESSION_COOKIE_SECURE", "maybe", "true or false"),
        ("SIPUP_MAIL_URL", "smpt://mail.example.com:587", "smtp://user:password@host:587"),
        ("SIPUP_MAIL_URL", "smtp://mail.example.com?tls=on", "?tls=off"),
        ("SIPUP_MAIL_URL", "smtp://mail.example.com:notaport", "port number from 1 to 65535"),
        ("SIPUP_MAIL_URL", "smtp://mail.example.com:70000", "port number from 1 to 65535"),
        ("SIPUP_MAIL_STAFF", "ops@example.com, nobody", "'nobody' is not one"),
        ("SIPUP_MAIL_FROM", "sipup", "one mail address"),
        ("SIPUP_MAIL_FROM", "a@example.com, b@example.com", "one mail address"),
        ("SIPUP_MAIL_URL", "smtp://mail.example.com:587", "SIPUP_MAIL_FROM is not: set the shop's sender"),
        ("SIPUP_METRICS_ALLOW", "localhost", "'localhost' is neither"),
        ("SIPUP_MONITOR_REFRESH_SECONDS", "0", "above 0"),
        ("SIPUP_DATABASE_URL", "oracle://x", "sqlite or mysql+pymysql"),
        ("SIPUP_DATABASE_URL", "mysql+mysqldb://u:p@localhost/sipup", "mysql+pymysql://"),
        ("SIPUP_DATABASE_URL", "mysql://u:p@localhost/sipup", "mysql+pymysql://"),
        ("SIPUP_DATABASE_URL", "not-a-url", "not a database URL"),
        (
            "SIPUP_STORAGE_URL",
            "ftp://files.example.com/sipup",
            "must be unset (the instance folder), database, or s3://",
        ),
        ("SIPUP_STORAGE_URL", "s3://key:secret@store.example.com:9000", "must name a bucket"),
        ("SIPUP_STORAGE_URL", "s3://store.example.com:9000/sipup", "access key and the secret key"),
        ("SIPUP_STORAGE_URL", "s3://key@store.example.com:9000/sipup", "access key and the secret key"),
        ("SIPUP_STORAGE_URL", "s3://key:secret@store.example.com:99999/sipup", "port from 1 to 65535"),
        ("SIPUP_STORAGE_URL", "s3+https://key:secret@store.example.com:https/sipup", "port from 1 to 65535"),
        ("SIPUP_STORAGE_URL", "s3://key:secret@store.example.com/Sipup_Files", "not 'Sipup_Files'"),
        ("SIPUP_STORAGE_URL", "s3://key:secret@:9000/sipup", "must name a host"),
    ],
)
def test_bad_value_names_the_variable_and_the_reason(build, environment, variable, value, reason):
    environment.setenv(variable, value)
    environment.setenv("SIPUP_SECRET_KEY", "set, so only the value under test is wrong")
    with pytest.raises(ConfigError) as caught:
        build()
    assert variable in str(caught.value)
    assert reason in str(caught.value)


def test_bad_value_in_the_instance_file_is_named_too(build, tmp_path):
    (tmp_path / "sipup.cfg").write_text('DB_POOL_SIZE = "many"\n', encoding="utf-8")
    with pytest.raises(ConfigError, match="SIPUP_DB_POOL_SIZE"):
        build()


@pytest.mark.parametrize(
    "text, line, reason",
    [
        ("SITE_NAME = 'Nord'\nPORT = 80 80\n", 2, "invalid syntax"),
        ("SITE_NAME = 'Nord'\n\nSITE_NAME = Getraenke Nord\n", 3, "invalid syntax"),
        ("PORT = 8080\nSITE_NAME = Nord\n", 2, "NameError: name 'Nord' is not defined"),
    ],
)
def test_a_mistake_in_the_instance_file_is_one_line_with_its_line_number(build, tmp_path, text, line, reason):
    (tmp_path / "sipup.cfg").write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        build()
    message = str(caught.value)
    assert message.startswith(f"{tmp_path / 'sipup.cfg'}, line {line}: ") and reason in message
    assert "\n" not in message and "text in quotes" in message


def test_embedded_secret_key_is_generated_once_and_kept(build, tmp_path):
    first = build().config["SECRET_KEY"]
    assert len(first) == 64
    path = tmp_path / "secret_key"
    assert path.read_text(encoding="ascii").strip() == first
    if os.name == "posix":
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert build().config["SECRET_KEY"] == first


def test_configured_secret_key_wins(build, environment, tmp_path):
    environment.setenv("SIPUP_SECRET_KEY", "from the environment")
    assert build().config["SECRET_KEY"] == "from the environment"
    assert not (tmp_path / "secret_key").exists()


def test_mysql_needs_a_secret_key(build, environment, tmp_path):
    environment.setenv("SIPUP_DATABASE_URL", MYSQL_URL)
    with pytest.raises(ConfigError, match="SIPUP_SECRET_KEY"):
        build()
    assert not (tmp_path / "secret_key").exists()


def test_mysql_gets_the_configured_pool(build, environment):
    environment.setenv("SIPUP_DATABASE_URL", MYSQL_URL)
    environment.setenv("SIPUP_SECRET_KEY", "x" * 64)
    environment.setenv("SIPUP_DB_POOL_SIZE", "7")
    environment.setenv("SIPUP_DB_MAX_OVERFLOW", "3")
    options = build().config["SQLALCHEMY_ENGINE_OPTIONS"]
    assert options["pool_size"] == 7
    assert options["max_overflow"] == 3
    assert options["pool_pre_ping"] is True
    assert options["pool_recycle"] == 1800
    assert options["connect_args"]["charset"] == "utf8mb4"


def test_sqlite_gets_no_server_pool_options(build):
    options = build().config["SQLALCHEMY_ENGINE_OPTIONS"]
    assert "pool_size" not in options and "max_overflow" not in options


def test_engine_uses_the_pool_options(make_app):
    app = make_app(DB_POOL_SIZE=7, DB_MAX_OVERFLOW=3)
    with app.app_context():
        engine = db.engine
        if engine.dialect.name == "sqlite":
            assert "pool_size" not in app.config["SQLALCHEMY_ENGINE_OPTIONS"]
        else:
            assert engine.pool.size() == 7
            assert engine.pool._max_overflow == 3
            assert engine.pool._pre_ping is True
