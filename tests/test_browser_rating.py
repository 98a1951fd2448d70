"""The rater's whole journey in real Chromium: Prolific link, consent, training,
keyboard-only rating, breaks, reloads, retries after a network failure, and the
layout at phone and laptop widths."""

from __future__ import annotations

import json

import pytest

from annotation.models import Rating, Study
from tests.factories import StimulusFactory, StudyFactory

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("serve_media"),
]


def make_study(slug: str = "web", *, training: bool = False, **fields) -> Study:
    values = {
        "protocol": "perspectives",
        "session_size": 5,
        "ratings_per_stimulus": 2,
        "min_view_seconds": 0.5,
        "completion_code": "DONE-77",
        **fields,
    }
    study = StudyFactory(slug=slug, title="Browser study", **values)
    StimulusFactory.create_batch(7, study=study, width=32, height=24)
    if training:
        StimulusFactory(study=study, role="training", expected_low=70, expected_high=90)
    return study


def arrive(page, live_server, study: Study, pid: str) -> None:
    page.goto(f"{live_server.url}/s/{study.slug}/?PROLIFIC_PID={pid}&STUDY_ID=s1&SESSION_ID=x1")
    page.click("#agree")
    page.click("#start")


def focused_id(page) -> str:
    return page.evaluate("document.activeElement && document.activeElement.id")


def rate_with_keyboard(page, presses: int) -> None:
    """Wait for the first slider to get focus, then Right xN and Tab per slider, Enter."""
    page.wait_for_function("document.activeElement && document.activeElement.id === 'dim-overall'")
    sliders = page.locator("input.slider")
    for i in range(sliders.count()):
        if i:
            page.keyboard.press("Tab")
        for _ in range(presses):
            page.keyboard.press("ArrowRight")
    page.locator("#rate-submit:enabled").wait_for()
    assert focused_id(page) == "dim-rationality"
    page.keyboard.press("Enter")


def test_prolific_rater_does_everything_with_the_keyboard(live_server, page, monkeypatch):
    # A break kept on the server lasts BREAK_SECONDS; here it is over at once, so
    # Continue goes on (tests/test_browser_rater_ui.py waits one out).
    monkeypatch.setattr("annotation.rater_flow.BREAK_SECONDS", 0)
    study = make_study(training=True, break_every=3)
    arrive(page, live_server, study, "kb-1")

    # Training: one example, then feedback from the experts' range.
    assert page.locator("#progress-text").inner_text() == "Example 1 of 1"
    rate_with_keyboard(page, 1)
    page.locator("#feedback:not([hidden])").wait_for()
    assert "around 80" in page.locator("#feedback-text").inner_text()
    assert focused_id(page) == "feedback-continue"
    page.keyboard.press("Enter")

    seen = []
    for n in range(1, 6):
        page.wait_for_function(
            f"document.getElementById('progress-text').textContent === 'Image {n} of 5'"
        )
        rate_with_keyboard(page, n)
        seen.append(page.locator("#stimulus").get_attribute("data-id"))
        if n == 3:  # break_every=3: the break screen, Continue has the focus
            page.locator("#break:not([hidden])").wait_for()
            assert focused_id(page) == "break-continue"
            page.keyboard.press("Enter")

    page.locator(".completion-code").wait_for()
    assert page.locator(".completion-code").inner_text() == "DONE-77"

    ratings = list(Rating.objects.select_related("rater").order_by("id"))
    assert len(ratings) == 5 and not Rating.objects.filter(stimulus__role="training").exists()
    assert {r.rater.external_id for r in ratings} == {"kb-1"}
    assert [str(r.stimulus_id) for r in ratings] == seen
    for n, rating in enumerate(ratings, start=1):
        scores = rating.scores()
        assert set(scores) == {"overall", "technical", "rationality"}
        assert all(0 <= v <= 100 for v in scores.values())
        assert scores["overall"] == 50 + n  # the midpoint moved n steps right
        assert rating.viewing_seconds >= 0.5


def test_submit_waits_for_every_slider_and_the_minimum_time(live_server, page):
    study = make_study("gate", min_view_seconds=2.0)
    arrive(page, live_server, study, "gate-1")
    page.wait_for_function("document.activeElement && document.activeElement.id === 'dim-overall'")
    submit = page.locator("#rate-submit")
    hint = page.locator("#rate-hint")
    overall = page.locator("#dim-overall")
    assert submit.is_disabled() and "3 left" in hint.inner_text()
    assert overall.get_attribute("aria-valuetext") == "not rated yet"
    assert "untouched" in overall.get_attribute("class")

    page.keyboard.press("ArrowLeft")
    assert overall.get_attribute("aria-valuetext") == "49 (Fair)"
    assert "untouched" not in overall.get_attribute("class")
    page.keyboard.press("Tab")
    page.keyboard.press("ArrowRight")
    assert submit.is_disabled() and "last slider" in hint.inner_text()
    page.keyboard.press("Enter")  # refused: one slider untouched
    page.keyboard.press("Tab")
    page.keyboard.press("Home")  # any key that moves a slider counts as touching it
    assert page.locator("#dim-rationality").get_attribute("aria-valuetext") == "0 (Bad)"
    assert submit.is_disabled() and "keep looking" in hint.inner_text()
    page.keyboard.press("Enter")  # refused: the image was not shown long enough
    page.wait_for_timeout(300)
    assert Rating.objects.count() == 0

    submit.wait_for(state="visible")
    page.locator("#rate-submit:enabled").wait_for(timeout=4000)
    assert "Ready" in hint.inner_text()
    page.keyboard.press("Enter")
    page.wait_for_function(
        "document.getElementById('progress-text').textContent === 'Image 2 of 5'"
    )
    rating = Rating.objects.get()
    assert rating.scores() == {"overall": 49, "technical": 51, "rationality": 0}
    assert rating.viewing_seconds >= 2.0
    # The next image starts untouched again.
    assert page.locator("input.slider.untouched").count() == 3 and submit.is_disabled()


def test_reload_resumes_and_network_failures_are_retried(live_server, page):
    study = make_study("again")
    arrive(page, live_server, study, "re-1")
    page.locator("#stimulus").wait_for()
    first = page.locator("#stimulus").get_attribute("data-id")
    page.reload()
    assert page.locator("#stimulus").get_attribute("data-id") == first

    # The first POST fails at the network level; the script retries with the same body.
    bodies = []

    def flaky(route):
        bodies.append(json.loads(route.request.post_data))
        if len(bodies) == 1:
            route.abort("internetdisconnected")
        else:
            route.continue_()

    page.route("**/submit", flaky)
    rate_with_keyboard(page, 2)
    page.locator("#rate-status:not([hidden])").wait_for()
    assert "Connection problem" in page.locator("#rate-status").inner_text()
    page.wait_for_function(
        "document.getElementById('progress-text').textContent === 'Image 2 of 5'"
    )
    assert len(bodies) == 2 and bodies[0] == bodies[1]  # same client_id, same answer
    assert Rating.objects.count() == 1
    assert str(Rating.objects.get().client_id) == bodies[0]["client_id"]

    second = page.locator("#stimulus").get_attribute("data-id")
    assert second != first
    page.reload()
    assert page.locator("#stimulus").get_attribute("data-id") == second
    assert page.locator("#progress-text").inner_text() == "Image 2 of 5"


@pytest.mark.parametrize("viewport", [(375, 667), (1280, 720)])
def test_no_horizontal_scrolling(live_server, browser, viewport):
    width, height = viewport
    study = make_study(f"wide{width}", training=True, protocol="agin")
    context = browser.new_context(viewport={"width": width, "height": height}, bypass_csp=True)
    tab = context.new_page()
    tab.set_default_timeout(15_000)

    def assert_fits(where: str) -> None:
        sizes = tab.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
        assert sizes[0] <= sizes[1], f"{where}: page is {sizes[0]} px wide at {sizes[1]} px"

    tab.goto(f"{live_server.url}/s/{study.slug}/?PROLIFIC_PID=w{width}")
    assert_fits("consent")
    tab.click("#agree")
    assert_fits("instructions")
    tab.click("#start")
    tab.wait_for_function("document.activeElement && document.activeElement.id === 'dim-overall'")
    assert tab.locator("input.slider").count() == 13
    assert_fits("training")
    box = tab.locator("#stimulus").bounding_box()
    assert box["width"] == 32 and box["height"] == 24  # natural size, never upscaled
    grey = tab.evaluate("getComputedStyle(document.getElementById('stage')).backgroundColor")
    assert grey == "rgb(128, 128, 128)"
    context.close()


def test_anonymous_link_registers_the_rater_only_on_consent(live_server, page):
    """Opening the anonymous link writes nothing (link previews do that too); agreeing
    in the browser (CSRF and all) registers the rater and the cookie brings them back."""
    from annotation.models import Rater

    study = make_study("anon")
    page.goto(f"{live_server.url}/s/{study.slug}/")
    page.locator("#agree").wait_for()
    page.reload()
    assert Rater.objects.filter(study=study).count() == 0
    page.click("#agree")
    page.locator("#start").wait_for()  # the instructions page
    rater = Rater.objects.get(study=study)
    assert rater.source == "anonymous" and rater.consented_at is not None
    page.goto(f"{live_server.url}/s/{study.slug}/")  # back through the link: same rater
    page.locator("#start").wait_for()
    assert Rater.objects.filter(study=study).count() == 1
