"""Operator mistakes stop `flask serve` with one line naming the setting and what would be right; an unknown
SIPUP_* variable and an unreachable Redis are said in one line too, and sipup starts anyway."""

import os
import socket
import subprocess
import sys
from urllib.parse import urlsplit

import pytest

from tests.conftest import REDIS_URL
from tests.servers import ROOT, SipupServer, free_port, request


def _serve(tmp_path, *args, **settings):
    """`flask serve` as an operator starts it, with these settings only; (exit code, stdout, stderr)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SIPUP_", "FLASK_"))}
    env.update(FLASK_APP="wsgi", PYTHONWARNINGS="ignore")
    env.setdefault("SIPUP_INSTANCE_PATH", str(tmp_path / "instance"))
    env.update({f"SIPUP_{name}": value for name, value in settings.items()})
    result = subprocess.run(
        [sys.executable, "-m", "flask", "serve", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    return result.returncode, result.stdout, result.stderr


def _one_line(tmp_path, *args, **settings):
    code, _out, err = _serve(tmp_path, *args, **settings)
    assert code != 0, "start-up stopped"
    lines = err.strip().splitlines()
    assert len(lines) == 1, f"one line, no traceback:\n{err}"
    return lines[0]


def test_a_database_url_with_an_unknown_option_stops_start_up(tmp_path):
    line = _one_line(tmp_path, DATABASE_URL=f"sqlite:///{tmp_path / 'x.db'}?timout=5")
    assert line.endswith("SIPUP_DATABASE_URL has the unknown option 'timout'; did you mean timeout?")
    line = _one_line(
        tmp_path, DATABASE_URL="mysql+pymysql://sipup:secret@127.0.0.1:1/sipup?sslmode=require", SECRET_KEY="k" * 40
    )
    assert "SIPUP_DATABASE_URL has the unknown option 'sslmode'" in line


def test_a_redis_url_of_another_scheme_stops_start_up(tmp_path):
    line = _one_line(tmp_path, REDIS_URL="http://127.0.0.1:6379/0")
    assert "SIPUP_REDIS_URL='http://127.0.0.1:6379/0' must read like redis://host:6379/0" in line


@pytest.mark.parametrize(
    "name, value",
    [
        ("RATELIMIT_IP", "0 per minute"),
        ("RATELIMIT_USER", "100 per hour; 0/day"),
        ("RATELIMIT_ENDPOINTS", '{"POST auth.login": "0 per minute"}'),
    ],
)
def test_a_limit_that_refuses_everything_stops_start_up(tmp_path, name, value):
    line = _one_line(tmp_path, **{name: value})
    assert f"SIPUP_{name}=" in line and "must allow at least 1 request" in line


def test_a_short_secret_key_stops_start_up_outside_the_embedded_default(tmp_path):
    line = _one_line(tmp_path, DATABASE_URL="mysql+pymysql://sipup:secret@127.0.0.1:1/sipup", SECRET_KEY="changeme")
    assert "SIPUP_SECRET_KEY has 8 characters; outside the embedded default it needs at least 32" in line
    assert "secrets.token_hex(32)" in line


def test_an_unknown_sipup_variable_is_named_with_the_closest_known_one(tmp_path):
    code, _out, err = _serve(tmp_path, "--port", "0", RATELIMT_IP="5 per minute", RATELIMIT_IP="0 per minute")
    assert code != 0  # the real setting's mistake still stops start-up; the typo was named first
    assert "sipup: warning: SIPUP_RATELIMT_IP is not a sipup setting; did you mean SIPUP_RATELIMIT_IP?" in err
    assert err.count("SIPUP_RATELIMT_IP") == 1


def test_a_port_in_use_stops_start_up_with_a_suggestion(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        line = _one_line(tmp_path, "--port", str(port))
    assert line == (
        f"Error: Port {port} on 127.0.0.1 is in use by another program (XAMPP's Tomcat takes 8080): "
        f"start with another port, e.g. flask serve --port {port + 1}, or set SIPUP_PORT."
    )


def test_an_instance_folder_that_cannot_be_written_stops_start_up(tmp_path):
    (tmp_path / "a-file").write_text("not a folder", encoding="utf-8")
    folder = tmp_path / "a-file" / "instance"
    line = _one_line(tmp_path, INSTANCE_PATH=str(folder))
    assert line.startswith(f"sipup: configuration error: The instance folder {folder} cannot be written (")
    assert "SIPUP_INSTANCE_PATH" in line


def test_an_unreachable_redis_at_start_up_is_one_line_and_sipup_starts_degraded(tmp_path, demo_instance):
    port = free_port()  # nothing listens there
    server = SipupServer(demo_instance(tmp_path / "instance"), REDIS_URL=f"redis://127.0.0.1:{port}/0").start()
    try:
        assert request(server.port, "/login")[0] == 200, "pages answer without Redis"
    finally:
        server.stop()
    lines = [line for line in server.log().splitlines() if "SIPUP_REDIS_URL" in line]
    assert lines == [
        f"sipup: warning: Redis at 127.0.0.1:{port} (SIPUP_REDIS_URL) does not answer (ConnectionError); "
        "starting degraded: rate limits and statistics count per process and the cache is skipped "
        "until it answers."
    ]


def test_a_storage_url_of_the_wrong_form_stops_start_up_without_repeating_the_secret(tmp_path):
    line = _one_line(tmp_path, STORAGE_URL="s3://sipup:topsecret@127.0.0.1:9000")
    assert "SIPUP_STORAGE_URL='s3://sipup:***@127.0.0.1:9000' must name a bucket after the host" in line
    assert "topsecret" not in line


def test_an_object_store_that_refuses_the_key_is_one_line_at_start_up_and_sipup_starts(tmp_path, seaweed):
    url = seaweed.url.replace(seaweed.secret_key, "not-the-secret")
    server = SipupServer(tmp_path / "instance", STORAGE_URL=url).start()
    try:
        assert request(server.port, "/login")[0] == 200, "pages answer without the storage"
    finally:
        server.stop()
    log = server.log().splitlines()
    lines = [line for line in log if line.startswith("sipup: warning:") and "SIPUP_STORAGE_URL" in line]
    assert len(lines) == 1 and lines[0].startswith(
        f"sipup: warning: file storage http://127.0.0.1:{seaweed.port}/sipup (SIPUP_STORAGE_URL): the object store "
        f"at 127.0.0.1:{seaweed.port} refused the access key or secret of SIPUP_STORAGE_URL ("
    )
    assert "not-the-secret" not in lines[0]
    assert any("Demo pictures left out" in line for line in log), "the demo data is made without pictures"


@pytest.mark.parametrize(
    "args, settings, expected",
    [
        (("--processes", "0"), {}, "Error: --processes 0: must be a whole number above 0"),
        ((), {"PROCESSES": "x"}, "SIPUP_PROCESSES='x' must be a whole number above 0"),
    ],
)
def test_a_process_count_that_is_not_a_number_above_0_stops_start_up(tmp_path, args, settings, expected):
    line = _one_line(tmp_path, *args, **settings)
    assert expected in line and "the number of cores with Redis, 1 without" in line


def test_a_port_past_65535_is_refused_by_serve_as_by_the_setting(runner):
    result = runner.invoke(args=["serve", "--port", "70000"])
    assert result.exit_code == 2 and "70000 is not in the range 1<=x<=65535" in result.output


@pytest.mark.skipif(not REDIS_URL, reason="needs SIPUP_TEST_REDIS_URL")
def test_a_redis_database_index_the_server_does_not_have_is_named_as_such(make_app):
    where = urlsplit(REDIS_URL)
    app = make_app(REDIS_URL=f"redis://{where.hostname}:{where.port or 6379}/99")
    result = app.test_cli_runner().invoke(args=["serve", "--port", str(free_port())])
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        f"Error: SIPUP_REDIS_URL names database 99, but the DB index is out of range on the Redis at "
        f"{where.hostname}:{where.port or 6379} (it has databases 0 to 15 unless its `databases` setting says more): "
        "use one of those, e.g. redis://host:6379/0."
    ]
