"""Viewing conditions in real Chromium (issue 14, item 5): what the rate page reports
is stored with each rating and its session; the study's options (a minimum window,
no touch devices, native device pixels) are applied on the page before any rating."""

from __future__ import annotations

import pytest
from django.core.files.base import ContentFile

from annotation.models import Rating, Session
from tests.browser import new_tab
from tests.factories import StimulusFactory, StudyFactory, png_bytes

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("serve_media"),
]


def make_study(slug: str, **fields):
    values = {
        "protocol": "perspectives",
        "session_size": 2,
        "ratings_per_stimulus": 1,
        "min_view_seconds": 0.2,
        **fields,
    }
    study = StudyFactory(slug=slug, **values)
    for i in range(2):  # files of the size the rows say (64 x 48)
        image = ContentFile(png_bytes((10 * i, 90, 160), size=(64, 48)), name=f"{slug}-{i}.png")
        StimulusFactory(study=study, width=64, height=48, image=image)
    return study


def open_rate_page(page, live_server, study, pid: str) -> None:
    page.goto(f"{live_server.url}/s/{study.slug}/?PROLIFIC_PID={pid}&STUDY_ID=s&SESSION_ID=x")
    page.click("#agree")
    page.click("#start")
    page.locator("input.slider").first.wait_for(state="attached")


def rate_one(page) -> None:
    for slider in page.locator("input.slider").all():
        slider.focus()
        page.keyboard.press("ArrowRight")
    page.locator("#rate-submit:enabled").wait_for()
    page.click("#rate-submit")


def context(browser, **options):
    ctx, tab, _ = new_tab(browser, **options)
    return ctx, tab


def test_conditions_are_stored_with_the_rating_and_its_session(live_server, browser):
    ctx, page = context(browser)
    try:
        study = make_study("viewing")
        open_rate_page(page, live_server, study, "v-1")
        rate_one(page)
        page.locator("#progress-text", has_text="Image 2 of 2").wait_for()
    finally:
        ctx.close()
    rating = Rating.objects.get(rater__external_id="v-1")
    assert (rating.shown_css_width, rating.shown_css_height) == (64, 48)  # never upscaled
    assert (rating.shown_device_width, rating.shown_device_height) == (64, 48)
    session = Session.objects.get(rater__external_id="v-1")
    assert (session.viewport_width, session.viewport_height) == (1280, 720)
    assert session.device_pixel_ratio == 1 and session.browser == "chrome"
    assert session.touch is False and session.screen_width >= 1280


def test_a_window_under_the_minimum_hides_the_image_until_it_is_large_enough(live_server, browser):
    ctx, page = context(browser)
    try:
        study = make_study("viewing-min", min_viewport_width=1600, min_viewport_height=700)
        open_rate_page(page, live_server, study, "v-2")
        notice = page.locator("#viewing-refused")
        notice.wait_for()
        assert "1600 × 700" in notice.inner_text() and "1280 × 720" in notice.inner_text()
        assert page.locator("#work").is_hidden()
        page.set_viewport_size({"width": 1700, "height": 900})
        notice.wait_for(state="hidden")
        rate_one(page)
        page.locator("#progress-text", has_text="Image 2 of 2").wait_for()
    finally:
        ctx.close()
    assert Session.objects.get(rater__external_id="v-2").viewport_width == 1700


def test_a_touch_device_is_told_to_use_a_computer(live_server, browser):
    ctx, page = context(
        browser, viewport={"width": 390, "height": 844}, has_touch=True, is_mobile=True
    )
    try:
        study = make_study("viewing-touch", refuse_touch=True)
        open_rate_page(page, live_server, study, "v-3")
        notice = page.locator("#viewing-refused")
        notice.wait_for()
        assert "touch device" in notice.inner_text()
        assert page.locator("#rate-submit").is_disabled()
    finally:
        ctx.close()
    assert not Rating.objects.filter(rater__external_id="v-3").exists()


def test_native_pixels_show_one_image_pixel_per_device_pixel(live_server, browser):
    ctx, page = context(browser, device_scale_factor=2)
    try:
        study = make_study("viewing-native", native_pixels=True)
        open_rate_page(page, live_server, study, "v-4")
        page.locator("#stimulus.native-pixels").wait_for()  # rate.js has sized it
        box = page.locator("#stimulus").bounding_box()
        assert (round(box["width"]), round(box["height"])) == (32, 24)
        rate_one(page)
        page.locator("#progress-text", has_text="Image 2 of 2").wait_for()
    finally:
        ctx.close()
    rating = Rating.objects.get(rater__external_id="v-4")
    assert (rating.shown_device_width, rating.shown_device_height) == (64, 48)
    assert Session.objects.get(rater__external_id="v-4").device_pixel_ratio == 2
