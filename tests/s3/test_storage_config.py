"""MEDIA_STORAGE and the AWS_* variables: parsed strictly, each error naming its
variable (studyweb.env.media_storage), as the other settings are."""

from __future__ import annotations

import pytest

from studyweb.env import EnvError, media_storage

S3 = {
    "MEDIA_STORAGE": "s3",
    "AWS_S3_ENDPOINT_URL": "https://s3.lab.example.org:9000",
    "AWS_STORAGE_BUCKET_NAME": "study-media",
    "AWS_ACCESS_KEY_ID": "key",
    "AWS_SECRET_ACCESS_KEY": "secret",
}


def test_filesystem_is_the_default():
    config = media_storage(environ={})
    assert config.kind == "filesystem"
    assert config.backend == {"BACKEND": "django.core.files.storage.FileSystemStorage"}
    assert config.origin is None


def test_s3_with_an_endpoint():
    config = media_storage(
        environ={**S3, "AWS_S3_REGION_NAME": "eu-1", "AWS_LOCATION": "/studyweb/media/"}
    )
    options = config.backend["OPTIONS"]
    assert config.backend["BACKEND"] == "studyweb.storage.MediaS3Storage"
    assert options["endpoint_url"] == "https://s3.lab.example.org:9000"
    assert options["bucket_name"] == "study-media"
    assert options["location"] == "studyweb/media"
    assert options["region_name"] == "eu-1"
    assert options["addressing_style"] == "path"
    assert options["querystring_auth"] is True
    assert config.origin == "https://s3.lab.example.org:9000"


def test_aws_without_an_endpoint_uses_the_buckets_own_host():
    environ = {k: v for k, v in S3.items() if k != "AWS_S3_ENDPOINT_URL"}
    config = media_storage(environ={**environ, "AWS_S3_REGION_NAME": "eu-central-1"})
    assert config.origin == "https://study-media.s3.eu-central-1.amazonaws.com"
    assert config.backend["OPTIONS"]["addressing_style"] == "virtual"


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"MEDIA_STORAGE": "nfs"}, "MEDIA_STORAGE"),
        ({"AWS_STORAGE_BUCKET_NAME": ""}, "AWS_STORAGE_BUCKET_NAME"),
        ({"AWS_STORAGE_BUCKET_NAME": "Study_Media"}, "AWS_STORAGE_BUCKET_NAME"),
        ({"AWS_STORAGE_BUCKET_NAME": "ab"}, "AWS_STORAGE_BUCKET_NAME"),
        ({"AWS_S3_ENDPOINT_URL": "s3.lab.example.org"}, "AWS_S3_ENDPOINT_URL"),
        ({"AWS_S3_ENDPOINT_URL": "ftp://s3.lab.example.org"}, "AWS_S3_ENDPOINT_URL"),
        ({"AWS_S3_ENDPOINT_URL": "https://s3.example.org:port"}, "AWS_S3_ENDPOINT_URL"),
        ({"AWS_S3_ENDPOINT_URL": "https://s3.example.org/bucket"}, "AWS_S3_ENDPOINT_URL"),
        ({"AWS_SECRET_ACCESS_KEY": ""}, "AWS_SECRET_ACCESS_KEY"),
        ({"AWS_ACCESS_KEY_ID": ""}, "AWS_ACCESS_KEY_ID"),
        ({"AWS_LOCATION": "media/../other"}, "AWS_LOCATION"),
        ({"AWS_QUERYSTRING_EXPIRE": "10"}, "AWS_QUERYSTRING_EXPIRE"),
        ({"AWS_QUERYSTRING_EXPIRE": "soon"}, "AWS_QUERYSTRING_EXPIRE"),
    ],
)
def test_a_malformed_store_names_its_variable(change, named):
    with pytest.raises(EnvError, match=named):
        media_storage(environ={**S3, **change})


def test_start_up_stops_on_a_malformed_store(tmp_path):
    """The settings module itself refuses it, so manage.py and workers stop at once."""
    import os
    import subprocess
    import sys

    env = {**os.environ, **S3, "AWS_S3_ENDPOINT_URL": "not a url", "DEBUG": "1"}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    result = subprocess.run(
        [sys.executable, "manage.py", "check"],
        env={**env, "DJANGO_SETTINGS_MODULE": "studyweb.settings", "VAR_DIR": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "AWS_S3_ENDPOINT_URL" in result.stderr


def test_start_up_stops_on_an_unreachable_store(tmp_path):
    """A well-formed store that does not answer: the system checks (run by runserver,
    migrate, check and the other commands) stop with the variable to look at."""
    import os
    import subprocess
    import sys

    env = {**os.environ, **S3, "AWS_S3_ENDPOINT_URL": "http://127.0.0.1:9", "DEBUG": "1"}
    env.update(DJANGO_SETTINGS_MODULE="studyweb.settings", VAR_DIR=str(tmp_path))
    result = subprocess.run(
        [sys.executable, "manage.py", "check"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0, result.stdout
    assert "studyweb.E001" in result.stderr and "AWS_S3_ENDPOINT_URL" in result.stderr
    # The filesystem default probes nothing.
    env.update(MEDIA_STORAGE="filesystem")
    fine = subprocess.run(
        [sys.executable, "manage.py", "check"], env=env, capture_output=True, text=True, timeout=60
    )
    assert fine.returncode == 0, fine.stderr
