"""A rater whose browser asks for Chinese does the whole study in Chinese, in real
Chromium under the real Content-Security-Policy: every page, and every word the rate
page's script writes, from the catalogues; no English interface string is left
(checked against the catalogues' own English)."""

from __future__ import annotations

from pathlib import Path

import polib
import pytest

from annotation.models import Rating
from tests.browser import new_tab
from tests.factories import StimulusFactory, StudyFactory
from tests.test_i18n import english_left

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("serve_media"),
]
LOCALE = Path(__file__).resolve().parent.parent / "locale" / "zh_Hans" / "LC_MESSAGES"


@pytest.fixture
def chinese_tab(browser):
    """A tab whose browser asks for Simplified Chinese, with the real CSP."""
    context, tab, violations = new_tab(
        browser, viewport={"width": 1280, "height": 800}, locale="zh-CN"
    )
    yield tab, violations
    context.close()


def catalogue() -> polib.POFile:
    merged = polib.pofile(str(LOCALE / "django.po"))
    for entry in polib.pofile(str(LOCALE / "djangojs.po")):
        merged.append(entry)
    return merged


def assert_all_chinese(page, english: polib.POFile) -> None:
    assert page.evaluate("document.documentElement.lang") == "zh-hans"
    text = page.inner_text("body")
    assert english_left(text, english) == [], text


def test_a_chinese_rater_does_the_whole_flow_in_chinese(live_server, chinese_tab):
    page, violations = chinese_tab
    english = catalogue()
    study = StudyFactory(
        slug="zh-flow",
        title="Naturalness",
        texts={"zh-hans": {"title": "图像自然度研究"}},
        protocol="perspectives",
        session_size=2,
        ratings_per_stimulus=1,
        min_view_seconds=0.2,
        completion_code="DONE-ZH",
    )
    StimulusFactory.create_batch(2, study=study, width=32, height=24)

    page.goto(f"{live_server.url}/s/{study.slug}/?PROLIFIC_PID=zh-1&STUDY_ID=s&SESSION_ID=x")
    assert page.locator("h1").inner_text() == "图像自然度研究"
    assert "你将为 2 张图像评分" in page.locator("#consent-facts").inner_text()
    assert_all_chinese(page, english)
    page.click("#agree")

    page.locator("#start").wait_for()
    assert page.locator("h1").inner_text() == "如何评分"
    assert "整体自然度" in page.inner_text("body")
    assert_all_chinese(page, english)
    page.click("#start")

    for n in (1, 2):
        # Locators, not wait_for_function: the CSP here forbids the eval() it polls with.
        page.locator("#progress-text", has_text=f"图像 {n} / 2").wait_for()
        page.locator("input.slider").first.wait_for()
        # What the script writes while sliders are unset is Chinese too.
        page.locator("#rate-hint", has_text="还剩").wait_for()  # written by rate.js
        assert_all_chinese(page, english)
        shown = page.locator("#stimulus").get_attribute("data-id")
        for slider in page.locator("input.slider").all():
            slider.focus()
            page.keyboard.press("ArrowRight")
        page.locator("#rate-submit:enabled").wait_for()
        assert "尚未评分" not in page.locator("#dim-overall").get_attribute("aria-valuetext")
        page.click("#rate-submit")
        if n == 1:
            page.locator(f"#stimulus:not([data-id='{shown}'])").wait_for()

    page.locator("#completion-code").wait_for()
    assert page.locator("h1").inner_text() == "谢谢！"
    assert page.locator("#completion-code").inner_text() == "DONE-ZH"
    assert_all_chinese(page, english)
    assert Rating.objects.filter(rater__external_id="zh-1").count() == 2
    assert violations == []


def test_the_switcher_turns_an_english_page_into_chinese_and_keeps_the_id(live_server, page):
    study = StudyFactory(slug="zh-switch", protocol="perspectives", session_size=2)
    StimulusFactory.create_batch(2, study=study, width=32, height=24)
    page.goto(f"{live_server.url}/s/{study.slug}/?PROLIFIC_PID=sw-1&STUDY_ID=s&SESSION_ID=x")
    assert page.locator("h2").first.inner_text() == "Before you start"
    page.click("#language-switch a[lang='zh-hans']")
    page.locator("h2", has_text="开始之前").wait_for()
    page.click("#agree")
    page.locator("#start").wait_for()
    assert page.locator("h1").inner_text() == "如何评分"
    from annotation.models import Rater

    assert Rater.objects.filter(external_id="sw-1").count() == 1


def test_sliders_moved_before_the_script_runs_keep_their_answers(live_server, page):
    """The rate page's script runs after the page shows (behind the language catalogue):
    a rater quick enough to move the sliders first keeps those answers, and can submit."""
    study = StudyFactory(
        slug="zh-early", protocol="perspectives", session_size=2, min_view_seconds=0
    )
    StimulusFactory.create_batch(2, study=study, width=32, height=24)
    # The catalogue (and so rate.js, deferred after it) is held until the sliders have
    # moved: released by the test, not after a delay a slow machine could outlast.
    held: list = []

    page.goto(f"{live_server.url}/s/{study.slug}/?PROLIFIC_PID=early-1&STUDY_ID=s&SESSION_ID=x")
    page.click("#agree")
    page.locator("#start").wait_for()

    def hold(route):
        held.append(route)

    page.route("**/i18n.js*", hold)
    page.click("#start")
    page.locator("input.slider").first.wait_for()
    for _ in range(200):  # the rate page's request for the catalogue, held
        if held:
            break
        page.wait_for_timeout(25)
    assert held, "the rate page never asked for the catalogue"
    assert page.locator("#rate-form[data-ready]").count() == 0  # before the script
    for slider in page.locator("input.slider").all():
        slider.focus()
        page.keyboard.press("ArrowRight")
    for route in held:
        route.continue_()
    page.unroute("**/i18n.js*")
    page.locator("#rate-form[data-ready]").wait_for(state="attached")
    page.locator("#rate-submit:enabled").wait_for()
    assert page.locator("input.slider.untouched").count() == 0
