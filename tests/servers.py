"""Private Redis and Memcached servers that a test may stop and start again.

The shared test Redis (SIPUP_TEST_REDIS_URL) must never be stopped: other tests and other runs use it.
A test about outages starts one of these on a free port of its own instead.
"""
import shutil
import socket
import subprocess
import time

import pytest


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_for_port(port, process, timeout=10):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server on port {port} exited with {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"server on port {port} did not listen within {timeout}s")


class LocalServer:
    """A server process on 127.0.0.1:port; stop() and start() again keep the port."""

    program = None

    def __init__(self, workdir):
        self.workdir = workdir
        self.port = free_port()
        self.process = None

    def command(self):
        raise NotImplementedError

    def start(self):
        if self.process is None or self.process.poll() is not None:
            self.process = subprocess.Popen(self.command(), cwd=self.workdir,
                                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            _wait_for_port(self.port, self.process)
        return self

    def stop(self):
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)
        self.process = None

    @property
    def running(self):
        return self.process is not None and self.process.poll() is None


class LocalRedis(LocalServer):
    program = "redis-server"

    def command(self):
        return [self.program, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                "--appendonly", "no", "--dir", str(self.workdir)]

    @property
    def url(self):
        return f"redis://127.0.0.1:{self.port}/0"


class LocalMemcached(LocalServer):
    program = "memcached"

    def command(self):
        return [self.program, "-p", str(self.port), "-l", "127.0.0.1", "-U", "0", "-u", "root", "-m", "16"]

    @property
    def url(self):
        return f"memcached://127.0.0.1:{self.port}"


def local_server(kind, tmp_path):
    """Start a private server of this kind for one test (skip where the program is not installed)."""
    if shutil.which(kind.program) is None:
        pytest.skip(f"{kind.program} is not installed")
    return kind(tmp_path).start()


class LocalSmtp:
    """A real SMTP server (aiosmtpd) on a free port that keeps what it receives; login with any password
    but "wrong". Start it with start(), stop it with stop()."""

    def __init__(self, user="mailer", password="secret", tls_context=None):
        self.port = free_port()
        self.user, self.password = user, password
        self.tls_context = tls_context
        self.messages = []
        self.logins = []
        self.controller = None

    def start(self):
        from aiosmtpd.controller import Controller
        from aiosmtpd.smtp import AuthResult

        server = self

        class Handler:
            async def handle_DATA(self, smtp, session, envelope):
                from email import message_from_bytes, policy

                server.messages.append(message_from_bytes(envelope.original_content or envelope.content,
                                                          policy=policy.default))
                return "250 OK"

        def authenticate(smtp, session, envelope, mechanism, auth_data):
            ok = auth_data.login.decode() == server.user and auth_data.password.decode() == server.password
            server.logins.append((auth_data.login.decode(), ok))
            return AuthResult(success=ok)

        # Without a TLS context, AUTH is offered without TLS on loopback; the tests check the client logged in.
        self.controller = Controller(Handler(), hostname="127.0.0.1", port=self.port, server_hostname="localhost",
                                     authenticator=authenticate, auth_require_tls=self.tls_context is not None,
                                     tls_context=self.tls_context, require_starttls=self.tls_context is not None)
        self.controller.start()
        return self

    def stop(self):
        if self.controller is not None:
            self.controller.stop()
            self.controller = None

    @property
    def url(self):
        tls = "" if self.tls_context is not None else "?tls=off"
        return f"smtp://{self.user}:{self.password}@127.0.0.1:{self.port}{tls}"


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
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(host))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "smtp.pem", folder / "smtp.key"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return str(cert_path), str(key_path)
