"""Server CPU per write request (cart add, quick-order add, checkout GET and POST) and per sign-in on MariaDB +
Redis, this tree against an earlier revision, in one run: what `python -m benchmarks.storefront --writes` runs.

Each tree gets a scratch MariaDB database (SIPUP_BENCH_DATABASE_URL, default mysql+pymysql://root@127.0.0.1:3306/
sipup_bench) with its own demo data (stock raised out of reach, so every checkout places an order) and a Redis
namespace of its own (SIPUP_BENCH_REDIS_URL, default redis://127.0.0.1:6379/15), both removed afterwards; then
`flask serve` (one process) with every production middleware on, and one signed-in buyer sending the requests
one after another through the real forms (CSRF token included, redirects not followed). CPU is the server's
own, read from /proc/<pid>/task/*/schedstat (nanoseconds) around each measured request; rounds alternate the
trees, medians of the rounds are printed.
"""

import http.client
import json
import os
import re
import secrets
import statistics
import subprocess
import sys
import urllib.parse
from pathlib import Path

from benchmarks import SECRET_KEY
from benchmarks.limits import HIGH, Server, delete_namespace

DATABASE_URL = os.environ.get("SIPUP_BENCH_DATABASE_URL", "mysql+pymysql://root@127.0.0.1:3306/sipup_bench")
REDIS_URL = os.environ.get("SIPUP_BENCH_REDIS_URL", "redis://127.0.0.1:6379/15")
SCENARIOS = ("cart add", "quick-order add", "checkout GET", "checkout POST", "sign-in", "catalog page")
# What every request of the tree costs besides its own work: the cached catalog page, for reference.
# Built in the tree measured, with its own code: schema, demo data, stock out of reach, the buyers' logins.
BUILD = """
import sys
from pathlib import Path
from sqlalchemy import update
from sipup import create_app
try:
    from sipup.cli.db import upgrade_schema
except ImportError:  # trees before the command line became a package (fb4192b)
    from sipup.cli import upgrade_schema
from sipup.extensions import db
from sipup.models import Company, Product
from sipup.services.seed import seed_demo

path = Path(sys.argv[1])
app = create_app({"SECRET_KEY": sys.argv[2]}, instance_path=str(path))
with app.app_context():
    upgrade_schema()
    logins = seed_demo()
    db.session.execute(update(Product).values(stock_on_hand=10**8, active=True))
    db.session.execute(update(Company).values(credit_limit=10**9))
    db.session.commit()
    skus = [p.sku for p in db.session.scalars(db.select(Product).order_by(Product.id).limit(6))]
    db.engine.dispose()
(path / "demo-logins.txt").write_text("".join(f"{r}\\t{e}\\t{p}\\n" for r, e, p in logins), encoding="utf-8")
(path / "skus.txt").write_text("\\n".join(skus), encoding="utf-8")
"""


def server_cpu_ns(pid):
    """CPU the process's threads have used so far, in nanoseconds (a thread that ended is left out)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            total += int((task / "schedstat").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            pass
    return total


class Buyer:
    """One signed-in buyer on one keep-alive connection: cookies kept, redirects not followed."""

    def __init__(self, server, which=0):
        self.server, self.cookies = server, {}
        self.connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
        self.login = self._logins()[which]
        self.sign_in()
        self.csrf = self.token("/quick-order")

    def _logins(self):
        lines = (self.server.instance / "demo-logins.txt").read_text().splitlines()
        return [(e, p) for role, e, p in (line.split("\t") for line in lines) if role in ("buyer", "owner")]

    def sign_in(self):
        """Sign in anew through the form; CPU ms of the POST (a password check: the hash's cost)."""
        self.cookies.clear()
        email, password = self.login
        form = {"email": email, "password": password, "csrf_token": self.token("/login")}
        return self.measured("POST", "/login", form, expect=302)

    def token(self, path):
        body = self.request("GET", path, expect=200)
        return re.search(rb'name="csrf_token"[^>]*value="([^"]+)"', body).group(1).decode()

    def request(self, method, path, form=None, expect=None):
        headers = {"Cookie": "; ".join(f"{k}={v}" for k, v in self.cookies.items())}
        body = None
        if form is not None:
            body = urllib.parse.urlencode(form, doseq=True)
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        self.connection.request(method, path, body=body, headers=headers)
        response = self.connection.getresponse()
        data = response.read()
        for header in response.headers.get_all("Set-Cookie") or ():
            name, _, rest = header.partition("=")
            self.cookies[name.strip()] = rest.split(";", 1)[0]
        if expect is not None and response.status != expect:
            raise SystemExit(f"{self.server.name}: {method} {path} answered {response.status}, not {expect}")
        self.location = response.headers.get("Location")
        return data

    def measured(self, method, path, form=None, expect=None):
        """CPU ms the server spent on this one request; a redirect is then followed, unmeasured, as a browser
        does (the page it leads to shows the request's messages, which would otherwise pile up in the session
        cookie and be carried by every later request)."""
        before = server_cpu_ns(self.server.process.pid)
        self.request(method, path, form, expect)
        spent = (server_cpu_ns(self.server.process.pid) - before) / 1e6
        if self.location and method == "POST" and path != "/login":
            page = urllib.parse.urlsplit(self.location)
            self.request("GET", page.path + (f"?{page.query}" if page.query else ""), expect=200)
        return spent


def one_round(buyer, signing_in, skus, count):
    """{scenario: [CPU ms per request]} of `count` requests of each scenario (sign-ins by another account,
    whose sessions come and go: an account keeps a limited number)."""
    csrf, times = buyer.csrf, {name: [] for name in SCENARIOS}
    times["sign-in"] = [signing_in.sign_in() for _ in range(count)]
    times["catalog page"] = [buyer.measured("GET", "/products", expect=200) for _ in range(count)]
    for i in range(count):
        form = {"sku": skus[i % 3], "quantity": "1", "csrf_token": csrf}
        times["cart add"].append(buyer.measured("POST", "/cart/add", form, expect=302))
    for i in range(count):
        form = {"sku": [skus[3 + (i + k) % 3] for k in range(3)], "quantity": ["1"] * 3, "csrf_token": csrf}
        times["quick-order add"].append(buyer.measured("POST", "/quick-order/add", form, expect=302))
    for _ in range(count):
        times["checkout GET"].append(buyer.measured("GET", "/checkout", expect=200))
    address = re.search(rb'name="address_id"[^>]*>\s*<option value="(\d+)"', buyer.request("GET", "/checkout"))
    for i in range(count):
        if i:  # each order empties the cart: three lines again, not measured
            buyer.request("POST", "/quick-order/add", {"sku": skus[:3], "quantity": ["1"] * 3, "csrf_token": csrf})
        form = {"address_id": address.group(1).decode(), "po_reference": f"bench {i}", "csrf_token": csrf}
        form["checkout_key"] = secrets.token_urlsafe(16)
        times["checkout POST"].append(buyer.measured("POST", "/checkout", form, expect=302))
    buyer.request("POST", "/quick-order/add", {"sku": skus[:3], "quantity": ["1"] * 3, "csrf_token": csrf})
    return times


def run(trees, folder, rounds, count):
    """{tree name: {scenario: median CPU ms per request}} for each tree, measured in alternating rounds."""
    from sipup.database import scratch_database

    servers, drops, namespaces = {}, [], []
    try:
        for name, tree in trees.items():
            url, drop = scratch_database(DATABASE_URL)
            drops.append(drop)
            namespace = f"bench-writes-{secrets.token_hex(4)}"
            namespaces.append(namespace)
            env = {
                "SIPUP_DATABASE_URL": url,
                "SIPUP_REDIS_URL": REDIS_URL,
                "SIPUP_REDIS_NAMESPACE": namespace,
                "SIPUP_DB_STATS": "true",
                "SIPUP_RATELIMIT_ENDPOINTS": raised_endpoint_limits(tree),
            }
            template = folder / f"{name}-template"
            template.mkdir()
            subprocess.run(
                [sys.executable, "-c", BUILD, str(template), SECRET_KEY],
                cwd=tree,
                env={**{k: v for k, v in os.environ.items() if not k.startswith("SIPUP_")}, **env},
                check=True,
                capture_output=True,
            )
            servers[name] = Server(name, folder, env, template, root=tree)
        for server in servers.values():
            server.wait()
        buyers = {name: Buyer(server) for name, server in servers.items()}
        signing_in = {name: Buyer(server, which=1) for name, server in servers.items()}
        skus = {name: (server.instance / "skus.txt").read_text().split() for name, server in servers.items()}
        for name in servers:  # a first round unmeasured: every path's code and caches warmed
            one_round(buyers[name], signing_in[name], skus[name], 3)
        samples = {name: {scenario: [] for scenario in SCENARIOS} for name in servers}
        for n in range(rounds):
            for name in list(servers) if n % 2 == 0 else list(servers)[::-1]:
                for scenario, times in one_round(buyers[name], signing_in[name], skus[name], count).items():
                    samples[name][scenario].append(statistics.mean(times))
        return {name: {s: statistics.median(v) for s, v in by.items()} for name, by in samples.items()}
    finally:
        for server in servers.values():
            server.stop()
        for drop in drops:
            drop()
        for namespace in namespaces:
            delete_namespace(REDIS_URL, namespace)


def raised_endpoint_limits(tree):
    """SIPUP_RATELIMIT_ENDPOINTS raising every endpoint limit of a tree out of reach (one client sends every
    request, signing in again and again)."""
    return json.dumps({rule: HIGH for rule in _rules(tree)})


def _rules(tree):
    """The endpoint limit rules of a tree's config (raised out of reach: one buyer sends every request)."""
    # sipup/config.py until the settings became a package; sipup/config/defaults.py since.
    for name in ("config.py", "config/defaults.py"):
        path = Path(tree) / "sipup" / name
        if path.exists() and "ENDPOINT_LIMITS = {" in (text := path.read_text(encoding="utf-8")):
            break
    else:
        raise SystemExit(f"no ENDPOINT_LIMITS in {tree}/sipup/config.py or sipup/config/defaults.py")
    block = text.split("ENDPOINT_LIMITS = {", 1)[1].split("}", 1)[0]
    return re.findall(r'"((?:GET|POST) [\w. ]+)"\s*:', block)


def report(results, before, rounds, count):
    """The table: CPU ms per request before and after, and after/before."""
    lines = [
        f"Server CPU per write request, MariaDB + Redis, one `flask serve` process, {rounds} rounds of {count} "
        f"requests each, median of the rounds' means; load average {os.getloadavg()[0]:.1f}",
        f"{'request':<18} {'before ' + before:>16} {'after':>8} {'after/before':>13}",
    ]
    for scenario in SCENARIOS:
        old, new = results["before"][scenario], results["after"][scenario]
        lines.append(f"{scenario:<18} {old:>13.2f} ms {new:>5.2f} ms {new / old:>13.2f}")
    writes = SCENARIOS[:4]
    old = statistics.mean(results["before"][s] for s in writes)
    new = statistics.mean(results["after"][s] for s in writes)
    lines.append(f"{'the four writes':<18} {old:>13.2f} ms {new:>5.2f} ms {new / old:>13.2f}")
    lines.append(
        f"sign-ins per second per core: before {1000 / results['before']['sign-in']:.0f}, after "
        f"{1000 / results['after']['sign-in']:.0f}"
    )
    return "\n".join(lines)
