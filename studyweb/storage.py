"""The media store: MEDIA_ROOT on this machine or an S3-compatible bucket
(MEDIA_STORAGE, studyweb.env.media_storage), behind Django's storage API.

Code that reads or writes media uses ``default_storage`` (or a FileField, which
does) and never a local path, so a web server and a GPU worker on other machines
share stimuli, uploads, exports and checkpoints through the store. What the store
cannot give (a path) comes from :func:`local_copy`; a store that does not answer
raises :class:`StoreUnavailable` naming the setting to look at.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import Storage, default_storage

try:
    from botocore.config import Config as _BotoConfig
    from botocore.exceptions import BotoCoreError, ClientError
    from storages.backends.s3 import S3Storage
except ImportError:  # django-storages[s3] not installed: only MEDIA_STORAGE=filesystem
    _BotoConfig = None
    BotoCoreError = ClientError = ()  # type: ignore[assignment,misc]
    S3Storage = object  # type: ignore[assignment,misc]

#: Where check_storage writes its probe (deleted again at once).
PROBE_PREFIX = "check_storage"


class StoreUnavailable(OSError):
    """The media store did not answer, refused the credentials, or lost a file."""


def _store_errors() -> tuple[type[BaseException], ...]:
    errors: tuple = (OSError,)
    if isinstance(BotoCoreError, type):
        errors += (BotoCoreError, ClientError)
    return errors


#: What a storage call raises when the store is away (OSError for the file system).
STORE_ERRORS = _store_errors()


def describe() -> str:
    """The store, as an error message names it."""
    if settings.MEDIA_STORAGE == "s3":
        options = settings.STORAGES["default"].get("OPTIONS", {})
        where = options.get("endpoint_url") or "AWS S3"
        return (
            f"the S3 store {where} (AWS_S3_ENDPOINT_URL), bucket "
            f"{options.get('bucket_name')!r} (AWS_STORAGE_BUCKET_NAME)"
        )
    return f"MEDIA_ROOT {settings.MEDIA_ROOT}"


def unavailable(exc: BaseException, doing: str) -> StoreUnavailable:
    """A StoreUnavailable that says what was being done, where, and why."""
    if isinstance(ClientError, type) and isinstance(exc, ClientError):
        code = str(exc.response.get("Error", {}).get("Code", ""))
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        hint = ""
        if status == 403 or code in ("403", "SignatureDoesNotMatch", "InvalidAccessKeyId"):
            hint = "; check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
        elif code in ("NoSuchBucket", "404") and doing.startswith("writing"):
            hint = "; check AWS_STORAGE_BUCKET_NAME (the bucket must exist)"
        return StoreUnavailable(f"{doing}: {describe()} refused it ({code or status}: {exc}){hint}")
    return StoreUnavailable(f"{doing}: {describe()} did not answer ({type(exc).__name__}: {exc})")


if S3Storage is not object:

    class MediaS3Storage(S3Storage):
        """django-storages' S3Storage with timeouts: a store that is away fails a job
        within seconds (with a message) instead of holding a worker for minutes."""

        def __init__(self, **settings):
            super().__init__(**settings)
            # Built here, not in settings: it carries the addressing style and
            # signature version that a client_config would otherwise replace.
            self.client_config = _BotoConfig(
                s3={"addressing_style": self.addressing_style},
                signature_version=self.signature_version,
                connect_timeout=5,
                read_timeout=60,
                retries={"max_attempts": 3, "mode": "standard"},
                # Checksums on every request: SeaweedFS and older Ceph/MinIO reject the
                # trailing-checksum uploads newer botocore sends by default.
                request_checksum_calculation="when_required",
                response_checksum_validation="when_required",
            )


def is_local(storage: Storage | None = None) -> bool:
    """Whether the store's files have paths on this machine."""
    storage = storage or default_storage
    try:
        storage.path("x")
    except NotImplementedError:
        return False
    return True


@contextlib.contextmanager
def local_copy(name: str, *, storage: Storage | None = None, suffix: str = "") -> Iterator[Path]:
    """A path to the stored file ``name``: the file itself on a local store, else a
    temporary copy (deleted on exit). Raises StoreUnavailable."""
    storage = storage or default_storage
    try:
        path = Path(storage.path(name))
    except NotImplementedError:
        pass
    else:
        if not path.is_file():
            raise StoreUnavailable(f"{name} is missing from {describe()}")
        yield path
        return
    with tempfile.NamedTemporaryFile(suffix=suffix or Path(name).suffix) as copy:
        try:
            with storage.open(name, "rb") as source:
                shutil.copyfileobj(source, copy, 1024 * 1024)
        except STORE_ERRORS as exc:
            raise unavailable(exc, f"reading {name}") from exc
        copy.flush()
        yield Path(copy.name)


_CLIENTS: dict[tuple, object] = {}


def _shared_client(storage) -> object:
    """One botocore client per store and key for the process: clients are thread-safe,
    and django-storages makes one per thread (and per storage object), which costs
    more than the reads of a whole batch."""
    key = (storage.endpoint_url, storage.access_key, storage.region_name, storage.bucket_name)
    client = _CLIENTS.get(key)
    if client is None:
        client = _CLIENTS.setdefault(key, storage.connection.meta.client)
    return client


def read_bytes(name: str, *, storage: Storage | None = None) -> bytes:
    """The stored file's bytes. From S3 with one GET: the storage's file object
    spools through s3transfer's thread pool first, several times slower for the
    small files that stimuli are."""
    storage = storage or default_storage
    try:
        if S3Storage is not object and isinstance(storage, S3Storage):
            from storages.utils import clean_name

            key = storage._normalize_name(clean_name(name))
            client = _shared_client(storage)
            return client.get_object(Bucket=storage.bucket_name, Key=key)["Body"].read()
        with storage.open(name, "rb") as handle:
            return handle.read()
    except STORE_ERRORS as exc:
        raise unavailable(exc, f"reading {name}") from exc


def save_file(name: str, source: Path, *, storage: Storage | None = None) -> str:
    """Store a local file under ``name``; returns the name the store gave it."""
    storage = storage or default_storage
    try:
        with source.open("rb") as handle:
            from django.core.files import File

            return storage.save(name, File(handle, name=source.name))
    except STORE_ERRORS as exc:
        raise unavailable(exc, f"writing {name}") from exc


def cached_copy(name: str, sha256: str, *, cache_dir: Path, storage: Storage | None = None) -> Path:
    """A local copy of the stored file ``name`` whose content has ``sha256``, kept in
    ``cache_dir`` under its digest (a worker downloads a checkpoint once, training a
    study's images once). The digest is verified on every download; a copy that does
    not match is never kept."""
    storage = storage or default_storage
    cache_dir.mkdir(parents=True, exist_ok=True)
    target = cache_dir / f"{sha256}{Path(name).suffix}"
    if target.is_file():
        return target
    fd, partial = tempfile.mkstemp(dir=cache_dir, suffix=".part")
    digest = hashlib.sha256()
    try:
        with os.fdopen(fd, "wb") as out:
            try:
                with storage.open(name, "rb") as source:
                    while block := source.read(4 * 1024 * 1024):
                        digest.update(block)
                        out.write(block)
            except STORE_ERRORS as exc:
                raise unavailable(exc, f"reading {name}") from exc
        if digest.hexdigest() != sha256:
            raise StoreUnavailable(
                f"{name} in {describe()} has sha256 {digest.hexdigest()[:12]}..., "
                f"registered {sha256[:12]}..."
            )
        os.replace(partial, target)  # atomic: a reader never sees half a checkpoint
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(partial)
    return target


def probe(storage: Storage | None = None) -> str:
    """Write, read back and delete a small object; returns what was checked. Raises
    StoreUnavailable saying which step failed."""
    storage = storage or default_storage
    body = secrets.token_bytes(32)
    name = f"{PROBE_PREFIX}/probe-{secrets.token_hex(8)}.bin"
    step = "writing"
    try:
        stored = storage.save(name, ContentFile(body))
        step = "reading"
        with storage.open(stored, "rb") as handle:
            back = handle.read()
        if back != body:
            raise StoreUnavailable(f"{describe()} gave back other bytes than were written")
        step = "deleting"
        storage.delete(stored)
        if storage.exists(stored):
            raise StoreUnavailable(f"{describe()} still holds {stored} after deleting it")
    except StoreUnavailable:
        raise
    except STORE_ERRORS as exc:
        raise unavailable(exc, f"{step} the probe object {name}") from exc
    return f"wrote, read and deleted {stored} in {describe()}"


def media_store_check(app_configs=None, **kwargs) -> list:
    """A system check (tag "storage"): with MEDIA_STORAGE=s3 the store must take a
    probe object, so that ``runserver``, ``migrate``, ``check`` and the other commands
    stop at start-up, naming the setting to look at, instead of failing later on an
    upload or a worker. Gunicorn runs no checks: the deployment runs
    ``manage.py check_storage`` before starting it (docs/deployment.md)."""
    from django.core import checks

    if getattr(settings, "MEDIA_STORAGE", "filesystem") != "s3":
        return []
    try:
        probe()
    except StoreUnavailable as exc:
        return [
            checks.Error(
                f"the media store does not answer: {exc}",
                hint="check AWS_S3_ENDPOINT_URL, AWS_STORAGE_BUCKET_NAME and the keys; "
                "manage.py check_storage tries again",
                id="studyweb.E001",
            )
        ]
    return []
