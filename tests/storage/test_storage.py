"""File storage shared by every host: the backend contract on the instance folder, the database (SQLite and
MariaDB) and a real S3-compatible store (SeaweedFS); two app instances with instance folders of their own
sharing pictures, reports and stock files; `flask storage migrate`; and what a failing storage answers."""

import io
import os
import secrets

import pytest
from PIL import Image
from sqlalchemy import func, select

from sipup import create_app
from sipup.cli.serve import _storage_problem
from sipup.config import ConfigError, parse_storage_url
from sipup.extensions import db
from sipup.models import Job, ProductImage, utcnow
from sipup.observability import health
from sipup.services import reports
from sipup.storage import DatabaseStorage, FolderStorage, Missing, ObjectStorage, get_storage
from tests.conftest import REDIS_URL, RequestScopedClient, _overrides, login
from tests.observability.test_readiness import small_disk  # noqa: F401 (a fixture: a 3 MB tmpfs)
from tests.servers import free_port

BOM = b"\xef\xbb\xbf"


def _picture(size=(40, 30)):
    buffer = io.BytesIO()
    Image.new("RGB", size, (200, 40, 40)).save(buffer, "PNG")
    return buffer.getvalue()


def _storage_url(request, kind):
    """SIPUP_STORAGE_URL of a kind; on the object store, a namespace (key prefix) of this test's own."""
    if kind == "database":
        return "database"
    if kind == "s3":
        return request.getfixturevalue("seaweed").url_for(f"t{secrets.token_hex(4)}")
    return None


@pytest.fixture
def make_host(backend, tmp_path):
    """Another app instance on the test database with an instance folder of its own (tmp_path/name), as a
    second host has; its requests run in app contexts of their own."""
    built = []

    def build(name, **settings):
        host = create_app({**_overrides(backend[1]), **settings}, instance_path=str(tmp_path / name))
        host.test_client_class = RequestScopedClient
        built.append(host)
        return host

    yield build
    for host in built:
        with host.app_context():
            db.engine.dispose()
        host.extensions["sipup_cache"].close()


@pytest.fixture
def staff(make_user, make_product):
    """A staff member and a product PIC-1 to give pictures and stock counts to."""
    make_product(sku="PIC-1", stock_on_hand=3)
    return make_user("staff")


def _signed_in(host, user):
    client = host.test_client()
    assert login(client, user).status_code == 302
    return client


@pytest.mark.parametrize("kind", ["folder", "database", "s3"])
def test_every_backend_keeps_lists_replaces_and_deletes_files(app, request, kind, tmp_path):
    if kind == "folder":
        storage = FolderStorage(str(tmp_path / "instance"), {"images": str(tmp_path / "pictures")})
    elif kind == "database":
        storage = DatabaseStorage()
    else:
        storage = ObjectStorage(parse_storage_url(_storage_url(request, kind)))
    assert storage.problem() is None
    assert storage.list("reports") == []

    storage.put("reports/a.csv", b"one", "text/csv")
    storage.put("reports/b.csv", b"two!", "text/csv")
    storage.put("images/c.webp", b"picture", "image/webp")

    assert storage.get("reports/a.csv") == b"one" and storage.exists("reports/a.csv")
    listed = sorted(storage.list("reports"))
    assert [(info.key, info.size) for info in listed] == [("reports/a.csv", 3), ("reports/b.csv", 4)]
    assert all(abs((utcnow() - info.modified).total_seconds()) < 300 for info in listed)
    assert [info.key for info in storage.list("images")] == ["images/c.webp"]
    storage.put("reports/a.csv", b"replaced", "text/csv")
    assert storage.get("reports/a.csv") == b"replaced"
    storage.delete("reports/a.csv")
    storage.delete("reports/a.csv")  # gone already: no error
    assert not storage.exists("reports/a.csv")
    with pytest.raises(Missing):
        storage.get("reports/a.csv")
    for bad in ("../secret_key", "reports/../sipup.db", "reports/", "Reports/x.csv", "reports/.hidden", "/etc/passwd"):
        with pytest.raises(ValueError):
            storage.put(bad, b"x", "text/plain")
    if kind == "folder":
        assert os.listdir(tmp_path / "pictures") == ["c.webp"]  # SIPUP_IMAGE_FOLDER holds the pictures


@pytest.mark.parametrize("kind", ["database", "s3"])
def test_a_second_host_serves_and_lists_what_the_first_one_stored(
    app, request, kind, make_host, staff, tmp_path, monkeypatch
):
    url = _storage_url(request, kind)
    first, second = make_host("host-a", STORAGE_URL=url), make_host("host-b", STORAGE_URL=url)
    on_a, on_b = _signed_in(first, staff), _signed_in(second, staff)

    uploaded = on_a.post("/admin/products/PIC-1/images", data={"image": (io.BytesIO(_picture()), "p.png")})
    assert uploaded.status_code == 302
    digest = db.session.scalar(select(ProductImage.digest))
    served = on_b.get(f"/images/{digest}-card.webp")
    assert served.status_code == 200 and served.mimetype == "image/webp"
    assert Image.open(io.BytesIO(served.data)).size == (40, 30)
    assert "max-age=31536000" in served.headers["Cache-Control"] and "immutable" in served.headers["Cache-Control"]
    reads = []
    monkeypatch.setattr(second.extensions["storage"], "get", reads.append)  # a 304 must not read the bytes
    again = on_b.get(f"/images/{digest}-card.webp", headers={"If-None-Match": served.headers["ETag"]})
    assert again.status_code == 304 and reads == [] and again.headers["ETag"] == served.headers["ETag"]
    monkeypatch.undo()
    assert not (tmp_path / "host-a" / "images").exists(), "nothing on the host's own disk"

    with first.app_context():  # what host A's worker does for the build_report job
        name = reports.build("receivables_ageing")
    assert name in on_b.get("/admin/reports").get_data(as_text=True)
    download = on_b.get(f"/admin/reports/{name}")
    assert download.status_code == 200 and download.data.startswith(BOM + b"Customer;")
    assert on_b.get("/admin/reports/receivables_ageing-1999-01-01.csv").status_code == 404


def test_a_stock_file_uploaded_on_one_host_is_applied_by_the_others_worker(
    app, request, make_host, staff, redis_namespace, seaweed
):
    shared = dict(STORAGE_URL=seaweed.url_for(f"t{secrets.token_hex(4)}"), REDIS_URL=REDIS_URL)
    first = make_host("host-a", REDIS_NAMESPACE=redis_namespace, **shared)
    second = make_host("host-b", REDIS_NAMESPACE=redis_namespace, **shared)
    data = b"sku,stock_on_hand\nPIC-1,70\nGHOST-1,2\n"

    on_b = _signed_in(second, staff)
    queued = on_b.post(
        "/admin/imports", data={"kind": "stock", "file": (io.BytesIO(data), "count.csv")}, follow_redirects=True
    )
    assert queued.status_code == 200 and "2 stock lines queued" in queued.get_data(as_text=True)
    with first.app_context():  # host A's `flask queue process`
        assert first.extensions["queue"].process(10)["run"] == 1
    job = db.session.scalar(select(Job).where(Job.name == "apply_stock_file"))
    assert job.status == "done", job.error
    page = on_b.get("/admin/imports").get_data(as_text=True)
    assert "1 stock level(s) applied" in page and "unknown SKU GHOST-1" in page


@pytest.mark.parametrize("kind", ["database", "s3"])
def test_storage_migrate_copies_the_instance_folders_files_and_is_safe_to_run_again(app, request, kind, make_host):
    picture = "images/" + "a" * 64 + "-card.webp"
    keys = (picture, "reports/receivables_ageing-2026-01-31.csv", "imports/stock-20260131-120000-abcdef.csv")
    alone = make_host("host")
    with alone.app_context():  # the command runs in the app context it finds
        for key in keys:
            get_storage().put(key, key.encode(), "application/octet-stream")
        said = alone.test_cli_runner().invoke(args=["storage", "migrate"])
    assert said.exit_code == 0 and "Storage is the instance folder" in said.output and "nothing to move" in said.output

    shared = make_host("host", STORAGE_URL=_storage_url(request, kind))  # the same instance folder
    with shared.app_context():
        first = shared.test_cli_runner().invoke(args=["storage", "migrate"])
        again = shared.test_cli_runner().invoke(args=["storage", "migrate"])
        assert [get_storage().get(key) for key in keys] == [key.encode() for key in keys]
    assert first.exit_code == 0, first.output
    assert "images: 1 copied, 0 already there" in first.output
    assert "Done: 3 file(s) copied, 0 already there." in first.output
    assert again.exit_code == 0 and "Done: 0 file(s) copied, 3 already there." in again.output


def test_an_object_store_that_is_down_answers_503_with_the_reason_and_keeps_nothing(app, make_host, staff):
    port = free_port()  # nothing listens there
    host = make_host("host", STORAGE_URL=f"s3://key:secret@127.0.0.1:{port}/sipup")
    client = _signed_in(host, staff)

    upload = client.post("/admin/products/PIC-1/images", data={"image": (io.BytesIO(_picture()), "p.png")})
    text = upload.get_data(as_text=True)
    assert upload.status_code == 503
    assert f"could not save the file: the object store at 127.0.0.1:{port} does not answer" in text
    assert "choose it and upload it again" in text
    assert db.session.scalar(select(func.count(ProductImage.id))) == 0

    stock = client.post(
        "/admin/imports", data={"kind": "stock", "file": (io.BytesIO(b"sku,stock_on_hand\nPIC-1,7\n"), "c.csv")}
    )
    assert stock.status_code == 503 and "The stock file was not queued: upload it again." in stock.get_data(
        as_text=True
    )
    assert db.session.scalar(select(func.count(Job.id))) == 0

    assert client.get(f"/images/{'b' * 64}-card.webp").status_code == 503
    listing = client.get("/admin/reports")
    assert listing.status_code == 503 and "could not list the files" in listing.get_data(as_text=True)
    with host.app_context():
        row = health.storage()
    assert row["state"] == "bad" and row["value"] == "s3: failing" and "does not answer" in row["detail"]


@pytest.mark.parametrize(
    "wrong, problem",
    [
        ("secret", "refused the access key or secret of SIPUP_STORAGE_URL ("),
        ("bucket", "the bucket no-such-bucket does not exist at http://127.0.0.1:"),
    ],
)
def test_wrong_credentials_or_a_missing_bucket_are_named_at_start_and_on_the_health_panel(
    app, make_host, seaweed, wrong, problem
):
    key, secret, bucket = seaweed.access_key, seaweed.secret_key, seaweed.bucket
    if wrong == "secret":
        secret = "wrong"
    else:
        bucket = "no-such-bucket"
    host = make_host("host", STORAGE_URL=f"s3://{key}:{secret}@127.0.0.1:{seaweed.port}/{bucket}")
    with host.app_context():
        row, line = health.storage(), _storage_problem()
    assert row["state"] == "bad" and problem in row["detail"]
    assert line.startswith(f"file storage http://127.0.0.1:{seaweed.port}/") and problem in line
    assert "starting anyway" in line and seaweed.secret_key not in line


def test_the_health_panel_names_a_working_storage(app, make_host, seaweed):
    with make_host("host", STORAGE_URL=seaweed.url).app_context():
        row = health.storage()
    assert row["state"] == "ok" and row["value"] == "s3" and "shared by every host" in row["detail"]


def test_a_full_disk_refuses_a_picture_with_503_and_the_reason(app, make_host, staff, small_disk):  # noqa: F811
    host = make_host("host", IMAGE_FOLDER=str(small_disk))
    client = _signed_in(host, staff)
    with open(small_disk / "filler", "wb") as filler:
        try:
            while True:
                filler.write(b"\0" * 65536)
                filler.flush()
        except OSError:
            pass

    upload = client.post("/admin/products/PIC-1/images", data={"image": (io.BytesIO(_picture()), "p.png")})

    assert upload.status_code == 503
    assert f"the disk holding {small_disk} is full" in upload.get_data(as_text=True)
    assert db.session.scalar(select(func.count(ProductImage.id))) == 0
    assert os.listdir(small_disk) == ["filler"], "no half-written file is left"
    os.remove(small_disk / "filler")
    assert (
        client.post("/admin/products/PIC-1/images", data={"image": (io.BytesIO(_picture()), "p.png")}).status_code
        == 302
    )


def test_a_storage_url_error_never_repeats_the_secret(tmp_path):
    with pytest.raises(ConfigError) as caught:
        create_app({"STORAGE_URL": "s3://key:topsecret@store.example.com:9000"}, instance_path=str(tmp_path))
    assert str(caught.value) == (
        "SIPUP_STORAGE_URL='s3://key:***@store.example.com:9000' must name a bucket after the host, "
        "as in s3://KEY:SECRET@host:port/bucket."
    )
