"""``manage.py check_storage`` against a real S3 server (SeaweedFS): the probe is
written, read back and deleted; a store that is away or refuses the key fails the
command with a message that names the setting."""

from __future__ import annotations

import pytest
from django.core.management import CommandError, call_command

from studyweb.env import media_storage
from tests.s3.conftest import s3_environ

pytestmark = pytest.mark.django_db


def test_probe_writes_reads_and_deletes(s3_media, running_seaweed, capsys):
    call_command("check_storage")
    out = capsys.readouterr().out
    assert "media store OK" in out and s3_media.bucket in out
    assert s3_media.keys() == []  # the probe is gone again


def test_filesystem_probe(tmp_path, settings, capsys):
    settings.MEDIA_ROOT = tmp_path
    call_command("check_storage")
    assert "MEDIA_ROOT" in capsys.readouterr().out
    assert not any(p.is_file() for p in tmp_path.rglob("*"))


def test_wrong_secret_is_refused(s3_media, running_seaweed, settings):
    config = media_storage(
        environ=s3_environ(running_seaweed, s3_media.bucket, AWS_SECRET_ACCESS_KEY="not-the-secret")
    )
    settings.STORAGES = {**settings.STORAGES, "default": config.backend}
    with pytest.raises(
        CommandError, match="refused it.*check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
    ):
        call_command("check_storage")


def test_unreachable_store_names_the_endpoint(settings):
    config = media_storage(
        environ={
            "MEDIA_STORAGE": "s3",
            "AWS_S3_ENDPOINT_URL": "http://127.0.0.1:9",  # discard: nothing answers
            "AWS_STORAGE_BUCKET_NAME": "media",
            "AWS_ACCESS_KEY_ID": "k",
            "AWS_SECRET_ACCESS_KEY": "s",
        }
    )
    settings.MEDIA_STORAGE = "s3"
    settings.STORAGES = {**settings.STORAGES, "default": config.backend}
    with pytest.raises(
        CommandError, match=r"writing the probe.*127\.0\.0\.1:9.*AWS_S3_ENDPOINT_URL"
    ):
        call_command("check_storage")
