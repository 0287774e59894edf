"""Capacity: the highest open-model rate sipup holds with p99 under 500 ms and under 1% errors, beside
a bare Flask "hello" and a raw WSGI app under the same waitress; `flask serve --processes` 1, 2 and (on a
bigger machine) one per core; and what happens past the limit.

python -m benchmarks.capacity --quick     # a few minutes: SQLite, then MariaDB + Redis when configured
python -m benchmarks.capacity --full      # bigger seed, longer steps (about 30 minutes)

MariaDB + Redis run when SIPUP_BENCH_DATABASE_URL and SIPUP_BENCH_REDIS_URL are set (a scratch database
of its own, dropped at the end; a Redis namespace of its own, deleted at the end). The scaling part needs
MariaDB + Redis, the degradation part HAProxy too (Debian package `haproxy`); without them they are skipped
with a message. Every signed-in virtual user has a buyer account of its own (an account keeps at most
MAX_SESSIONS sessions: a 21st sign-in would end the first). Results go to standard output and, as
Markdown, to --out (default benchmarks/capacity-results.md).
"""

import argparse
import json
import os
import platform
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from types import SimpleNamespace

import psutil

from benchmarks import SECRET_KEY, free_port
from sipup.config import ENDPOINT_LIMITS
from sipup.loadtest import report as reports
from sipup.loadtest.runner import Runner, RunOptions
from sipup.loadtest.scenarios import Pages, Storefront
from sipup.services.accounts import MAX_SESSIONS

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PASSWORD = "benchmark password"
P99_LIMIT_MS = 500.0
ERROR_LIMIT = 0.01
MEASURING_BUDGET = "1000000 per minute"
THINK_SECONDS = 20.0  # one request per user every 20 s: the conversion to concurrent users

PROFILES = {
    # step: seconds per measured rate (warm-up included); steps: most rates tried per search.
    "smoke": dict(products=60, companies=6, orders=200, months=3, step=2.0, warmup=0.5, steps=1, users=4),
    "quick": dict(products=1000, companies=100, orders=20_000, months=13, step=8.0, warmup=2.0, steps=6, users=32),
    "full": dict(products=3000, companies=300, orders=200_000, months=13, step=20.0, warmup=5.0, steps=8, users=64),
}


# --- processes -------------------------------------------------------------------------------


def wait_for_port(port, process, log_path, seconds=60):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited; see {log_path}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing answered on port {port} within {seconds} s; see {log_path}")


class Server:
    """A server process (waitress, `flask serve` or HAProxy) with its port, log and resource readings; the
    readings take in its children (the processes of `flask serve --processes N`)."""

    def __init__(self, command, env, log_path, port):
        self.port, self.log_path = port, log_path
        self.log = open(log_path, "ab")
        self.process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT)
        wait_for_port(port, self.process, log_path)
        self.ps = psutil.Process(self.process.pid)

    def processes(self):
        """The server process and its children (a child that ended between the two reads left out)."""
        try:
            return [self.ps, *self.ps.children(recursive=True)]
        except psutil.Error:
            return [self.ps]

    def cpu_seconds(self):
        return _cpu_of(self.processes())

    def peak_rss_mb(self):
        """VmHWM: the most resident memory one of its processes ever had (Linux), else the current RSS."""
        peaks = []
        for process in self.processes():
            try:
                with open(f"/proc/{process.pid}/status") as handle:
                    peaks += [int(line.split()[1]) / 1024 for line in handle if line.startswith("VmHWM:")]
            except OSError:
                peaks.append(self.rss_mb(process))
        return max(peaks)

    @staticmethod
    def rss_mb(process):
        try:
            return process.memory_info().rss / 2**20
        except psutil.Error:
            return 0.0

    def db_connections(self, port=3306):
        total = 0
        for process in self.processes():
            try:
                total += sum(1 for c in process.net_connections("tcp") if c.raddr and c.raddr.port == port)
            except (psutil.Error, OSError):
                pass
        return total

    def stop(self):
        """Ctrl+C, so sipup flushes its counters on the way out."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()


def base_env():
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIPUP_")}
    env["PYTHONPATH"] = ROOT
    return env


def waitress_app(spec, folder, name, threads=8, prefix=(), env=None):
    """`python -m waitress` serving a bare WSGI app (the baselines); `prefix` e.g. `taskset -c 0`, `env` more
    environment variables."""
    port = free_port()
    command = [
        *prefix,
        sys.executable,
        "-m",
        "waitress",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        f"--threads={threads}",
        spec,
    ]
    return Server(command, {**base_env(), **(env or {})}, os.path.join(folder, f"{name}.log"), port)


def sipup_server(config, instance, folder, name, threads=8, processes=1):
    """`flask serve --processes N`: every production middleware on (session, CSRF, limits counted, statistics).
    Every load comes from one address, so the limits are raised out of reach (still counted); `config` wins."""
    port = free_port()
    env = base_env()
    env.update(
        {
            "SIPUP_RATELIMIT_IP": MEASURING_BUDGET,
            "SIPUP_RATELIMIT_USER": MEASURING_BUDGET,
            "SIPUP_RATELIMIT_ENDPOINTS": json.dumps({rule: MEASURING_BUDGET for rule in ENDPOINT_LIMITS}),
            "SIPUP_SLOW_QUERY_MS": "100000",
        }
    )
    env.update({f"SIPUP_{k}": str(v) for k, v in config.items()})
    env.update(SIPUP_INSTANCE_PATH=instance, SIPUP_SECRET_KEY=SECRET_KEY, FLASK_APP="wsgi")
    command = [sys.executable, "-m", "flask", "serve", "--port", str(port), "--threads", str(threads)]
    command += ["--processes", str(processes)]
    return Server(command, env, os.path.join(folder, f"{name}.log"), port)


HAPROXY = """global
    maxconn 4096
defaults
    mode http
    timeout connect 2s
    timeout client 60s
    timeout server 60s
    timeout queue {queue}
frontend web
    bind 127.0.0.1:{port}
    default_backend app
    http-after-response set-header Retry-After 5 if {{ status 503 }}
backend app
    balance roundrobin
{servers}
"""


def haproxy(backends, folder, name, maxconn=None, queue="5s"):
    """HAProxy in front of the given ports; with maxconn, at most that many requests per server at once
    and the rest queued up to `queue`, then answered 503 with Retry-After."""
    port = free_port()
    limit = f" maxconn {maxconn}" if maxconn else ""
    servers = "\n".join(f"    server s{i} 127.0.0.1:{p}{limit}" for i, p in enumerate(backends, 1))
    path = os.path.join(folder, f"{name}.cfg")
    with open(path, "w") as handle:
        handle.write(HAPROXY.format(port=port, servers=servers, queue=queue))
    return Server([shutil.which("haproxy"), "-f", path, "-db"], base_env(), os.path.join(folder, f"{name}.log"), port)


# --- data --------------------------------------------------------------------------------------


def harness_app(config, instance, **extra):
    """An app of the harness's own on the servers' database and Redis, without statement statistics."""
    from sipup import create_app

    return create_app({"SECRET_KEY": SECRET_KEY, "DB_STATS": False, **config, **extra}, instance_path=instance)


def close_app(app):
    """Done with a harness app: its connections closed, its cache and counters too, so that nothing of it is
    written into the Redis namespace after the run deletes it."""
    from sipup.extensions import db

    with app.app_context():
        db.engine.dispose()
    app.extensions["sipup_cache"].close()
    app.extensions["counters"].close()


def prepare(config, instance, profile):
    """Schema and seed data of the profile's size; returns the buyers' logins."""
    from sqlalchemy import select

    from sipup.cli.db import upgrade_schema
    from sipup.extensions import db
    from sipup.models import Role, User
    from sipup.services import seed

    app = harness_app(config, instance, CACHE_URL="none://")
    started = time.monotonic()
    with app.app_context():
        upgrade_schema()
        seed.seed_catalog(profile["products"])
        seed.seed_companies(profile["companies"], PASSWORD)
        seed.seed_orders(profile["orders"], profile["months"])
        buyers = list(db.session.scalars(select(User.email).where(User.role == Role.BUYER)))
    close_app(app)
    print(
        f"  seeded {profile['products']:,} products, {profile['companies']:,} companies, {profile['orders']:,} orders "
        f"in {time.monotonic() - started:.0f} s",
        flush=True,
    )
    return [(email, PASSWORD) for email in buyers]


def counts(config, instance):
    """(orders, order-confirmation jobs, failed jobs) in the database."""
    from sqlalchemy import func, select

    from sipup.extensions import db
    from sipup.models import Job, Order

    app = harness_app(config, instance)
    with app.app_context():
        orders = db.session.scalar(select(func.count(Order.id)))
        confirmations = db.session.scalar(
            select(func.count(Job.id)).where(Job.dedupe_key.like("mail:order_confirmation:%"))
        )
        failed = db.session.scalar(select(func.count(Job.id)).where(Job.status == "failed"))
    close_app(app)
    return orders, confirmations, failed


class Restock:
    """Puts every product's available stock back before each step: what the seed gave it, and at least
    STOCKED units for a product the seed stocked at all. Buyers do not put what is sold out in the cart, so
    a run that sold out the products they see would measure fewer writes step by step (the search that comes
    later, the second process count, a cheaper mix), and a faster step would sell more of them out before it
    ends (the rate held, a cheaper mix too)."""

    STOCKED = 1000

    def __init__(self, config, instance):
        from sqlalchemy import select

        from sipup.extensions import db
        from sipup.models import Product

        self.app = harness_app(config, instance)
        with self.app.app_context():
            rows = db.session.execute(select(Product.id, Product.stock_on_hand, Product.stock_reserved))
            self.available = {
                id_: max(on_hand - reserved, self.STOCKED) if on_hand > reserved else 0
                for id_, on_hand, reserved in rows
            }

    def __call__(self):
        """Every product's available stock as kept at the start (the orders placed keep their reservations);
        how many products it changed."""
        from sqlalchemy import bindparam, select, update

        from sipup.extensions import db
        from sipup.models import Product
        from sipup.services.orders import STOCK

        with self.app.app_context():
            rows = db.session.execute(select(Product.id, Product.stock_on_hand, Product.stock_reserved))
            changed = [
                {"b_id": id_, "b_on_hand": reserved + self.available[id_]}
                for id_, on_hand, reserved in rows
                if on_hand != reserved + self.available[id_]
            ]
            if changed:  # written through the app as an order moves stock, so every server's stock follows
                statement = (
                    update(Product.__table__)
                    .where(Product.__table__.c.id == bindparam("b_id"))
                    .values(stock_on_hand=bindparam("b_on_hand"))
                )
                db.session.execute(statement, changed, execution_options={"cache_touches": STOCK})
                db.session.commit()
            db.session.remove()
        return len(changed)

    def close(self):
        close_app(self.app)


# --- measuring ------------------------------------------------------------------------------------


def _shared_servers():
    """MariaDB and Redis on this machine (shared with whatever else runs here), to read their CPU."""
    found = []
    for process in psutil.process_iter(["name"]):
        if process.info["name"] in ("mariadbd", "mysqld", "redis-server"):
            found.append(process)
    return found


def _cpu_of(processes):
    total = 0.0
    for process in processes:
        try:
            times = process.cpu_times()
            total += times.user + times.system
        except psutil.Error:
            pass
    return total


class Watch:
    """Samples the servers' database connections twice a second during a step; CPU from the totals. Both
    count from the measured part of the step (after the sign-ins and the warm-up) once the runner's
    first tick after it comes, a second at most later."""

    def __init__(self, servers):
        self.servers, self.stopping = servers, threading.Event()
        self.shared, self.measuring = _shared_servers(), False

    def __enter__(self):
        self.begin()
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()
        return self

    def begin(self):
        self.peak_connections = 0
        self.cpu = sum(s.cpu_seconds() for s in self.servers)
        self.shared_cpu = _cpu_of(self.shared)
        self.machine = psutil.cpu_times()
        self.began = time.perf_counter()

    def progress(self, runner, now):
        """The runner's progress call, once a second: start counting when the measured part starts."""
        if not self.measuring and now >= runner.clock.measure_from:
            self.measuring = True
            self.begin()

    def _sample(self):
        while not self.stopping.wait(0.5):
            self.peak_connections = max(self.peak_connections, sum(s.db_connections() for s in self.servers))

    def __exit__(self, *exc):
        self.stopping.set()
        self.thread.join()
        elapsed = time.perf_counter() - self.began
        self.cpu_percent = 100 * (sum(s.cpu_seconds() for s in self.servers) - self.cpu) / elapsed
        self.shared_cpu_percent = 100 * (_cpu_of(self.shared) - self.shared_cpu) / elapsed
        machine = psutil.cpu_times()
        busy = lambda t: sum(t) - t.idle - getattr(t, "iowait", 0)  # noqa: E731
        self.machine_percent = 100 * (busy(machine) - busy(self.machine)) / (sum(machine) - sum(self.machine))
        self.peak_rss_mb = max(s.peak_rss_mb() for s in self.servers)
        self.rss_mb = max(s.rss_mb(p) for s in self.servers for p in s.processes())


def settle(servers, idle_share=0.1, seconds=30.0):
    """Wait until the servers are idle (under a tenth of a core for half a second): requests a step not held
    left queued are still served after the generator gave up on them, and would count against the next step."""
    deadline = time.monotonic() + seconds
    processes = [p for server in servers for p in server.processes()]
    while processes and time.monotonic() < deadline:
        before = _cpu_of(processes)
        time.sleep(0.5)
        if _cpu_of(processes) - before < idle_share * 0.5:
            return


def load(url, scenario, rate, profile, logins=(), pages=(("/", 1.0),), seconds=None, watch=(), users=None):
    """One open-model step at `rate` arrivals/s; the loadtest report plus the servers' readings."""
    seconds = seconds or profile["step"]
    users = users or profile["users"]
    if logins and -(-users // len(logins)) > MAX_SESSIONS:
        raise SystemExit(
            f"{users} virtual users on {len(logins)} accounts: more than {MAX_SESSIONS} sessions on one account would "
            "end the first ones; seed more companies (each has a buyer)"
        )
    settle(watch)
    scenario_options = SimpleNamespace(pages=list(pages), logins=list(logins), think=None, anonymous_share=0.2)
    options = RunOptions(
        url=url,
        scenario=scenario,
        scenario_options=scenario_options,
        users=users,
        rate=rate,
        duration=seconds,
        warmup=profile["warmup"],
        timeout=10.0,
    )
    with Watch(watch) as watched:
        outcome = Runner(options, progress=watched.progress).run()
    report = reports.figures(outcome)
    total = report["total"]
    return {
        "rate": rate,
        "rps": total["rps"],
        "requests": total["requests"],
        "failures": total["failures"],
        # An arrival the generator had to drop (every user busy: the server fell behind) counts as an error.
        "error_share": (total["failures"] + report["open"]["dropped"]) / (total["requests"] + report["open"]["dropped"])
        if total["requests"]
        else 1.0,
        "p50": total["latency_ms"]["p50"],
        "p95": total["latency_ms"]["p95"],
        "p99": total["latency_ms"]["p99"],
        "mean": total["latency_ms"]["mean"],
        "dropped": report["open"]["dropped"],
        "reached": report["open"]["achieved_rate"] >= 0.95 * rate,
        "generator_cpu": report["generator"]["cpu_percent"],
        "server_cpu": watched.cpu_percent,
        "db_redis_cpu": watched.shared_cpu_percent,
        "machine_cpu": watched.machine_percent,
        "peak_rss_mb": watched.peak_rss_mb,
        "rss_mb": watched.rss_mb,
        "db_connections": watched.peak_connections,
        "failures_by_reason": _by_reason(report["failures"]),
        "pages": {page["name"]: page for page in report["pages"]},
        "series": report["series"],
    }


def _by_reason(rows):
    """{reason: count} over every page (the report lists a row per page and reason)."""
    found = {}
    for row in rows:
        found[row["reason"]] = found.get(row["reason"], 0) + row["count"]
    return found


def held(step):
    return step["reached"] and step["p99"] < P99_LIMIT_MS and step["error_share"] < ERROR_LIMIT


WRITES = ("POST /cart/add", "POST /quick-order/add", "POST /checkout")


def write_share(step):
    """The share of the step's requests that were cart adds, quick-order adds and checkouts."""
    pages = step.get("pages") or {}
    writes = sum(pages[name]["requests"] for name in WRITES if name in pages)
    return writes / step["requests"] if step["requests"] else 0.0


def describe(step):
    return (
        f"rate {step['rate']:7.0f}/s -> {step['rps']:7.0f} req/s  writes {write_share(step):5.1%}  "
        f"p50 {step['p50']:6.1f}  p99 {step['p99']:7.1f} ms  "
        f"errors {step['error_share']:6.2%}  {'held' if held(step) else 'NOT held'}  server CPU "
        f"{step['server_cpu']:4.0f}%  "
        f"generator CPU {step['generator_cpu']:4.0f}%  MariaDB+Redis CPU {step['db_redis_cpu']:4.0f}%  "
        f"machine {step['machine_cpu']:3.0f}% busy  RSS {step['rss_mb']:4.0f} MB (peak {step['peak_rss_mb']:4.0f})"
        + ("" if held(step) else f"  ({_why(step)})")
    )


def _why(step):
    reasons = sorted(step["failures_by_reason"].items(), key=lambda item: -item[1])[:2]
    parts = [f"{n:,} {reason}" for reason, n in reasons]
    if step["p99"] >= P99_LIMIT_MS:
        parts.append(f"p99 over {P99_LIMIT_MS:.0f} ms")
    if step["dropped"]:
        parts.append(f"{step['dropped']:,} arrivals dropped")
    if not step["reached"]:
        parts.append("rate not reached")
    return ", ".join(parts)


def search(label, run_step, start, profile, extra_steps=0, precision=1.2):
    """Double the rate until it is not held, then halve the gap until the rate not held is within `precision`
    of the best held; the best held step (or None) and all steps. At most the profile's steps + extra_steps."""
    rate, best, worst, steps = start, None, None, []
    for _ in range(profile["steps"] + extra_steps):
        step = run_step(rate)
        steps.append(step)
        print(f"  {label:<22} {describe(step)}", flush=True)
        if held(step):
            best = step if best is None or step["rps"] > best["rps"] else best
        else:
            worst = rate if worst is None else min(worst, rate)
        low = best["rate"] if best else None
        if worst is None:
            rate *= 2
        elif low is None:
            rate = rate / 2
        elif worst / low < precision:
            break
        else:
            rate = (low + worst) / 2
    return best, steps


# --- the parts ----------------------------------------------------------------------------------


def baselines(folder, profile, results):
    """A raw WSGI app and a bare Flask hello under waitress (8 threads), same generator."""
    for name, spec, start in (
        ("raw WSGI", "benchmarks.raw_wsgi:app", 400),
        ("Flask hello", "benchmarks.hello_app:app", 400),
    ):
        server = waitress_app(spec, folder, name.replace(" ", "-"))
        try:
            best, _ = search(
                name,
                lambda rate: load(f"http://127.0.0.1:{server.port}", Pages, rate, profile, watch=[server]),
                start,
                profile,
            )
        finally:
            server.stop()
        results["baselines"][name] = best


def storefront(name, config, folder, profile, results, start_rate, measure=True):
    """Seed, serve, find the sustained storefront rate; the cached catalog page alone; the hit rate."""
    from benchmarks.cache import cache_totals, hit_rates

    print(f"== {name}", flush=True)
    instance = os.path.join(folder, name.split()[0].lower())
    os.makedirs(instance, exist_ok=True)
    logins = prepare(config, instance, profile)
    if not measure:
        return logins, instance
    server = sipup_server(config, instance, folder, name.split()[0].lower())
    before = cache_totals(config, instance)
    restock = Restock(config, instance)
    try:
        url = f"http://127.0.0.1:{server.port}"

        def step(rate):
            restock()
            return load(url, Storefront, rate, profile, logins, watch=[server])

        best, steps = search("storefront", step, start_rate, profile)
        catalog, _ = search(
            "cached catalog page",
            lambda rate: load(url, Pages, rate, profile, logins, pages=[("/products", 1.0)], watch=[server]),
            start_rate * 4,
            profile,
        )
        peak_rss = server.peak_rss_mb()
    finally:
        server.stop()
        restock.close()
    rates = hit_rates(before, cache_totals(config, instance))
    results["backends"][name] = {
        "storefront": best,
        "steps": steps,
        "catalog": catalog,
        "hit_rate": rates["overall"],
        "peak_rss_mb": peak_rss,
    }
    overall, reads = rates["overall"]
    print(
        f"  cache hit rate over the run: {overall:.1%} of {reads:,} cached reads"
        if overall is not None
        else "  cache hit rate: no cached reads counted",
        flush=True,
    )
    return logins, instance


def scaling(config, instance, logins, folder, profile, results, start_rate, repeat=1):
    """`flask serve --processes N` for 1, 2 and one per core, sharing MariaDB and Redis; `repeat` rounds of every
    count in turn, so that a drift in the machine's speed falls on all alike, and the median round of each kept."""
    counts = sorted({1, 2, os.cpu_count() or 1})
    print(f"== scaling out: flask serve --processes {', '.join(map(str, counts))} (MariaDB + Redis)", flush=True)
    restock, runs = Restock(config, instance), {count: [] for count in counts}

    def best_held(count, start):
        server = sipup_server(config, instance, folder, f"scale{count}", processes=count)

        def step(rate):
            restock()
            return load(f"http://127.0.0.1:{server.port}", Storefront, rate, profile, logins, watch=[server])

        try:
            wait_for_processes(server, count)
            # The ratio between the counts is the figure wanted, so the search steps finer than elsewhere (to 8%).
            label = f"{count} process{'es' if count > 1 else ''}"
            return search(label, step, start, profile, extra_steps=3, precision=1.08)[0]
        finally:
            server.stop()

    try:
        for _ in range(repeat):
            best = None
            for count in counts:
                # From the rate this count held in the round before, or the count before it in this round.
                before = runs[count][-1] if runs[count] and runs[count][-1] else best
                best = best_held(count, before["rate"] if before else start_rate)
                runs[count].append(best)
    finally:
        restock.close()
    for count, found in runs.items():
        held_rates = sorted((step for step in found if step), key=lambda step: step["rps"])
        # The median round (the lower of the two middle ones); a round that held nothing counts as the lowest.
        middle = ([None] * (len(found) - len(held_rates)) + held_rates)[(len(found) - 1) // 2]
        results["scaling"][count] = middle
        results["scaling_runs"][count] = [step["rps"] if step else 0.0 for step in found]


def wait_for_processes(server, count, seconds=60):
    """Wait until `flask serve --processes N` has N serving processes (each loads the app on its own)."""
    deadline = time.monotonic() + seconds
    while count > 1 and len(server.processes()) - 1 < count and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(3 if count > 1 else 0)  # loading the app takes a few seconds after the process starts


class Observed(Storefront):
    """The storefront scenario for the overload run: every arrival is served while the overload lasts, then
    only `keep_share` of them (the load drops); every 429/503 is noted per phase with whether it carried
    Retry-After, and every order acknowledged to a buyer is kept."""

    lock = threading.Lock()
    first_task = None  # perf_counter of the schedule's first arrival
    overload_seconds, keep_share, seen = 0.0, 1.0, None

    @classmethod
    def reset(cls, overload_seconds, keep_share):
        cls.first_task, cls.overload_seconds, cls.keep_share = None, overload_seconds, keep_share
        cls.seen = {"overload": {}, "recovery": {}, "orders": []}

    def phase(self):
        return "overload" if time.perf_counter() < (self.first_task or 0) + self.overload_seconds else "recovery"

    def run_task(self):
        with self.lock:
            if Observed.first_task is None:
                Observed.first_task = time.perf_counter()
        if self.phase() == "recovery" and self.random.random() > self.keep_share:
            return  # an arrival that no longer comes: the load has dropped
        super().run_task()

    def _note(self, response):
        if response is not None and response.status in (429, 500, 502, 503, 504):
            seen, key = self.seen[self.phase()], str(response.status)
            with self.lock:
                seen[key] = seen.get(key, 0) + 1
                if response.headers.get("retry-after"):
                    seen[key + " with Retry-After"] = seen.get(key + " with Retry-After", 0) + 1
        return response

    def get(self, path, name=None, **kwargs):
        return self._note(super().get(path, name=name, **kwargs))

    def post(self, path, form=None, name=None, **kwargs):
        response = self._note(super().post(path, form=form, name=name, **kwargs))
        if (
            path == "/checkout"
            and response is not None
            and response.status in (302, 303)
            and "/orders/" in response.headers.get("location", "")
        ):
            with self.lock:
                self.seen["orders"].append(response.headers["location"].rsplit("/", 1)[-1])
        return response


def _phases(series, overload_seconds, warmup):
    """Requests, failures and worst per-second p99 of each phase, the seconds the recovery took (from the
    drop until every later second had p99 < 500 ms) and the failures after that."""
    split = overload_seconds - warmup
    phases = {}
    for name, rows in (
        ("overload", [r for r in series if r["second"] < split]),
        ("recovery", [r for r in series if r["second"] >= split]),
    ):
        requests, failures = sum(r["requests"] for r in rows), sum(r["failures"] for r in rows)
        phases[name] = {
            "requests": requests,
            "failures": failures,
            "rps": requests / max(1, len(rows)),
            "worst_p99": max((r["p99_ms"] or 0 for r in rows), default=0),
        }
    recovery = [r for r in series if r["second"] >= split]
    slow = [r["second"] for r in recovery if (r["p99_ms"] or 0) >= P99_LIMIT_MS]
    back = (max(slow) + 1) if slow else split
    phases["recovered_after_s"] = back - split
    phases["recovered"] = not slow or max(slow) < recovery[-1]["second"]
    after = [r for r in recovery if r["second"] >= back]
    phases["after_recovery"] = {
        "requests": sum(r["requests"] for r in after),
        "failures": sum(r["failures"] for r in after),
    }
    return phases


def degradation(config, instance, logins, folder, profile, results, sustained):
    """Three times the sustained rate, then half of it, in one run: shedding, nothing lost, recovery."""
    print(
        "== past the limit: one process behind HAProxy (8 requests at once, 1 s queue), buyers limited to "
        "3 requests a second; 3x the sustained rate, then 0.5x",
        flush=True,
    )
    # Blocks (growing penalties for repeat abusers) are left out so that recovery shows the shedding alone.
    limited = {**config, "RATELIMIT_USER": "3 per second", "RATELIMIT_BLOCK_AFTER": MEASURING_BUDGET}
    server = sipup_server(limited, instance, folder, "overload")  # config wins over the measuring budgets
    proxy = haproxy([server.port], folder, "haproxy-overload", maxconn=8, queue="1s")
    orders_before, jobs_before, failed_before = counts(config, instance)
    overload_seconds = profile["warmup"] + profile["step"] * 2
    Observed.reset(overload_seconds, keep_share=0.5 / 3)
    try:
        step = load(
            f"http://127.0.0.1:{proxy.port}",
            Observed,
            sustained * 3,
            profile,
            logins,
            seconds=overload_seconds + profile["step"] * 2,
            watch=[server],
            users=profile["users"] * 4,
        )
    finally:
        proxy.stop()
        server.stop()
    phases = _phases(step["series"], overload_seconds, profile["warmup"])
    orders_after, jobs_after, failed_after = counts(config, instance)
    acknowledged = len(Observed.seen["orders"])
    results["degradation"] = {
        "step": step,
        "phases": phases,
        "seen": Observed.seen,
        "acknowledged": acknowledged,
        "new_orders": orders_after - orders_before,
        "sustained": sustained,
        "new_confirmation_jobs": jobs_after - jobs_before,
        "failed_jobs": failed_after - failed_before,
    }
    for name in ("overload", "recovery"):
        figures, seen = phases[name], Observed.seen[name]
        print(
            f"  {name:<9} {figures['rps']:6.0f} req/s, {figures['failures']:,} failed of {figures['requests']:,}, "
            "worst "
            f"second p99 {figures['worst_p99']:.0f} ms; answers: "
            f"{', '.join(f'{k} {v}' for k, v in seen.items()) or 'no refusals'}",
            flush=True,
        )
    print(f"  failures by reason: {step['failures_by_reason']}; arrivals dropped by the generator: {step['dropped']:,}")
    print(
        "  per second (s from the end of the warm-up: requests/failed/p99 ms; the load drops at "
        f"{overload_seconds - profile['warmup']:g} s): "
        + ", ".join(f"{r['second']}: {r['requests']}/{r['failures']}/{r['p99_ms'] or 0:.0f}" for r in step["series"]),
        flush=True,
    )
    after = phases["after_recovery"]
    print(
        f"  recovered {phases['recovered_after_s']} s after the load dropped (every later second p99 < "
        f"{P99_LIMIT_MS:.0f} ms; {after['failures']} failed of {after['requests']} requests after that)"
        if phases["recovered"]
        else "  NOT recovered by the end of the run",
        flush=True,
    )
    print(
        f"  orders acknowledged to buyers {acknowledged}, new orders in the database {orders_after - orders_before}, "
        f"new confirmation jobs {jobs_after - jobs_before}, failed jobs {failed_after - failed_before}",
        flush=True,
    )


# --- the results table ------------------------------------------------------------------------------


def _row(label, step, base=None):
    if not step:
        return f"| {label} | not held at any rate tried | | | | | | |"
    ratio = f"{step['rps'] / base['rps']:.2f}" if base else ""
    return (
        f"| {label} | {step['rps']:,.0f} | {ratio} | {step['p50']:.1f} | {step['p99']:.1f} | {step['error_share']:.2%} "
        f"| {step['server_cpu']:.0f}% | {step['generator_cpu']:.0f}% | {step['rss_mb']:.0f} MB "
        f"({step['peak_rss_mb']:.0f} MB) |"
    )


def cpu_model():
    """The processor's name (/proc/cpuinfo on Linux, else what platform knows): machines of one kind differ."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "processor unknown"


def markdown(results, args):
    lines = [
        f"Measured {results['started']} on {platform.node()} ({os.cpu_count()} cores, {cpu_model()}, load average at "
        f"start {results['load']}), profile `{args.profile}`: highest open-model rate held with p99 < "
        f"{P99_LIMIT_MS:.0f} ms and < {ERROR_LIMIT:.0%} errors ({args_profile(args)['step']:g} s steps).",
        "",
        "| server | req/s held | ratio to hello | p50 ms | p99 ms | errors | server CPU | generator CPU | server RSS "
        "after (peak) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    hello = results["baselines"].get("Flask hello")
    for name, step in results["baselines"].items():
        lines.append(_row(name, step, hello))
    for name, backend in results["backends"].items():
        lines.append(_row(f"{name}: storefront mix", backend["storefront"], hello))
        lines.append(_row(f"{name}: cached catalog page", backend["catalog"], hello))
    lines.append("")
    for name, backend in results["backends"].items():
        best, (rate, reads) = backend["storefront"], backend["hit_rate"]
        users = f"{best['rps'] * THINK_SECONDS:,.0f}" if best else "0"
        hit = f"{rate:.1%} of {reads:,} cached reads" if rate is not None else "none counted"
        connections = (
            f", {best['db_connections']} database connections at most" if best and best["db_connections"] else ""
        )
        lines.append(
            f"- {name}: {users} concurrent users at one request per {THINK_SECONDS:g} s; cache hit rate {hit}"
            f"{connections}."
        )
    if results["scaling"]:
        one = results["scaling"].get(1)
        lines += [
            "",
            "| `flask serve --processes` | req/s held (median round) | ratio to 1 | each round | p99 ms "
            "| sipup CPU (all processes) | generator CPU | MariaDB + Redis CPU | machine busy (2 cores = 100%) |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for count, step in results["scaling"].items():
            rounds = " / ".join(f"{rps:,.0f}" for rps in results["scaling_runs"].get(count, ()))
            if step:
                ratio = f"{step['rps'] / one['rps']:.2f}" if one else ""
                lines.append(
                    f"| {count} | {step['rps']:,.0f} | {ratio} | {rounds} | {step['p99']:.1f} "
                    f"| {step['server_cpu']:.0f}% | {step['generator_cpu']:.0f}% | {step.get('db_redis_cpu', 0):.0f}% "
                    f"| {step.get('machine_cpu', 0):.0f}% |"
                )
            else:
                lines.append(f"| {count} | not held | | {rounds} | | | | | |")
    elif results.get("scaling_skipped"):
        lines += ["", f"Scaling out: skipped ({results['scaling_skipped']})."]
    degradation = results.get("degradation")
    if degradation:
        phases, seen = degradation["phases"], degradation["seen"]
        lines += [
            "",
            f"Past the limit (one process behind HAProxy, sustained rate {degradation['sustained']:.0f} arrivals/s):",
            "",
            "| phase | arrivals/s | req/s answered | failed | worst 1-s p99 ms | 429 (with Retry-After) | 503 (with "
            "Retry-After) | other |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for name, factor in (("overload", 3), ("recovery", 0.5)):
            figures, codes = phases[name], seen[name]
            other = {k: v for k, v in codes.items() if k[:3] not in ("429", "503")}
            lines.append(
                f"| {name} ({factor:g}x) | {degradation['sustained'] * factor:,.0f} | {figures['rps']:,.0f} "
                f"| {figures['failures']:,} of {figures['requests']:,} | {figures['worst_p99']:,.0f} "
                f"| {codes.get('429', 0)} ({codes.get('429 with Retry-After', 0)}) "
                f"| {codes.get('503', 0)} ({codes.get('503 with Retry-After', 0)}) | {other or 'none'} |"
            )
        lines.append("")
        after = phases["after_recovery"]
        lines.append(
            (
                f"Recovered {phases['recovered_after_s']} s after the load dropped (every later second p99 < "
                f"{P99_LIMIT_MS:.0f} ms; {after['failures']} failed of {after['requests']} requests after that)"
                if phases["recovered"]
                else "Not recovered by the end of the run"
            )
            + f"; arrivals the generator dropped (every user busy): {degradation['step']['dropped']:,}; "
            f"failures by reason: {degradation['step']['failures_by_reason'] or 'none'}."
        )
        lines.append(
            f"Orders acknowledged to buyers: {degradation['acknowledged']}; new orders in the database: "
            f"{degradation['new_orders']}; new order-confirmation jobs: {degradation['new_confirmation_jobs']}; "
            f"failed jobs: {degradation['failed_jobs']}."
        )
    elif results.get("degradation_skipped"):
        lines += ["", f"Past the limit: skipped ({results['degradation_skipped']})."]
    return "\n".join(lines) + "\n"


def profile_catalog(requests=500):
    """Where a cached catalog page's time goes, in this process (test client, SQLite, folder cache): the
    share of the request spent in each part, from cProfile's cumulative times."""
    import cProfile
    import pstats

    from sipup import create_app

    folder = tempfile.mkdtemp(prefix="sipup-capacity-profile-")
    config = {"DATABASE_URL": f"sqlite:///{os.path.join(folder, 'profile.db')}"}
    logins = prepare(config, folder, {**PROFILES["quick"], "orders": 2000})
    app = create_app(
        {
            "SECRET_KEY": SECRET_KEY,
            **config,
            "WTF_CSRF_ENABLED": False,
            "RATELIMIT_IP": MEASURING_BUDGET,
            "RATELIMIT_USER": MEASURING_BUDGET,
        },
        instance_path=folder,
    )
    client = app.test_client()
    client.post("/login", data={"email": logins[0][0], "password": PASSWORD})
    for _ in range(50):
        assert client.get("/products").status_code == 200
    profiler = cProfile.Profile()
    began = time.perf_counter()
    profiler.enable()
    for _ in range(requests):
        client.get("/products")
    profiler.disable()
    per_request = (time.perf_counter() - began) / requests * 1000
    stats = pstats.Stats(profiler)
    parts = {  # (file fragment, function): a part of the request
        "whole request (Flask wsgi_app)": ("flask/app.py", "wsgi_app"),
        "page template rendering (Jinja)": ("flask/templating.py", "render_template"),
        "rate limits (Flask-Limiter check)": ("flask_limiter/_extension.py", "_check_request_limit"),
        "session and sign-in (Flask-Login user)": ("flask_login/utils.py", "_get_user"),
        "database statements (SQLAlchemy execute)": ("sqlalchemy/orm/session.py", "execute"),
        "cached reads (sipup.cache cached + cached_many)": ("sipup/cache/layer.py", ("cached", "cached_many")),
    }
    total = None
    print(
        f"cached catalog page /products in-process: {per_request:.2f} ms a request under cProfile (which slows "
        f"Python calls), {requests} requests"
    )
    for label, (fragment, function) in parts.items():
        found = [
            (key, value)
            for key, value in stats.stats.items()
            if key[0].endswith(fragment) and key[2] in (function if isinstance(function, tuple) else (function,))
        ]
        cumulative = sum(value[3] for _, value in found)
        total = total or cumulative
        print(
            f"  {label:<45} {cumulative / requests * 1000:7.2f} ms  {cumulative / total:5.0%}"
            if found
            else f"  {label:<45} (not found)"
        )
    stats.sort_stats("cumulative").print_stats(r"sipup|jinja2|flask|sqlalchemy", 25)
    print(f"(the data is left in {folder}: the app writes its counters there on the way out)")


def args_profile(args):
    profile = dict(PROFILES[args.profile])
    if args.orders is not None:
        profile["orders"] = args.orders
    return profile


def rounds(text):
    """--repeat's value: a whole number from 1 to 20."""
    if not text.strip().isdigit() or not 1 <= int(text) <= 20:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of rounds from 1 to 20")
    return int(text)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", dest="profile", action="store_const", const="quick", help="a few minutes (default)")
    mode.add_argument(
        "--smoke",
        dest="profile",
        action="store_const",
        const="smoke",
        help="under a minute, tiny data: checks the harness works, measures nothing worth quoting",
    )
    mode.add_argument("--full", dest="profile", action="store_const", const="full", help="bigger seed, longer steps")
    parser.add_argument("--orders", type=int, help="orders to seed (quick 20,000; full 200,000)")
    parser.add_argument(
        "--skip",
        action="append",
        default=[],
        choices=["baselines", "sqlite", "server", "scaling", "degradation"],
        help="leave a part out",
    )
    parser.add_argument(
        "--out",
        default=os.path.join(ROOT, "benchmarks", "capacity-results.md"),
        help="where to write the Markdown results (default benchmarks/capacity-results.md)",
    )
    parser.add_argument(
        "--sustained",
        type=float,
        help="MariaDB + Redis: take this storefront rate (arrivals/s) as "
        "sustained instead of searching for it (to rerun scaling or degradation alone)",
    )
    parser.add_argument(
        "--repeat",
        type=rounds,
        default=1,
        help="rounds of the scaling part (each process count in turn); the median round of each count is kept",
    )
    parser.add_argument(
        "--profile-catalog",
        action="store_true",
        help="only profile the cached catalog page in this process and say where its time goes",
    )
    parser.set_defaults(profile="quick")
    args = parser.parse_args(argv)
    if args.profile_catalog:
        return profile_catalog()
    profile = args_profile(args)
    results = {
        "started": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "load": " ".join(f"{x:.1f}" for x in os.getloadavg()),
        "baselines": {},
        "backends": {},
        "scaling": {},
        "scaling_runs": {},
    }
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="sipup-capacity-") as folder:
        if "baselines" not in args.skip:
            print("== baselines under waitress (8 threads)", flush=True)
            baselines(folder, profile, results)
        if "sqlite" not in args.skip:
            storefront(
                "SQLite (embedded default)",
                {"DATABASE_URL": f"sqlite:///{os.path.join(folder, 'capacity.db')}"},
                folder,
                profile,
                results,
                start_rate=25,
            )
        server_url, redis_url = os.environ.get("SIPUP_BENCH_DATABASE_URL"), os.environ.get("SIPUP_BENCH_REDIS_URL")
        if "server" in args.skip or not (server_url and redis_url):
            reason = (
                "left out"
                if "server" in args.skip
                else "set SIPUP_BENCH_DATABASE_URL and SIPUP_BENCH_REDIS_URL to measure MariaDB + Redis"
            )
            results["scaling_skipped"] = results["degradation_skipped"] = reason
            print(f"(MariaDB + Redis, scaling and degradation skipped: {reason})", flush=True)
        else:
            server_part(server_url, redis_url, folder, profile, results, args)
    text = markdown(results, args)
    with open(args.out, "w", encoding="utf-8") as handle:
        handle.write(text)
    print("\n" + text + f"\n(wrote {args.out}; {time.monotonic() - began:.0f} s in all)", flush=True)
    return results


def server_part(server_url, redis_url, folder, profile, results, args):
    from benchmarks.limits import delete_namespace
    from sipup.database import scratch_database

    url, drop = scratch_database(server_url)
    namespace = f"sipupcap-{secrets.token_hex(4)}"
    config = {"DATABASE_URL": url, "REDIS_URL": redis_url, "REDIS_NAMESPACE": namespace}
    try:
        logins, instance = storefront(
            "MariaDB + Redis", config, folder, profile, results, start_rate=25, measure=not args.sustained
        )
        best = {"rate": args.sustained} if args.sustained else results["backends"]["MariaDB + Redis"]["storefront"]
        start = max(10, best["rate"] / 2) if best else 10
        if "scaling" not in args.skip:
            scaling(config, instance, logins, folder, profile, results, start, repeat=args.repeat)
        if not shutil.which("haproxy"):
            results["degradation_skipped"] = "HAProxy is not installed (Debian: apt-get install haproxy)"
            print(f"(degradation skipped: {results['degradation_skipped']})", flush=True)
            return
        if "degradation" not in args.skip:
            degradation(config, instance, logins, folder, profile, results, best["rate"] if best else 20)
    finally:
        drop()
        delete_namespace(redis_url, namespace)


if __name__ == "__main__":
    main()
