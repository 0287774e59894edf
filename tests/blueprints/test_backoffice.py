"""The back office at scale: every list paged with counts, orders found in any case, product pictures."""

import functools
import io

import pytest
from PIL import Image

from sipup.extensions import db
from sipup.models import Order, ProductImage, utcnow
from sipup.services import orders as order_service


@pytest.fixture
def office(client, make_user, login_as):
    login_as(make_user("staff"))
    return client


def _orders(company, buyer, count, po="PO"):
    now = utcnow().replace(microsecond=0)
    made = []
    for n in range(count):
        order = Order(company_id=company.id, buyer_id=buyer.id, po_reference=f"{po}-{n}", created_at=now)
        db.session.add(order)
        db.session.flush()
        order.number = order_service.order_number(order.id, now)
        made.append(order)
    db.session.commit()
    return made


def test_staff_page_through_orders_with_counts(office, make_company, make_user):
    company = make_company(name="Bar Centrale")
    _orders(company, make_user("buyer", company), 65)

    first = office.get("/admin/orders").get_data(as_text=True)
    third = office.get("/admin/orders?page=3").get_data(as_text=True)

    assert "65 orders · showing 1–30" in first and "Page 1 of 3" in first and "Next →" in first
    assert "65 orders · showing 61–65" in third and "Next →" not in third
    past = office.get("/admin/orders?page=99999").get_data(as_text=True)
    assert "65 orders · showing 61–65" in past and "Page 3 of 3" in past  # past the last page: the last
    huge = office.get("/admin/orders?page=9223372036854775807").get_data(as_text=True)
    assert "65 orders · showing 1–30" in huge and "is not a page number; showing page 1." in huge


def test_order_search_finds_numbers_po_companies_and_buyers_in_any_case(office, make_company, make_user):
    alpha, beta = make_company(name="Café Seeblick"), make_company(name="Hotel Linde")
    ann, bob = (
        make_user("buyer", alpha, email="Ann@Seeblick.example"),
        make_user("buyer", beta, email="bob@linde.example"),
    )
    mine = _orders(alpha, ann, 3, po="Weekly-Bar")
    theirs = _orders(beta, bob, 2, po="KITCHEN")

    def found(query):
        page = office.get("/admin/orders", query_string={"q": query}).get_data(as_text=True)
        return {o.number for o in mine + theirs if o.number in page}

    assert found("weekly-bar") == {o.number for o in mine}  # a PO reference by its start, any case
    assert found("kitchen-1") == {theirs[1].number}
    assert found("seeblick") == {o.number for o in mine}  # company name (and the buyer's e-mail)
    assert found("BOB@LINDE") == {o.number for o in theirs}
    assert found(theirs[0].number) == {theirs[0].number}
    assert found(str(theirs[0].id)) == {theirs[0].number}
    assert found("nothing-like-it") == set()


def test_companies_and_price_list_tiers_are_paged_and_searchable(office, make_company, make_product, make_price_list):
    for n in range(55):
        make_company(name=f"Kiosk {n:02d}")
    products = [make_product(name=f"Lager {n}" if n % 2 else f"Cola {n}") for n in range(60)]
    price_list = make_price_list("Gastro", [(p, 1, "9.00") for p in products])

    companies = office.get("/admin/companies?page=2").get_data(as_text=True)
    tiers = office.get(f"/admin/price-lists/{price_list.id}").get_data(as_text=True)
    lagers = office.get(f"/admin/price-lists/{price_list.id}?q=LAGER").get_data(as_text=True)

    assert "55 companies · showing 51–55" in companies and "Kiosk 54" in companies and "Kiosk 00" not in companies
    assert "60 tiers · showing 1–50" in tiers and f"/admin/price-lists/{price_list.id}?page=2" in tiers
    assert "30 tiers" in lagers and "Cola" not in lagers


def _picture(fmt="PNG", size=(40, 30)):
    buffer = io.BytesIO()
    Image.new("RGB", size, (200, 40, 40)).save(buffer, fmt)
    return buffer.getvalue()


@functools.cache
def _bomb():
    """A PNG of 440 KB and 144 million pixels (432 MB decoded), drawn once for every backend: it takes seconds."""
    return _picture(size=(12_000, 12_000))


def test_staff_upload_a_picture_and_buyers_see_its_rendition(app, office, make_product):
    product = make_product(sku="PIC-1")

    response = office.post("/admin/products/PIC-1/images", data={"image": (io.BytesIO(_picture()), "p.png")})

    assert response.status_code == 302
    image = db.session.scalar(db.select(ProductImage).where(ProductImage.product_id == product.id))
    with office.get(f"/images/{image.digest}-card.webp") as served:
        assert served.status_code == 200 and served.mimetype == "image/webp"
        assert "max-age=31536000" in served.headers["Cache-Control"] and "immutable" in served.headers["Cache-Control"]
        assert Image.open(io.BytesIO(served.data)).size == (40, 30)  # never enlarged
    assert office.get(f"/images/{image.digest}-huge.webp").status_code == 404


@pytest.mark.parametrize(
    "data, message",
    [
        (b"%PDF-1.4 not a picture", "is not a picture sipup can read"),
        (_picture()[:60], "damaged or cut short"),
        (_picture("GIF"), "upload a JPEG, PNG or WebP"),
        (_picture(size=(7000, 10)), "at most 6000 a side"),
        (b"", "Choose a picture"),
    ],
)
def test_uploads_that_are_no_good_picture_are_refused_and_nothing_is_stored(app, office, make_product, data, message):
    make_product(sku="PIC-2")

    response = office.post("/admin/products/PIC-2/images", data={"image": (io.BytesIO(data), "x.jpg")})

    assert response.status_code == 422
    assert message in response.get_data(as_text=True)
    assert db.session.scalar(db.select(db.func.count(ProductImage.id))) == 0


def test_a_decompression_bomb_is_refused(app, office, make_product):
    make_product(sku="PIC-3")
    app.config["IMAGE_MAX_SIDE"] = 100_000  # the side check alone would let it through
    bomb = _bomb()

    response = office.post("/admin/products/PIC-3/images", data={"image": (io.BytesIO(bomb), "bomb.png")})

    assert response.status_code == 422
    assert "decompress to far too many pixels" in response.get_data(as_text=True)
