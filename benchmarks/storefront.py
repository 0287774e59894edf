"""The catalog with pictures and search against the cached catalog of an earlier revision, in one run.

python -m benchmarks.storefront [--before REV] [--seconds 3] [--rounds 5] [--connections 4]
python -m benchmarks.storefront --writes [--before fb4192b] [--rounds 5] [--count 20]

Both trees get the demo data of their own revision under real waitress (`flask serve`); this tree's demo
products have pictures, so its catalog pages carry <img> tags. Measured, rounds alternating so that a
drift in the machine's load falls on all alike: the earlier catalog page, this catalog page, and this
catalog searched (a word the search-as-you-type box sends, cached like any catalog address).

--writes measures the server CPU of each write request instead (cart add, quick-order add, checkout GET and
POST) on MariaDB + Redis against --before (default WRITES_BEFORE): see benchmarks/writes.py.
"""

import argparse
import os
import shutil
import statistics
import tempfile
from pathlib import Path

from benchmarks.limits import ROOT, Server, _demo_instance, _python_load, _wrk
from benchmarks.sessions import export
from benchmarks.writes import report, run

BEFORE = "bd0fa0d"  # the catalog as text cards, searched by name or SKU as typed
WRITES_BEFORE = "fb4192b"  # the writes before they were made cheaper
MEASURED = [
    ("before", "/products", "cached catalog, before"),
    ("after", "/products", "cached catalog with pictures"),
    ("after", "/products?q=brau", "catalog searched for “brau”"),
]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--before", default=None, help=f"The revision to compare with ({BEFORE}; --writes: {WRITES_BEFORE})."
    )
    parser.add_argument("--seconds", type=int, default=3, help="Seconds per measured round.")
    parser.add_argument("--rounds", type=int, default=5, help="Rounds per page.")
    parser.add_argument("--connections", type=int, default=4, help="Concurrent connections.")
    parser.add_argument("--writes", action="store_true", help="Server CPU per write request instead.")
    parser.add_argument("--count", type=int, default=20, help="--writes: requests per scenario and round.")
    args = parser.parse_args()
    if args.writes:
        return writes(args.before or WRITES_BEFORE, args.rounds, args.count)
    args.before = args.before or BEFORE
    load = _wrk if shutil.which("wrk") else _python_load
    folder = Path(tempfile.mkdtemp(prefix="sipup-bench-storefront-"))
    trees = {"before": export(args.before, folder / "before-tree"), "after": ROOT}
    servers = {}
    try:
        for name, tree in trees.items():
            servers[name] = Server(name, folder, {}, _demo_instance(folder / f"{name}-template", root=tree), root=tree)
        for server in servers.values():
            server.wait()
        cookies = {name: server.session_cookie() for name, server in servers.items()}
        rates = {label: [] for _, _, label in MEASURED}
        for n in range(args.rounds):
            for name, page, label in MEASURED if n % 2 == 0 else MEASURED[::-1]:
                rate, _count, bad = load(servers[name].url + page, cookies[name], args.seconds, args.connections)
                rates[label].append(rate)
                if bad:
                    print(f"  warning: {bad} error answers on {name} {page}")
        print(
            f"before: {args.before}; after: this tree; load: {load.__name__.strip('_')}, {args.connections} "
            f"connections, {args.seconds} s a round, {args.rounds} rounds, median; load average "
            f"{os.getloadavg()[0]:.1f}"
        )
        base = statistics.median(rates[MEASURED[0][2]])
        for _, page, label in MEASURED:
            rate = statistics.median(rates[label])
            print(f"  {label:<32} {page:<18} {rate:6.0f} req/s  ratio to before {rate / base:.2f}")
    finally:
        for server in servers.values():
            server.stop()
        shutil.rmtree(folder, ignore_errors=True)


def writes(before, rounds, count):
    """The write requests of `before` and of this tree, in one run."""
    folder = Path(tempfile.mkdtemp(prefix="sipup-bench-writes-"))
    try:
        results = run({"before": export(before, folder / "before-tree"), "after": ROOT}, folder, rounds, count)
        print(report(results, before, rounds, count))
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
