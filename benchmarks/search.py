"""Catalog search over 100,000 products: p50 and p95 of one search page (count and rows), SQLite and MariaDB.

python -m benchmarks.search [--products 100000] [--rounds 30]; MariaDB too when SIPUP_BENCH_DATABASE_URL is
set (a scratch database of its own is created there and dropped). Each query is what catalog.search() runs
for a buyer's page: the index's matches, the count for the pager and 24 rows best first; for a query that
matches nothing, the closest catalog words (rapidfuzz over the cached vocabulary) and their search.
"""

import argparse
import os
import statistics
import tempfile
import time

from sipup.database import scratch_database
from sipup.extensions import db
from sipup.services import catalog, seed, spelling

from .db import _app

# Typos: nothing matches as typed, so the closest catalog words are searched instead.
TYPOS = ["hofbreu", "pilz", "hofbreu pilz", "mineralwaser", "rhabarbrschorle", "kellerbir naturtrub"]
QUERIES = ["brau", "lager 30", "hofbräu pils", "strasse", "cola zero 1.0", "alpen gin", "BEE-00005", "mineralwasser"]
QUERIES += ["zzz", "x", *TYPOS]


def measure(url, instance, products, rounds):
    """{query: (matches, [milliseconds])} for each query, after one warm-up round."""
    app = _app(url, instance)
    from sipup.cli.db import upgrade_schema

    with app.app_context():
        upgrade_schema()
        started = time.perf_counter()
        seed.seed_catalog(products)
        print(f"  {products:,} products seeded in {time.perf_counter() - started:.0f} s")
        began = time.perf_counter()
        words = len(spelling.vocabulary().words)
        built = (time.perf_counter() - began) * 1000
        correcting = []
        for _ in range(rounds):
            for query in TYPOS:
                begun = time.perf_counter()
                spelling.corrected(query)
                correcting.append((time.perf_counter() - begun) * 1000)
        print(
            f"  vocabulary of {words:,} words built in {built:.0f} ms (once per change of names or categories); "
            f"correcting a typo alone: p50 {statistics.median(correcting):.2f} ms, "
            f"p95 {percentile(correcting, 95):.2f} ms"
        )
        results = {}
        for query in QUERIES:
            catalog.search(query, sort="best")  # warm the page cache
            times = []
            for _ in range(rounds):
                begun = time.perf_counter()
                page = catalog.search(query, sort="best")
                times.append((time.perf_counter() - begun) * 1000)
                db.session.rollback()
            results[query] = (page.total, times)
        db.engine.dispose()
    return results


def report(name, results):
    everything = [t for _, times in results.values() for t in times]
    print(f"\n{name}: query, matches, p50 ms, p95 ms")
    for query, (total, times) in results.items():
        print(f"  {query!r:<18} {total:>7,}  {statistics.median(times):7.1f}  {percentile(times, 95):7.1f}")
    print(f"  all queries: p50 {statistics.median(everything):.1f} ms, p95 {percentile(everything, 95):.1f} ms")


def percentile(values, share):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * share / 100))]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--products", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as instance:
        report("SQLite (FTS5)", measure(f"sqlite:///{instance}/search.db", instance, args.products, args.rounds))
    server = os.environ.get("SIPUP_BENCH_DATABASE_URL")
    if server:
        url, drop = scratch_database(server)
        try:
            with tempfile.TemporaryDirectory() as instance:
                report("MariaDB (word table)", measure(url, instance, args.products, args.rounds))
        finally:
            drop()


if __name__ == "__main__":
    main()
