"""Upload amplification (issue 15, class 8): small uploads that decode to huge images.

The attack found: a 357 KB zip of 220 copies of a 1.5 KB lossless WebP of 6000 x 6600
pixels took 85 s of CPU in one request (each copy fully decoded before the duplicates
were found). Now a copy costs one sha256, and the pixels one request may decode are
capped (MAX_REQUEST_IMPORT_PIXELS; a larger import runs as a job on a worker).

Bounded in CPU time with a wide margin (each 40-megapixel decode takes about 0.4 s of
CPU here); the decode count is the exact check.
"""

from __future__ import annotations

import io
import struct
import time
import zipfile
import zlib

import pytest
from PIL import Image, ImageFile
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from annotation.models import Stimulus
from tests.factories import StudyFactory, UserFactory

pytestmark = pytest.mark.django_db
SIZE = (6000, 6600)  # 39.6 megapixels, under MAX_IMAGE_PIXELS (40 M)


@pytest.fixture
def api():
    owner = UserFactory(username="amp-owner", is_staff=True)
    StudyFactory(slug="amp", owner=owner)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=owner).key}")
    return client


@pytest.fixture
def decodes(monkeypatch):
    """How many large images were decoded (pixels loaded), whatever the code path."""
    counted = []
    original = ImageFile.ImageFile.load

    def load(self):
        if self.size == SIZE:
            counted.append(self.format)
        return original(self)

    monkeypatch.setattr(ImageFile.ImageFile, "load", load)
    return counted


def _zip(entries: list[tuple[str, bytes]]) -> io.BytesIO:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in entries:
            zf.writestr(name, data)
    buffer.seek(0)
    buffer.name = "stimuli.zip"
    return buffer


def _png_variants(n: int) -> list[bytes]:
    """n distinct PNGs of SIZE pixels, encoded once: each gets its own tEXt chunk
    after the header (a different sha256, the same pixels to decode)."""
    out = io.BytesIO()
    Image.new("RGB", SIZE, (120, 130, 140)).save(out, "PNG")
    png = out.getvalue()
    head, tail = png[: 8 + 25], png[8 + 25 :]  # signature + IHDR chunk
    variants = []
    for i in range(n):
        body = b"tEXt" + b"Comment\x00" + f"copy {i}".encode()
        chunk = struct.pack(">I", len(body) - 4) + body + struct.pack(">I", zlib.crc32(body))
        variants.append(head + chunk + tail)
    return variants


def test_220_copies_of_a_tiny_lossless_webp_cost_one_decode(api, decodes):
    webp = io.BytesIO()
    Image.new("RGB", SIZE, (120, 130, 140)).save(webp, "WEBP", lossless=True)
    assert len(webp.getvalue()) < 4096  # a few KB that decode to 119 MB
    archive = _zip([(f"copy-{i:03d}.webp", webp.getvalue()) for i in range(220)])
    assert len(archive.getvalue()) < 600_000

    started = time.process_time()
    answer = api.post("/api/v1/studies/amp/stimuli/", {"file": archive}, format="multipart")
    cpu = time.process_time() - started

    assert answer.status_code == 201, answer.content[:500]
    body = answer.json()
    assert (body["imported"], body["skipped"], body["rejected"]) == (1, 219, 0)
    assert Stimulus.objects.filter(study__slug="amp").count() == 1
    assert len(decodes) == 1
    assert cpu < 10, f"{cpu:.1f} s of CPU for one request (85 s before the fix)"


def test_distinct_large_images_stop_at_the_requests_pixel_budget(api, decodes, settings):
    """Distinct files defeat de-duplication; the request's pixel budget stops them, from
    the image headers, before their pixels are decoded, and says what to do instead."""
    settings.MAX_REQUEST_IMPORT_PIXELS = 100_000_000  # room for two of them
    archive = _zip([(f"variant-{i:02d}.png", data) for i, data in enumerate(_png_variants(20))])

    started = time.process_time()
    answer = api.post("/api/v1/studies/amp/stimuli/", {"file": archive}, format="multipart")
    cpu = time.process_time() - started

    assert answer.status_code == 201, answer.content[:500]
    body = answer.json()
    assert (body["imported"], body["rejected"]) == (2, 18)
    refused = [f for f in body["files"] if f["status"] == "rejected"]
    assert all("pixel budget" in f["reason"] and "background" in f["reason"] for f in refused)
    assert len(decodes) == 2
    assert cpu < 10, f"{cpu:.1f} s of CPU for one request"


def test_the_request_budget_is_the_smaller_of_the_two(settings):
    from annotation.importing import Limits

    settings.MAX_IMPORT_PIXELS = 300
    settings.MAX_REQUEST_IMPORT_PIXELS = 500
    assert Limits.for_request().max_import_pixels == 300
    settings.MAX_IMPORT_PIXELS = 5_000
    assert Limits.for_request().max_import_pixels == 500
    assert Limits.from_settings().max_import_pixels == 5_000
