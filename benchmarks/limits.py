"""The cost of sipup's rate limits: pages per second under real waitress with the limits on and off,
counting in memory and in Redis, all in the same run.

python -m benchmarks.limits [--seconds 3] [--rounds 3] [--in-process] [--profile [--redis]]

Four `flask serve` processes on the embedded demo data: limits off and on without Redis, limits off and on
with SIPUP_REDIS_URL (default redis://127.0.0.1:6379/15, a namespace of its own, deleted afterwards;
set SIPUP_BENCH_REDIS_URL to choose). The limits are set so high that nothing is refused: the counting
work is what is measured. wrk drives the load when installed, else a small threaded Python client.
--in-process measures CPU per request through the Flask test client instead (steadier on a busy machine);
--profile runs the app in this process under cProfile and prints where a request's limiter time goes.
"""

import argparse
import http.client
import math
import os
import re
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from http.cookiejar import CookieJar
from pathlib import Path

from benchmarks import SECRET_KEY, free_port

ROOT = Path(__file__).resolve().parents[1]
PAGES = {  # path: (signed in?, what it is)
    "/login": (False, "a cheap page: anonymous sign-in form, a template and no database; address limit"),
    "/products": (True, "the cached catalog page of a signed-in buyer; address and user limits"),
}
HIGH = "1000000 per minute"


class Server:
    """One `flask serve` on its own instance folder (embedded SQLite with demo data), of the code in root.
    `env` overrides the defaults below (SIPUP_DB_STATS=true puts the query statistics back on); `prefix` goes
    before the command (e.g. `taskset -c 0`, which execs it: the process stays the serving one)."""

    def __init__(self, name, folder, env, template, root=ROOT, prefix=()):
        self.name, self.port = name, free_port()
        self.instance = folder / name
        shutil.copytree(template, self.instance)  # the same data for every server
        self.url = f"http://127.0.0.1:{self.port}"
        environ = {k: v for k, v in os.environ.items() if not k.startswith("SIPUP_")}
        environ.update(
            {
                "SIPUP_INSTANCE_PATH": str(self.instance),
                "SIPUP_SECRET_KEY": SECRET_KEY,
                "SIPUP_THREADS": "4",
                "SIPUP_PROCESSES": "1",  # the pid measured is the one serving process (not a process per core)
                "SIPUP_RATELIMIT_IP": HIGH,
                "SIPUP_RATELIMIT_USER": HIGH,
                "SIPUP_DB_STATS": "false",
                **env,
            }
        )
        self.log = open(self.instance / "serve.log", "wb")
        self.process = subprocess.Popen(
            [*prefix, sys.executable, "-m", "flask", "serve", "--port", str(self.port)],
            cwd=root,
            env=environ,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    def wait(self, timeout=120):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"{self.name} exited:\n{(self.instance / 'serve.log').read_text()}")
            try:
                urllib.request.urlopen(f"{self.url}/healthz", timeout=2).close()
                return
            except (urllib.error.URLError, ConnectionError, TimeoutError):  # not listening, or still loading the app
                time.sleep(0.3)
        raise SystemExit(f"{self.name} did not start")

    def session_cookie(self):
        """Sign in as the first demo buyer; the cookie header for the load generator."""
        return cookie_header(self.sign_in()[1])

    def sign_in(self):
        """Sign in as the first demo buyer through the real form: an opener that keeps the session, and its jar."""
        logins = [line.split("\t") for line in (self.instance / "demo-logins.txt").read_text().splitlines()]
        email, password = next((e, p) for role, e, p in logins if role in ("buyer", "owner"))
        jar = CookieJar()
        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
        # No User-Agent, as wrk sends none: Flask-Login ties the session to the browser it signed in with, and
        # on a request from another one marks the session not fresh, so the cookie is rewritten every time.
        opener.addheaders = []
        form = opener.open(f"{self.url}/login", timeout=30).read().decode()
        token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', form).group(1)
        data = urllib.parse.urlencode({"email": email, "password": password, "csrf_token": token}).encode()
        opener.open(f"{self.url}/login", data=data, timeout=30).close()
        return opener, jar

    def cpu_seconds(self):
        """User and system CPU time the server process has used so far (Linux /proc)."""
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self):
        self.process.terminate()
        self.process.wait(timeout=10)
        self.log.close()


def cookie_header(jar):
    """The Cookie header a browser would send with the cookies of `jar`."""
    return "; ".join(f"{c.name}={c.value}" for c in jar)


def delete_namespace(redis_url, namespace):
    """Remove the benchmark's keys, its job queue's included, from the shared Redis."""
    import redis

    from sipup import redisclient

    client = redis.Redis.from_url(redis_url)
    redisclient.delete_namespace(client, namespace)
    client.close()


def _demo_instance(path, root=ROOT, env=None):
    """An instance folder with the demo database and its logins, copied to every server so that each
    page costs the same everywhere (the demo data is random). Built in a process of its own, whose
    statistics are flushed and gone before the folder is; `env` more variables (SIPUP_DATABASE_URL)."""
    code = f"from benchmarks.limits import _build_demo; from pathlib import Path; _build_demo(Path({str(path)!r}))"
    environ = {**os.environ, **(env or {})}
    subprocess.run([sys.executable, "-c", code], cwd=root, check=True, capture_output=True, env=environ)
    return path


def _build_demo(path):
    from sipup import create_app
    from sipup.cli.db import upgrade_schema
    from sipup.extensions import db
    from sipup.services.seed import seed_demo

    app = create_app({"SECRET_KEY": SECRET_KEY}, instance_path=str(path))
    with app.app_context():
        upgrade_schema()
        logins = seed_demo()
        db.engine.dispose()
    (path / "demo-logins.txt").write_text("".join(f"{r}\t{e}\t{p}\n" for r, e, p in logins), encoding="utf-8")
    for name in ("logs", "metrics.db", "limits.db", "secret_key"):
        target = path / name
        shutil.rmtree(target) if target.is_dir() else target.unlink(missing_ok=True)


def _wrk(url, cookie, seconds, connections, script=None, prefix=()):
    """wrk's req/s, requests and error answers; `script` a Lua file, `prefix` e.g. `taskset -c 1`."""
    headers = ["-H", f"Cookie: {cookie}"] if cookie else []
    headers += ["-s", str(script)] if script else []
    command = [*prefix, "wrk", "-t1", f"-c{connections}", f"-d{seconds}s", *headers, url]
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    count = int(re.search(r"(\d+) requests in", out).group(1))
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return rate, count, int(bad.group(1)) if bad else 0


def _python_load(url, cookie, seconds, connections):
    parsed = urllib.parse.urlsplit(url)
    counts, bad, stop = [0] * connections, [0] * connections, time.monotonic() + seconds

    def worker(i):
        conn = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=30)
        while time.monotonic() < stop:
            conn.request("GET", parsed.path, headers={"Cookie": cookie} if cookie else {})
            response = conn.getresponse()
            response.read()
            counts[i] += 1
            bad[i] += response.status >= 400

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(connections)]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(counts) / (time.monotonic() - started), sum(counts), sum(bad)


def alternate(servers, pair, page, cookies, args, load):
    """[(median req/s, median server CPU ms per request)] of the two servers of `pair` on one page; rounds
    alternate off/on and on/off, so a drift in the machine's load falls on both alike."""
    rates, cpu = {name: [] for name in pair}, {name: [] for name in pair}
    for n in range(args.rounds):
        for name in pair if n % 2 == 0 else pair[::-1]:
            before = servers[name].cpu_seconds()
            rate, count, bad = load(servers[name].url + page, cookies.get(name, ""), args.seconds, args.connections)
            cpu[name].append((servers[name].cpu_seconds() - before) / count * 1000)
            rates[name].append(rate)
            if bad:
                print(f"  warning: {bad} error answers on {name} {page}")
    return [(statistics.median(rates[name]), statistics.median(cpu[name])) for name in pair]


def measure(args):
    redis_url = os.environ.get("SIPUP_BENCH_REDIS_URL", "redis://127.0.0.1:6379/15")
    namespace = f"sipupbench-{secrets.token_hex(4)}"
    load = _wrk if shutil.which("wrk") else _python_load
    folder = Path(tempfile.mkdtemp(prefix="sipup-bench-limits-"))
    with_redis = {"SIPUP_REDIS_URL": redis_url, "SIPUP_REDIS_NAMESPACE": namespace}
    modes = {
        "memory off": {"SIPUP_RATELIMIT_ENABLED": "false"},
        "memory on": {},
        "redis off": {"SIPUP_RATELIMIT_ENABLED": "false", **with_redis},
        "redis on": with_redis,
    }
    template = _demo_instance(folder / "template")
    servers = {name: Server(name.replace(" ", "-"), folder, env, template) for name, env in modes.items()}
    try:
        for server in servers.values():
            server.wait()
        cookies = {name: server.session_cookie() for name, server in servers.items()}
        print(
            f"load: {load.__name__.strip('_')}, {args.connections} connections, {args.seconds} s a round, "
            f"{args.rounds} rounds per mode (off/on, then on/off), median round reported; "
            f"machine load average before: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs"
        )
        for page, (signed_in, what) in PAGES.items():
            print(f"{page} ({what}):")
            for storage in ("memory", "redis"):
                (off, cpu_off), (on, cpu_on) = alternate(
                    servers, [f"{storage} off", f"{storage} on"], page, cookies if signed_in else {}, args, load
                )
                print(
                    f"  {storage:<6} throughput: limits off {off:5.0f} req/s, on {on:5.0f} req/s, "
                    f"on/off = {on / off:.2f} (cost {1 - on / off:+.1%}); server CPU per request: off "
                    f"{cpu_off:.2f} ms, on {cpu_on:.2f} ms, off/on = {cpu_off / cpu_on:.2f} (cost "
                    f"{1 - cpu_off / cpu_on:+.1%})"
                )
        print(f"machine load average after: {os.getloadavg()[0]:.1f}")
    finally:
        for server in servers.values():
            server.stop()
        shutil.rmtree(folder, ignore_errors=True)
        delete_namespace(redis_url, namespace)


def in_process(args):
    """CPU time per request through the Flask test client, limits on and off over one copy of the demo data:
    no server, no network, and the lowest of several rounds, so it moves little with the machine's load."""
    from sipup import create_app

    folder = Path(tempfile.mkdtemp(prefix="sipup-bench-limits-"))
    template = _demo_instance(folder / "template")
    logins = [line.split("\t") for line in (template / "demo-logins.txt").read_text().splitlines()]
    email, password = next((e, p) for role, e, p in logins if role in ("buyer", "owner"))
    redis_url = os.environ.get("SIPUP_BENCH_REDIS_URL", "redis://127.0.0.1:6379/15")
    namespace = f"sipupbench-{secrets.token_hex(4)}"
    base = {
        "SECRET_KEY": SECRET_KEY,
        "RATELIMIT_IP": HIGH,
        "RATELIMIT_USER": HIGH,
        "DB_STATS": False,
        "WTF_CSRF_ENABLED": False,
    }
    with_redis = {"REDIS_URL": redis_url, "REDIS_NAMESPACE": namespace}
    modes = {
        "memory off": {"RATELIMIT_ENABLED": False},
        "memory on": {},
        "redis off": {"RATELIMIT_ENABLED": False, **with_redis},
        "redis on": with_redis,
    }
    print(f"in-process: CPU time per request, lowest of {args.rounds} rounds of 200 requests per mode")
    for page, (signed_in, what) in PAGES.items():
        clients = {}
        for name, extra in modes.items():
            instance = folder / f"{name.replace(' ', '-')}-{page.strip('/')}"
            shutil.copytree(template, instance)
            client = create_app({**base, **extra}, instance_path=str(instance)).test_client()
            if signed_in:
                client.post("/login", data={"email": email, "password": password})
            for _ in range(50):
                client.get(page)
            clients[name] = client
        best = {name: math.inf for name in modes}
        for _ in range(args.rounds):
            for name, client in clients.items():
                started = time.process_time()
                for _ in range(200):
                    client.get(page)
                best[name] = min(best[name], (time.process_time() - started) / 200 * 1000)
        print(f"{page} ({what}):")
        for storage in ("memory", "redis"):
            off, on = best[f"{storage} off"], best[f"{storage} on"]
            print(
                f"  {storage:<6} off {off:.3f} ms, on {on:.3f} ms: limits add {(on - off) * 1000:.0f} us a request, "
                f"off/on = {off / on:.2f} (cost {1 - off / on:+.1%})"
            )
    delete_namespace(redis_url, namespace)


def profile(args):
    """Where the limiter's time goes on one request, in this process (Flask test client, memory storage)."""
    import cProfile
    import pstats

    from sipup import create_app

    folder = tempfile.mkdtemp(prefix="sipup-bench-limits-")
    extra = (
        {
            "REDIS_URL": os.environ.get("SIPUP_BENCH_REDIS_URL", "redis://127.0.0.1:6379/15"),
            "REDIS_NAMESPACE": f"sipupbench-{secrets.token_hex(4)}",
        }
        if args.redis
        else {}
    )
    app = create_app(
        {"SECRET_KEY": SECRET_KEY, "RATELIMIT_IP": HIGH, "RATELIMIT_USER": HIGH, "DB_STATS": False, **extra},
        instance_path=folder,
    )
    client = app.test_client()
    for _ in range(200):
        client.get("/login")
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(args.requests):
        client.get("/login")
    profiler.disable()
    stats = pstats.Stats(profiler)
    stats.sort_stats("cumulative").print_stats(r"flask_limiter|limits|sipup/limits", 30)
    shutil.rmtree(folder, ignore_errors=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=3, help="Seconds per measured round.")
    parser.add_argument("--rounds", type=int, default=3, help="Rounds per mode and page.")
    parser.add_argument("--connections", type=int, default=4, help="Concurrent connections.")
    parser.add_argument("--in-process", action="store_true", help="CPU per request via the test client instead.")
    parser.add_argument("--profile", action="store_true", help="Profile the limiter in-process instead.")
    parser.add_argument("--redis", action="store_true", help="With --profile: count in Redis.")
    parser.add_argument("--requests", type=int, default=3000, help="With --profile: requests to profile.")
    args = parser.parse_args()
    if args.profile:
        profile(args)
    elif args.in_process:
        in_process(args)
    else:
        measure(args)


if __name__ == "__main__":
    main()
