"""Key queries before and after `flask db optimize` on a large seed: indexes, partitions, fresh statistics.

python -m benchmarks.optimize [--orders 1000000] [--months 13] [--rounds 5]
Runs on MariaDB when SIPUP_BENCH_DATABASE_URL is set (a database of its own, dropped at the end),
else on a SQLite file in a temporary folder.

"Before" is the initial schema (migration 0001: no catalog or credit indexes, orders keyed by id,
not partitioned) filled by the seed; "after" is `flask db upgrade` (0002) followed by `flask db
optimize`. Each key query runs once to warm the caches, then --rounds times; the figure is the median.
"""

import argparse
import logging
import os
import statistics
import tempfile
import time
from datetime import datetime

from flask_migrate import upgrade

from benchmarks import SECRET_KEY
from sipup import create_app
from sipup.database import migrations, scratch_database
from sipup.dbtools.optimize import Optimizer, optimize
from sipup.extensions import db
from sipup.services.key_queries import key_queries

PASSWORD = "benchmark password"


def _app(url, instance):
    return create_app({"DATABASE_URL": url, "SECRET_KEY": SECRET_KEY, "DB_STATS": False}, instance_path=instance)


def _seed(app, orders, months, companies, products):
    from sipup.services import seed

    with app.app_context():
        seed.seed_catalog(products)
        seed.seed_companies(companies, PASSWORD)
        started, shown = time.perf_counter(), [0]

        def progress(n):
            shown[0] += n
            if shown[0] % max(orders // 10, 1) < n:
                print(f"  seeded {shown[0]:,} orders, {time.perf_counter() - started:.0f} s", flush=True)

        seed.seed_orders(orders, months, progress=progress)
        return time.perf_counter() - started


def _measure(app, rounds):
    """{label: (median ms, plan lines)} for the key queries, each run once to warm up first."""
    optimizer = Optimizer(app, echo=lambda _line: None, key_queries=key_queries)
    results = {}
    with app.app_context(), optimizer.engine.connect() as optimizer.conn:
        for label, statement in optimizer.key_queries():
            optimizer.conn.execute(statement).all()
            times = []
            for _ in range(rounds):
                started = time.perf_counter()
                optimizer.conn.execute(statement).all()
                times.append((time.perf_counter() - started) * 1000)
            results[label] = (statistics.median(times), optimizer.explain(optimizer.literal_sql(statement)))
    optimizer.engine.dispose()
    return results


def run(url, instance, args):
    app = _app(url, instance)
    directory = migrations(app).directory
    with app.app_context():
        upgrade(directory=directory, revision="0001")
    seconds = _seed(app, args.orders, args.months, args.companies, args.products)
    print(f"seed: {args.orders:,} orders over {args.months} months in {seconds:.0f} s", flush=True)
    before = _measure(app, args.rounds)

    with app.app_context():
        started = time.perf_counter()
        upgrade(directory=directory)
        migration = time.perf_counter() - started
        print(
            f"flask db upgrade (0002: indexes, primary keys with created_at) on the filled tables: {migration:.1f} s",
            flush=True,
        )
        started = time.perf_counter()
        outcome, report = optimize(app, echo=lambda line: print(line[:160], flush=True), key_queries=key_queries)
        optimizing = time.perf_counter() - started
        assert not outcome.failed, outcome.failed
        started = time.perf_counter()
        second, _report = optimize(app, echo=lambda _line: None, key_queries=key_queries)
        again = time.perf_counter() - started
        db.engine.dispose()
    with open(os.path.join(instance, "optimize-report.txt"), "w", encoding="utf-8") as handle:
        handle.write(report)
    print(
        f"flask db optimize: {optimizing:.1f} s ({outcome.changes} schema changes); "
        f"second run {again:.1f} s, {second.changes} schema changes"
    )
    for warning in outcome.warnings:
        if warning.startswith("converted"):
            print(f"  {warning}")
    after = _measure(app, args.rounds)

    print(f"\n{'before ms':>10} {'after ms':>10} {'ratio':>7}  key query")
    for label, (ms_before, _plan) in before.items():
        ms_after = after[label][0]
        print(f"{ms_before:10.2f} {ms_after:10.2f} {ms_before / ms_after:6.1f}x  {label}")
    print("\nPlans before -> after:")
    for label, (_ms, plan) in before.items():
        print(f"  {label}")
        for line in plan:
            print(f"    before: {line}")
        for line in after[label][1]:
            print(f"    after:  {line}")
    print(f"\nFull report of the first run: {os.path.join(instance, 'optimize-report.txt')}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=1_000_000)
    parser.add_argument("--months", type=int, default=13)
    parser.add_argument("--companies", type=int, default=500)
    parser.add_argument("--products", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    instance = tempfile.mkdtemp(prefix="sipup-bench-optimize-")
    base = os.environ.get("SIPUP_BENCH_DATABASE_URL")
    started = datetime.now()
    if base:
        url, drop = scratch_database(base)
        print(f"== MariaDB ({url})", flush=True)
        try:
            run(url, instance, args)
        finally:
            drop()
    else:
        url = f"sqlite:///{os.path.join(instance, 'bench.db')}"
        print(f"== SQLite ({url})", flush=True)
        run(url, instance, args)
    print(f"\nwhole run: {(datetime.now() - started).total_seconds():.0f} s")


if __name__ == "__main__":
    main()
