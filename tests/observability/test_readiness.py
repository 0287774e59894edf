"""/readyz tells the balancer the truth: not ready when the database takes no writes (read-only, disk full), and
the 503 pages then say what is wrong instead of "the database is not answering"."""

import json
import os
import signal
import subprocess

import pytest
from sqlalchemy import event

from sipup import create_app
from sipup.cli.db import upgrade_schema
from sipup.extensions import db
from sipup.observability import health
from tests.conftest import PASSWORD
from tests.servers import SipupServer, request


def _refusing_writes(app):
    """Every connection of the app's engine refuses writes, as a read-only database or replica does: SQLite's
    query_only, and a read-only session on MySQL/MariaDB (nothing global changes on the shared server)."""
    with app.app_context():
        engine = db.engine
        statement = "PRAGMA query_only = 1" if engine.dialect.name == "sqlite" else "SET SESSION TRANSACTION READ ONLY"

        @event.listens_for(engine, "connect")
        def _read_only(dbapi_connection, _record):
            cursor = dbapi_connection.cursor()
            cursor.execute(statement)
            cursor.close()

        engine.dispose()
    return app


def test_readyz_is_ready_when_the_database_takes_writes(client):
    answer = client.get("/readyz")
    assert answer.status_code == 200 and answer.get_json()["checks"]["database"] == "ok"


def test_a_read_only_database_is_not_ready_and_pages_say_why(app, make_app, buyer):
    read_only = _refusing_writes(make_app())
    client = read_only.test_client()
    answer = client.get("/readyz")
    assert answer.status_code == 503
    assert answer.get_json()["checks"]["database"].startswith("not writable: read-only: ")
    page = client.post("/login", data={"email": buyer.email, "password": PASSWORD})  # signing in records the time
    assert page.status_code == 503
    assert "The database is read-only right now, so nothing can be saved." in page.get_data(as_text=True)
    assert client.get("/login").status_code == 200, "reading still works"
    with read_only.app_context():
        check = health.database()
    assert check["state"] == "bad" and check["value"] == "not writable" and "read-only" in check["detail"]


@pytest.fixture
def small_disk(tmp_path):
    """A 3 MB tmpfs of the test's own (needs root and mount, else the test is skipped)."""
    folder = tmp_path / "disk"
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(folder)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode(errors='replace').strip()}")
    yield folder
    subprocess.run(["umount", "-l", str(folder)], check=True)


def _app_on(folder, tmp_path):
    app = create_app(
        {"TESTING": True, "DATABASE_URL": f"sqlite:///{folder / 'sipup.db'}", "MONITOR_ALERTS": False},
        instance_path=str(tmp_path / "instance"),
    )
    with app.app_context():
        upgrade_schema()
        db.engine.dispose()
    return app


def test_a_full_disk_is_not_ready(small_disk, tmp_path):
    app = _app_on(small_disk, tmp_path)
    client = app.test_client()
    assert client.get("/readyz").status_code == 200
    with open(small_disk / "filler", "wb") as filler:  # what a log or backup gone wild does
        try:
            while True:
                filler.write(b"\0" * 65536)
                filler.flush()
        except OSError:
            pass
    answer = client.get("/readyz")
    assert answer.status_code == 503 and answer.get_json()["checks"]["database"].startswith("not writable: full: ")
    os.remove(small_disk / "filler")
    assert client.get("/readyz").status_code == 200, "ready again once there is room"


def test_a_read_only_file_system_is_not_ready(small_disk, tmp_path):
    app = _app_on(small_disk, tmp_path)
    client = app.test_client()
    subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
    try:
        answer = client.get("/readyz")
    finally:
        subprocess.run(["mount", "-o", "remount,rw", str(small_disk)], check=True)
    assert answer.status_code == 503
    assert answer.get_json()["checks"]["database"] == (
        f"not writable: read-only: the file system holding {small_disk} is mounted read-only"
    )


def test_sigterm_takes_the_server_out_of_rotation_then_stops_it_gracefully(tmp_path, demo_instance):
    site = SipupServer(demo_instance(tmp_path / "instance"), DRAIN_SECONDS=2).start()
    site.process.send_signal(signal.SIGTERM)
    status, body = request(site.port, "/readyz")
    assert status == 503 and json.loads(body)["checks"]["server"] == "stopping", body
    assert request(site.port, "/healthz")[0] == 200, "requests are still served while the balancer notices"
    assert site.process.wait(timeout=15) == 0
    assert "stopping; /readyz says so, requests are served 2 s more." in site.log()
