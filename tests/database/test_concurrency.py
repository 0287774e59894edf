"""Many buyers at once: stock is never sold twice, and one company's credit is never spent twice.

These need real row locks and concurrent transactions, so they run on MariaDB only.
"""

import itertools
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import pytest
from sqlalchemy import select, update

from sipup.exceptions import OutOfStock
from sipup.extensions import db
from sipup.i18n import shown
from sipup.models import Order, OrderStatus, Product, User
from sipup.services import cart as carts
from sipup.services import orders, stock_import

pytestmark = pytest.mark.mariadb

S = OrderStatus


@pytest.fixture
def app(app):
    if app.backend == "sqlite":
        pytest.skip("concurrent checkouts need MariaDB's row locks; SQLite runs one writer at a time")
    return app


@pytest.fixture
def make_buyers(make_company):
    """Buyers with a quantity of a product in their cart; each at a company of its own unless one is given."""
    counter = itertools.count(1)

    def make(count, product, quantity=1, company=None):
        ids = []
        for n in itertools.islice(counter, count):
            # No password: these buyers never sign in, and hashing 20 passwords costs seconds.
            user = User(
                email=f"rush{n}@example.com",
                name=f"Rush {n}",
                role="buyer",
                company=company or make_company(),
                password_hash="!",
            )
            db.session.add(user)
            db.session.commit()
            carts.add(user.id, product, quantity)
            ids.append(user.id)
        return ids

    return make


def run_at_once(app, work, args):
    """Run work(arg) for every arg in its own thread and app context, all released together."""
    barrier = threading.Barrier(len(args), timeout=30)

    def run(arg):
        with app.app_context():
            return work(arg, barrier)

    with ThreadPoolExecutor(max_workers=len(args)) as pool:
        return list(pool.map(run, args))


def checkout_as(user_id, barrier):
    """What one buyer's request does: load the user, then check out when everyone else does."""
    user = db.session.get(User, user_id)
    address_id = user.company.addresses[0].id
    barrier.wait()
    try:
        return orders.checkout(user, Decimal("0.20"), address_id=address_id).status
    except OutOfStock as error:
        return error


class StockWatch:
    """Reads a product's stock over and over from its own connection; remembers the lowest availability."""

    def __init__(self, app, product_id):
        self.app, self.product_id = app, product_id
        self.lowest = None
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._watch)

    def _watch(self):
        with self.app.app_context():
            while not self.done.is_set():
                on_hand, reserved = db.session.execute(
                    db.select(Product.stock_on_hand, Product.stock_reserved).where(Product.id == self.product_id)
                ).one()
                db.session.rollback()  # a fresh snapshot for the next read
                available = on_hand - reserved
                self.lowest = available if self.lowest is None else min(self.lowest, available)
                time.sleep(0.002)  # leave the GIL to the buyers

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.done.set()
        self.thread.join()


def final_stock(product_id):
    db.session.rollback()  # leave this thread's snapshot, see what the others committed
    product = db.session.get(Product, product_id, populate_existing=True)
    return product.stock_on_hand, product.stock_reserved, product.available


def test_twenty_buyers_for_ten_units_make_exactly_ten_orders(app, make_product, make_buyers):
    product = make_product(sku="RUSH-1", stock_on_hand=10)
    buyer_ids = make_buyers(20, product)

    with StockWatch(app, product.id) as watch:
        results = run_at_once(app, checkout_as, buyer_ids)

    placed = [r for r in results if r == S.PLACED]
    refused = [r for r in results if isinstance(r, OutOfStock)]
    assert (len(placed), len(refused)) == (10, 10)
    assert {str(r) for r in refused} == {
        f"{product.name} (RUSH-1) went out of stock after you added it; remove it from your cart to order the rest."
    }
    assert final_stock(product.id) == (10, 10, 0)
    assert db.session.scalar(db.select(db.func.count(Order.id))) == 10
    assert watch.lowest >= 0


def test_checkouts_and_shipping_at_once_never_oversell(app, make_product, make_buyers, make_user):
    product = make_product(sku="RUSH-2", stock_on_hand=10)
    staff_id = make_user("staff").id  # an id, not the object: threads must not touch this thread's session
    confirmed = []
    for user_id in make_buyers(5, product):
        user = db.session.get(User, user_id)
        order = orders.checkout(user, Decimal("0.20"), address_id=user.company.addresses[0].id)
        confirmed.append(orders.transition(order.number, "confirm", staff_id).number)
    buyer_ids = make_buyers(20, product)

    def ship_or_check_out(job, barrier):
        kind, value = job
        if kind == "buyer":
            return checkout_as(value, barrier)
        barrier.wait()
        return orders.transition(value, "ship", staff_id).status

    jobs = [("ship", number) for number in confirmed] + [("buyer", user_id) for user_id in buyer_ids]
    with StockWatch(app, product.id) as watch:
        results = run_at_once(app, ship_or_check_out, jobs)

    assert results[:5] == [S.SHIPPED] * 5
    checkouts = results[5:]
    assert (checkouts.count(S.PLACED), sum(isinstance(r, OutOfStock) for r in checkouts)) == (5, 15)
    # 5 left the warehouse; the 5 new orders hold the other 5.
    assert final_stock(product.id) == (5, 5, 0)
    assert watch.lowest >= 0


def test_one_companys_credit_is_not_spent_twice(app, make_company, make_product, make_buyers):
    company = make_company(credit_limit="150.00")
    product = make_product(base_price=Decimal("50.00"), deposit=Decimal("0.00"))
    buyer_ids = make_buyers(8, product, quantity=2, company=company)  # 120.00 each

    results = run_at_once(app, checkout_as, buyer_ids)

    assert sorted(results) == sorted([S.PLACED] + [S.CREDIT_HOLD] * 7)
    db.session.rollback()
    assert orders.credit_position(company)["uninvoiced"] == Decimal("120.00")


def test_one_buyer_adding_in_several_tabs_at_once_loses_no_quantity(app, make_product, make_buyers):
    made = make_product(stock_on_hand=1000)
    product_id, sku = made.id, made.sku  # ids only: each thread has a session of its own
    [buyer_id] = make_buyers(1, make_product(stock_on_hand=10))  # the cart holds something else already

    def add(n, barrier):
        if n % 2:  # as the cart-add page does: the product read with its line, which others change meanwhile
            product, line = carts.product_with_line(buyer_id, sku)
            barrier.wait()
            return carts.add(buyer_id, product, 2, line=line)
        product = db.session.get(Product, product_id)
        barrier.wait()
        return carts.add(buyer_id, product, 2)

    totals = run_at_once(app, add, range(8))
    assert sorted(totals) == list(range(2, 17, 2))  # applied one after the other, none lost or refused
    db.session.expire_all()
    assert {i.product_id: i.quantity for i in carts.items(buyer_id)}[product_id] == 16


def test_a_stock_import_never_deadlocks_against_a_checkout(app, make_product):
    """A checkout locks products by id; a stock file listing them the other way round takes them in the same
    order, so it waits for the checkout instead of deadlocking with it (which failed 17% of import runs)."""
    first, second = make_product(sku="ZZ-FIRST", stock_on_hand=5), make_product(sku="AA-SECOND", stock_on_hand=5)
    filename = os.path.basename(stock_import.save_upload(b"sku;stock_on_hand\nAA-SECOND;70\nZZ-FIRST;80\n"))
    checkout = db.engine.connect()  # what checkout's reservations do, one product at a time by id
    checkout.execute(update(Product).where(Product.id == first.id).values(stock_reserved=Product.stock_reserved + 1))
    imported = {}

    def apply():
        with app.app_context():
            imported["summary"] = stock_import.apply_stock_file(filename)[0]

    importer = threading.Thread(target=apply)
    importer.start()
    time.sleep(0.5)  # the import now waits for the first product's lock
    checkout.execute(update(Product).where(Product.id == second.id).values(stock_reserved=Product.stock_reserved + 1))
    checkout.commit()
    checkout.close()
    importer.join(timeout=30)
    assert shown(imported["summary"]).startswith("2 stock level(s) applied")
    levels = dict(
        db.session.execute(select(Product.sku, Product.stock_on_hand).execution_options(populate_existing=True)).all()
    )
    assert levels == {"ZZ-FIRST": 80, "AA-SECOND": 70}
