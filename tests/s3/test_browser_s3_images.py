"""A rater in real Chromium, under the real Content-Security-Policy, with
MEDIA_STORAGE=s3 (SeaweedFS): the image comes from the store by a presigned URL,
not through the web process, and nothing is blocked."""

from __future__ import annotations

import pytest

from annotation.models import Rating
from tests.test_browser_rating import make_study

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("serve_media"),
]


def test_a_rater_sees_the_image_from_the_store(live_server, csp_page, s3_media):
    page, violations = csp_page
    store = s3_media.server.endpoint
    from_store: list[tuple[str, int]] = []
    through_web: list[str] = []

    def seen(response):
        if response.url.startswith(store):
            from_store.append((response.url, response.status))
        elif "/media/" in response.url:
            through_web.append(response.url)

    page.on("response", seen)
    study = make_study("s3web")
    assert set(s3_media.keys("stimuli/")) == {s.image.name for s in study.stimuli.all()}
    page.goto(f"{live_server.url}/s/{study.slug}/?PROLIFIC_PID=s3-1")
    page.click("#agree")
    page.click("#start")
    image = page.locator("#stimulus")
    page.locator("input.slider").first.wait_for()
    image.wait_for()
    src = image.get_attribute("src")
    assert src.startswith(f"{store}/{s3_media.bucket}/{s3_media.prefix}/stimuli/")
    assert "X-Amz-Signature=" in src
    page.wait_for_timeout(200)
    assert image.evaluate("img => img.complete && img.naturalWidth") == 32  # never upscaled
    for slider in page.locator("input.slider").all():
        slider.focus()
        page.keyboard.press("ArrowRight")
    page.locator("#rate-submit:enabled").wait_for()
    page.click("#rate-submit")
    page.locator("#progress-text").filter(has_text="Image 2 of 5").wait_for()
    assert Rating.objects.count() == 1
    assert from_store and all(status == 200 for _, status in from_store)
    assert through_web == []
    assert violations == []
