"""Files only the service account reads: created mode 0600 in folders of mode 0700 on POSIX, whatever the umask."""

import logging
import os
import stat

import pytest

from sipup import create_app
from sipup.cli import upgrade_schema
from sipup.extensions import db
from sipup.services import backup, mail, reports

pytestmark = pytest.mark.skipif(os.name != "posix", reason="file modes are POSIX; Windows uses access lists")


def _mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture
def fresh(tmp_path, monkeypatch):
    """The embedded default on an instance folder sipup creates itself, under the usual umask 022."""
    for key in list(os.environ):
        if key.startswith("SIPUP_") and not key.startswith("SIPUP_TEST_"):
            monkeypatch.delenv(key)
    previous = os.umask(0o022)
    instance = tmp_path / "instance"
    app = create_app({"TESTING": True, "MONITOR_ALERTS": False}, instance_path=str(instance))
    with app.app_context():
        upgrade_schema()
        yield app, instance
        db.engine.dispose()
    os.umask(previous)


def test_database_secret_key_and_logs_are_private(fresh):
    app, instance = fresh
    logging.getLogger("sipup.test").warning("a line for the log")
    assert _mode(instance) == 0o700
    assert _mode(instance / "sipup.db") == 0o600
    assert _mode(instance / "secret_key") == 0o600
    assert _mode(instance / "logs") == 0o700
    assert _mode(instance / "logs" / "sipup.log") == 0o600


def test_backups_reports_and_the_outbox_are_private(fresh):
    app, instance = fresh
    summary = backup.run_backup()
    (made,) = [name for name in os.listdir(instance / "backups") if name.endswith(".sqlite3")]
    assert made in summary and _mode(instance / "backups") == 0o700 and _mode(instance / "backups" / made) == 0o600
    name = reports.build("receivables_ageing")
    assert _mode(instance / "reports") == 0o700 and _mode(instance / "reports" / name) == 0o600
    where = mail.deliver(mail.build_message(["buyer@example.com"], "Hello", "text", "<p>html</p>"))
    path = where.removeprefix("written to ")
    assert _mode(instance / "outbox") == 0o700 and _mode(path) == 0o600


def test_files_the_operator_made_keep_their_mode(tmp_path, monkeypatch):
    monkeypatch.delenv("SIPUP_SECRET_KEY", raising=False)
    instance = tmp_path / "instance"
    instance.mkdir(mode=0o750)
    (instance / "secret_key").write_text("k" * 64, encoding="ascii")
    os.chmod(instance / "secret_key", 0o640)
    app = create_app({"TESTING": True}, instance_path=str(instance))
    assert app.config["SECRET_KEY"] == "k" * 64
    assert _mode(instance) == 0o750 and _mode(instance / "secret_key") == 0o640
