"""Bulk inserts against the ORM, and the cost of query statistics on a page, on SQLite and MariaDB.

python -m benchmarks.db [--rows 100000] [--requests 3000]; MariaDB too when SIPUP_BENCH_DATABASE_URL is set.
"""

import argparse
import logging
import os
import statistics
import tempfile
import time

from sqlalchemy import delete, func, select
from sqlalchemy.engine import make_url

from benchmarks import SECRET_KEY
from sipup import create_app
from sipup.database import scratch_database
from sipup.dbtools.batch import bulk_insert
from sipup.extensions import db
from sipup.models import Order, OrderLine, Product, Role, User

PASSWORD = "benchmark password"


def _app(url, instance, **extra):
    overrides = {
        "DATABASE_URL": url,
        "SECRET_KEY": SECRET_KEY,
        "WTF_CSRF_ENABLED": False,
        "RATELIMIT_IP": "1000000 per minute",
        "RATELIMIT_USER": "1000000 per minute",
        **extra,
    }
    return create_app(overrides, instance_path=instance)


def _prepare(app):
    """Schema, a catalog, companies with buyers and a few orders for the lines to belong to."""
    from sipup.cli.db import upgrade_schema
    from sipup.services import seed

    with app.app_context():
        upgrade_schema()
        seed.seed_catalog(200)
        seed.seed_companies(5, PASSWORD)
        seed.seed_orders(200, 2)
        return db.session.scalar(select(User.email).where(User.role == Role.BUYER).order_by(User.id))


def _line_rows(count):
    products = db.session.execute(
        select(Product.id, Product.sku, Product.name, Product.sell_unit, Product.base_price, Product.deposit)
    ).all()
    orders = db.session.execute(select(Order.id, Order.created_at)).all()
    for n in range(count):
        product, (order_id, created) = products[n % len(products)], orders[n % len(orders)]
        quantity = n % 7 + 1
        yield dict(
            order_id=order_id,
            created_at=created,
            product_id=product.id,
            sku=product.sku,
            name=product.name,
            sell_unit=product.sell_unit,
            quantity=quantity,
            unit_price=product.base_price,
            unit_deposit=product.deposit,
            line_total=product.base_price * quantity,
        )


def bench_inserts(app, rows):
    """Seconds for bulk_insert and for one session.add per row, each committed once at the end."""
    with app.app_context():
        before = db.session.scalar(select(func.count(OrderLine.id)))
        data = list(_line_rows(rows))
        started = time.perf_counter()
        bulk_insert(OrderLine, data)
        db.session.commit()
        bulk = time.perf_counter() - started
        _remove_lines(before)

        started = time.perf_counter()
        for row in data:
            db.session.add(OrderLine(**row))
        db.session.commit()
        orm = time.perf_counter() - started
        _remove_lines(before)
        db.session.remove()
    return bulk, orm


def _remove_lines(keep):
    newest = db.session.scalars(select(OrderLine.id).order_by(OrderLine.id).limit(1).offset(keep)).first()
    if newest is not None:
        db.session.execute(delete(OrderLine).where(OrderLine.id >= newest))
    db.session.commit()
    db.session.expunge_all()


def _signed_in_client(app, email):
    client = app.test_client()
    response = client.post("/login", data={"email": email, "password": PASSWORD})
    assert response.status_code == 302, "the benchmark buyer could not sign in"
    assert client.get("/products").status_code == 200
    return client


def _round(client, requests):
    started = time.perf_counter()
    for _ in range(requests):
        response = client.get("/products")
        if response.status_code != 200:
            raise RuntimeError(f"/products answered {response.status_code}")
    return requests / (time.perf_counter() - started)


def bench_stats(on_app, off_app, email, requests, rounds=10):
    """Requests per second of /products with DB_STATS on and off, in alternating rounds (ABBA order)."""
    clients = {"on": _signed_in_client(on_app, email), "off": _signed_in_client(off_app, email)}
    for client in clients.values():
        _round(client, 50)  # warm caches and connections
    rates = {"on": [], "off": []}
    per_round = max(1, requests // rounds)
    for index in range(rounds):
        order = ("on", "off") if index % 2 == 0 else ("off", "on")
        for mode in order:
            rates[mode].append(_round(clients[mode], per_round))
    on_app.extensions["query_stats"].flush()
    return statistics.median(rates["on"]), statistics.median(rates["off"]), per_round * rounds


def run(name, url, instance, rows, requests):
    print(f"== {name} ({make_url(url).render_as_string(hide_password=True)})", flush=True)
    base = _app(url, instance, DB_STATS=False)
    email = _prepare(base)
    bulk, orm = bench_inserts(base, rows)
    print(
        f"insert {rows} order lines: bulk_insert {bulk:.2f} s ({rows / bulk:,.0f} rows/s), "
        f"ORM add per row {orm:.2f} s ({rows / orm:,.0f} rows/s), ORM/bulk = {orm / bulk:.1f}x",
        flush=True,
    )
    on, off = _app(url, instance, DB_STATS=True), _app(url, instance, DB_STATS=False)
    rate_on, rate_off, total = bench_stats(on, off, email, requests)
    cost = (rate_off / rate_on - 1) * 100
    print(
        f"/products, {total} requests each: DB_STATS on {rate_on:.0f} req/s, off {rate_off:.0f} req/s, "
        f"statistics cost {cost:+.1f}% ({'within' if cost < 5 else 'ABOVE'} the 5% goal)",
        flush=True,
    )
    for app in (base, on, off):
        with app.app_context():
            db.engine.dispose()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000, help="order lines to insert (default 100000)")
    parser.add_argument("--requests", type=int, default=3000, help="page requests per mode (default 3000)")
    args = parser.parse_args()
    logging.disable(logging.WARNING)  # the slow-query log and request logs are not what is measured
    with tempfile.TemporaryDirectory(prefix="sipup-bench-") as folder:
        instance = os.path.join(folder, "sqlite")
        os.makedirs(instance)
        run("SQLite", f"sqlite:///{os.path.join(instance, 'bench.db')}", instance, args.rows, args.requests)
        server_url = os.environ.get("SIPUP_BENCH_DATABASE_URL")
        if server_url:
            url, drop = scratch_database(server_url)
            instance = os.path.join(folder, "mariadb")
            os.makedirs(instance)
            try:
                run("MariaDB", url, instance, args.rows, args.requests)
            finally:
                drop()
        else:
            print("(set SIPUP_BENCH_DATABASE_URL=mysql+pymysql://user@host/sipup_bench to measure MariaDB too)")


if __name__ == "__main__":
    main()
