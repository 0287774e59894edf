"""A small site for the load tester's tests, served by real waitress: fixed answers, slow pages, hit counts."""

import threading
import time
from collections import Counter

from flask import Flask, abort, jsonify, request

app = Flask(__name__)
hits = Counter()
lock = threading.Lock()


@app.before_request
def count():
    if request.path not in ("/hits", "/reset"):
        with lock:
            hits[request.full_path.rstrip("?")] += 1


@app.route("/")
def hello():
    """A page that always works."""
    return "Hello, World!"


@app.route("/status/<int:code>")
def status(code):
    """Answers with the status asked for."""
    abort(code)


@app.route("/slow")
def slow():
    """Answers after ?s= seconds."""
    time.sleep(float(request.args.get("s", "0.2")))
    return "slow"


@app.route("/hits")
def show_hits():
    """Requests counted per path since the last reset."""
    with lock:
        return jsonify(dict(hits))


@app.route("/reset", methods=["POST"])
def reset():
    with lock:
        hits.clear()
    return "", 204
