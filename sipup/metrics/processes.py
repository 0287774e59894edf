"""The long-running processes that hold a database pool (`flask serve`, `flask queue worker`), registered in
the shared store (Redis, or instance/metrics.db).

The connection budget counts these, each with the connections it can really open at once (two per thread:
its session's and one beside it, never more than its pool allows), not every short command (`flask queue
process` from cron) as a full pool. `flask serve` also records the address it listens on, so that mails link
there when SIPUP_PUBLIC_URL is unset, whichever process (cron, the worker) writes them.

    register(app, threads, url="http://127.0.0.1:8080")   # at start: serve (with its url) and the worker
    pool_holders(counters)                                 # {"host:pid": connections} of the last hour
    served_url(counters)                                   # "http://127.0.0.1:8080", or None
"""

import atexit
import socket
import time

from sipup.metrics.counters import PROCESS, bucket_start

GROUP = "pools"  # texts: {process: "connections it may open, unix time of its last word"}
SERVED = "served"  # texts: {"url": the address `flask serve` listens on}
WINDOW_MINUTES = 60  # a process not heard of for an hour is gone (killed) or idle, holding no connection
ANY_ADDRESS = ("", "0.0.0.0", "::")


def connections_needed(config, threads):
    """The connections a process with `threads` threads can open at once, at most its pool and overflow."""
    return min(config["DB_POOL_SIZE"] + config["DB_MAX_OVERFLOW"], 2 * threads)


def served_address(host, port):
    """The URL of `flask serve` on host:port; listening on every address, the URL names this host."""
    name = socket.gethostname() if host in ANY_ADDRESS else host
    return f"http://{f'[{name}]' if ':' in name else name}:{port}"


def register(app, threads, url=None):
    """Say in the shared store, now and with a flush each minute after, that this process holds a pool (and,
    for serve, where it listens); at a normal exit, that it holds none any more. Returns that last word."""
    counters = app.extensions["counters"]
    needed = connections_needed(app.config, threads)
    said = {"minute": None, "stopped": False}

    def beat():
        minute = bucket_start(time.time(), "minute")
        if minute != said["minute"] and not said["stopped"]:
            said["minute"] = minute
            counters.describe(GROUP, {PROCESS: f"{needed} {int(time.time())}"})
            if url:
                counters.describe(SERVED, {"url": url})

    def stopped():  # runs before the counters' own flush at exit, which writes it (atexit: last in, first out)
        said["stopped"] = True
        counters.describe(GROUP, {PROCESS: f"0 {int(time.time())}"})

    counters.add_source(beat)
    atexit.register(stopped)
    counters.flush()
    return stopped


def pool_holders(counters, minutes=WINDOW_MINUTES):
    """{process: connections it may open} of the pool-holding processes heard of in the last `minutes`."""
    since = time.time() - minutes * 60
    holders = {}
    for process, text in counters.descriptions(GROUP).items():
        needed, _, at = str(text).partition(" ")
        if needed.isdigit() and int(needed) and at.isdigit() and int(at) >= since:
            holders[process] = int(needed)
    return holders


def served_url(counters):
    """The address the last started `flask serve` listens on, or None."""
    return counters.descriptions(SERVED).get("url")
