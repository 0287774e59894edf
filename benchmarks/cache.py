"""Cached against uncached catalog and product pages under waitress, and the hit rate of a storefront load.

python -m benchmarks.cache [--seconds 1] [--clients 4] [--products 1000]: SQLite with the default folder cache;
MariaDB with Redis too when SIPUP_BENCH_DATABASE_URL and SIPUP_BENCH_REDIS_URL are set.
"""

import argparse
import http.client
import os
import random
import re
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from urllib.parse import urlencode

from sqlalchemy import select
from sqlalchemy.engine import make_url

from benchmarks import SECRET_KEY, free_port
from benchmarks.limits import delete_namespace
from benchmarks.writes import raised_endpoint_limits
from sipup import create_app
from sipup.database import scratch_database
from sipup.extensions import db
from sipup.models import Address, PriceList, Product, Role, User

PASSWORD = "benchmark password"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def _app(config, instance):
    return create_app({"SECRET_KEY": SECRET_KEY, "DB_STATS": False, **config}, instance_path=instance)


def prepare(config, instance, products):
    """Schema, the products, 5 companies on price lists, 300 orders and a staff user; what the load needs."""
    from sipup.cli.db import upgrade_schema
    from sipup.services import seed

    app = _app({**config, "CACHE_URL": "none://"}, instance)
    with app.app_context():
        upgrade_schema()
        seed.seed_catalog(products)
        seed.seed_companies(5, PASSWORD)
        seed.seed_orders(300, 3)
        staff = User(email="staff@bench.example", role=Role.STAFF, name="Staff")
        staff.set_password(PASSWORD)
        db.session.add(staff)
        db.session.commit()
        data = {
            "buyers": list(db.session.scalars(select(User.email).where(User.role == Role.BUYER))),
            "skus": list(db.session.scalars(select(Product.sku).order_by(Product.id))),
            "in_stock": list(db.session.scalars(select(Product.sku).where(Product.stock_on_hand > 50))),
            "price_lists": list(db.session.scalars(select(PriceList.id))),
            "addresses": len(db.session.scalars(select(Address.id)).all()),
        }
        db.engine.dispose()
    app.extensions["sipup_cache"].close()
    return data


class Server:
    """`flask serve` (waitress, 8 threads) in a process of its own."""

    def __init__(self, config, instance, log_path):
        self.port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("SIPUP_")}
        env.update({f"SIPUP_{k}": str(v) for k, v in config.items()})
        env.update(
            SIPUP_INSTANCE_PATH=instance,
            SIPUP_SECRET_KEY=SECRET_KEY,
            SIPUP_RATELIMIT_IP="1000000 per minute",
            SIPUP_RATELIMIT_USER="1000000 per minute",
            # Every endpoint's own limit too (sign-ins by account among them): the load signs in again and again.
            SIPUP_RATELIMIT_ENDPOINTS=raised_endpoint_limits(ROOT),
            SIPUP_SLOW_QUERY_MS="100000",
            SIPUP_PROCESSES="1",
            FLASK_APP="wsgi",
        )
        self.log = open(log_path, "ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "flask", "serve", "--port", str(self.port), "--threads", "8"],
            cwd=ROOT,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the server exited; see {log_path}")
            try:
                if Client(self.port).get("/healthz")[0] == 200:
                    return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"the server did not answer within 30 s; see {log_path}")

    def stop(self):
        """Ctrl+C, so the process flushes its counters on the way out."""
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.close()


class Client:
    """One keep-alive HTTP connection with a session cookie, like one browser tab."""

    def __init__(self, port):
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        self.cookie = None

    def request(self, method, path, form=None):
        headers = {"Cookie": self.cookie} if self.cookie else {}
        body = None
        if form is not None:
            body = urlencode(form)
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        self.connection.request(method, path, body=body, headers=headers)
        response = self.connection.getresponse()
        text = response.read().decode("utf-8", "replace")
        cookie = response.getheader("Set-Cookie")
        if cookie:
            self.cookie = cookie.split(";", 1)[0]
        return response.status, text

    def get(self, path):
        return self.request("GET", path)

    def post(self, path, form, token_page):
        """POST a form with the CSRF token of the page it is on."""
        status, text = self.get(token_page)
        match = CSRF.search(text)
        return self.request("POST", path, {**form, "csrf_token": match.group(1) if match else ""})

    def sign_in(self, email):
        status, _ = self.post("/login", {"email": email, "password": PASSWORD}, "/login")
        if status != 302:
            raise RuntimeError(f"{email} could not sign in ({status})")
        return self


def _run(port, emails, pick, seconds, clients):
    """Requests per second of `clients` signed-in buyers asking for pick(rng) paths for `seconds`."""
    sessions = [Client(port).sign_in(emails[i % len(emails)]) for i in range(clients)]
    counts, failures = [0] * clients, []
    start = threading.Barrier(clients + 1)
    deadline = [0.0]

    def work(index):
        rng, session = random.Random(index), sessions[index]
        start.wait()
        while time.perf_counter() < deadline[0]:
            status, _ = session.get(pick(rng))
            if status != 200:
                failures.append(status)
            counts[index] += 1

    threads = [threading.Thread(target=work, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    deadline[0] = time.perf_counter() + seconds
    began = time.perf_counter()
    start.wait()
    for thread in threads:
        thread.join()
    if failures:
        raise RuntimeError(f"{len(failures)} requests failed, e.g. {failures[:5]}")
    return sum(counts) / (time.perf_counter() - began)


def compare(servers, data, seconds, clients):
    """Cached and uncached servers alternate (ABBAAB, median of 3 rounds each) on catalog pages, then product pages."""
    pages = -(-len(data["skus"]) // 24)
    kinds = {
        "catalog /products?page=N": lambda rng: f"/products?page={rng.randint(1, pages)}",
        "product /products/<sku>": lambda rng: f"/products/{rng.choice(data['skus'][:200])}",
    }
    for server in servers.values():  # measure the steady state; the load scenario below starts cold
        client = Client(server.port).sign_in(data["buyers"][0])
        for path in [f"/products?page={n}" for n in range(1, pages + 1)] + [
            f"/products/{s}" for s in data["skus"][:200]
        ]:
            client.get(path)
    results = {}
    for label, pick in kinds.items():
        rates = {"cached": [], "uncached": []}
        for mode in ("cached", "uncached", "uncached", "cached", "cached", "uncached"):
            rates[mode].append(_run(servers[mode].port, data["buyers"], pick, seconds, clients))
        cached, uncached = (statistics.median(rates[m]) for m in ("cached", "uncached"))
        results[label] = (cached, uncached)
        print(
            f"  {label:<26} cached {cached:7.0f} req/s, uncached {uncached:7.0f} req/s, ratio {cached / uncached:.2f}x",
            flush=True,
        )
    hello = _run(servers["cached"].port, data["buyers"], lambda rng: "/healthz", seconds, clients)
    print(
        f"  {'bare /healthz (JSON)':<26} {hello:7.0f} req/s; cached catalog page at "
        f"{results['catalog /products?page=N'][0] / hello:.2f} of it",
        flush=True,
    )
    return results


def scenario(port, data, seconds, clients):
    """Buyers browse (catalog, product pages, overview, order history) and sometimes check out;
    staff change a tier price every 5 seconds. Returns requests per second."""
    pages = -(-len(data["skus"]) // 24)
    popular = data["skus"][:40]  # most views go to a few products, as in any shop
    stop_at = time.monotonic() + seconds
    errors = []

    def staff():
        client = Client(port).sign_in("staff@bench.example")
        rng = random.Random(99)
        time.sleep(min(1, seconds))
        while time.monotonic() < stop_at:
            price_list = rng.choice(data["price_lists"])
            form = {"sku": rng.choice(popular), "min_qty": "1", "price": f"{rng.randint(500, 2000) / 100:.2f}"}
            status, _ = client.post(f"/admin/price-lists/{price_list}", form, f"/admin/price-lists/{price_list}")
            if status != 302:
                errors.append(("price", status))
            time.sleep(max(0, min(5, stop_at - time.monotonic())))

    def buyer_action(client, rng):
        roll = rng.random()
        if roll < 0.35:
            category = rng.choice(["", "", "&category=beer", "&category=wine"])
            return client.get(f"/products?page={rng.randint(1, 3 if category else pages)}{category}")
        if roll < 0.75:
            return client.get(f"/products/{rng.choice(popular if rng.random() < 0.8 else data['skus'])}")
        if roll < 0.87:
            return client.get("/")
        if roll < 0.99:
            return client.get("/orders")
        client.post("/cart/add", {"sku": rng.choice(data["in_stock"]), "quantity": "1"}, "/products")
        status, text = client.get("/checkout")
        match = re.search(r'name="address_id" value="(\d+)"', text)
        return client.post("/checkout", {"address_id": match.group(1) if match else ""}, "/checkout")

    counts = [0] * clients

    def buyer(index):
        client, rng = Client(port).sign_in(data["buyers"][index % len(data["buyers"])]), random.Random(index)
        while time.monotonic() < stop_at:
            status, _ = buyer_action(client, rng)
            if status >= 500:
                errors.append(("page", status))
            counts[index] += 1

    threads = [threading.Thread(target=buyer, args=(i,)) for i in range(clients)] + [threading.Thread(target=staff)]
    began = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise RuntimeError(f"{len(errors)} requests failed, e.g. {errors[:5]}")
    return sum(counts) / (time.monotonic() - began)


def cache_totals(config, instance):
    """What the servers counted so far (they flush their counters when they stop)."""
    app = _app(config, instance)
    totals = app.extensions["counters"].totals("cache", "minute", 30)
    app.extensions["sipup_cache"].close()
    return totals


def hit_rates(before, after):
    """Hit rate per type and overall between two readings of the counters: {type: (rate, reads)}."""
    rates = {}
    for type_ in ("products", "prices", "users", "orders", "dashboard", ""):

        def count(event):
            return sum(
                after.get(k, 0) - before.get(k, 0) for k in after if k.endswith(f".{event}") and k.startswith(type_)
            )

        hits, misses = count("hit"), count("miss")
        rates[type_ or "overall"] = (hits / (hits + misses) if hits + misses else None, hits + misses)
    return rates


def run(name, config, folder, seconds, clients, products):
    print(
        f"== {name} ({make_url(config['DATABASE_URL']).render_as_string(hide_password=True)}, "
        f"cache {config.get('CACHE_URL') or 'default'})",
        flush=True,
    )
    base = os.path.join(folder, name.lower().split()[0])
    instances = {mode: os.path.join(base, mode) for mode in ("cached", "uncached", "scenario")}
    for path in instances.values():
        os.makedirs(path)
    data = prepare(config, instances["uncached"], products)
    modes = {"cached": config, "uncached": {**config, "CACHE_URL": "none://"}}
    servers = {mode: Server(cfg, instances[mode], os.path.join(base, f"{mode}.log")) for mode, cfg in modes.items()}
    try:
        compare(servers, data, seconds, clients)
    finally:
        for server in servers.values():
            server.stop()
    scenario_config = (
        {**config, "REDIS_NAMESPACE": f"sipupbench-{secrets.token_hex(4)}"} if config.get("REDIS_URL") else config
    )
    # Twice on the same cache: from empty, then after a restart with what the first run left (steady state).
    before = {}
    for phase in ("from an empty cache", "on a warm cache"):
        server = Server(scenario_config, instances["scenario"], os.path.join(base, "scenario.log"))
        try:
            rate = scenario(server.port, data, seconds * 6, clients)
        finally:
            server.stop()
        after = cache_totals(scenario_config, instances["scenario"])
        rates = hit_rates(before, after)
        before = after
        overall, reads = rates.pop("overall")
        detail = ", ".join(f"{t} {r:.0%}" for t, (r, n) in rates.items() if r is not None)
        print(
            f"  storefront load {phase}: {rate:.0f} req/s, hit rate {overall:.1%} of {reads:,} cached reads ({detail})",
            flush=True,
        )
    return scenario_config


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=1.0, help="seconds per measuring round (default 1)")
    parser.add_argument("--clients", type=int, default=4, help="concurrent clients (default 4)")
    parser.add_argument("--products", type=int, default=1000, help="products in the catalog (default 1000)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="sipup-cache-bench-") as folder:
        sqlite_url = f"sqlite:///{os.path.join(folder, 'bench.db')}"
        run("SQLite + folder cache", {"DATABASE_URL": sqlite_url}, folder, args.seconds, args.clients, args.products)
        server_url, redis_url = os.environ.get("SIPUP_BENCH_DATABASE_URL"), os.environ.get("SIPUP_BENCH_REDIS_URL")
        if not (server_url and redis_url):
            print(
                "(set SIPUP_BENCH_DATABASE_URL=mysql+pymysql://user@host/sipup_bench and "
                "SIPUP_BENCH_REDIS_URL=redis://host:6379/15 to measure MariaDB + Redis too)"
            )
            return
        url, drop = scratch_database(server_url)
        namespace = f"sipupbench-{secrets.token_hex(4)}"
        config = {"DATABASE_URL": url, "REDIS_URL": redis_url, "REDIS_NAMESPACE": namespace}
        used = [namespace]
        try:
            used.append(
                run("MariaDB + Redis", config, folder, args.seconds, args.clients, args.products)["REDIS_NAMESPACE"]
            )
        finally:
            drop()
            for namespace in used:
                delete_namespace(redis_url, namespace)


if __name__ == "__main__":
    main()
