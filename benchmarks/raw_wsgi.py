"""A raw WSGI "hello" (no framework): the ceiling waitress itself allows, for benchmarks.capacity."""

BODY = b"Hello, World!"
HEADERS = [("Content-Type", "text/plain"), ("Content-Length", str(len(BODY)))]


def app(environ, start_response):
    """No routing, no request object: what is left is waitress and the socket."""
    start_response("200 OK", HEADERS)
    return [BODY]
