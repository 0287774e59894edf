"""The cost of collecting /monitor's figures: pages per second under real waitress with request and
query statistics on and off, on the embedded default (SQLite counters) and with Redis, in the same run.

python -m benchmarks.monitor [--seconds 3] [--rounds 4] [--connections 4]

Four `flask serve` processes on copies of one demo database (see benchmarks/limits.py, whose servers and
load generators this reuses): statistics off (SIPUP_REQUEST_STATS=false, SIPUP_DB_STATS=false) and on,
without and with SIPUP_REDIS_URL. Rate limits are on everywhere, with budgets no client reaches.
Rounds alternate off/on and on/off; the median round is reported, with the server's CPU per request.
"""

import argparse
import os
import secrets
import shutil
import tempfile
from pathlib import Path

from benchmarks.limits import PAGES, Server, _demo_instance, _python_load, _wrk, alternate, delete_namespace


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--connections", type=int, default=4)
    args = parser.parse_args()
    redis_url = os.environ.get("SIPUP_BENCH_REDIS_URL", "redis://127.0.0.1:6379/15")
    namespace = f"sipupbench-{secrets.token_hex(4)}"
    load = _wrk if shutil.which("wrk") else _python_load
    off = {"SIPUP_REQUEST_STATS": "false", "SIPUP_DB_STATS": "false"}
    on = {"SIPUP_REQUEST_STATS": "true", "SIPUP_DB_STATS": "true"}
    with_redis = {"SIPUP_REDIS_URL": redis_url, "SIPUP_REDIS_NAMESPACE": namespace}
    modes = {"sqlite off": off, "sqlite on": on, "redis off": {**off, **with_redis}, "redis on": {**on, **with_redis}}
    folder = Path(tempfile.mkdtemp(prefix="sipup-bench-monitor-"))
    template = _demo_instance(folder / "template")
    servers = {name: Server(name.replace(" ", "-"), folder, env, template) for name, env in modes.items()}
    try:
        for server in servers.values():
            server.wait()
        cookies = {name: server.session_cookie() for name, server in servers.items()}
        print(
            f"load: {load.__name__.strip('_')}, {args.connections} connections, {args.seconds} s a round, "
            f"{args.rounds} rounds per mode; load average before {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs"
        )
        for page, (signed_in, what) in PAGES.items():
            print(f"{page} ({what}):")
            for store in ("sqlite", "redis"):
                (r_off, c_off), (r_on, c_on) = alternate(
                    servers, [f"{store} off", f"{store} on"], page, cookies if signed_in else {}, args, load
                )
                print(
                    f"  {store:<6} statistics off {r_off:5.0f} req/s, on {r_on:5.0f} req/s, on/off = "
                    f"{r_on / r_off:.2f}; "
                    f"server CPU per request off {c_off:.2f} ms, on {c_on:.2f} ms, off/on = {c_off / c_on:.2f}"
                )
        print(f"load average after: {os.getloadavg()[0]:.1f}")
    finally:
        for server in servers.values():
            server.stop()
        shutil.rmtree(folder, ignore_errors=True)
        delete_namespace(redis_url, namespace)


if __name__ == "__main__":
    main()
