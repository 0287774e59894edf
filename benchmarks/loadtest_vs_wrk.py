"""How `flask loadtest` compares with wrk against a bare Flask hello under waitress.

python -m benchmarks.loadtest_vs_wrk [--rounds 3] [--duration 10] [--connections 10] [--server-threads 4]

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
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WRK_RPS = re.compile(r"Requests/sec:\s+([0-9.]+)")
WRK_P50 = re.compile(r"^\s+50%\s+([0-9.]+)(us|ms|s)\s*$", re.M)
UNIT_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def pinned(core, command):
    """The command pinned to one CPU core where taskset exists (Linux), else unchanged."""
    taskset = shutil.which("taskset")
    return [taskset, "-c", str(core), *command] if taskset and os.cpu_count() > 1 else command


def start_server(port, threads):
    command = [sys.executable, "-m", "waitress", f"--listen=127.0.0.1:{port}", f"--threads={threads}",
               "benchmarks.hello_app:app"]
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


def run_wrk(url, duration, connections):
    """(requests/s, median ms) from wrk with one thread, as the generator on one core."""
    output = subprocess.run(pinned(1, ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--latency", url]),
                            capture_output=True, text=True, check=True).stdout
    p50 = WRK_P50.search(output)
    return float(WRK_RPS.search(output).group(1)), float(p50.group(1)) * UNIT_MS[p50.group(2)]


def run_loadtest(url, duration, connections, instance):
    """(requests/s, median ms, generator CPU %) from `flask loadtest` with the pages scenario."""
    env = {**os.environ, "SIPUP_INSTANCE_PATH": instance, "FLASK_APP": "wsgi.py"}
    env.pop("SIPUP_DATABASE_URL", None)
    command = [sys.executable, "-m", "flask", "loadtest", url, "--scenario", "pages", "--users", str(connections),
               "--duration", f"{duration + 1}s", "--warmup", "1s", "--quiet", "--json", "-"]
    completed = subprocess.run(pinned(1, command), cwd=ROOT, env=env, capture_output=True, text=True)
    if completed.returncode != 0:
        raise SystemExit(f"flask loadtest failed ({completed.returncode}):\n{completed.stderr}")
    report = json.loads(completed.stdout)
    total = report["total"]
    return total["rps"], total["latency_ms"]["p50"], report["generator"]["cpu_percent"]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=int, default=10, help="seconds per measurement")
    parser.add_argument("--connections", type=int, default=10, help="wrk connections = loadtest users")
    parser.add_argument("--server-threads", type=int, default=4)
    args = parser.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("wrk is not installed (Debian: apt-get install wrk)")
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    server = start_server(port, args.server_threads)
    wrk, ours = [], []
    try:
        with tempfile.TemporaryDirectory(prefix="sipup-loadtest-bench-") as instance:
            run_wrk(url, 2, args.connections)  # warm the server up
            for round_number in range(args.rounds):
                order = ("wrk", "loadtest") if round_number % 2 == 0 else ("loadtest", "wrk")
                for tool in order:
                    if tool == "wrk":
                        wrk.append(run_wrk(url, args.duration, args.connections))
                        print(f"round {round_number + 1} wrk       {wrk[-1][0]:8,.0f} req/s  p50 {wrk[-1][1]:6.2f} ms", flush=True)
                    else:
                        ours.append(run_loadtest(url, args.duration, args.connections, instance))
                        print(f"round {round_number + 1} loadtest  {ours[-1][0]:8,.0f} req/s  p50 {ours[-1][1]:6.2f} ms  "
                              f"generator CPU {ours[-1][2]:.0f}%", flush=True)
    finally:
        server.terminate()
        server.wait(timeout=10)
    wrk_rps, wrk_p50 = statistics.median(r for r, _ in wrk), statistics.median(p for _, p in wrk)
    our_rps, our_p50 = statistics.median(r for r, _, _ in ours), statistics.median(p for _, p, _ in ours)
    throughput, latency = our_rps / wrk_rps, our_p50 / wrk_p50
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"\nmedians over {args.rounds} rounds of {args.duration} s, {args.connections} connections, "
          f"server {args.server_threads} threads on core 0, generators on core 1, load average {load:.2f}:")
    print(f"wrk      {wrk_rps:8,.0f} req/s  p50 {wrk_p50:6.2f} ms")
    print(f"loadtest {our_rps:8,.0f} req/s  p50 {our_p50:6.2f} ms")
    print(f"throughput loadtest/wrk = {throughput:.2f} (goal >= 0.90: {'met' if throughput >= 0.9 else 'NOT met'}); "
          f"median latency loadtest/wrk = {latency:.2f} (goal 0.80-1.20: {'met' if 0.8 <= latency <= 1.2 else 'NOT met'})")


if __name__ == "__main__":
    main()
