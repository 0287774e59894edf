"""`flask serve --processes 2` for real: two processes answer on the one port, a killed one is started again
while the other keeps answering, and SIGTERM stops them all after the drain with exit code 0. One server,
started once for the module; the tests run in order and the last one stops it."""

import re
import signal
import time

import psutil
import pytest

from tests.servers import SipupServer, request

DRAIN_SECONDS = 1
POOL_LINE = re.compile(r'sipup_db_pool_connections\{process="[^"]*:(\d+)",state="in_use"\}')


@pytest.fixture(scope="module")
def server(tmp_path_factory, demo_instance):
    """sipup under `flask serve --processes 2` on the embedded default, both processes answering (on a copy of
    the session's demo database: the first start's demo pictures are not what this module tests)."""
    instance = demo_instance(tmp_path_factory.mktemp("serving") / "instance")
    server = SipupServer(instance, DRAIN_SECONDS=DRAIN_SECONDS)
    server.start("--processes", "2", timeout=120)
    children = _children(server)
    assert len(children) == 2, f"two serving processes under the supervisor:\n{server.log()}"
    _pids_answering(server, set(children))
    yield server
    server.stop()


def _children(server):
    """The supervisor's running serving processes: {pid: psutil.Process} (an ended one not yet reaped left out)."""
    found = {}
    for child in psutil.Process(server.process.pid).children():
        try:
            if "sipup.serving" in " ".join(child.cmdline()):
                found[child.pid] = child
        except psutil.Error:
            pass  # ended (a zombie until the supervisor notices)
    return found


def _pids_answering(server, wanted, seconds=60):
    """Read /metrics on new connections until each wanted pid has answered (its pool's `process` label)."""
    seen = set()
    deadline = time.monotonic() + seconds
    while not wanted <= seen and time.monotonic() < deadline:
        status, body = request(server.port, "/metrics", quiet=True)
        if status == 200:
            seen |= {int(pid) for pid in POOL_LINE.findall(body)}
        else:
            time.sleep(0.2)
    assert wanted <= seen, f"pids {sorted(wanted - seen)} never answered:\n{server.log()}"
    return seen


def test_two_processes_answer_on_one_port(server):
    log = server.log()
    assert f"sipup listening on http://127.0.0.1:{server.port}/ with 2 processes of 8 threads" in log
    assert "sipup: warning: 2 processes without Redis (SIPUP_REDIS_URL)" in log, "the split budgets are said"
    assert server.process.pid not in _pids_answering(server, set(_children(server))), "the supervisor serves not"


def test_a_killed_process_is_started_again_and_the_site_keeps_answering(server):
    killed, kept = sorted(_children(server))
    psutil.Process(killed).send_signal(signal.SIGKILL)
    assert all(request(server.port, "/healthz")[0] == 200 for _ in range(10)), "the other process answers"
    deadline = time.monotonic() + 30
    while len(_children(server)) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    children = set(_children(server))
    assert kept in children and killed not in children and len(children) == 2
    _pids_answering(server, children)
    assert f"(pid {killed}) ended (killed by SIGKILL); starting it again in 1 s." in server.log()


def test_sigterm_stops_every_process_after_the_drain_with_exit_code_0(server):
    children = list(_children(server).values())
    began = time.monotonic()
    server.process.send_signal(signal.SIGTERM)
    assert server.process.wait(timeout=DRAIN_SECONDS + 15) == 0, f"every process stopped with 0:\n{server.log()}"
    took = time.monotonic() - began
    _gone, alive = psutil.wait_procs(children, timeout=5)
    assert not alive, f"left running: {alive}"
    assert server.log().count(f"requests are served {DRAIN_SECONDS} s more") == 2, "each process drained"
    assert took < DRAIN_SECONDS + 8, f"stopped in {took:.1f} s"
