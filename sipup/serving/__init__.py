"""Serving sipup under waitress: in this process, or in N processes that share one listening socket under a
supervisor that starts a crashed one again and passes a stop on to them all (Linux and Windows).

The supervisor binds the socket and starts each process as `python -m sipup.serving` (main() below), which
loads the app as `flask` does. The socket reaches it as an inherited file descriptor (POSIX) or through
socket.share() over its standard input (Windows, where a socket cannot be inherited). That pipe stays open
while the supervisor lives: a process whose supervisor is gone, even killed, reads its end and stops too.
"""

import _thread
import argparse
import base64
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import click
from flask.cli import ScriptInfo
from waitress import create_server
from waitress.adjustments import Adjustments

from sipup.metrics import processes

WINDOWS = os.name == "nt"
# Seconds before a process that ended unasked starts again; each quick end in a row waits the next figure.
RESTART_DELAYS = (1, 2, 5, 10, 30)
STEADY_SECONDS = 60  # a process that served this long before it ended counts as healthy: the first delay again
STOP_GRACE_SECONDS = 10  # after the drain, how long the supervisor waits for its processes before it kills them
# What each stop the supervisor receives asks of its processes: SIGTERM drains (SIPUP_DRAIN_SECONDS), Ctrl+C
# stops at once as it does in one process; on Windows the only signal a process can be sent is Ctrl+Break.
STOPS = {signal.SIGTERM: signal.SIGTERM, signal.SIGINT: signal.SIGINT}
if WINDOWS:
    STOPS = {signal.SIGTERM: signal.CTRL_BREAK_EVENT, signal.SIGINT: signal.CTRL_BREAK_EVENT}
    STOPS[signal.SIGBREAK] = signal.CTRL_BREAK_EVENT


def process_count(config):
    """SIPUP_PROCESSES, else every core where Redis shares limits, cache and statistics, else 1."""
    if config["PROCESSES"]:
        return config["PROCESSES"]
    return (os.cpu_count() or 1) if config["REDIS_URL"] else 1


def server_options(config, threads):
    """The waitress settings of every sipup server, one process or many."""
    return dict(
        threads=threads,
        connection_limit=config["CONNECTION_LIMIT"],
        channel_timeout=config["CHANNEL_TIMEOUT"],
        max_request_body_size=config["MAX_CONTENT_LENGTH"],
        # waitress would delete X-Forwarded-* before the app runs; ProxyFix (sipup/web.py) reads them
        # instead, trusting exactly SIPUP_PROXY_HOPS proxies, so that one setting decides under every server.
        trusted_proxy=None,
        clear_untrusted_proxy_headers=False,
        ident="sipup",
    )


def listening_sockets(host, port):
    """Bound, listening sockets on every address waitress would listen on for host:port (OSError as bind())."""
    adjustments = Adjustments(host=host, port=port)
    sockets = []
    try:
        for family, kind, proto, address in adjustments.listen:
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            if not WINDOWS:  # on Windows this option would let a second program take the port too
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(address)
            sock.listen(adjustments.backlog)
    except OSError:
        for sock in sockets:
            sock.close()
        raise
    return sockets


def run(app, server, threads, host, port):
    """Serve until stopped: SIGTERM (Ctrl+Break on Windows) drains first, Ctrl+C stops at once. The process is
    registered as a pool holder, with the address mails link to when SIPUP_PUBLIC_URL is unset."""
    processes.register(app, threads, url=processes.served_address(host, port))
    stop = _graceful_stop(app)
    signal.signal(signal.SIGTERM, stop)
    if WINDOWS:
        signal.signal(signal.SIGBREAK, stop)
    server.run()


def _graceful_stop(app):
    """A signal handler: /readyz answers 503 at once so the balancer takes this host out, requests are still
    served for SIPUP_DRAIN_SECONDS, then waitress finishes the running ones and the process exits.

    The end comes as this handler again, raised in the main thread by the drain's timer: waitress stops on a
    KeyboardInterrupt there. Not through SIGINT, which a shell ignores in the commands it starts with `&`."""

    def drained():
        app.extensions["stopping"] = "drained"
        _thread.interrupt_main(signal.SIGTERM)

    def stop(_signum, _frame):
        if app.extensions.get("stopping") == "drained":
            raise KeyboardInterrupt
        if app.extensions.get("stopping"):
            return
        app.extensions["stopping"] = True
        drain = app.config["DRAIN_SECONDS"]
        click.echo(f"sipup: stopping; /readyz says so, requests are served {drain} s more.", err=True)
        threading.Timer(drain, drained).start()

    return stop


class Supervisor:
    """N serving processes on the given sockets: started, started again after a crash, stopped together."""

    def __init__(self, sockets, count, threads, drain_seconds, app_import_path=None):
        self.sockets, self.count, self.drain_seconds = sockets, count, drain_seconds
        self.command = [sys.executable, "-m", "sipup.serving", "--threads", str(threads)]
        if app_import_path:
            self.command += ["--app", app_import_path]
        self.children = {}  # slot -> Popen
        self.started_at, self.quick_ends, self.due = {}, {}, {}  # slot -> when, ends in a row, restart time
        self.stop_signal = None

    def run(self):
        """Start every process and keep them running until a stop; the exit code (0: all stopped cleanly)."""
        previous = {number: signal.signal(number, self._stop) for number in STOPS}
        try:
            for slot in range(1, self.count + 1):
                self._start(slot)
            while self.stop_signal is None:
                self._look_after()
                time.sleep(0.2)
            return self._stop_all()
        finally:
            for number, handler in previous.items():
                signal.signal(number, handler)
            for sock in self.sockets:
                sock.close()

    def _start(self, slot):
        if WINDOWS:
            child = subprocess.Popen(
                [*self.command, "--shared", str(len(self.sockets))],
                stdin=subprocess.PIPE,
                creationflags=subprocess.CREATE_NEW_PROCESS_GROUP,
            )
            child.stdin.write(b"".join(base64.b64encode(sock.share(child.pid)) + b"\n" for sock in self.sockets))
            child.stdin.flush()
        else:
            fds = [sock.fileno() for sock in self.sockets]
            # A session of its own: Ctrl+C in a terminal reaches the supervisor, which passes it on once.
            child = subprocess.Popen(
                [*self.command, *(f"--fd={fd}" for fd in fds)],
                stdin=subprocess.PIPE,
                pass_fds=fds,
                start_new_session=True,
            )
        self.children[slot], self.started_at[slot] = child, time.monotonic()
        self.due.pop(slot, None)

    def _look_after(self):
        """Notice a process that ended unasked and start it again after its back-off."""
        now = time.monotonic()
        for slot, child in self.children.items():
            if slot in self.due or child.poll() is None:
                continue
            steady = now - self.started_at[slot] >= STEADY_SECONDS
            self.quick_ends[slot] = 0 if steady else self.quick_ends.get(slot, 0) + 1
            delay = RESTART_DELAYS[min(self.quick_ends[slot], len(RESTART_DELAYS)) - 1] if not steady else 1
            self.due[slot] = now + delay
            click.echo(
                f"sipup: process {slot} of {self.count} (pid {child.pid}) ended ({_ending(child.returncode)}); "
                f"starting it again in {delay} s.",
                err=True,
            )
        for slot, when in list(self.due.items()):
            if now >= when:
                self._start(slot)

    def _stop(self, signum, _frame):
        """A stop for the supervisor: passed on to every process (once)."""
        if self.stop_signal is not None:
            return
        self.stop_signal = signum
        for child in self.children.values():
            if child.poll() is None:
                child.send_signal(STOPS[signum])

    def _stop_all(self):
        """Wait for the processes to finish (the drain and a grace) and kill those that do not; the exit code:
        0 when every running process stopped by itself with exit code 0."""
        deadline = time.monotonic() + self.drain_seconds + STOP_GRACE_SECONDS
        code = 0
        for slot, child in self.children.items():
            try:
                child.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                click.echo(f"sipup: process {slot} (pid {child.pid}) did not stop in time; killed.", err=True)
                child.kill()
                child.wait()
            if child.returncode != 0 and slot not in self.due:  # not one that had ended before, awaiting restart
                code = 1
            child.stdin.close()
        return code


def _ending(code):
    """How a process ended, in words: its exit code or the signal that ended it."""
    if code < 0:
        return f"killed by {signal.Signals(-code).name}"
    return f"exit code {code}"


def _received_sockets(fds, shared):
    """The listening sockets the supervisor handed over: inherited descriptors, or shared ones on stdin."""
    if shared:
        return [socket.fromshare(base64.b64decode(sys.stdin.buffer.readline())) for _ in range(shared)]
    return [socket.socket(fileno=fd) for fd in fds]


def _stop_when_orphaned():
    """Read the supervisor's pipe to its end: the supervisor is gone, so stop as Ctrl+C would."""
    # os.read, not sys.stdin: a thread blocked in a buffered read would hold its lock at interpreter exit.
    while os.read(sys.stdin.fileno(), 512):
        pass
    _thread.interrupt_main()


def main(argv=None):
    """One of the supervisor's processes: load the app as `flask` does and serve the handed-over sockets."""
    parser = argparse.ArgumentParser(prog="python -m sipup.serving", description=main.__doc__)
    parser.add_argument("--threads", type=int, required=True)
    parser.add_argument("--app", help="The app as `flask --app` names it (default: wsgi.py).")
    parser.add_argument("--fd", type=int, action="append", default=[], help="An inherited listening socket.")
    parser.add_argument("--shared", type=int, default=0, help="How many shared sockets follow on stdin.")
    args = parser.parse_args(argv)
    sockets = _received_sockets(args.fd, args.shared)
    threading.Thread(target=_stop_when_orphaned, daemon=True).start()
    app = ScriptInfo(app_import_path=args.app).load_app()
    host, port = sockets[0].getsockname()[:2]
    with app.app_context():
        run(
            app,
            create_server(app, sockets=sockets, **server_options(app.config, args.threads)),
            args.threads,
            host,
            port,
        )
