"""Files in an S3-compatible object store (SIPUP_STORAGE_URL=s3://KEY:SECRET@host:port/bucket, s3+https://
with TLS) through the MinIO client: AWS S3, MinIO, SeaweedFS, Ceph, Garage... shared by every host.

Requests time out after a few seconds and are tried twice more, so a store that is down costs an upload a
few seconds and a clear message, never a hung page.
"""

import io
import os

import certifi
import urllib3
from minio import Minio
from minio.error import MinioException, S3Error

from sipup.storage.base import Missing, StorageUnavailable, StoredInfo, check_key

MISSING_CODES = {"NoSuchKey", "NoSuchObject", "ResourceNotFound"}
REFUSED_CODES = {"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken"}


def _http_client():
    # Short timeouts and few retries: the default client retries five times with growing pauses.
    return urllib3.PoolManager(
        timeout=urllib3.Timeout(connect=3, read=30),
        maxsize=16,
        retries=urllib3.Retry(total=2, backoff_factor=0.1, status_forcelist=[500, 502, 503, 504]),
        cert_reqs="CERT_REQUIRED",
        ca_certs=os.environ.get("SSL_CERT_FILE") or certifi.where(),
    )


class ObjectStorage:
    """Files as objects of one bucket, under an optional key prefix."""

    name = "s3"

    def __init__(self, location):
        self.location = location
        self.client = Minio(
            location.endpoint,
            access_key=location.access_key,
            secret_key=location.secret_key,
            secure=location.secure,
            region=location.region,
            http_client=_http_client(),
        )

    @property
    def where(self):
        scheme = "https" if self.location.secure else "http"
        prefix = f"/{self.location.prefix}" if self.location.prefix else ""
        return f"{scheme}://{self.location.endpoint}/{self.location.bucket}{prefix}"

    def _object(self, key):
        prefix = self.location.prefix
        return f"{prefix}/{check_key(key)}" if prefix else check_key(key)

    def put(self, key, data, content_type):
        """Store a file, replacing one of the same key."""
        name = self._object(key)
        self._call(
            "save", self.client.put_object, self.location.bucket, name, io.BytesIO(data), len(data), content_type
        )

    def get(self, key):
        """The bytes of a file; Missing when there is none."""
        name = self._object(key)
        try:
            response = self._call("read", self.client.get_object, self.location.bucket, name)
        except Missing:
            raise Missing(key) from None
        try:
            return response.read()
        except urllib3.exceptions.HTTPError as exc:
            raise StorageUnavailable("read", self._fault(exc)) from exc
        finally:
            response.close()
            response.release_conn()

    def exists(self, key):
        """Whether a file is stored under key."""
        try:
            self._call("read", self.client.stat_object, self.location.bucket, self._object(key))
        except Missing:
            return False
        return True

    def list(self, area):
        """Every file of an area ("reports"), as StoredInfo."""
        prefix = f"{area.strip('/')}/"
        start = len(self.location.prefix) + 1 if self.location.prefix else 0
        if start:
            prefix = f"{self.location.prefix}/{prefix}"
        objects = self._call(
            "list", lambda: list(self.client.list_objects(self.location.bucket, prefix=prefix, recursive=True))
        )
        return [
            StoredInfo(item.object_name[start:], item.size, item.last_modified.replace(tzinfo=None))
            for item in objects
            if not item.is_dir
        ]

    def delete(self, key):
        """Remove a file; one that is not there is no error."""
        self._call("delete", self.client.remove_object, self.location.bucket, self._object(key))

    def problem(self):
        """A line when the bucket cannot be used (no answer, refused credentials, no such bucket), else None."""
        try:
            if not self._call("read", self.client.bucket_exists, self.location.bucket):
                return f"the bucket {self.location.bucket} does not exist at {self.where.rsplit('/', 1)[0]}; create it"
        except StorageUnavailable as exc:
            return exc.reason
        return None

    def _call(self, action, function, *args):
        """function(*args), with the store's faults as StorageUnavailable and a missing object as Missing."""
        try:
            return function(*args)
        except S3Error as exc:
            if exc.code in MISSING_CODES:
                raise Missing(args[1] if len(args) > 1 else "") from None
            raise StorageUnavailable(action, self._fault(exc)) from exc
        except (MinioException, urllib3.exceptions.HTTPError, OSError, ValueError) as exc:
            raise StorageUnavailable(action, self._fault(exc)) from exc

    def _fault(self, error):
        store = f"the object store at {self.location.endpoint}"
        if isinstance(error, S3Error):
            if error.code in REFUSED_CODES:
                return f"{store} refused the access key or secret of SIPUP_STORAGE_URL ({error.code})"
            if error.code == "NoSuchBucket":
                return f"{store} has no bucket {self.location.bucket}; create it"
            return f"{store} answered {error.code}"
        return f"{store} does not answer ({type(error).__name__})"
