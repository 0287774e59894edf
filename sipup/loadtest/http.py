"""A small HTTP/1.1 client for the load generator: one keep-alive connection per virtual user.

Why not http.client: its header parsing (the email package) costs several times what the request
itself costs the generator, and the generator must not be what limits a test. This client parses only
what a load test needs (status, Content-Length or chunked body, Connection, Location, Set-Cookie), keeps
cookies like a browser for one site, and leaves the measuring to the caller.
"""

import socket
import time
from urllib.parse import quote, urlencode, urljoin, urlsplit

MAX_HEADER_BYTES = 64 * 1024
URL_SAFE = ":/?#[]@!$&'()*+,;=%~"  # reserved characters and escapes stay; spaces and non-ASCII get escaped
RECV_BYTES = 256 * 1024


class HTTPError(Exception):
    """A request that got no usable answer; `kind` is the failure group (timeout, refused, reset, ...)."""

    def __init__(self, kind, detail=""):
        super().__init__(f"{kind}: {detail}" if detail else kind)
        self.kind = kind


class Response:
    """Status, headers (lower-case names, parsed when first asked for) and body of one answer."""

    __slots__ = ("status", "_lines", "_headers", "body", "url")

    def __init__(self, status, lines, body, url):
        self.status, self._lines, self._headers, self.body, self.url = status, lines, None, body, url

    @property
    def headers(self):
        if self._headers is None:
            self._headers = {}
            for line in self._lines:
                name, _, value = line.decode("latin-1").partition(":")
                self._headers[name.strip().lower()] = value.strip()
        return self._headers

    @property
    def text(self):
        return self.body.decode("utf-8", "replace")

    def __repr__(self):
        return f"<Response {self.status} {self.url} {len(self.body)} bytes>"


class Connection:
    """One keep-alive TCP connection to host:port; reconnects when the server closed it."""

    def __init__(self, host, port, timeout):
        self.host, self.port, self.timeout = host, port, timeout
        self.sock = None
        self.buffer = b""
        self.opened = 0  # connections made: more than one means the server closed some

    def close(self):
        if self.sock is not None:
            try:
                self.sock.close()
            except OSError:
                pass
        self.sock, self.buffer = None, b""

    def _connect(self):
        try:
            sock = socket.create_connection((self.host, self.port), timeout=self.timeout)
        except socket.timeout:
            raise HTTPError("connect timeout", f"{self.host}:{self.port}") from None
        except ConnectionRefusedError:
            raise HTTPError("connection refused", f"{self.host}:{self.port}") from None
        except OSError as exc:
            raise HTTPError("connect error", f"{type(exc).__name__}: {exc}") from None
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock, self.buffer = sock, b""
        self.opened += 1

    def exchange(self, request_bytes, head_only=False):
        """Send one request and read its answer: (status, header lines, body).

        A request on a reused connection that the server had already closed is sent once more on a
        new one, as browsers do; anything else that goes wrong raises HTTPError.
        """
        while True:
            reused = self.sock is not None
            if not reused:
                self._connect()
            try:
                self._send(request_bytes)
                return self._read_response(head_only)
            except _Stale:
                self.close()
                if not reused:
                    raise HTTPError("connection reset", "closed before any answer") from None
            except BaseException:
                self.close()
                raise

    def _send(self, data):
        try:
            self.sock.sendall(data)
        except socket.timeout:
            raise HTTPError("timeout", f"could not send within {self.timeout:g}s") from None
        except (ConnectionResetError, BrokenPipeError, ConnectionAbortedError):
            raise _Stale from None
        except OSError as exc:
            raise HTTPError("socket error", f"{type(exc).__name__}: {exc}") from None

    def _recv(self, started):
        try:
            chunk = self.sock.recv(RECV_BYTES)
        except socket.timeout:
            raise HTTPError("timeout", f"no answer within {self.timeout:g}s") from None
        except (ConnectionResetError, BrokenPipeError, ConnectionAbortedError):
            if started:
                raise HTTPError("connection reset", "during the answer") from None
            raise _Stale from None
        except OSError as exc:
            raise HTTPError("socket error", f"{type(exc).__name__}: {exc}") from None
        return chunk

    def _read_response(self, head_only):
        try:
            return self._parse_response(head_only)
        except ValueError as exc:  # a Content-Length or chunk size that is not a number
            raise HTTPError("bad response", str(exc)[:80]) from None

    def _parse_response(self, head_only):
        buffer = self.buffer
        while True:
            end = buffer.find(b"\r\n\r\n")
            if end >= 0:
                break
            if len(buffer) > MAX_HEADER_BYTES:
                raise HTTPError("bad response", "headers too long")
            chunk = self._recv(bool(buffer))
            if not chunk:
                if buffer:
                    raise HTTPError("connection reset", "closed during the headers")
                raise _Stale
            buffer += chunk
        lines = buffer[:end].split(b"\r\n")
        status_line = lines[0]
        if not status_line.startswith(b"HTTP/1.") or len(status_line) < 12:
            raise HTTPError("bad response", repr(status_line[:40]))
        try:
            status = int(status_line[9:12])
        except ValueError:
            raise HTTPError("bad response", repr(status_line[:40])) from None
        length, chunked, keep_alive = None, False, status_line[5:8] == b"1.1"
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            name = name.lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"transfer-encoding":
                chunked = b"chunked" in value.lower()
            elif name == b"connection":
                value = value.strip().lower()
                keep_alive = value == b"keep-alive" or (keep_alive and value != b"close")
        start = end + 4
        if head_only or status in (204, 304) or 100 <= status < 200:
            body, rest = b"", buffer[start:]
        elif chunked:
            body, rest = self._read_chunked(buffer[start:])
        elif length is not None:
            while len(buffer) - start < length:
                chunk = self._recv(True)
                if not chunk:
                    raise HTTPError("connection reset", "closed during the body")
                buffer += chunk
            body, rest = buffer[start : start + length], buffer[start + length :]
        else:  # no length: the body runs until the server closes
            parts = [buffer[start:]]
            while chunk := self._recv(True):
                parts.append(chunk)
            body, rest, keep_alive = b"".join(parts), b"", False
        self.buffer = rest
        if not keep_alive:
            self.close()
        return status, lines[1:], body

    def _read_chunked(self, data):
        body = []
        while True:
            while (line_end := data.find(b"\r\n")) < 0:
                data += self._more()
            size = int(data[:line_end].split(b";")[0], 16)
            data = data[line_end + 2 :]
            if size == 0:
                while (trailer_end := data.find(b"\r\n")) != 0:
                    if trailer_end > 0:
                        data = data[trailer_end + 2 :]
                    else:
                        data += self._more()
                return b"".join(body), data[2:]
            while len(data) < size + 2:
                data += self._more()
            body.append(data[:size])
            data = data[size + 2 :]

    def _more(self):
        chunk = self._recv(True)
        if not chunk:
            raise HTTPError("connection reset", "closed during the body")
        return chunk


class _Stale(Exception):
    """The server closed a kept-alive connection before answering: safe to send again."""


class Session:
    """A browser-like visitor of one site: a connection, cookies, and redirects followed on request.

    `record(name, method, status, started, ended, error)` is called for every request, including each
    redirect hop, so the statistics see what a browser would have cost the server.
    """

    def __init__(self, base_url, record, timeout=10.0, user_agent="sipup-loadtest", before_request=None):
        parts = urlsplit(base_url)
        self.base_url = base_url
        self.host = parts.hostname
        self.port = parts.port or 80
        self.host_header = parts.netloc.encode("ascii")
        self.connection = Connection(self.host, self.port, timeout)
        self.cookies = {}
        self.record = record
        self.user_agent = user_agent.encode("ascii")
        self.pending_start = None  # the open model's intended start for the next request
        self.before_request = before_request  # may raise to stop the visitor (the run's request budget)

    def close(self):
        self.connection.close()

    def request(self, method, path, name=None, form=None, headers=None, follow=False, head_only=None, expect=()):
        """One request (and its redirects when follow=True); returns the last Response, or None on error.

        expect: error statuses the scenario judges by the answer itself (a refusal the site should give),
        not counted as failures here; the scenario counts it with Recorder.fail_last when it is wrong."""
        response = None
        for _ in range(10 if follow else 1):
            response = self._one(method, path, name, form, headers, expect)
            if response is None or not follow or response.status not in (301, 302, 303, 307, 308):
                return response
            location = response.headers.get("location")
            if not location:
                return response
            target = urlsplit(urljoin(self.base_url + path, location))
            path = target.path + (f"?{target.query}" if target.query else "")
            if response.status in (301, 302, 303):
                method, form = "GET", None
            name = None
        return response

    def _one(self, method, path, name, form, headers, expect=()):
        if self.before_request is not None:
            self.before_request()
        name = name or f"{method} {path.split('?', 1)[0]}"
        if not path.isascii() or " " in path:
            path = quote(path, safe=URL_SAFE)
        lines = [
            f"{method} {path} HTTP/1.1".encode("ascii"),
            b"Host: " + self.host_header,
            b"User-Agent: " + self.user_agent,
            b"Accept: */*",
        ]
        if self.cookies:
            lines.append(b"Cookie: " + "; ".join(f"{k}={v}" for k, v in self.cookies.items()).encode("latin-1"))
        for key, value in (headers or {}).items():
            lines.append(f"{key}: {value}".encode("latin-1"))
        body = b""
        if form is not None:
            body = urlencode(form, doseq=True).encode("ascii")
            lines.append(b"Content-Type: application/x-www-form-urlencoded")
        if body or method in ("POST", "PUT", "PATCH"):
            lines.append(b"Content-Length: " + str(len(body)).encode())
        request_bytes = b"\r\n".join(lines) + b"\r\n\r\n" + body
        started = time.perf_counter()
        intended, self.pending_start = self.pending_start, None
        try:
            status, header_lines, payload = self.connection.exchange(request_bytes, head_only=method == "HEAD")
        except HTTPError as exc:
            self.record(
                name, status=None, started=started, ended=time.perf_counter(), intended=intended, error=exc.kind
            )
            return None
        ended = time.perf_counter()
        response = Response(status, header_lines, payload, path)
        for line in header_lines:
            if line[:11].lower() == b"set-cookie:":
                self._keep_cookie(line[11:].decode("latin-1"))
        self.record(
            name, status=status, started=started, ended=ended, intended=intended, error=None, judged=status in expect
        )
        return response

    def _keep_cookie(self, header):
        pair, _, attributes = header.partition(";")
        key, _, value = pair.strip().partition("=")
        attributes = attributes.lower()
        if not value or "max-age=0" in attributes.replace(" ", "") or "expires=thu, 01 jan 1970" in attributes:
            self.cookies.pop(key, None)
        else:
            self.cookies[key] = value
