"""Benchmarks of sipup (not tests): each module runs with `python -m benchmarks.<name>`; see README.md."""

import socket

# Long enough for MariaDB + Redis too, where sipup refuses keys under 32 characters.
SECRET_KEY = "benchmark secret key, never used in production"


def free_port():
    """A TCP port on 127.0.0.1 that nothing listens on now, for a server a benchmark starts."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
