"""Bulk import of a products file: 10,000 products (the goal: under a minute) on SQLite and MariaDB.

python -m benchmarks.imports [--products 10000]
MariaDB too when SIPUP_BENCH_DATABASE_URL is set (a database of its own, dropped at the end).

For each backend and format (CSV in the excel-eu dialect, XLSX): the preview of a new catalogue (read,
check and plan every line), the import itself (plan again and apply in batches, as the job does), the
same file again (nothing to change), and the file with every price raised (10,000 updates).
"""

import argparse
import logging
import os
import tempfile
import time

from sqlalchemy import func, select

from benchmarks import SECRET_KEY
from sipup import create_app
from sipup.csvfiles import to_text
from sipup.database import scratch_database
from sipup.extensions import db
from sipup.models import Category, Product
from sipup.services import bulk_import, import_products
from sipup.spreadsheets import xlsx_bytes

CATEGORIES = ("Beer", "Wine", "Water", "Juice", "Soft drinks", "Spirits")


def _rows(count, raise_by=0):
    for n in range(count):
        yield (
            f"BENCH-{n:06d}",
            f"Product {n} Helles Lager",
            CATEGORIES[n % len(CATEGORIES)],
            "case of 20 x 0.5 l",
            round(10 + (n % 500) / 10 + raise_by, 2),
            3.10,
            ("standard", "reduced", "zero")[n % 3],
            1,
            1,
            n % 300,
            "yes",
        )


def files(count, raise_by=0):
    """{format: bytes} of one catalogue."""
    rows = list(_rows(count, raise_by))
    return {
        "csv": ("\ufeff" + to_text(import_products.COLUMNS, rows, "excel-eu")).encode("utf-8"),
        "xlsx": xlsx_bytes(import_products.COLUMNS, rows),
    }


def _timed(work):
    started = time.perf_counter()
    result = work()
    return time.perf_counter() - started, result


def _empty():
    db.session.execute(Product.__table__.delete())
    db.session.execute(Category.__table__.delete())
    db.session.commit()


def run(label, url, instance, count):
    """Print one line per format: preview, import, the same again, and every price changed."""
    from sipup.cli.db import upgrade_schema

    app = create_app({"DATABASE_URL": url, "SECRET_KEY": SECRET_KEY}, instance_path=instance)
    print(f"== {label}, {count:,} products")
    new, raised = files(count), files(count, raise_by=1)
    with app.app_context():
        upgrade_schema()
        for fmt in ("csv", "xlsx"):
            _empty()
            preview, _ = _timed(lambda: bulk_import.check("products", new[fmt]))
            first, state = _timed(lambda: bulk_import.apply_file("products", new[fmt]))
            assert state["created"] == count, state
            again, state = _timed(lambda: bulk_import.apply_file("products", new[fmt]))
            assert state["same"] == count, state
            changed, state = _timed(lambda: bulk_import.apply_file("products", raised[fmt]))
            assert state["changed"] == count, state
            total = db.session.scalar(select(func.count()).select_from(Product))
            print(
                f"{fmt:<4} {len(new[fmt]) / 1_048_576:5.1f} MB: preview {preview:5.1f} s, import {first:5.1f} s "
                f"({count / first:,.0f} products/s), same file again {again:5.1f} s, every price changed "
                f"{changed:5.1f} s; {total:,} products"
            )
        db.session.remove()
        db.engine.dispose()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--products", type=int, default=10_000, help="lines of the file (default 10000)")
    args = parser.parse_args()
    logging.disable(logging.WARNING)  # the slow-query log is not what is measured
    with tempfile.TemporaryDirectory(prefix="sipup-bench-") as folder:
        instance = os.path.join(folder, "sqlite")
        os.makedirs(instance)
        run("SQLite", f"sqlite:///{os.path.join(instance, 'bench.db')}", instance, args.products)
        server_url = os.environ.get("SIPUP_BENCH_DATABASE_URL")
        if server_url:
            url, drop = scratch_database(server_url)
            instance = os.path.join(folder, "mariadb")
            os.makedirs(instance)
            try:
                run("MariaDB", url, instance, args.products)
            finally:
                drop()
        else:
            print("(set SIPUP_BENCH_DATABASE_URL=mysql+pymysql://user@host/sipup_bench to measure MariaDB too)")


if __name__ == "__main__":
    main()
