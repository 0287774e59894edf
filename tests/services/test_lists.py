"""Shopping lists: ordering a list by quick order's rules, the CSV round trip, sharing, and scoping to a company."""

from decimal import Decimal

import pytest

from sipup.exceptions import FieldErrors, InvalidInput, NotAllowed, NotFound
from sipup.extensions import db
from sipup.models import CartItem, ShoppingList
from sipup.services import cart as carts
from sipup.services import quick_order
from sipup.services import shopping_lists as lists

VAT = Decimal("0.20")
MAX = 500


def cart_of(user):
    return {item.product.sku: item.quantity for item in carts.items(user.id)}


def made(user, name, *pairs):
    shopping_list = lists.create(user, name)
    saved, problems = lists.add_items(user, shopping_list, [(sku, str(qty)) for sku, qty in pairs], MAX)
    assert problems == [] and saved == len(pairs)
    return shopping_list


# --- ordering a list ------------------------------------------------------------------------


def test_ordering_a_list_adds_its_lines_to_what_the_cart_holds(app, buyer, make_product):
    lager = make_product(sku="LAG-1", qty_step=2, min_qty=2)
    make_product(sku="WAT-1")
    carts.add(buyer.id, lager, 2)
    weekly = made(buyer, "weekly bar order", ("LAG-1", 4), ("WAT-1", 3))

    preview = lists.order_preview(buyer, weekly, VAT, MAX)
    assert [(line.product.sku, line.in_cart, line.quantity, line.ok) for line in preview] == [
        ("LAG-1", 2, 4, True),
        ("WAT-1", 0, 3, True),
    ]
    assert preview[0].line_total == Decimal("40.00")

    added, problems = lists.order(buyer, weekly, VAT, MAX)
    assert (added, problems) == (2, [])
    assert cart_of(buyer) == {"LAG-1": 6, "WAT-1": 3}


def test_ordering_leaves_out_what_quick_order_refuses_and_says_why(app, buyer, make_product):
    make_product(sku="OK-1")
    short = make_product(sku="SHORT-1", stock_on_hand=2)
    gone = make_product(sku="GONE-1")
    weekly = made(buyer, "weekly", ("OK-1", 1), ("SHORT-1", 5), ("GONE-1", 1))
    gone.active = False
    short.stock_on_hand = 2
    db.session.commit()

    preview = lists.order_preview(buyer, weekly, VAT, MAX)
    assert [line.ok for line in preview] == [True, False, False]
    added, problems = lists.order(buyer, weekly, VAT, MAX)
    assert added == 1 and cart_of(buyer) == {"OK-1": 1}
    assert problems == ["Only 2 of SHORT-1 in stock.", "GONE-1 is no longer sold."]


def test_an_empty_list_cannot_be_ordered(app, buyer):
    empty = lists.create(buyer, "empty")
    with pytest.raises(InvalidInput, match="is empty"):
        lists.order_preview(buyer, empty, VAT, MAX)


def test_a_list_keeps_only_quantities_the_product_is_sold_in(app, buyer, make_product):
    make_product(sku="CRATE-1", min_qty=2, qty_step=2)
    make_product(sku="NOSTOCK-1", stock_on_hand=0)
    weekly = lists.create(buyer, "weekly")
    saved, problems = lists.add_items(
        buyer, weekly, [("crate-1", "3"), ("NOPE", "1"), ("CRATE-1", "x"), ("NOSTOCK-1", "4")], MAX
    )
    assert saved == 1  # out of stock today is no reason to leave a product off a list
    assert problems == [
        "Unknown SKU “NOPE”.",
        "CRATE-1: Quantity “x” is not a number.",
        "CRATE-1 comes in steps of 2: order 2 or 4.",
    ]
    lists.add_items(buyer, weekly, [("CRATE-1", "2"), ("CRATE-1", "2")], MAX)
    assert {i.product.sku: i.quantity for i in weekly.items} == {"NOSTOCK-1": 4, "CRATE-1": 4}


# --- CSV round trip ---------------------------------------------------------------------------


def test_a_list_exported_as_csv_reads_back_through_quick_order(app, buyer, make_product):
    make_product(sku="BEE-1", name='Helles "Spezial", 0,5 l; keg')
    make_product(sku="BEE-2", name='=HYPERLINK("http://evil")')
    make_product(sku="BEE-3", name="Mix; Cola; Orange; Zitrone")
    weekly = made(buyer, "weekly", ("BEE-1", 3), ("BEE-2", 12), ("BEE-3", 1))

    text = lists.export_csv(weekly)
    assert text.splitlines()[0] == "\ufeffsku;quantity;product;pack"  # EUR: the excel-eu dialect, with a BOM
    assert "'=HYPERLINK" in text  # a cell that would run as a formula is neutralised
    lines = quick_order.preview(text, None, VAT, MAX)
    assert [(line.product.sku, line.quantity, line.ok) for line in lines] == [
        ("BEE-1", 3, True),
        ("BEE-2", 12, True),
        ("BEE-3", 1, True),
    ]

    copy = lists.create(buyer, "copy")
    lists.add_items(buyer, copy, [(line.product.sku, str(line.quantity)) for line in lines if line.fits_list], MAX)
    assert lists.export_csv(copy) == text


@pytest.mark.parametrize(
    "dialect, lines",
    [
        ("excel", ["\ufeffamount,note", "-12.50,'-12.50", "3,'@SUM(A1)", ",'\tx"]),
        ("excel-eu", ["\ufeffamount;note", "-12,50;'-12.50", "3;'@SUM(A1)", ";'\tx"]),
    ],
)
def test_downloads_keep_numbers_as_numbers_and_text_formula_safe(app, dialect, lines):
    from sipup.services.csv_export import csv_text

    app.config["CSV_DIALECT"] = dialect
    text = csv_text(["amount", "note"], [[Decimal("-12.50"), "-12.50"], [3, "@SUM(A1)"], [None, "\tx"]])
    assert text.splitlines() == lines


# --- sharing and who may edit ------------------------------------------------------------------


def test_sharing_decides_who_sees_and_edits(app, make_company, make_user, make_product):
    make_product(sku="A-1")
    company = make_company()
    owner, alice, bob = make_user("owner", company), make_user("buyer", company), make_user("buyer", company)
    mine = made(alice, "alice's", ("A-1", 1))

    def saving(user):  # the "Save to list" choices, read through the cache: every change shows at once
        return [choice.name for choice in lists.editable_lists(user)]

    assert (saving(alice), saving(bob), saving(owner)) == (["alice's"], [], ["alice's"])
    assert [found.name for found, _n in lists.lists_for(bob)] == ["alice's"]
    with pytest.raises(NotAllowed):
        lists.add_items(bob, lists.get_list(bob, mine.id), [("A-1", "1")], MAX)
    with pytest.raises(NotAllowed):
        lists.update_settings(bob, mine, "taken", True, True)

    lists.update_settings(alice, mine, "bar order", True, True)
    lists.add_items(bob, lists.get_list(bob, mine.id), [("A-1", "1")], MAX)
    assert mine.items[0].quantity == 2
    assert saving(bob) == ["bar order"]

    lists.update_settings(alice, mine, "bar order", False, True)
    assert mine.others_may_edit is False  # a private list is edited by nobody else
    with pytest.raises(NotFound):
        lists.get_list(bob, mine.id)
    assert (saving(bob), saving(owner)) == ([], ["bar order"])
    assert lists.get_list(owner, mine.id).name == "bar order"  # the company's owner sees every list
    lists.update_settings(owner, mine, "bar order", True, False)
    lists.delete(owner, mine)
    assert db.session.get(ShoppingList, mine.id) is None
    assert saving(owner) == []


def test_another_companys_list_is_not_found(app, make_company, make_user):
    ours, theirs = make_user("owner", make_company()), make_user("owner", make_company())
    their_list = lists.create(theirs, "theirs")
    with pytest.raises(NotFound):
        lists.get_list(ours, their_list.id)
    assert lists.lists_for(ours) == []


def test_a_list_needs_a_name(app, buyer):
    with pytest.raises(FieldErrors) as error:
        lists.create(buyer, "   ")
    assert "name" in error.value.errors


# --- views ---------------------------------------------------------------------------------------


def test_another_companys_list_answers_404_everywhere(client, login_as, make_company, make_user, make_product):
    make_product(sku="A-1")
    theirs = made(make_user("buyer", make_company()), "theirs", ("A-1", 1))
    login_as(make_user("buyer", make_company()))
    for method, path in [
        ("get", ""),
        ("post", ""),
        ("get", "/order"),
        ("post", "/order"),
        ("get", ".csv"),
        ("post", "/settings"),
        ("post", "/delete"),
        ("post", "/import"),
    ]:
        assert getattr(client, method)(f"/lists/{theirs.id}{path}").status_code == 404, (method, path)
    answer = client.post("/lists/save", data={"list_id": theirs.id, "sku": "A-1", "quantity": "1"})
    assert answer.status_code == 404
    assert len(db.session.get(ShoppingList, theirs.id).items) == 1


def test_a_buyer_makes_fills_and_orders_a_list(client, login_as, buyer, make_product):
    make_product(sku="BEE-1", name="Kellerbier")
    make_product(sku="WAT-1", name="Wasser")
    login_as(buyer)
    assert client.post("/lists", data={"name": ""}).status_code == 422
    answer = client.post("/lists", data={"name": "weekly bar order"})
    list_id = int(answer.headers["Location"].rsplit("/", 1)[1])

    # from the catalog: no list chosen yet, so the buyer is asked which
    chooser = client.post("/lists/save", data={"sku": "BEE-1", "quantity": "3"})
    assert chooser.status_code == 200 and "weekly bar order" in chooser.get_data(as_text=True)
    client.post("/lists/save", data={"sku": "BEE-1", "quantity": "3", "list_id": list_id})
    client.post("/lists/save", data={"sku": ["WAT-1", "NOPE-1"], "quantity": ["2", "1"], "list_id": list_id})
    page = client.get(f"/lists/{list_id}").get_data(as_text=True)
    assert "Kellerbier" in page and "Wasser" in page

    preview = client.get(f"/lists/{list_id}/order").get_data(as_text=True)
    assert "2 of 2 lines can be ordered" in preview
    assert client.post(f"/lists/{list_id}/order").headers["Location"] == "/cart"
    assert {i.product.sku: i.quantity for i in db.session.scalars(db.select(CartItem))} == {"BEE-1": 3, "WAT-1": 2}

    export = client.get(f"/lists/{list_id}.csv")
    assert export.mimetype == "text/csv" and "BEE-1" in export.get_data(as_text=True)
    imported = client.post(f"/lists/{list_id}/import", data={"lines": "WAT-1 4\nNOPE-2 1"}).get_data(as_text=True)
    assert "1 of 2 lines can be saved" in imported and "Unknown SKU “NOPE-2”." in imported


def test_the_cart_and_a_past_order_save_to_a_new_list(client, login_as, buyer, make_product):
    make_product(sku="BEE-1")
    login_as(buyer)
    client.post("/cart/add", data={"sku": "BEE-1", "quantity": "2"})
    cart = client.get("/cart").get_data(as_text=True)
    assert "Keep these products on a list" in cart
    client.post("/lists/save", data={"sku": "BEE-1", "quantity": "2", "new_name": "from the cart"})
    (saved,) = lists.lists_for(buyer)
    assert saved[0].name == "from the cart" and saved[1] == 1
