"""A bare Flask "hello" for measuring the load generator itself (benchmarks.loadtest_vs_wrk, the loadtest tests)."""

from flask import Flask

app = Flask(__name__)


@app.route("/")
def hello():
    """The smallest page Flask can serve: what is left to measure is the server and the generator."""
    return "Hello, World!"
