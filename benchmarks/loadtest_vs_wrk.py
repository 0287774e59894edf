"""How `flask loadtest` compares with wrk against a bare Flask hello under waitress.

python -m benchmarks.loadtest_vs_wrk [--rounds 3] [--duration 10] [--connections 10,50] [--server-threads 4]

The server runs on one core and each generator on the other (taskset), so neither steals the
other's CPU. Rounds alternate wrk, loadtest, loadtest, wrk, ... so drift (a busy machine) hits both
alike; each figure is the median of its rounds. The goal: loadtest reaches at least 90% of wrk's
requests per second, and its median latency is within 20% of wrk's.
"""

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from benchmarks import free_port

ROOT = Path(__file__).resolve().parents[1]
WRK_RPS = re.compile(r"Requests/sec:\s+([0-9.]+)")
WRK_P50 = re.compile(r"^\s+50%\s+([0-9.]+)(us|ms|s)\s*$", re.M)
UNIT_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def pinned(core, command):
    """The command pinned to one CPU core where taskset exists (Linux), else unchanged."""
    taskset = shutil.which("taskset")
    return [taskset, "-c", str(core), *command] if taskset and os.cpu_count() > 1 else command


def start_server(port, threads):
    command = [
        sys.executable,
        "-m",
        "waitress",
        f"--listen=127.0.0.1:{port}",
        f"--threads={threads}",
        "benchmarks.hello_app:app",
    ]
    process = subprocess.Popen(pinned(0, command), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(100):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1) as response:
                if response.status == 200:
                    return process
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise SystemExit("the hello server did not start")


def run_wrk(url, duration, connections, threads=1):
    """(requests/s, median ms) from wrk, pinned to the generators' core."""
    threads = min(threads, connections)
    output = subprocess.run(
        pinned(1, ["wrk", f"-t{threads}", f"-c{connections}", f"-d{duration}s", "--latency", url]),
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    p50 = WRK_P50.search(output)
    return float(WRK_RPS.search(output).group(1)), float(p50.group(1)) * UNIT_MS[p50.group(2)]


def run_loadtest(url, duration, connections, instance):
    """(requests/s, median ms, generator CPU %) from `flask loadtest` with the pages scenario."""
    env = {**os.environ, "SIPUP_INSTANCE_PATH": instance, "FLASK_APP": "wsgi.py"}
    env.pop("SIPUP_DATABASE_URL", None)
    command = [
        sys.executable,
        "-m",
        "flask",
        "loadtest",
        url,
        "--scenario",
        "pages",
        "--users",
        str(connections),
        "--duration",
        f"{duration + 1}s",
        "--warmup",
        "1s",
        "--quiet",
        "--json",
        "-",
    ]
    completed = subprocess.run(pinned(1, command), cwd=ROOT, env=env, capture_output=True, text=True)
    if completed.returncode != 0:
        raise SystemExit(f"flask loadtest failed ({completed.returncode}):\n{completed.stderr}")
    report = json.loads(completed.stdout)
    total = report["total"]
    return total["rps"], total["latency_ms"]["p50"], report["generator"]["cpu_percent"]


def compare(url, rounds, duration, connections, instance, wrk_threads):
    """Median (requests/s, p50 ms) of wrk and of loadtest over alternating rounds at one concurrency."""
    wrk, ours = [], []
    run_wrk(url, 2, connections, wrk_threads)  # warm the server up at this concurrency
    for round_number in range(rounds):
        order = ("wrk", "loadtest") if round_number % 2 == 0 else ("loadtest", "wrk")
        for tool in order:
            if tool == "wrk":
                wrk.append(run_wrk(url, duration, connections, wrk_threads))
                print(
                    f"{connections:>4} conn round {round_number + 1} wrk       {wrk[-1][0]:8,.0f} req/s  "
                    f"p50 {wrk[-1][1]:6.2f} ms",
                    flush=True,
                )
            else:
                ours.append(run_loadtest(url, duration, connections, instance))
                print(
                    f"{connections:>4} conn round {round_number + 1} loadtest  {ours[-1][0]:8,.0f} req/s  "
                    f"p50 {ours[-1][1]:6.2f} ms  generator CPU {ours[-1][2]:.0f}%",
                    flush=True,
                )
    return (
        (statistics.median(r for r, _ in wrk), statistics.median(p for _, p in wrk)),
        (statistics.median(r for r, _, _ in ours), statistics.median(p for _, p, _ in ours)),
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=int, default=10, help="seconds per measurement")
    parser.add_argument("--connections", default="10,50", help="wrk connections = loadtest users; a comma list")
    parser.add_argument("--server-threads", type=int, default=4)
    parser.add_argument(
        "--wrk-threads",
        type=int,
        default=1,
        help="wrk threads (at most the connections); see benchmarks/README.md on a busy machine",
    )
    args = parser.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("wrk is not installed (Debian: apt-get install wrk)")
    levels = [int(level) for level in args.connections.split(",")]
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    server = start_server(port, args.server_threads)
    results = {}
    try:
        with tempfile.TemporaryDirectory(prefix="sipup-loadtest-bench-") as instance:
            for connections in levels:
                results[connections] = compare(url, args.rounds, args.duration, connections, instance, args.wrk_threads)
    finally:
        server.terminate()
        server.wait(timeout=10)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"\nmedians of {args.rounds} rounds of {args.duration} s; server {args.server_threads} threads on core 0, "
        f"generators on core 1 (wrk -t{args.wrk_threads}); load average {load:.2f} on {os.cpu_count()} cores"
    )
    print(
        f"{'conn':>5} {'wrk req/s':>10} {'p50 ms':>7} {'loadtest req/s':>15} {'p50 ms':>7} {'req/s ratio':>12} "
        f"{'p50 ratio':>10}  goals (ratio >= 0.90, p50 within 20%)"
    )
    for connections, ((wrk_rps, wrk_p50), (our_rps, our_p50)) in results.items():
        throughput, latency = our_rps / wrk_rps, our_p50 / wrk_p50
        verdict = "met" if throughput >= 0.9 and 0.8 <= latency <= 1.2 else "NOT met"
        print(
            f"{connections:>5} {wrk_rps:>10,.0f} {wrk_p50:>7.2f} {our_rps:>15,.0f} {our_p50:>7.2f} {throughput:>12.2f} "
            f"{latency:>10.2f}  {verdict}"
        )


if __name__ == "__main__":
    main()
