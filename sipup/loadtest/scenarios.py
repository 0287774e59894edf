"""What virtual users do: the storefront mix, a weighted list of pages, or a developer's own Scenario.

A scenario is a class; every virtual user gets an instance with its own connection and cookies.
`on_start` runs once (to sign in, say), then the runner calls `run_task` again and again: in the
closed model with think time between, in the open model once per scheduled arrival. Methods marked
`@task(weight)` are picked at random by weight. Example (`flask loadtest --scenario my_scenario.py`):

    from sipup.loadtest import Scenario, task

    class Reorder(Scenario):
        think_time = (1.0, 3.0)

        def on_start(self):
            self.sign_in(*self.credentials())

        @task(3)
        def catalog(self):
            self.get("/products")

        @task(1)
        def one_order(self):
            response = self.get("/orders/2611-1", name="GET /orders/<number>")
            self.check(response, response and b"Reorder" in response.body, "no reorder button")
"""

import importlib
import importlib.util
import inspect
import random
import re
import sys
from pathlib import Path

CSRF = re.compile(rb'name="csrf_token" value="([^"]+)"')


class ScenarioError(Exception):
    """A scenario that cannot run as asked (bad file, no tasks, missing credentials)."""


def task(weight=1):
    """Mark a Scenario method as a task picked `weight` times as often as a task of weight 1."""
    if callable(weight):  # used bare: @task
        weight._task_weight = 1
        return weight

    def mark(method):
        method._task_weight = weight
        return method

    return mark


class Scenario:
    """Base class of every scenario: HTTP helpers, checks, sign-in through the real form, task picking."""

    name = "custom"
    think_time = (0.0, 0.0)  # seconds between tasks in the closed model, uniform in [low, high]
    # The open model gives each class of users its share of the arrivals (the share of the users in it), so
    # that users whose tasks are quicker do not take over the schedule when the server slows down.
    arrival_class = None

    def __init__(self, session, recorder, number, options):
        self.session = session
        self.recorder = recorder
        self.number = number
        self.options = options
        self.random = random.Random(number)
        self.csrf_token = None
        tasks = self.tasks()
        if not tasks and type(self).run_task is Scenario.run_task:
            raise ScenarioError(f"{type(self).__name__} has no @task methods and no run_task of its own.")
        self._task_methods = [getattr(self, name) for name, _ in tasks]
        self._task_weights = [weight for _, weight in tasks]

    @classmethod
    def tasks(cls):
        """(method name, weight) of every @task method."""
        found = []
        for name, member in inspect.getmembers(cls, inspect.isfunction):
            weight = getattr(member, "_task_weight", None)
            if weight:
                found.append((name, weight))
        return found

    @classmethod
    def check_options(cls, options):
        """Raise ScenarioError when the options cannot work for this scenario (called once, up front)."""

    def on_start(self):
        """Once per virtual user before its first task."""

    def run_task(self):
        """One task; the open model schedules these, the closed model runs them in a loop."""
        if len(self._task_methods) == 1:
            self._task_methods[0]()
        else:
            self.random.choices(self._task_methods, self._task_weights)[0]()

    # --- helpers for tasks ----------------------------------------------------------------

    def get(self, path, name=None, **kwargs):
        return self.session.request("GET", path, name=name, **kwargs)

    def post(self, path, form=None, name=None, **kwargs):
        """POST a form; the CSRF token last seen on a page is added unless the form has one."""
        form = dict(form or {})
        if self.csrf_token and "csrf_token" not in form:
            form["csrf_token"] = self.csrf_token
        return self.session.request("POST", path, name=name, form=form, **kwargs)

    def remember_csrf(self, response):
        """Keep the CSRF token of a page with a form, as a browser keeps the form."""
        if response is not None:
            match = CSRF.search(response.body)
            if match:
                self.csrf_token = match.group(1).decode("ascii")
        return response

    def check(self, response, ok, reason):
        """Count the last request as failed with `reason` unless ok; a request that got no answer
        or an error status is already counted (one the request expects is left to the scenario, which counts it
        with self.recorder.fail_last when wrong). Returns whether the response is usable."""
        if response is None or response.status >= 400:
            return False
        if not ok:
            self.recorder.fail_last(f"check: {reason}")
            return False
        return True

    def follow(self, response, name):
        """GET the Location of a redirect under the group `name`."""
        location = response.headers.get("location", "") if response is not None else ""
        if not location:
            return None
        path = "/" + location.split("://", 1)[-1].split("/", 1)[-1] if "://" in location else location
        return self.remember_csrf(self.get(path, name=name))

    def credentials(self):
        """(email, password) for this virtual user, taken in turn from --login/--logins-file."""
        logins = self.options.logins
        if not logins:
            raise ScenarioError("this scenario signs in: give --login EMAIL:PASSWORD or --logins-file FILE")
        return logins[self.number % len(logins)]

    def sign_in(self, email, password):
        """Sign in through the real form (GET for the CSRF token, then POST); True when signed in."""
        page = self.remember_csrf(self.get("/login", name="GET /login"))
        if not self.check(page, self.csrf_token, "no CSRF token on the sign-in page"):
            return False
        response = self.post("/login", {"email": email, "password": password}, name="POST /login")
        if response is None or response.status >= 400:
            return False
        if not self.check(response, response.status in (302, 303), f"sign-in of {email} refused"):
            return False
        self.follow(response, "GET /")
        return True

    def think(self):
        """Seconds this user waits before its next task (closed model)."""
        low, high = self.options.think or self.think_time
        return low if high <= low else self.random.uniform(low, high)


class Pages(Scenario):
    """Requests to a list of URLs picked by weight; signs in first when credentials are given."""

    name = "pages"

    @classmethod
    def tasks(cls):
        return [("request_page", 1)]

    @classmethod
    def check_options(cls, options):
        if not options.pages:
            raise ScenarioError("the pages scenario needs --page PATH [WEIGHT] (or a path in the URL)")

    def __init__(self, *args):
        super().__init__(*args)
        pages = self.options.pages
        self._paths = [path for path, _ in pages]
        self._weights = [weight for _, weight in pages]
        self._names = {path: f"GET {path}" for path in self._paths}
        self.signed_in = not self.options.logins

    def on_start(self):
        if not self.signed_in:
            self.signed_in = self.sign_in(*self.credentials())

    def request_page(self):
        if not self.signed_in:
            self.on_start()
            return
        path = self._paths[0] if len(self._paths) == 1 else self.random.choices(self._paths, self._weights)[0]
        self.session.request("GET", path, name=self._names[path])

    run_task = request_page


SKU_LINK = re.compile(rb'href="/products/([^"?/]+)"')
QUANTITY = re.compile(rb'name="quantity" value="([^"]*)"')
ADDRESS = re.compile(rb'<option value="(\d+)"')
IN_STOCK = re.compile(rb'class="stock (?:ok|low)">\s*(\d+) in stock')
# What a checkout refused for stock shows: the refused line marked, or a stock note on a line.
STOCK_NOTE = re.compile(rb'<tr class="has-error">|class="warning-text"')
CART_LINE = re.compile(rb'name="remove" value="(\d+)"')
HIDDEN_LINE = re.compile(rb'name="sku" value="([^"]+)"><input type="hidden" name="quantity" value="([^"]+)"')
SEARCH_WORDS = ("beer", "water", "juice", "cola", "wine", "lemonade", "pils", "apple")


class Storefront(Scenario):
    """Anonymous visitors and signed-in buyers: catalog, search, product, cart, quick order, few checkouts."""

    name = "storefront"
    think_time = (0.5, 2.0)

    @classmethod
    def check_options(cls, options):
        if options.anonymous_share < 1 and not options.logins:
            raise ScenarioError(
                "the storefront scenario signs buyers in: give --login EMAIL:PASSWORD or --logins-file FILE "
                "(flask serve writes the demo logins to instance/demo-logins.txt on its first start)"
            )

    def __init__(self, *args):
        super().__init__(*args)
        # Spread evenly: with a share of 0.2, users 4, 9, 14, ... browse without signing in.
        share, number = self.options.anonymous_share, self.number
        self.anonymous = int((number + 1) * share + 1e-9) > int(number * share + 1e-9)
        self.arrival_class = "visitor" if self.anonymous else "buyer"
        self.signed_in = False
        self.skus = []

    def on_start(self):
        if not self.anonymous:
            self.signed_in = self.sign_in(*self.credentials())

    def run_task(self):
        if self.anonymous:
            self.random.choice((self.visitor_login_page, self.visitor_catalog, self.visitor_home))()
        elif not self.signed_in:
            self.on_start()
        else:
            super().run_task()

    # Anonymous visitors see the sign-in page; the catalog sends them there too.
    def visitor_login_page(self):
        self.remember_csrf(self.get("/login", name="GET /login"))

    def visitor_catalog(self):
        response = self.get("/products", name="GET /products (anonymous)")
        if self.check(response, response and response.status in (302, 303), "catalog shown without sign-in"):
            self.follow(response, "GET /login")

    def visitor_home(self):
        response = self.get("/", name="GET / (anonymous)")
        if self.check(response, response and response.status in (302, 303), "dashboard shown without sign-in"):
            self.follow(response, "GET /login")

    # Signed-in buyers.
    @task(2)
    def dashboard(self):
        self.remember_csrf(self.get("/", name="GET /"))

    @task(4)
    def catalog(self):
        page = self.random.choice((1, 1, 2))
        response = self.remember_csrf(self.get(f"/products?page={page}", name="GET /products"))
        if self.check(response, response and response.status == 200, "no catalog"):
            found = [m.decode() for m in SKU_LINK.findall(response.body)]
            self.check(response, found or page > 1, "catalog page lists no products")
            for sku in found:
                if sku not in self.skus:
                    self.skus.append(sku)

    @task(3)
    def search(self):
        word = self.random.choice(SEARCH_WORDS)
        self.remember_csrf(self.get(f"/products?q={word}", name="GET /products?q="))

    @task(4)
    def product(self):
        if not self.skus:
            return self.catalog()
        sku = self.random.choice(self.skus)
        return self.remember_csrf(self.get(f"/products/{sku}", name="GET /products/<sku>")), sku

    @task(2)
    def add_to_cart(self):
        shown = self.product()
        if not shown or shown[0] is None or shown[0].status != 200:
            return False
        response, sku = shown
        match = QUANTITY.search(response.body)
        quantity = match.group(1).decode() if match else "1"
        stock = IN_STOCK.search(response.body)
        if b'class="stock out"' in response.body or (stock and int(stock.group(1)) < int(quantity or 1)):
            return False  # a buyer does not put what is sold out in the cart
        added = self.post("/cart/add", {"sku": sku, "quantity": quantity}, name="POST /cart/add")
        if self.check(added, added and added.status in (302, 303), "not added to the cart"):
            self.follow(added, "GET /cart")
            return True
        return False

    @task(2)
    def cart(self):
        self.remember_csrf(self.get("/cart", name="GET /cart"))

    @task(1)
    def quick_order(self):
        if not self.skus:
            return self.catalog()
        lines = "\n".join(f"{sku} 1" for sku in self.random.sample(self.skus, min(3, len(self.skus))))
        preview = self.post("/quick-order", {"lines": lines}, name="POST /quick-order")
        if not self.check(preview, preview and b"Preview" in preview.body, "no quick-order preview"):
            return
        self.remember_csrf(preview)
        valid = HIDDEN_LINE.findall(preview.body)
        if valid:  # lines whose quantity breaks a minimum or step are shown, not offered
            form = {"sku": [s.decode() for s, _ in valid], "quantity": [q.decode() for _, q in valid]}
            added = self.post("/quick-order/add", form, name="POST /quick-order/add")
            if self.check(added, added and added.status in (302, 303), "quick-order lines not added"):
                self.follow(added, "GET /cart")

    @task(0.5)
    def checkout(self):
        form_page = self.get("/checkout", name="GET /checkout")
        if form_page is not None and form_page.status in (302, 303):  # empty cart: fill it first
            if not self.add_to_cart():
                return
            form_page = self.get("/checkout", name="GET /checkout")
        self.remember_csrf(form_page)
        if not self.check(form_page, form_page and form_page.status == 200, "no checkout form"):
            return
        if STOCK_NOTE.search(form_page.body):  # the page says stock is short: a buyer fixes the cart first
            self.empty_cart()
            return
        address = ADDRESS.search(form_page.body)
        if not self.check(form_page, address, "no delivery address to choose"):
            return
        placed = self.post(
            "/checkout",
            {
                "po_reference": f"LOADTEST-{self.number}",
                "address_id": address.group(1).decode(),
                "requested_date": "",
                "note": "",
            },
            name="POST /checkout",
            expect=(422,),
        )
        if placed is not None and placed.status == 422:
            # Another buyer took the last units since the form was shown: the site says so, as it should (not a
            # failure); a buyer starts a new cart. Any other refusal is one.
            if STOCK_NOTE.search(placed.body):
                self.empty_cart()
            else:
                self.recorder.fail_last("HTTP 422 (checkout refused, not for stock)")
        elif self.check(
            placed,
            placed and placed.status in (302, 303) and "/orders/" in placed.headers.get("location", ""),
            "order not placed",
        ):
            self.follow(placed, "GET /orders/<number>")

    def empty_cart(self):
        cart = self.remember_csrf(self.get("/cart", name="GET /cart"))
        if cart is not None and cart.status == 200:
            for product_id in dict.fromkeys(CART_LINE.findall(cart.body)):
                self.post("/cart", {"remove": product_id.decode()}, name="POST /cart (remove)")

    @task(1)
    def orders(self):
        self.get("/orders", name="GET /orders")

    @task(1)
    def invoices(self):
        self.get("/invoices", name="GET /invoices")

    # With the other tasks' weights and requests (about 1.4 a task), about one new session per 30 requests.
    @task(1)
    def new_session(self):
        """Sign out and in again: a buyer's session ends and the next one begins with a password check."""
        signed_out = self.post("/logout", {}, name="POST /logout")
        if self.check(signed_out, signed_out and signed_out.status in (302, 303), "not signed out"):
            self.signed_in = self.sign_in(*self.credentials())


BUILT_IN = {"storefront": Storefront, "pages": Pages}


def load_scenario(spec):
    """The Scenario class named by `storefront`, `pages`, `module:Class`, `file.py` or `file.py:Class`."""
    if spec in BUILT_IN:
        return BUILT_IN[spec]
    target, sep, class_name = spec.rpartition(":")
    if not sep or not class_name.isidentifier():  # no class named, or a Windows drive letter (C:\\...)
        target, class_name = spec, ""
    if target.endswith(".py"):
        path = Path(target)
        if not path.is_file():
            raise ScenarioError(f"scenario file {target} does not exist")
        module_name = f"sipup_loadtest_scenario_{abs(hash(str(path.resolve())))}"
        loader = importlib.util.spec_from_file_location(module_name, path)
        module = importlib.util.module_from_spec(loader)
        sys.modules[module_name] = module
        try:
            loader.loader.exec_module(module)
        except Exception as exc:  # the developer's file: show what broke, not a traceback of ours
            raise ScenarioError(f"scenario file {target} failed to load: {type(exc).__name__}: {exc}") from None
    else:
        try:
            module = importlib.import_module(target)
        except ImportError as exc:
            raise ScenarioError(
                f"unknown scenario {spec!r}: use storefront, pages, a file.py or module:Class ({exc})"
            ) from None
    if class_name:
        found = getattr(module, class_name, None)
        if not (inspect.isclass(found) and issubclass(found, Scenario)):
            raise ScenarioError(f"{spec}: {class_name} is not a Scenario subclass")
        return found
    found = [
        value
        for value in vars(module).values()
        if inspect.isclass(value) and issubclass(value, Scenario) and value.__module__ == module.__name__
    ]
    if len(found) != 1:
        raise ScenarioError(f"{target} defines {len(found)} Scenario subclasses; name one as {target}:ClassName")
    return found[0]
