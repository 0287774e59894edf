"""The cache: every driver serves the storefront, writes are seen at once by every instance, outages
degrade to the fallback and recover, a cold key is computed once, batches take one round trip, stats."""

import os
import signal
import threading
import time
from decimal import Decimal
from unittest.mock import ANY

import pytest

from sipup.cache.breaker import StoreFailed
from sipup.cache.layer import CacheLayer
from sipup.cache.values import PageOf, Plain
from sipup.config import ConfigError
from sipup.extensions import db
from sipup.models import CartItem, Order, PriceTier
from sipup.services import seed, stock_import
from tests.conftest import PASSWORD, REDIS_URL, login

SHARED_DRIVERS = ["filesystem", "redis", "memcached"]


@pytest.fixture
def cache_config(request, tmp_path):
    """Configuration for the driver named by the test's `driver` parameter."""
    driver = request.node.callspec.params["driver"]
    if driver == "filesystem":
        return {"CACHE_URL": f"file://{tmp_path / 'cache'}"}
    if driver == "memory":
        return {"CACHE_URL": "memory://"}
    if driver == "redis":
        if not REDIS_URL:
            pytest.skip("SIPUP_TEST_REDIS_URL is not set: no shared Redis to test on")
        return {"CACHE_URL": REDIS_URL, "REDIS_NAMESPACE": request.getfixturevalue("redis_namespace")}
    return {"CACHE_URL": request.getfixturevalue("shared_memcached")().url}  # emptied: no other test's keys


def signed_in(app, user):
    client = app.test_client()
    response = login(client, user, PASSWORD)
    assert response.status_code == 302, response.get_data(as_text=True)
    return client


def page(client, url):
    response = client.get(url)
    assert response.status_code == 200, (url, response.status_code)
    return response.get_data(as_text=True)


def set_tier(staff_client, price_list, sku, price, min_qty=1):
    response = staff_client.post(
        f"/admin/price-lists/{price_list.id}", data={"sku": sku, "min_qty": min_qty, "price": price}
    )
    assert response.status_code == 302, response.get_data(as_text=True)


def save_product(staff_client, product, **changes):
    db.session.refresh(product)
    form = {
        "sku": product.sku,
        "name": product.name,
        "sell_unit": product.sell_unit,
        "description": "",
        "base_price": str(product.base_price),
        "deposit": str(product.deposit),
        "min_qty": product.min_qty,
        "qty_step": product.qty_step,
        "stock_on_hand": product.stock_on_hand,
        "low_stock_threshold": product.low_stock_threshold,
        "category_id": product.category_id,
        "active": "on",
        **changes,
    }
    response = staff_client.post(f"/admin/products/{product.sku}", data=form)
    assert response.status_code == 302, response.get_data(as_text=True)


def events(app, name, types=None):
    """Cache events of one kind (hit, miss, error...) counted so far, of all types or of those given."""
    counters = app.extensions["counters"]
    counters.flush()
    return sum(
        v
        for k, v in counters.totals("cache", "minute", 5).items()
        if k.endswith("." + name) and (types is None or k.split(".")[0] in types)
    )


# --- every driver serves the storefront and stays correct through writes ---------------------------


@pytest.mark.parametrize("driver", ["filesystem", "memory", "redis", "memcached"])
def test_every_driver_serves_fresh_prices_and_stock(make_app, shop, cache_config, driver):
    app = make_app(**cache_config)
    assert app.extensions["sipup_cache"].kind == driver
    buyer, staff = signed_in(app, shop.buyer), signed_in(app, shop.staff)
    for _ in range(2):
        assert "€9.00" in page(buyer, "/products")
        assert "€9.00" in page(buyer, "/products/BEER-1") and "100 in stock" in page(buyer, "/products/BEER-1")
    assert events(app, "hit") > 0

    set_tier(staff, shop.price_list, "BEER-1", "8.50")
    assert "€8.50" in page(buyer, "/products") and "€9.00" not in page(buyer, "/products")
    assert "€8.50" in page(buyer, "/products/BEER-1")
    save_product(staff, shop.product, stock_on_hand=40)
    assert "40 in stock" in page(buyer, "/products/BEER-1") and "40 in stock" in page(buyer, "/products")
    assert app.extensions["sipup_cache"].status()["state"] == "primary"


# --- two instances sharing one store: a write through one is seen by the next read through the other ---


@pytest.fixture
def two_instances(make_app, shop, cache_config):
    """A buyer on instance A and staff on instance B, two apps (as two processes) sharing the cache."""
    app_a, app_b = make_app(**cache_config), make_app(**cache_config)
    assert app_a.extensions["sipup_cache"] is not app_b.extensions["sipup_cache"]
    return Plain(a=app_a, b=app_b, buyer=signed_in(app_a, shop.buyer), staff=signed_in(app_b, shop.staff))


@pytest.mark.parametrize("driver", SHARED_DRIVERS)
def test_prices_changed_on_one_instance_show_on_the_other(shop, two_instances, driver):
    a = two_instances
    assert "€9.00" in page(a.buyer, "/products/BEER-1") and "€9.00" in page(a.buyer, "/products")
    assert "€9.00" in page(a.buyer, "/products/BEER-1")  # now served from the cache
    set_tier(a.staff, shop.price_list, "BEER-1", "7.75")
    assert "€7.75" in page(a.buyer, "/products/BEER-1") and "€7.75" in page(a.buyer, "/products")

    tier = db.session.scalar(db.select(PriceTier).where(PriceTier.product_id == shop.product.id))
    a.staff.post(f"/admin/price-lists/{shop.price_list.id}", data={"delete": tier.id})
    assert "€10.00" in page(a.buyer, "/products/BEER-1")  # back to the base price

    save_product(a.staff, shop.product, base_price="11.20")
    assert "€11.20" in page(a.buyer, "/products/BEER-1") and "€11.20" in page(a.buyer, "/products")


@pytest.mark.parametrize("driver", SHARED_DRIVERS)
def test_the_cart_as_priced_follows_its_quantities_prices_and_stock_changed_on_the_other_instance(
    shop, two_instances, driver
):
    a = two_instances
    same_buyer_on_b = signed_in(a.b, shop.buyer)
    assert same_buyer_on_b.post("/cart/add", data={"sku": "BEER-1", "quantity": "2"}).status_code == 302
    for _ in range(2):  # the second from the cache
        assert "€18.00" in page(a.buyer, "/cart") and "€18.00" in page(a.buyer, "/checkout")
    assert same_buyer_on_b.post("/cart/add", data={"sku": "BEER-1", "quantity": "3"}).status_code == 302
    assert "€45.00" in page(a.buyer, "/cart") and "€45.00" in page(a.buyer, "/checkout")
    set_tier(a.staff, shop.price_list, "BEER-1", "7.00")
    assert "€35.00" in page(a.buyer, "/cart") and "€35.00" in page(a.buyer, "/checkout")
    save_product(a.staff, shop.product, stock_on_hand=4)
    assert "Only 4" in page(a.buyer, "/cart") and "Only 4" in page(a.buyer, "/checkout")


@pytest.mark.parametrize("driver", SHARED_DRIVERS)
def test_stock_taken_by_a_checkout_on_one_instance_shows_on_the_other(app, shop, two_instances, driver):
    a = two_instances
    assert "100 in stock" in page(a.buyer, "/products/BEER-1")
    other_buyer = signed_in(a.b, shop.buyer2)
    assert other_buyer.post("/cart/add", data={"sku": "BEER-1", "quantity": "5"}).status_code == 302
    response = other_buyer.post("/checkout", data={"address_id": shop.company.addresses[0].id})
    assert response.status_code == 302, response.get_data(as_text=True)
    assert "95 in stock" in page(a.buyer, "/products/BEER-1") and "95 in stock" in page(a.buyer, "/products")


@pytest.mark.parametrize("driver", ["filesystem"])
def test_an_order_renews_the_stock_shown_but_not_the_pages_around_it(make_app, shop, cache_config, driver):
    app = make_app(**cache_config)
    buyer, other_buyer = signed_in(app, shop.buyer), signed_in(app, shop.buyer2)
    assert "100 in stock" in page(buyer, "/products") and "100 in stock" in page(buyer, "/products/BEER-1")
    misses = events(app, "miss", ("products",))
    assert other_buyer.post("/cart/add", data={"sku": "BEER-1", "quantity": "5"}).status_code == 302
    response = other_buyer.post("/checkout", data={"address_id": shop.company.addresses[0].id})
    assert response.status_code == 302, response.get_data(as_text=True)
    assert "95 in stock" in page(buyer, "/products") and "95 in stock" in page(buyer, "/products/BEER-1")
    # Only the two pages' stock parts were computed again: not the catalog page, its rows or the product page.
    assert events(app, "miss", ("products",)) == misses + 2


@pytest.mark.parametrize("driver", ["filesystem"])
def test_a_stock_file_renews_the_stock_shown_but_not_the_pages_around_it(make_app, shop, cache_config, driver):
    app = make_app(**cache_config)
    buyer = signed_in(app, shop.buyer)
    assert "100 in stock" in page(buyer, "/products") and "100 in stock" in page(buyer, "/products/BEER-1")
    misses = events(app, "miss", ("products",))
    with app.app_context():  # what the job applying an uploaded stock file runs
        stock_import.apply_stock_file(stock_import.save_upload(b"sku,stock_on_hand\nBEER-1,70\n"))
    assert "70 in stock" in page(buyer, "/products") and "70 in stock" in page(buyer, "/products/BEER-1")
    # As after an order: only the two pages' stock parts were computed again, not the pages, rows or prices.
    assert events(app, "miss", ("products",)) == misses + 2


@pytest.mark.parametrize("driver", SHARED_DRIVERS)
def test_the_cart_count_in_the_header_follows_adds_removals_and_checkout_on_either_instance(
    app, shop, two_instances, driver
):
    import re

    a = two_instances
    same_buyer_on_b = signed_in(a.b, shop.buyer)

    def badge(client):
        found = re.search(r'class="badge">(\d+)<', page(client, "/products"))
        return int(found.group(1)) if found else 0

    assert badge(a.buyer) == 0
    assert same_buyer_on_b.post("/cart/add", data={"sku": "BEER-1", "quantity": "5"}).status_code == 302
    assert badge(a.buyer) == 1
    # More of a product already in the cart changes no count: the count kept is still served, not counted again.
    misses = [events(instance, "miss", ("users",)) for instance in (a.a, a.b)]
    assert same_buyer_on_b.post("/cart/add", data={"sku": "BEER-1", "quantity": "5"}).status_code == 302
    assert badge(a.buyer) == 1 and badge(same_buyer_on_b) == 1
    assert [events(instance, "miss", ("users",)) for instance in (a.a, a.b)] == misses
    assert a.buyer.post("/cart/add", data={"sku": "WINE-1", "quantity": "2"}).status_code == 302
    assert badge(same_buyer_on_b) == 2
    assert same_buyer_on_b.post("/cart", data={"remove": shop.other.id}).status_code == 302
    assert badge(a.buyer) == 1
    response = same_buyer_on_b.post("/checkout", data={"address_id": shop.company.addresses[0].id})
    assert response.status_code == 302, response.get_data(as_text=True)
    assert badge(a.buyer) == 0


@pytest.mark.parametrize("driver", SHARED_DRIVERS)
def test_order_status_credit_and_dashboard_follow_changes_on_the_other_instance(app, shop, two_instances, driver):
    a = two_instances
    other_buyer = signed_in(a.b, shop.buyer2)
    other_buyer.post("/cart/add", data={"sku": "WINE-1", "quantity": "2"})
    other_buyer.post("/checkout", data={"address_id": shop.company.addresses[0].id})
    order = db.session.scalar(db.select(Order))
    staff_a = signed_in(a.a, shop.staff)
    assert "Placed" in page(a.buyer, "/orders") and order.number in page(a.buyer, "/")
    assert order.number in page(staff_a, "/admin/")  # the back office dashboard, cached on instance A
    credit_left = f"€{Decimal('10000.00') - order.total:,.2f}"
    assert credit_left in page(a.buyer, "/")
    assert a.staff.post(f"/admin/orders/{order.number}/cancel").status_code == 302
    assert "Cancelled" in page(a.buyer, "/orders") and "Cancelled" in page(a.buyer, "/")
    assert credit_left not in page(a.buyer, "/")  # the cancelled order no longer uses credit
    assert order.number not in page(staff_a, "/admin/")
    assert "50 in stock" in page(a.buyer, "/products/WINE-1")  # the reservation was released


@pytest.mark.parametrize("driver", SHARED_DRIVERS)
def test_price_list_switch_and_seeded_products_show_on_the_other_instance(shop, two_instances, make_price_list, driver):
    a = two_instances
    assert "2 products" in page(a.buyer, "/products")
    cheaper = make_price_list("Key accounts", [(shop.product, 1, "6.10")])
    form = {
        "name": shop.company.name,
        "credit_limit": "10000.00",
        "payment_terms_days": "30",
        "price_list_id": cheaper.id,
        "active": "on",
    }
    assert a.staff.post(f"/admin/companies/{shop.company.id}", data=form).status_code == 302
    assert "€6.10" in page(a.buyer, "/products/BEER-1")
    with a.b.app_context():  # a bulk load (flask seed) in another process
        seed.seed_catalog(3)
    assert "5 products" in page(a.buyer, "/products")


@pytest.mark.parametrize("driver", ["redis"])
def test_bulk_updates_on_one_instance_show_on_the_other(shop, two_instances, driver):
    from sipup.dbtools.batch import bulk_update

    a = two_instances
    assert "€9.00" in page(a.buyer, "/products/BEER-1") and "100 in stock" in page(a.buyer, "/products")
    tier = db.session.scalar(db.select(PriceTier).where(PriceTier.product_id == shop.product.id))
    with a.b.app_context():  # e.g. a nightly price and stock import in another process
        bulk_update(PriceTier, [{"id": tier.id, "price": Decimal("6.60")}])
        bulk_update(shop.product.__table__, [{"id": shop.product.id, "stock_on_hand": 70}])
        db.session.commit()
    assert "€6.60" in page(a.buyer, "/products/BEER-1") and "70 in stock" in page(a.buyer, "/products")


@pytest.mark.parametrize("driver", SHARED_DRIVERS)
def test_a_user_stopped_on_one_instance_is_signed_out_on_the_other(shop, two_instances, driver):
    a = two_instances
    page(a.buyer, "/products")
    page(a.buyer, "/products")  # the signed-in user now comes from the cache
    response = a.staff.post(f"/admin/companies/{shop.company.id}/users/{shop.buyer.id}/deactivate")
    assert response.status_code == 302
    assert a.buyer.get("/products").status_code == 302  # back to the sign-in page


# --- outages: the site keeps answering with correct data, says so, and recovers --------------------------


def test_redis_stopped_mid_test_falls_back_and_recovers(make_app, shop, local_redis, caplog):
    app = make_app(CACHE_URL=local_redis.url, CACHE_RETRY_SECONDS=1, CACHE_TIMEOUT_MS=200)
    cache = app.extensions["sipup_cache"]
    buyer, staff = signed_in(app, shop.buyer), signed_in(app, shop.staff)
    assert "€9.00" in page(buyer, "/products/BEER-1")

    local_redis.stop()
    assert "€9.00" in page(buyer, "/products/BEER-1")
    status = cache.status()
    assert status["state"] == "degraded" and status["degraded_since"] <= time.time() and status["last_error"]
    errors = events(app, "error")
    for _ in range(5):  # the circuit is open: no request waits on the dead server again
        assert "€9.00" in page(buyer, "/products")
    assert events(app, "error") == errors and events(app, "fallback") >= 5
    assert "Cache redis" in caplog.text and "failed" in caplog.text
    with app.app_context():
        stats = app.test_cli_runner().invoke(args=["cache", "stats"]).output
    assert "DEGRADED since" in stats and "fallback" in stats
    set_tier(staff, shop.price_list, "BEER-1", "8.00")
    assert "€8.00" in page(buyer, "/products/BEER-1")

    local_redis.start()
    time.sleep(1.1)
    assert "€8.00" in page(buyer, "/products/BEER-1")
    assert cache.status()["state"] == "primary" and "answers again" in caplog.text
    set_tier(staff, shop.price_list, "BEER-1", "7.00")
    assert "€7.00" in page(buyer, "/products/BEER-1")


def test_a_hung_redis_costs_one_timeout_and_writes_made_meanwhile_are_not_lost(make_app, shop, local_redis):
    config = dict(CACHE_URL=local_redis.url, CACHE_RETRY_SECONDS=1, CACHE_TIMEOUT_MS=150)
    app_a, app_b = make_app(**config), make_app(**config)
    buyer, staff = signed_in(app_a, shop.buyer), signed_in(app_b, shop.staff)
    assert "€9.00" in page(buyer, "/products/BEER-1")  # cached in Redis

    os.kill(local_redis.process.pid, signal.SIGSTOP)  # answers nothing, keeps its data
    try:
        set_tier(staff, shop.price_list, "BEER-1", "8.25")  # the renewal cannot reach Redis
        assert app_b.extensions["sipup_cache"].status()["state"] == "degraded"
        errors = events(app_a, "error")
        started = time.monotonic()
        assert "€8.25" in page(buyer, "/products/BEER-1")  # instance A times out once, then reads fresh
        assert time.monotonic() - started >= 0.15  # it did wait for the hung server, once
        for _ in range(3):
            assert "€8.25" in page(buyer, "/products/BEER-1")
        assert app_a.extensions["sipup_cache"].status()["state"] == "degraded"
        assert events(app_a, "error") == errors + 1  # one timeout, not one per request or per read
    finally:
        os.kill(local_redis.process.pid, signal.SIGCONT)
    time.sleep(1.1)
    # Redis still holds the 9.00 page under the old tokens; A renews every token when it comes back.
    assert "€8.25" in page(buyer, "/products/BEER-1")
    assert app_a.extensions["sipup_cache"].status()["state"] == "primary"


def test_fallback_keeps_results_in_the_process_when_allowed(make_app, shop, local_redis):
    app = make_app(CACHE_URL=local_redis.url, CACHE_RETRY_SECONDS=60, CACHE_FALLBACK_TTL=30)
    buyer, staff = signed_in(app, shop.buyer), signed_in(app, shop.staff)
    local_redis.stop()
    page(buyer, "/products/BEER-1")
    hits = events(app, "hit")
    assert "€9.00" in page(buyer, "/products/BEER-1")
    assert events(app, "hit") > hits  # served from this process's fallback
    set_tier(staff, shop.price_list, "BEER-1", "8.40")  # a write in this process renews its own tokens
    assert "€8.40" in page(buyer, "/products/BEER-1")


def test_memcached_stopped_mid_test_falls_back_and_recovers(make_app, shop, local_memcached):
    app = make_app(CACHE_URL=local_memcached.url, CACHE_RETRY_SECONDS=1, CACHE_TIMEOUT_MS=200)
    buyer, staff = signed_in(app, shop.buyer), signed_in(app, shop.staff)
    assert "€9.00" in page(buyer, "/products")
    local_memcached.stop()
    set_tier(staff, shop.price_list, "BEER-1", "8.10")
    assert "€8.10" in page(buyer, "/products") and "€8.10" in page(buyer, "/products/BEER-1")
    assert app.extensions["sipup_cache"].status()["state"] == "degraded"
    local_memcached.start()
    time.sleep(1.1)
    assert "€8.10" in page(buyer, "/products")
    assert app.extensions["sipup_cache"].status()["state"] == "primary"


def test_a_cache_url_with_a_wrong_scheme_is_named_at_start_up(make_app):
    with pytest.raises(ConfigError, match="SIPUP_CACHE_URL='reddis://127.0.0.1:6379/0'"):
        make_app(CACHE_URL="reddis://127.0.0.1:6379/0")


def test_the_instance_folder_or_its_parent_is_refused_as_the_cache_folder(make_app, app):
    for folder in (app.instance_path, os.path.dirname(app.instance_path)):
        with pytest.raises(ConfigError, match="holds, the instance folder"):
            make_app(CACHE_URL=f"file://{folder}")


def test_a_cache_server_that_is_not_there_degrades_but_serves(make_app, shop):
    app = make_app(CACHE_URL="redis://127.0.0.1:1/0", CACHE_TIMEOUT_MS=100)
    buyer = signed_in(app, shop.buyer)
    assert "€9.00" in page(buyer, "/products") and "€9.00" in page(buyer, "/products/BEER-1")
    assert app.extensions["sipup_cache"].status()["state"] == "degraded"


def test_a_cache_folder_that_becomes_unusable_degrades_but_serves(make_app, shop, tmp_path):
    folder = tmp_path / "cache"
    app = make_app(CACHE_URL=str(folder), CACHE_RETRY_SECONDS=60)
    buyer, staff = signed_in(app, shop.buyer), signed_in(app, shop.staff)
    assert "€9.00" in page(buyer, "/products/BEER-1")
    for child in folder.iterdir():
        child.unlink()
    folder.rmdir()
    folder.write_text("not a folder any more")  # every read and write in it now fails
    set_tier(staff, shop.price_list, "BEER-1", "8.60")
    assert "€8.60" in page(buyer, "/products/BEER-1")
    assert app.extensions["sipup_cache"].status()["state"] == "degraded"


def test_a_cache_folder_that_cannot_be_created_degrades_but_serves(make_app, shop, tmp_path):
    (tmp_path / "file").write_text("x")
    app = make_app(CACHE_URL=str(tmp_path / "file" / "cache"))
    buyer = signed_in(app, shop.buyer)
    assert "€9.00" in page(buyer, "/products/BEER-1")
    status = app.extensions["sipup_cache"].status()
    assert status["state"] == "degraded" and "file" in status["last_error"]


# --- stampede, batches, plain values ------------------------------------------------------------------


def _hammer(apps, threads_per_app, key="cold", sleep=0.2):
    computed = []
    barrier = threading.Barrier(len(apps) * threads_per_app)
    results = []

    def compute():
        computed.append(1)
        time.sleep(sleep)  # a slow query: the others arrive while it runs
        return {"answer": 42}

    def worker(app):
        with app.app_context():
            barrier.wait()
            results.append(app.extensions["sipup_cache"].cached("products", "stampede", key, ["catalog"], compute))

    workers = [threading.Thread(target=worker, args=(app,)) for app in apps for _ in range(threads_per_app)]
    for worker_thread in workers:
        worker_thread.start()
    for worker_thread in workers:
        worker_thread.join()
    assert results == [{"answer": 42}] * len(workers)
    return len(computed)


@pytest.mark.parametrize("driver", ["filesystem", "redis", "memcached"])
def test_fifty_requests_on_a_cold_key_compute_it_once(make_app, cache_config, driver):
    assert _hammer([make_app(**cache_config)], 50) == 1


def test_fifty_requests_on_a_cold_key_in_two_processes_compute_it_once_or_twice(make_app, redis_namespace):
    config = dict(CACHE_URL=REDIS_URL, REDIS_NAMESPACE=redis_namespace)
    assert _hammer([make_app(**config), make_app(**config)], 25) <= 2


def test_an_expired_hot_key_is_refreshed_once_while_others_get_the_previous_value(make_app, redis_namespace):
    # Expired after 3 s, kept by Redis for 6 s (GRACE): a margin of 3 s for a busy machine to start the threads.
    app = make_app(CACHE_URL=REDIS_URL, REDIS_NAMESPACE=redis_namespace, CACHE_TTL_PRODUCTS=3)
    assert _hammer([app], 1, key="hot") == 1
    time.sleep(3.1)
    stale = events(app, "stale")
    assert _hammer([app], 20, key="hot") == 1
    assert events(app, "stale") > stale


def test_a_catalog_page_reads_all_its_prices_in_one_round_trip_and_then_comes_whole(
    make_app, app, make_product, make_price_list, make_company, make_user, redis_namespace
):
    products = [make_product() for _ in range(12)]
    price_list = make_price_list("Gastro", [(p, 1, "5.00") for p in products])
    buyer = make_user("buyer", make_company(price_list=price_list))
    # Counters of its own too; no rate limits, whose round trip the warm read would ride in (test_round_trips).
    shop_app = make_app(REDIS_URL=REDIS_URL, REDIS_NAMESPACE=redis_namespace, RATELIMIT_ENABLED=False)
    client = signed_in(shop_app, buyer)
    store = shop_app.extensions["sipup_cache"].primary
    calls = []
    real_get_many = store.get_many
    store.get_many = lambda *keys: calls.append(len(keys)) or real_get_many(*keys)
    try:
        cold = page(client, "/products")
        cold_calls, calls[:] = list(calls), []
        warm = page(client, "/products")
    finally:
        del store.get_many
    assert cold.count("€5.00") == warm.count("€5.00") == 12
    # Cold: the 12 prices come in one MGET with their generation tokens.
    assert [n for n in cold_calls if n >= 12] == [12 + 4]
    assert len(calls) == 1  # warm: the user, the cart's line count, the whole page and its stock, read together
    catalog = ("products", "prices")
    assert events(shop_app, "miss", catalog) == 16 and events(shop_app, "hit", catalog) == 2


def test_only_catalog_addresses_as_the_search_form_sends_them_are_kept(make_app, app, shop, redis_namespace):
    import redis

    shop_app = make_app(REDIS_URL=REDIS_URL, REDIS_NAMESPACE=redis_namespace)
    buyer = signed_in(shop_app, shop.buyer)
    client = redis.Redis.from_url(REDIS_URL)

    def kept_pages():
        return len(client.keys(f"{redis_namespace}:cache:products:catalog-utf8:*"))

    odd = [
        "/products?utm_source=mail&sort=sku",
        "/products?sort=sku&sort=name",
        "/products?sort=nonsense",
        "/products?page=abc",
        "/products?q=" + "x" * 101,
    ]
    for address in odd:
        page(buyer, address)
    assert "BEER-1" in page(buyer, odd[0]) and kept_pages() == 0
    assert "BEER-1" in page(buyer, "/products?sort=sku")
    assert kept_pages() == 1


def test_the_cached_catalog_carries_each_readers_own_csrf_token(make_app, app, shop, redis_namespace):
    import re

    import redis

    shop_app = make_app(REDIS_URL=REDIS_URL, REDIS_NAMESPACE=redis_namespace, WTF_CSRF_ENABLED=True)
    store = redis.Redis.from_url(REDIS_URL)
    buyers, tokens = [], []
    for user in (shop.buyer, shop.buyer2):
        client = shop_app.test_client()
        form = client.get("/login").get_data(as_text=True)
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', form).group(1)
        response = client.post("/login", data={"email": user.email, "password": PASSWORD, "csrf_token": csrf})
        assert response.status_code == 302
        html = page(client, "/products")
        found = set(re.findall(r'name="csrf_token" value="([^"]*)"', html))
        assert "<!--csrf-->" not in html and len(found) == 1 and all(found)
        buyers.append(client)
        tokens.append(found.pop())
    assert len(store.keys(f"{redis_namespace}:cache:products:catalog-utf8:*")) == 1  # one page served to both
    assert tokens[0] != tokens[1]
    # Each buyer's own token from the shared page adds to their cart; the other buyer's token is refused.
    refused = buyers[0].post("/cart/add", data={"sku": "BEER-1", "quantity": "1", "csrf_token": tokens[1]})
    assert refused.status_code == 400
    for client, token in zip(buyers, tokens):
        added = client.post("/cart/add", data={"sku": "BEER-1", "quantity": "1", "csrf_token": token})
        assert added.status_code == 302, added.get_data(as_text=True)
    assert db.session.scalar(db.select(db.func.count()).select_from(CartItem)) == 2


def test_cached_values_are_plain_data(make_app, shop, redis_namespace):
    app = make_app(CACHE_URL=REDIS_URL, REDIS_NAMESPACE=redis_namespace)
    buyer = signed_in(app, shop.buyer)
    page(buyer, "/products")
    page(buyer, "/products/BEER-1")
    store = app.extensions["sipup_cache"].primary
    keys = [k.decode()[len(store.key_prefix) :] for k in store._read_client.keys(store.key_prefix + "products:*")]
    values = [store.get(k)["v"] for k in keys]
    pages = [v for v in values if isinstance(v, PageOf)]
    assert pages and all(type(item) is Plain for p in pages for item in p.items)
    assert any(isinstance(v, Plain) and v.sku == "BEER-1" and v.category.slug for v in values)
    assert not any(isinstance(v, db.Model) for v in values)
    sessions = [
        store.get(k.decode()[len(store.key_prefix) :])["v"]
        for k in store._read_client.keys(store.key_prefix + "users:signed-in:*")
    ]
    assert sessions and all(s["user"]["email"] and "password_hash" not in s["user"] for s in sessions)


def test_a_failed_store_read_is_reported_as_such(make_app, local_redis):
    app = make_app(CACHE_URL=local_redis.url)
    cache = app.extensions["sipup_cache"]
    local_redis.stop()
    with pytest.raises(StoreFailed):
        cache._call(cache.primary.get, "x")


def test_touch_renews_after_commit_only(make_app, shop):
    from sipup.cache.invalidation import touch

    app = make_app()
    buyer = signed_in(app, shop.buyer)
    with app.app_context():
        db.session.execute(db.text("UPDATE price_tiers SET price = 5.55"))  # raw SQL: the hooks cannot see it
        touch("prices:%d" % shop.price_list.id)
        page(buyer, "/products/BEER-1")  # another request meanwhile: the change is not committed yet
        db.session.commit()
    assert "€5.55" in page(buyer, "/products/BEER-1")


# --- statistics and the command line ------------------------------------------------------------------


def test_stats_and_clear_commands(make_app, shop, redis_namespace, tmp_path):
    # Counters in a Redis namespace of this test's own, so the figures are this test's alone.
    app = make_app(REDIS_URL=REDIS_URL, REDIS_NAMESPACE=redis_namespace, CACHE_URL=str(tmp_path / "cache"))
    buyer = signed_in(app, shop.buyer)
    for _ in range(3):
        page(buyer, "/products")
    runner = app.test_cli_runner()
    with app.app_context():  # the command runs on the current app: make it this one
        result = runner.invoke(args=["cache", "stats"])
    assert result.exit_code == 0, result.output
    assert "Cache: filesystem" in result.output and "primary" in result.output
    products_row = next(line for line in result.output.splitlines() if line.strip().startswith("products"))
    # The page as HTML, its products, its categories and its stock: 4 misses; then the HTML and the stock twice: 4 hits.
    assert products_row.split()[1:3] == ["4", "4"]
    assert "50.0%" in products_row

    with app.app_context():
        result = runner.invoke(args=["cache", "clear", "--type", "products"])
    assert result.exit_code == 0 and "Cleared cached products" in result.output
    misses = events(app, "miss")
    page(buyer, "/products")
    # HTML, products, categories and stock recomputed, prices still cached
    assert events(app, "miss") == misses + 4
    with app.app_context():
        assert runner.invoke(args=["cache", "clear", "--type", "prices"]).exit_code == 0
    page(buyer, "/products")
    assert events(app, "miss") == misses + 4 + 3  # the page's HTML and the prices of both products
    with app.app_context():
        assert runner.invoke(args=["cache", "clear"]).exit_code == 0
    page(buyer, "/products")
    # everything: HTML, products, categories, stock, both prices, the signed-in user and the cart's line count
    assert events(app, "miss") == misses + 4 + 3 + 8


def test_status_for_the_monitor(make_app, shop, redis_namespace, tmp_path):
    from sipup.cache.layer import cache_status

    app = make_app(REDIS_URL=REDIS_URL, REDIS_NAMESPACE=redis_namespace, CACHE_URL=str(tmp_path / "cache"))
    buyer = signed_in(app, shop.buyer)
    page(buyer, "/products")
    page(buyer, "/products")
    with app.app_context():
        status = cache_status()
    assert status["driver"] == "filesystem" and status["state"] == "primary" and status["degraded_since"] is None
    # First page: the user, the cart's line count, the HTML, products, categories, 2 prices and the stock, all
    # missed; second page: the user, the line count, the HTML and the stock, all hits.
    assert status["hit_rate_5min"] == 0.3333


def test_default_driver_is_redis_when_redis_is_configured(make_app, redis_namespace):
    app = make_app(REDIS_URL=REDIS_URL, REDIS_NAMESPACE=redis_namespace)
    assert app.extensions["sipup_cache"].kind == "redis"


def test_default_driver_is_a_folder_in_the_instance(make_app):
    app = make_app()
    cache = app.extensions["sipup_cache"]
    assert cache.kind == "filesystem" and cache.where == os.path.join(app.instance_path, "cache")


def test_caching_can_be_switched_off(make_app, shop, monkeypatch):
    app = make_app(CACHE_URL="none://")
    # This app's own cache events: the shared statistics store also receives the late flushes of earlier tests' apps.
    counters, hits = app.extensions["counters"], []
    count = counters.incr

    def incr(group, name, *args, **kwargs):
        if group == "cache" and name.endswith(".hit"):
            hits.append(name)
        return count(group, name, *args, **kwargs)

    monkeypatch.setattr(counters, "incr", incr)
    buyer, staff = signed_in(app, shop.buyer), signed_in(app, shop.staff)
    assert "€9.00" in page(buyer, "/products/BEER-1")
    before = list(hits)
    set_tier(staff, shop.price_list, "BEER-1", "8.80")
    assert "€8.80" in page(buyer, "/products/BEER-1") and "€8.80" in page(buyer, "/products")
    assert hits == before == []
    with app.app_context():
        assert app.test_cli_runner().invoke(args=["cache", "clear"]).exit_code == 0


def test_several_memcached_servers_share_the_keys(make_app, shop, local_memcached, tmp_path):
    from tests.servers import LocalMemcached, local_server

    second = local_server(LocalMemcached, tmp_path)
    try:
        url = f"{local_memcached.url},127.0.0.1:{second.port}"
        app = make_app(CACHE_URL=url)
        assert app.extensions["sipup_cache"].where.count(":") == 2
        buyer, staff = signed_in(app, shop.buyer), signed_in(app, shop.staff)
        for _ in range(2):
            assert "€9.00" in page(buyer, "/products") and "€9.00" in page(buyer, "/products/BEER-1")
        set_tier(staff, shop.price_list, "BEER-1", "8.20")
        assert "€8.20" in page(buyer, "/products") and "€8.20" in page(buyer, "/products/BEER-1")
        assert app.extensions["sipup_cache"].status()["state"] == "primary"
    finally:
        second.stop()


# --- the folder store keeps generation tokens while nobody writes one -----------------------------------


def opened_cache_files(monkeypatch):
    """The list the folder store's file opens are appended to (their paths), from now on."""
    import cachelib.file

    opened, real_open = [], open
    monkeypatch.setattr(cachelib.file, "open", lambda *a, **k: opened.append(a[0]) or real_open(*a, **k), raising=False)
    return opened


def test_a_folder_store_reads_many_tokens_from_one_file_and_sees_another_process_write_at_once(tmp_path, monkeypatch):
    from sipup.cache.drivers import FolderCache

    reader, writer = FolderCache(str(tmp_path)), FolderCache(str(tmp_path))  # two processes on one folder
    names = [f"gen:n{i}" for i in range(10)]
    writer.set_many({name: f"t{i}" for i, name in enumerate(names)}, timeout=0)
    writer.set("page", "html", timeout=0)
    opened = opened_cache_files(monkeypatch)

    assert reader.get_many(*names, "page") == [f"t{i}" for i in range(10)] + ["html"]
    first, opened[:] = len(opened), []
    assert reader.get_many(*names, "page")[-1] == "html"
    assert first == 12 and len(opened) == 2  # the clock and the page; the tokens come from memory

    writer.set("gen:n3", "renewed", timeout=0)  # another process renews one token
    assert reader.get_many(*names)[3] == "renewed"
    writer.add("gen:new", "added")
    assert reader.get_many("gen:new") == ["added"]
    writer.clear()  # the clock goes with everything else: nothing is kept from before
    assert reader.get_many(*names) == [None] * 10


def test_a_folder_store_keeps_the_layers_values_until_they_expire_each_read_a_copy(tmp_path, monkeypatch):
    from sipup.cache.drivers import FolderCache

    reader, writer = FolderCache(str(tmp_path)), FolderCache(str(tmp_path))
    writer.set("gen:catalog", "t1", timeout=0)
    writer.set("products:page", {"g": ["t1"], "e": time.time() + 0.5, "v": ["row"]}, timeout=0)
    first = reader.get_many("gen:catalog", "products:page")[1]
    first["v"].append("changed by a caller")
    opened = opened_cache_files(monkeypatch)
    assert reader.get_many("gen:catalog", "products:page")[1]["v"] == ["row"] and len(opened) == 1  # the clock
    time.sleep(0.6)  # expired: read from the file again, where another process may have renewed it
    writer.set("products:page", {"g": ["t1"], "e": time.time() + 60, "v": ["renewed"]}, timeout=0)
    assert reader.get_many("gen:catalog", "products:page")[1]["v"] == ["renewed"]
    # A token written anywhere: the values read before may be outdated, so they are read again.
    writer.set_many({"gen:catalog": "t2", "products:page": {"g": ["t2"], "e": time.time() + 60, "v": ["new"]}})
    assert reader.get_many("gen:catalog", "products:page") == ["t2", {"g": ["t2"], "e": ANY, "v": ["new"]}]


def test_entries_whose_arguments_are_equal_but_differ_in_type_keep_keys_of_their_own():
    keys = {CacheLayer._key("products", "page", args) for args in (1, 1.0, True, "1", (1,), (1.0,))}
    assert len(keys) == 6
    assert CacheLayer._key("products", "page", (1, "a")) == CacheLayer._key("products", "page", (1, "a"))
