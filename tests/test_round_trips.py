"""Round trips a page costs, counted exactly: what reaches Redis (cache, rate limits, statistics), the folder
cache of the embedded default and the database while one signed-in request is served. Speed lives in
benchmarks/pages.py; these counts guard it."""

import importlib
import re
import threading
from contextlib import contextmanager

import pytest
import redis.connection
from flask import render_template
from markupsafe import Markup
from sqlalchemy import event, inspect, select
from sqlalchemy.orm import Session

from sipup import web
from sipup.extensions import db
from sipup.limits.compat import storage_dead
from sipup.limits.limiter import RIDING
from sipup.models import Company, Product, User
from sipup.services import accounts, cart, companies, vat
from sipup.services import shopping_lists as lists
from sipup.services.signed_in import record
from tests.cache.test_cache import opened_cache_files, page, signed_in
from tests.conftest import PASSWORD, REDIS_URL

shop_views = importlib.import_module("sipup.blueprints.shop")  # the package's `shop` is the blueprint


@contextmanager
def counted(app):
    """{"redis": round trips, "sql": statements} of this thread while the block runs. A pipeline or a script
    is one round trip: one send of packed commands. Other threads (a statistics flush timer) are not counted."""
    me, counts = threading.get_ident(), {"redis": 0, "sql": 0}
    send = redis.connection.AbstractConnection.send_packed_command

    def counting_send(connection, command, check_health=True):
        if threading.get_ident() == me:
            counts["redis"] += 1
        return send(connection, command, check_health)

    def count_statement(*_args):
        if threading.get_ident() == me:
            counts["sql"] += 1

    with app.app_context():
        engine = db.engine
    event.listen(engine, "before_cursor_execute", count_statement)
    redis.connection.AbstractConnection.send_packed_command = counting_send
    try:
        yield counts
    finally:
        redis.connection.AbstractConnection.send_packed_command = send
        event.remove(engine, "before_cursor_execute", count_statement)


def warm(app, client, url):
    """The page twice (values cached, the buyer's price list seen), then pending statistics written out, so
    that the measured request is a steady one."""
    page(client, url)
    page(client, url)
    app.extensions["counters"].flush()
    stats = app.extensions.get("query_stats")
    if stats is not None:
        stats.flush()


@pytest.fixture
def redis_app(make_app, redis_namespace):
    """Cache, rate limits and statistics in Redis, as a production site runs; limits on and counted."""
    return make_app(
        REDIS_URL=REDIS_URL,
        REDIS_NAMESPACE=redis_namespace,
        RATELIMIT_ENABLED=True,
        RATELIMIT_IP="100000 per minute",
        RATELIMIT_USER="100000 per minute",
    )


def test_a_cached_catalog_page_costs_one_round_trip_to_redis_and_none_to_the_database(redis_app, shop):
    client = signed_in(redis_app, shop.buyer)
    warm(redis_app, client, "/products")
    with counted(redis_app) as counts:
        html = page(client, "/products")
    assert "BEER-1" in html and "€9.00" in html
    # One: the rate limits (address and user together) and the read of the user, the cart's line count and the page.
    assert counts == {"redis": 1, "sql": 0}


def test_the_reads_ride_with_the_rate_limits_only_to_the_same_redis(make_app, shop, redis_namespace):
    """A cache on another Redis server (here another name of it: compared by address, not resolved) reads in a trip
    of its own; so does a site without rate limits."""
    if not REDIS_URL:
        pytest.skip("SIPUP_TEST_REDIS_URL is not set: no shared Redis to test on")
    where = redis.connection.parse_url(REDIS_URL)
    other_name = "localhost" if where.get("host") in ("127.0.0.1", None) else "127.0.0.1"
    other = REDIS_URL.replace(f"//{where.get('host', '127.0.0.1')}", f"//{other_name}", 1)
    limits = {"RATELIMIT_IP": "100000 per minute", "RATELIMIT_USER": "100000 per minute"}
    for options, trips in (
        ({"RATELIMIT_ENABLED": True, **limits}, 1),
        ({"RATELIMIT_ENABLED": True, "CACHE_URL": other, **limits}, 2),
        ({"RATELIMIT_ENABLED": False}, 1),
    ):
        shop_app = make_app(REDIS_URL=REDIS_URL, REDIS_NAMESPACE=redis_namespace, **options)
        client = signed_in(shop_app, shop.buyer)
        warm(shop_app, client, "/products")
        with counted(shop_app) as counts:
            html = page(client, "/products")
        assert "€9.00" in html and shop.buyer.name in html
        assert counts == {"redis": trips, "sql": 0}, options


def test_reads_riding_with_the_limits_that_fail_leave_the_limits_on_redis(redis_app, shop, caplog):
    """A read ahead that breaks (here: a value it cannot decode) is logged and made again the usual way: it never
    looks like Redis failing the limits, which would count them per process."""
    client = signed_in(redis_app, shop.buyer)
    warm(redis_app, client, "/products")
    kept = redis_app.extensions[RIDING]

    def breaking(client):
        keys, _done = kept(client)
        return keys, lambda values: 1 / 0

    for rider in (breaking, lambda client: 1 / 0):
        redis_app.extensions[RIDING] = rider
        html = page(client, "/products")
        assert "BEER-1" in html and "€9.00" in html
        assert not storage_dead(redis_app.extensions["limits"].limiter)
    assert caplog.text.count("reads riding with the rate limits' round trip failed") == 2


def test_a_cached_catalog_page_builds_no_orm_instance_of_the_user_or_their_company(redis_app, shop):
    client = signed_in(redis_app, shop.buyer)
    warm(redis_app, client, "/products")
    with orm_instances_built() as built:
        html = page(client, "/products")
    assert "BEER-1" in html and shop.buyer.name in html
    assert built == []


@contextmanager
def orm_instances_built():
    """The names of the ORM instances built (loaded, attached or added) meanwhile."""
    built = []

    def note(_session, instance):
        built.append(type(instance).__name__)

    events = ("detached_to_persistent", "loaded_as_persistent", "transient_to_pending")
    for name in events:
        event.listen(Session, name, note)
    try:
        yield built
    finally:
        for name in events:
            event.remove(Session, name, note)


@pytest.mark.parametrize("url", ["/products", "/products/BEER-1"])
def test_a_cached_page_opens_no_database_session(redis_app, shop, monkeypatch, url):
    client = signed_in(redis_app, shop.buyer)
    warm(redis_app, client, url)
    opened, open_session = [], Session.__init__
    monkeypatch.setattr(
        Session, "__init__", lambda session, *a, **k: opened.append(1) or open_session(session, *a, **k)
    )
    page(client, url)
    assert opened == []


def test_the_signed_in_user_is_read_only_values_with_every_column_and_the_orm_user_on_request(redis_app, shop):
    with redis_app.test_request_context():
        user = accounts.signed_in_user(shop.buyer.id)
        assert not isinstance(user, User) and user.company_id == shop.buyer.company_id
        columns = {a.key for a in inspect(User).column_attrs} - accounts.SESSION_SKIPS
        row = db.session.execute(select(User.__table__).where(User.id == user.id)).mappings().one()  # no ORM
        assert all(getattr(user, key) == row[key] for key in columns)
        assert user.is_customer and user.is_active and user.company.price_list_id == shop.company.price_list_id
        with pytest.raises(AttributeError, match="read-only"):
            user.name = "Someone else"
        record(user).name = "Someone else"  # the view that changes the user works on the ORM instance
        assert list(db.session.dirty) == [record(user)] and isinstance(record(user), User)
        assert record(user).company is record(user.company) and record(user).has_password


def test_the_kept_top_bar_shows_each_user_their_own_name_token_and_cart_escaped(app, shop):
    one, two = signed_in(app, shop.buyer), signed_in(app, shop.buyer2)
    assert one.post("/account/profile", data={"name": "<b>Ann</b> & Co"}).status_code == 302
    assert one.post("/cart/add", data={"sku": "BEER-1", "quantity": "2"}).status_code == 302
    first, second = page(one, "/products"), page(two, "/products")  # one top bar kept for both
    assert "&lt;b&gt;Ann&lt;/b&gt; &amp; Co" in first and "<b>Ann" not in first and "Ann" not in second
    assert shop.buyer2.email in second and shop.buyer2.email not in first
    assert '<span class="badge">1</span>' in first and 'class="badge"' not in second
    tokens = {re.search(r'name="csrf_token" value="([^"<]+)"', html).group(1) for html in (first, second)}
    assert len(tokens) == 2


def test_the_cache_serves_a_catalog_page_in_one_read_with_the_user_and_cart(make_app, shop, redis_namespace):
    # Without rate limits to ride with, the cache reads on its own.
    shop_app = make_app(REDIS_URL=REDIS_URL, REDIS_NAMESPACE=redis_namespace, RATELIMIT_ENABLED=False)
    client = signed_in(shop_app, shop.buyer)
    warm(shop_app, client, "/products")
    store = shop_app.extensions["sipup_cache"].primary
    reads, real_get_many = [], store.get_many
    store.get_many = lambda *keys: reads.append(keys) or real_get_many(*keys)
    try:
        page(client, "/products")
    finally:
        del store.get_many
    assert len(reads) == 1


def test_a_price_list_changed_since_the_last_page_is_read_again_not_shown_from_the_guess(
    make_app, shop, make_price_list, redis_namespace
):
    shop_app = make_app(REDIS_URL=REDIS_URL, REDIS_NAMESPACE=redis_namespace)
    client = signed_in(shop_app, shop.buyer)
    warm(shop_app, client, "/products")
    other = make_price_list("Retail", [(shop.product, 1, "7.50")])
    with shop_app.app_context():  # staff move the company to another list on this site
        db.session.get(Company, shop.company.id).price_list_id = other.id
        db.session.commit()
    html = page(client, "/products")
    assert "€7.50" in html and "€9.00" not in html


@pytest.mark.parametrize("url", ["/products/BEER-1", "/cart"])
def test_a_product_page_and_the_cart_cost_at_most_three_round_trips_to_redis(redis_app, shop, url):
    client = signed_in(redis_app, shop.buyer)
    with redis_app.app_context():
        cart.add(shop.buyer.id, shop.product, 2)
    warm(redis_app, client, url)
    with counted(redis_app) as counts:
        html = page(client, url)
    assert "BEER-1" in html
    assert counts["redis"] <= 3, counts


def test_a_product_page_reads_its_save_to_list_choices_with_the_user_and_no_sql(redis_app, shop):
    client = signed_in(redis_app, shop.buyer)
    warm(redis_app, client, "/products/BEER-1")
    with counted(redis_app) as counts:
        page(client, "/products/BEER-1")
    # One: the rate limits, and the user's row with the company's lists and the page's body.
    assert counts == {"redis": 1, "sql": 0}
    with redis_app.app_context():
        lists.create(db.session.get(User, shop.buyer.id), "weekly bar order")
    assert "weekly bar order" in page(client, "/products/BEER-1")


def test_a_kept_product_page_fills_in_each_buyers_token_quantity_and_lists_and_follows_prices_and_stock(
    app, shop, make_price_list
):
    one, two = signed_in(app, shop.buyer), signed_in(app, shop.buyer2)
    with app.app_context():
        lists.create(db.session.get(User, shop.buyer.id), "Ann's <list>")
    first, second = page(one, "/products/BEER-1?qty=<b>7"), page(two, "/products/beer-1")  # one body kept for both
    assert 'value="&lt;b&gt;7"' in first and "<b>7" not in first
    assert 'name="quantity" value="1"' in second and "&lt;b&gt;7" not in second  # the minimum when none asked
    assert "Ann&#39;s &lt;list&gt;" in first and "Ann&#39;s" not in second  # each buyer's own lists
    assert first.count('name="sku" value="BEER-1"') == 2 and "<!--" not in first + second
    tokens = [set(re.findall(r'name="csrf_token" value="([^"<]+)"', html)) for html in (first, second)]
    assert all(len(found) == 1 for found in tokens) and tokens[0] != tokens[1]
    assert "€9.00" in first and "€9.00" in second
    other = make_price_list("Retail", [(shop.product, 1, "7.50")])
    with app.app_context():  # staff move one company to another list, and the stock runs out
        db.session.get(Company, shop.company.id).price_list_id = other.id
        db.session.get(Product, shop.product.id).stock_on_hand = 0
        db.session.commit()
    html = page(one, "/products/BEER-1")
    assert "€7.50" in html and "€9.00" not in html and "Out of stock" in html
    assert one.get("/products/NO-SUCH-SKU").status_code == 404


@pytest.mark.parametrize(
    "url",
    [
        "/products",
        "/products/BEER-1?qty=%3Cb%3E3",
        "/products?q=beer&page=1",
        *("/", "/cart", "/checkout", "/quick-order", "/orders", "/invoices"),  # through web.render_page
    ],
)
def test_the_kept_layout_makes_the_page_the_full_template_makes(app, shop, monkeypatch, url):
    client = signed_in(app, shop.buyer)
    assert client.post("/account/profile", data={"name": "<b>Ann</b> & Co"}).status_code == 302
    assert client.post("/cart/add", data={"sku": "BEER-1", "quantity": "2"}).status_code == 302
    page(client, "/cart")  # the flash messages shown
    kept = page(client, url)

    def full_page(title, body, notice=None):  # kept_page's body: Markup, or the UTF-8 fragments it joins
        body = b"".join(body).decode() if isinstance(body, list) else body
        return render_template("_page.html", title=title, body=Markup(body), notice=notice)

    monkeypatch.setattr(shop_views, "kept_page", full_page)
    monkeypatch.setattr(web, "kept_page", full_page)
    full = page(client, url)
    token = re.compile(r'name="(?:csrf_token|checkout_key)" value="[^"]+"')  # new for each page
    # The sign-out form and the language switch have one each, and the forms of the page.
    assert token.sub("", kept) == token.sub("", full) and len(token.findall(kept)) == len(token.findall(full)) >= 2
    assert "<!--page-" not in kept and "&lt;b&gt;Ann&lt;/b&gt; &amp; Co" in kept


def test_a_page_with_flash_messages_is_rendered_in_full(app, shop):
    client = signed_in(app, shop.buyer)
    assert client.post("/cart/add", data={"sku": "BEER-1", "quantity": "2"}).status_code == 302
    html = page(client, "/products/BEER-1")  # the message of the cart add, shown once
    assert 'class="flash flash-success"' in html and "in your cart" in html
    assert 'class="flash' not in page(client, "/products/BEER-1")


def test_an_answer_sends_the_session_cookie_only_when_the_session_changes(make_app, shop):
    client = signed_in(make_app(), shop.buyer)
    assert "Set-Cookie" in client.get("/products").headers  # the first form's CSRF token joins the session
    assert "Set-Cookie" not in client.get("/products").headers
    assert "Set-Cookie" not in client.get("/orders").headers


def test_the_redis_counts_see_every_round_trip():
    """The counting itself: a command is one, a pipeline of three commands is one."""
    if not REDIS_URL:
        pytest.skip("SIPUP_TEST_REDIS_URL is not set: no shared Redis to test on")
    client = redis.Redis.from_url(REDIS_URL)
    sends, send = [], redis.connection.AbstractConnection.send_packed_command
    redis.connection.AbstractConnection.send_packed_command = lambda c, cmd, check_health=True: (
        sends.append(1) or send(c, cmd, check_health)
    )
    try:
        client.ping()
        client.ping()
        sends.clear()
        client.ping()
        pipe = client.pipeline(transaction=False)
        pipe.ping().ping().ping()
        pipe.execute()
    finally:
        redis.connection.AbstractConnection.send_packed_command = send
        client.close()
    assert len(sends) == 2


def test_a_cached_catalog_page_on_the_embedded_default_reads_one_cache_file_and_no_sql(make_app, shop, monkeypatch):
    shop_app = make_app()  # the folder cache in instance/, as `flask serve` runs without servers
    client = signed_in(shop_app, shop.buyer)
    warm(shop_app, client, "/products")
    opened = opened_cache_files(monkeypatch)
    with counted(shop_app) as counts:
        page(client, "/products")
    # The clock of the generation tokens; tokens, user, cart's line count and page from memory, as they were.
    assert len(opened) == 1 and counts["sql"] == 0


def test_the_writes_read_each_row_once(redis_app, shop):
    """Cart add, quick-order add, the checkout page and placing the order: a product read once and not again
    after the commit, every cart line in one read, a page's prices and credit from the cache."""
    client = signed_in(redis_app, shop.buyer)
    with redis_app.app_context():
        address_id = db.session.get(Company, shop.company.id).addresses[0].id
    for _ in range(2):  # the line exists and everything the request reads is warm
        assert client.post("/cart/add", data={"sku": "BEER-1", "quantity": "1"}).status_code == 302
    page(client, "/checkout")
    sent = {}
    with counted(redis_app) as sent["cart add"]:
        assert client.post("/cart/add", data={"sku": "BEER-1", "quantity": "1"}).status_code == 302
    with counted(redis_app) as sent["quick-order add"]:
        form = {"sku": ["BEER-1", "WINE-1"], "quantity": ["1", "1"]}
        assert client.post("/quick-order/add", data=form).status_code == 302
    with counted(redis_app) as changed:
        page(client, "/checkout")
    with counted(redis_app) as sent["checkout page"]:
        assert "Check out on account" in page(client, "/checkout")
    with counted(redis_app) as sent["checkout"]:
        response = client.post("/checkout", data={"address_id": str(address_id), "checkout_key": "k" * 22})
        assert response.status_code == 302, response.get_data(as_text=True)
    # cart add: the product with its line in one read, the line's update; quick order: the products with their
    # lines, an update, an insert; the page: nothing (the cart's lines as priced come from the cache, the addresses
    # with the signed-in user); the order: the lock, one read under it (credit included), the cart with its tiers,
    # one reservation for all lines, the order, its number, its lines, its event, its checkout key, the cart
    # emptied, the mail job, and nothing read again after the commit.
    statements = {name: counts["sql"] for name, counts in sent.items()}
    assert statements == {"cart add": 2, "quick-order add": 3, "checkout page": 0, "checkout": 11}
    # The page: one round trip to Redis, the limits with the signed-in user, the cart's count, its lines and the
    # credit left. The cart add: the limits with the user, and the cart's quantities renewed after the commit.
    assert sent["checkout page"]["redis"] == 1 and sent["cart add"]["redis"] == 2
    # The page after the cart got a new line: its lines and their count read and kept, each by one write and with
    # no lock in the store (one buyer's own values).
    assert changed == {"redis": 3, "sql": 2}


def test_a_sign_in_reads_the_user_with_the_company_once_and_nothing_again_after_its_commit(app, shop):
    signed_in(app, shop.buyer)  # a session of the account's already: kept
    form, client = {"email": shop.buyer.email, "password": PASSWORD}, app.test_client()
    with counted(app) as counts:
        assert client.post("/login", data=form).status_code == 302
    # The user with the company, the sign-in time, the account's sessions, the new session.
    assert counts["sql"] == 4


@pytest.mark.parametrize("url", ["/cart", "/"])
def test_the_cart_page_and_the_dashboard_read_the_cart_by_one_statement_and_build_no_orm_instance(app, shop, url):
    """The cart's lines with their products, pictures and categories as plain rows, and the company's addresses
    (the VAT's country) with the signed-in user: one statement, nothing loaded lazily, and kept in the cache until
    the cart (a new quantity too), the catalog, the stock or the prices change."""
    client = signed_in(app, shop.buyer)
    with app.app_context():
        cart.add(shop.buyer.id, shop.product, 2)
    warm(app, client, url)
    with counted(app) as counts:
        html = page(client, url)
    assert counts["sql"] == 0 and _cart_total(shop.buyer) in html
    with app.app_context():
        cart.add(shop.buyer.id, shop.product, 3)
    with orm_instances_built() as built, counted(app) as counts:
        html = page(client, url)
    assert _cart_total(shop.buyer) in html and (url == "/" or "BEER-1" in html)
    assert counts["sql"] == 1 and built == []


def _cart_total(user):
    """The cart's total with VAT as the pages show it, priced afresh from the database."""
    company = db.session.get(Company, user.company_id)
    pairs, tiers = cart.shown_lines(user.id, company.price_list_id)
    country = company.addresses[0].country if company.addresses else None
    return f"€{cart.price_lines(company.price_list_id, pairs, vat.rules(), country, company.vat_id, tiers).total:,.2f}"


def test_the_addresses_kept_with_the_signed_in_user_follow_a_change_at_once(app, shop):
    client = signed_in(app, shop.buyer)
    with app.app_context():
        cart.add(shop.buyer.id, shop.product, 2)
    assert "Depot" not in page(client, "/checkout")
    form = {"label": "Depot", "street": "Kai 1", "postcode": "20457", "city": "Hamburg", "country": "DE"}
    with app.app_context():
        added = companies.save_address(db.session.get(Company, shop.company.id), None, form)
        added_id = added.id
    assert "Depot: Kai 1, 20457 Hamburg, DE" in page(client, "/checkout")
    with app.app_context():
        companies.remove_address(db.session.get(Company, shop.company.id), added_id)
    assert "Depot" not in page(client, "/checkout")
