"""Files only the service account reads: created mode 0600 in folders of mode 0700 on POSIX, whatever the umask."""

import io
import logging
import os
import stat
from contextlib import closing

import pytest
from PIL import Image

from sipup import create_app
from sipup.cli.db import upgrade_schema
from sipup.extensions import db
from sipup.metrics.counter_stores import connect_sqlite
from sipup.services import backup, mail, reports
from tests.conftest import RequestScopedClient, login

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
    app = create_app({"TESTING": True, "MONITOR_ALERTS": False, "WTF_CSRF_ENABLED": False}, instance_path=str(instance))
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


def _picture():
    buffer = io.BytesIO()
    Image.new("RGB", (40, 30), (200, 40, 40)).save(buffer, "PNG")
    return buffer.getvalue()


def test_nothing_sipup_or_its_libraries_create_in_the_instance_folder_is_readable_by_others(
    fresh, make_user, make_product, make_company
):
    app, instance = fresh
    app.test_client_class = RequestScopedClient
    client = app.test_client()
    staff, buyer = make_user("staff"), make_user("buyer", make_company())
    make_product(sku="MODE-1")
    client.post("/password/reset", data={"email": buyer.email})  # a job holding an address, in queue.db
    app.extensions["queue"].process(10)  # ... run: a mail in the outbox
    login(client, staff)
    upload = client.post("/admin/products/MODE-1/images", data={"image": (io.BytesIO(_picture()), "p.png")})
    assert upload.status_code == 302
    client = app.test_client()
    login(client, buyer)
    for _ in range(2):  # the second answer comes from the cache folder
        assert client.get("/products").status_code == 200
    app.extensions["counters"].flush()  # request statistics into metrics.db
    with closing(connect_sqlite(str(instance / "metrics.db"))) as reader:  # -wal and -shm exist while it is open
        reader.execute("SELECT COUNT(*) FROM counters").fetchone()
        made = {path.name for path in instance.rglob("*")}
        readable = [
            f"{path.relative_to(instance)} {_mode(path):o}"
            for path in [instance, *instance.rglob("*")]
            if _mode(path) & 0o077
        ]
    assert {"queue.db", "metrics.db", "metrics.db-wal", "metrics.db-shm", "limits.db", "cache", "images"} <= made
    assert "outbox" in made and any(name.endswith(".webp") for name in made)
    assert readable == []


def test_files_the_operator_made_keep_their_mode(tmp_path, monkeypatch):
    monkeypatch.delenv("SIPUP_SECRET_KEY", raising=False)
    instance = tmp_path / "instance"
    instance.mkdir(mode=0o750)
    (instance / "secret_key").write_text("k" * 64, encoding="ascii")
    os.chmod(instance / "secret_key", 0o640)
    app = create_app({"TESTING": True}, instance_path=str(instance))
    assert app.config["SECRET_KEY"] == "k" * 64
    assert _mode(instance) == 0o750 and _mode(instance / "secret_key") == 0o640
