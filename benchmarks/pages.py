"""sipup's pages against a bare Flask "hello", a raw WSGI app and the floor of sipup's stack under the same
waitress, in one run: req/s at 1 and 32 connections, the ratio to hello, server CPU per request, how it grows
with concurrency and its ratio to the floor's, and the Redis commands, Redis round trips and SQL statements
per page.

python -m benchmarks.pages [--seconds 3] [--rounds 3] [--redis] [--before REV]

Servers run on core 0 (`taskset -c 0`) and wrk on core 1 (`taskset -c 1 wrk -t1`) when the machine has both;
each server is one waitress process with THREADS threads. sipup is `flask serve` on a copy of the embedded demo
data with every production middleware on: rate limits counted (budgets raised out of reach: every request comes
from one address), request and query statistics, CSRF, the session check, a signed-in demo buyer with two lines
in the cart. With --redis, sipup uses SIPUP_REDIS_URL (SIPUP_BENCH_REDIS_URL, default redis://127.0.0.1:6379/15)
for cache, limits and statistics, in namespaces of its own that are deleted afterwards, and with
SIPUP_BENCH_DATABASE_URL set too, MariaDB/MySQL (a scratch database per tree, dropped afterwards) instead of
the embedded SQLite. With --before REV the sipup pages of that revision (its tree exported from git, its own
demo data) are measured in the same rounds.

Pages: hello (benchmarks/hello_app.py), raw WSGI (benchmarks/raw_wsgi.py), the floor (benchmarks/floor_app.py:
Flask-Login, the signed session, Flask-Limiter with one limit, a CSRF token and a 35 KB cached body in a Jinja
layout; in Redis with --redis), the cached catalog /products, a product page /products/<sku>, a search
/products?q=cola, the cart /cart, and a mix: wrk cycling through MIX (catalog, its second page, a product, the
cart, the dashboard, the order history): one wrk thread, whose requests on all connections together take the
paths in turn.

Rounds alternate the order of pages and connection counts (forwards, then backwards), so a drift in the
machine's load falls on all alike; medians of the rounds are printed. Counting runs afterwards on one more
server per tree, COUNTED sequential requests per page on one connection: Redis commands and round trips
through a counting proxy in front of Redis (the statistics flushes, every 5 s, left out), SQL statements from
the server's own query statistics.
"""

import argparse
import http.client
import os
import re
import secrets
import shutil
import socket
import statistics
import subprocess
import tempfile
import threading
import time
import urllib.parse
from collections import Counter
from pathlib import Path

from benchmarks import SECRET_KEY
from benchmarks.capacity import waitress_app
from benchmarks.limits import ROOT, Server, _demo_instance, _wrk, cookie_header, delete_namespace
from benchmarks.sessions import export
from sipup.database import scratch_database

THREADS = 8  # waitress threads of every server: hello, raw WSGI and sipup (SIPUP_THREADS)
CONNECTIONS = (32, 1)
COUNTED = 240  # sequential requests per page when counting (a multiple of len(MIX))
MIX = ("/products", "/products?page=2", "/products/{sku}", "/cart", "/", "/orders")
SEARCH = "cola"  # a word of the demo catalog: the search page is /products?q=cola
PAGES = {
    "catalog": "/products",
    "product": "/products/{sku}",
    "search": f"/products?q={SEARCH}",
    "cart": "/cart",
    "mix": None,
}
FLOOR = "floor (stack)"  # the label of the floor app's page (benchmarks/floor_app.py)
MIX_SCRIPT = """-- the benchmark's page mix: the requests of a wrk thread take these paths in turn
local paths = {%s}
local i = 0
request = function()
  i = i %% #paths + 1
  return wrk.format("GET", paths[i])
end
"""


class Target:
    """One page of one server, as wrk asks for it."""

    def __init__(self, label, server, path="/", cookie="", script=None, sku=None):
        self.label, self.server, self.path, self.cookie, self.script = label, server, path, cookie, script
        self.sku, self.namespace, self.proxy = sku, None, None  # what counting needs
        self.url = f"http://127.0.0.1:{server.port}{path}"


class RedisCounter:
    """A TCP proxy in front of Redis counting what passes: commands, and round trips (a client write after a
    reply that does not finish a command; a pipeline or MULTI/EXEC sent at once is one trip). The wire cannot
    tell all of them apart: a pipeline that redis-py sends in several writes (a value over 6,000 bytes) counts
    as more than one trip when Redis answers its first part before the rest arrives, so trips are at most
    what is shown. Commands on the statistics keys (`<namespace>:counters`, `<namespace>:dbstats`, flushed every
    5 s whatever the traffic) are left out, and so is a trip of nothing else. Only for counting: it adds
    latency, so the measured servers talk to Redis directly."""

    SKIP = (b"MULTI", b"EXEC", b"DISCARD")  # count with their trip, not on their own

    def __init__(self, redis_url, namespace):
        parts = urllib.parse.urlsplit(redis_url)
        self.upstream = (parts.hostname or "127.0.0.1", parts.port or 6379)
        self.stats_prefixes = (f"{namespace}:counters".encode(), f"{namespace}:dbstats".encode())
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        userinfo = parts.netloc.rpartition("@")[0]
        self.url = parts._replace(netloc=f"{userinfo + '@' if userinfo else ''}127.0.0.1:{self.port}").geturl()
        self.lock, self.open_trips = threading.Lock(), []
        self.reset()
        threading.Thread(target=self._accept, daemon=True).start()

    def reset(self):
        with self.lock:
            for trip in self.open_trips:
                trip.clear()
            self.commands, self.trips, self.names = 0, 0, Counter()

    def snapshot(self):
        """(commands, round trips, commands by name) since reset()."""
        with self.lock:
            for trip in self.open_trips:
                self._close(trip)
            return self.commands, self.trips, Counter(self.names)

    def close(self):
        self.listener.close()

    def _close(self, trip):
        """Under the lock: count the commands of a finished trip unless it was statistics only."""
        names = [name for name, stats in trip if not stats]
        if any(name not in self.SKIP for name in names):
            self.trips += 1
            self.commands += len(names)
            self.names.update(name.decode() for name in names)
        trip.clear()

    def _accept(self):
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.upstream)
            for sock in (client, upstream):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            trip, replied = [], threading.Event()
            replied.set()
            with self.lock:
                self.open_trips.append(trip)
            threading.Thread(target=self._requests, args=(client, upstream, trip, replied), daemon=True).start()
            threading.Thread(target=self._replies, args=(upstream, client, replied), daemon=True).start()

    def _requests(self, client, upstream, trip, replied):
        buffer = b""
        try:
            while data := client.recv(65536):
                # The client waited for an answer: this write starts a trip, unless it finishes a command
                # (a long value goes in writes of its own, and Redis may answer what came before it meanwhile).
                starts = replied.is_set() and not buffer
                commands, buffer = self._parse(buffer + data)
                with self.lock:
                    if starts:
                        self._close(trip)
                    replied.clear()
                    trip.extend(commands)
                upstream.sendall(data)
        except OSError:
            pass
        finally:
            upstream.close()
            client.close()

    def _replies(self, upstream, client, replied):
        try:
            while data := upstream.recv(65536):
                replied.set()  # before the client can see the answer and send again
                client.sendall(data)
        except OSError:
            pass
        finally:
            client.close()

    def _parse(self, buffer):
        """[(command name, on a statistics key?)] of the complete RESP commands in buffer, and the rest."""
        commands, pos = [], 0
        while True:
            end = buffer.find(b"\r\n", pos)
            if end < 0 or buffer[pos : pos + 1] != b"*":
                break
            args, cursor = [], end + 2
            for _ in range(int(buffer[pos + 1 : end])):
                end = buffer.find(b"\r\n", cursor)
                if end < 0:
                    break
                length = int(buffer[cursor + 1 : end])
                if end + 2 + length + 2 > len(buffer):
                    break
                args.append(buffer[end + 2 : end + 2 + length])
                cursor = end + 2 + length + 2
            else:
                name = args[0].upper()
                key = args[3] if name in (b"EVAL", b"EVALSHA") and len(args) > 3 else args[1] if len(args) > 1 else b""
                commands.append((name, key.startswith(self.stats_prefixes)))
                pos = cursor
                continue
            break
        return commands, buffer[pos:]


def serving_process(server, word):
    """Whether the pid whose CPU is read is the serving process itself (taskset has exec'd it, no children)."""
    import psutil

    process = psutil.Process(server.process.pid)
    return word in " ".join(process.cmdline()) and "taskset" not in process.name() and not process.children()


def prepare(server):
    """Sign in as the demo buyer and put two products in the cart through the real form (CSRF token and all);
    (the cookie header, the first of those skus). The cart page is read last, so the cookie holds no message."""
    opener, jar = server.sign_in()
    html = opener.open(f"{server.url}/products", timeout=30).read().decode()
    forms = re.findall(r'<form method="post" action="/cart/add".*?</form>', html, re.S)
    skus = []
    for form in [f for f in forms if "disabled" not in f][:2]:
        fields = dict(re.findall(r'name="(csrf_token|sku|quantity)" value="([^"]*)"', form))
        opener.open(f"{server.url}/cart/add", data=urllib.parse.urlencode(fields).encode(), timeout=30).read()
        skus.append(fields["sku"])
    cart = opener.open(f"{server.url}/cart", timeout=30).read().decode()
    if len(skus) < 2 or not all(sku in cart for sku in skus):
        print(f"  warning: the cart of {server.name} does not hold two products ({skus})")
    return cookie_header(jar), skus[0]


def floor_cookie(server):
    """Sign in to the floor app: the Cookie header of its signed session."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    conn.request("GET", "/login")
    response = conn.getresponse()
    response.read()
    conn.close()
    return "; ".join(value.split(";")[0] for name, value in response.getheaders() if name.lower() == "set-cookie")


def targets_of(server, cookie, sku, folder, suffix=""):
    script = folder / f"mix-{server.name}.lua"
    script.write_text(MIX_SCRIPT % ", ".join(f'"{p.format(sku=sku)}"' for p in MIX))
    return [
        Target(label + suffix, server, (path or "/").format(sku=sku), cookie, script if path is None else None, sku)
        for label, path in PAGES.items()
    ]


def measure(targets, args, wrk_prefix):
    """{(label, connections): (median req/s, median server CPU ms per request)} over alternating rounds; a round
    that completed no request is said and left out (a page without any such round: (0, None))."""
    rates, cpu = {}, {}
    for target in targets:  # warm-up: caches, connection pools, compiled templates
        _wrk(target.url, target.cookie, 1, 8, target.script, wrk_prefix)
    for n in range(args.rounds):
        for target in targets if n % 2 == 0 else targets[::-1]:
            for connections in CONNECTIONS if n % 2 == 0 else CONNECTIONS[::-1]:
                key = (target.label, connections)
                before = target.server.cpu_seconds()
                rate, count, bad = _wrk(target.url, target.cookie, args.seconds, connections, target.script, wrk_prefix)
                if not count:
                    print(
                        f"  warning: round {n + 1}: 0 requests completed on {target.label} at {connections} connections"
                    )
                    continue
                cpu.setdefault(key, []).append((target.server.cpu_seconds() - before) / count * 1000)
                rates.setdefault(key, []).append(rate)
                if bad:
                    print(f"  warning: {bad} error answers on {target.label} at {connections} connections")
    keys = [(target.label, connections) for target in targets for connections in CONNECTIONS]
    return {
        key: (statistics.median(rates[key]), statistics.median(cpu[key])) if key in rates else (0, None) for key in keys
    }


def statement_totals(server, redis_url, namespace):
    """(requests, SQL statements) in the server's query statistics (minute buckets of the last hour): in the
    shared counters (group "dbstats"), or for an older revision in the store of its own it had then
    (query_stats.db, or Redis hashes "<namespace>:dbstats:minute:<start>"); None when neither can be read."""
    import sqlite3

    import redis

    seconds = 60
    now = int(time.time() // seconds * seconds)
    starts = [now - i * seconds for i in range(60)]
    fields = ("@requests", "@request_queries")
    try:
        if namespace:
            client = redis.Redis.from_url(redis_url)
            totals = [0, 0]
            for layout in ("{ns}:counters:dbstats:minute:{start}", "{ns}:dbstats:minute:{start}"):
                for start in starts:
                    values = client.hmget(layout.format(ns=namespace, start=start), fields)
                    for i, value in enumerate(values):
                        totals[i] += int(float(value)) if value else 0
                if totals[0]:
                    break
            client.close()
            return tuple(totals)
        new, old = server.instance / "metrics.db", server.instance / "query_stats.db"
        marks = ", ".join("?" * len(starts))
        if old.exists():
            query = f"SELECT key, SUM(count) FROM buckets WHERE res = 'minute' AND start IN ({marks}) GROUP BY key"
            path = old
        else:
            query = (
                f"SELECT name, SUM(value) FROM counters WHERE grp = 'dbstats' AND res = 'minute' "
                f"AND start IN ({marks}) GROUP BY name"
            )
            path = new
        with sqlite3.connect(path, timeout=5) as conn:
            found = dict(conn.execute(query, starts).fetchall())
        return tuple(int(found.get(name) or 0) for name in fields)
    except Exception:
        return None


def sequential(target, count):
    """`count` GETs one after the other on one keep-alive connection; the number of answers that were not 200."""
    paths = [p.format(sku=target.sku) for p in MIX] if target.script else [target.path]
    conn = http.client.HTTPConnection("127.0.0.1", target.server.port, timeout=30)
    bad = 0
    for i in range(count):
        conn.request("GET", paths[i % len(paths)], headers={"Cookie": target.cookie})
        response = conn.getresponse()
        response.read()
        bad += response.status != 200
    conn.close()
    return bad


def count(counting, redis_url, ready_at):
    """{label: (Redis commands, round trips, commands by name, SQL statements), each per request} on the
    counting servers: a batch per page and server, then a wait for the statistics to be flushed."""
    time.sleep(max(0.0, ready_at - time.monotonic()))
    totals = {id(t): statement_totals(t.server, redis_url, t.namespace) for t in counting}
    results = {}
    for label in PAGES:
        batch = [t for t in counting if t.label.split()[0] == label]
        for target in batch:
            if target.proxy:
                target.proxy.reset()
            bad = sequential(target, COUNTED)
            if bad:
                print(f"  warning: {bad} of {COUNTED} answers not 200 on {target.label} while counting")
            commands, trips, names = target.proxy.snapshot() if target.proxy else (None, None, Counter())
            results[target.label] = [
                None if commands is None else commands / COUNTED,
                None if trips is None else trips / COUNTED,
                {name: n / COUNTED for name, n in names.most_common()},
                None,
            ]
        time.sleep(6)  # query statistics are flushed every 5 s
        for target in batch:
            after, before = statement_totals(target.server, redis_url, target.namespace), totals[id(target)]
            if after and before and after[0] > before[0]:
                results[target.label][3] = (after[1] - before[1]) / (after[0] - before[0])
            totals[id(target)] = after
    return results


def revision(rev=None):
    """The short hash of rev, or of HEAD and whether the tree has changes beside it."""
    head = subprocess.run(["git", "rev-parse", "--short", rev or "HEAD"], cwd=ROOT, capture_output=True, text=True)
    if rev:
        return head.stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, capture_output=True)
    return head.stdout.strip() + (" with uncommitted changes" if dirty.stdout.strip() else "")


def _figure(value, pattern):
    return "-" if value is None else format(value, pattern)


def _ratio(value, base):
    """value / base, or None where either is missing or the base is 0 (no request completed)."""
    return None if value is None or not base else value / base


def table(labels, figures, counts, hello, floor):
    """One line per page; `hello` the hello's req/s at 32 connections, `floor` the floor's (CPU @1, CPU @32)."""
    print(
        f"{'page':<18} {'req/s @32':>9} {'ratio to hello':>14} {'req/s @1':>8} {'CPU ms/req @1':>13} {'@32':>6} "
        f"{'growth':>6} {'CPU/floor @1':>12} {'@32':>5} {'Redis cmds/req':>14} {'Redis trips/req':>15} {'SQL/req':>7}"
    )
    for label in labels:
        (rate32, cpu32), (rate1, cpu1) = figures[(label, 32)], figures[(label, 1)]
        commands, trips, _, sql = counts.get(label, (None, None, None, None))
        print(
            f"{label:<18} {rate32:>9,.0f} {_figure(_ratio(rate32, hello), '.3f'):>14} {rate1:>8,.0f} "
            f"{_figure(cpu1, '.2f'):>13} {_figure(cpu32, '.2f'):>6} {_figure(_ratio(cpu32, cpu1), '.2f'):>6} "
            f"{_figure(_ratio(cpu1, floor[0]), '.2f'):>12} {_figure(_ratio(cpu32, floor[1]), '.2f'):>5} "
            f"{_figure(commands, '.2f'):>14} {_figure(trips, '.2f'):>15} {_figure(sql, '.1f'):>7}"
        )
        if not rate32 or not rate1:
            print(f"{'':<18} (no request completed in any round at {32 if not rate32 else 1} connection(s))")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=3, help="Seconds per measured round.")
    parser.add_argument("--rounds", type=int, default=3, help="Rounds per page and connection count.")
    parser.add_argument("--redis", action="store_true", help="sipup's cache, limits and statistics in Redis.")
    parser.add_argument("--before", metavar="REV", help="Also measure the sipup pages of this revision.")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("benchmarks.pages needs wrk (Debian: apt-get install wrk)")
    pinned = bool(shutil.which("taskset")) and {0, 1} <= os.sched_getaffinity(0)
    server_prefix, wrk_prefix = (("taskset", "-c", "0"), ("taskset", "-c", "1")) if pinned else ((), ())
    redis_url = os.environ.get("SIPUP_BENCH_REDIS_URL", "redis://127.0.0.1:6379/15")
    folder = Path(tempfile.mkdtemp(prefix="sipup-bench-pages-"))
    database_url = os.environ.get("SIPUP_BENCH_DATABASE_URL") if args.redis else None
    trees = {"": ROOT, **({" (before)": export(args.before, folder / "before-tree")} if args.before else {})}
    servers, namespaces, proxies, counting, drops = [], [], [], [], []
    try:
        sipup = []
        for suffix, tree in trees.items():
            name = "before" if suffix else "after"
            database = {}
            if database_url:  # a scratch database per tree, its demo data built by that tree's code
                url, drop = scratch_database(database_url)
                drops.append(drop)
                database = {"SIPUP_DATABASE_URL": url}
            template = _demo_instance(folder / f"{name}-template", root=tree, env=database)
            for role in ("", "-count"):
                env = {"SIPUP_THREADS": str(THREADS), "SIPUP_DB_STATS": "true", "SIPUP_REQUEST_STATS": "true"}
                env.update(database)
                namespace, proxy = None, None
                if args.redis:
                    namespace = f"sipupbench-{secrets.token_hex(4)}"
                    namespaces.append(namespace)
                    url = redis_url
                    if role and urllib.parse.urlsplit(redis_url).scheme == "redis":
                        proxy = RedisCounter(redis_url, namespace)
                        proxies.append(proxy)
                        url = proxy.url
                    env.update(SIPUP_REDIS_URL=url, SIPUP_REDIS_NAMESPACE=namespace)
                server = Server(name + role, folder, env, template, root=tree, prefix=server_prefix if not role else ())
                servers.append(server)
                sipup.append((suffix, role, server, namespace, proxy))
        hello = waitress_app("benchmarks.hello_app:app", str(folder), "hello", THREADS, server_prefix)
        raw = waitress_app("benchmarks.raw_wsgi:app", str(folder), "raw-wsgi", THREADS, server_prefix)
        floor_env = {"FLOOR_SECRET_KEY": SECRET_KEY}
        if args.redis:
            floor_env.update(FLOOR_REDIS_URL=redis_url, FLOOR_NAMESPACE=f"sipupbench-{secrets.token_hex(4)}")
            namespaces.append(floor_env["FLOOR_NAMESPACE"])
        floor = waitress_app("benchmarks.floor_app:app", str(folder), "floor", THREADS, server_prefix, floor_env)
        servers += [hello, raw, floor]
        targets = [Target("hello (Flask)", hello), Target("raw WSGI", raw), Target(FLOOR, floor, "/products")]
        targets[-1].cookie = floor_cookie(floor)
        for suffix, role, server, namespace, proxy in sipup:
            server.wait()
            cookie, sku = prepare(server)
            if role:
                for target in targets_of(server, cookie, sku, folder, suffix):
                    target.namespace, target.proxy = namespace, proxy
                    sequential(target, 12)  # warm-up: caches and connections
                    counting.append(target)
            else:
                targets += targets_of(server, cookie, sku, folder, suffix)
        ready_at = time.monotonic() + 6  # the counting servers' statistics flushed
        measured = [(server, "flask") for _, role, server, *_ in sipup if not role] + [
            (hello, "waitress"),
            (raw, "waitress"),
            (floor, "waitress"),
        ]
        if not all(serving_process(server, word) for server, word in measured):
            print("  warning: a measured pid is not the serving process itself: CPU figures are not the server's")
        backend = "embedded default (SQLite, folder cache)"
        if args.redis:
            backend = f"{'MariaDB/MySQL + ' if database_url else 'SQLite + '}Redis {redis_url}"
        load = os.getloadavg()
        print(
            f"revision {revision()}; {backend}"
            f"; servers {'on core 0, wrk -t1 on core 1' if pinned else 'not pinned (fewer than 2 cores)'}; one "
            f"waitress process, {THREADS} threads each; {args.rounds} rounds of {args.seconds} s per page and "
            f"connection count, medians; load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on "
            f"{os.cpu_count()} CPUs",
            flush=True,
        )
        figures = measure(targets, args, wrk_prefix)
        counts = count(counting, redis_url, ready_at)
        load = os.getloadavg()
        print(f"load average after: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
        floor_cpu = (figures[(FLOOR, 1)][1], figures[(FLOOR, 32)][1])
        table([t.label for t in targets], figures, counts, figures[("hello (Flask)", 32)][0], floor_cpu)
        sku = next(t.sku for t in targets if t.sku)
        print(f"mix: the requests take {', '.join(MIX)} in turn; {{sku}} = {sku}, a demo product in stock")
        print(
            f"counted over {COUNTED} sequential requests per page on one connection, on a server of their own: "
            "Redis cmds = commands Redis executes (a pipeline of 3 is 3 commands), Redis trips = round trips "
            "(that pipeline is one); both without the statistics flushes (every 5 s); SQL = statements per "
            "request from sipup's query statistics"
        )
        if args.redis:
            for label, (_, _, names, _) in counts.items():
                print(f"  {label}: " + ", ".join(f"{name} {n:.3g}" for name, n in names.items()))
        if args.before:
            print(f"after ({revision()}) / before ({args.before} = {revision(args.before)}); CPU: after/before too:")
            print(f"{'page':<10} {'req/s @32':>9} {'req/s @1':>8} {'CPU/req @1':>10} {'CPU/req @32':>11}")
            for label in PAGES:
                after = [figures[(label, c)] for c in (32, 1)]
                before = [figures[(f"{label} (before)", c)] for c in (32, 1)]
                ratios = [
                    _ratio(after[0][0], before[0][0]),
                    _ratio(after[1][0], before[1][0]),
                    _ratio(after[1][1], before[1][1]),
                    _ratio(after[0][1], before[0][1]),
                ]
                print(f"{label:<10} " + " ".join(f"{_figure(r, '.2f'):>{w}}" for r, w in zip(ratios, (9, 8, 10, 11))))
    finally:
        for server in servers:
            server.stop()
        for proxy in proxies:
            proxy.close()
        shutil.rmtree(folder, ignore_errors=True)
        for namespace in namespaces:
            delete_namespace(redis_url, namespace)
        for drop in drops:
            drop()


if __name__ == "__main__":
    main()
