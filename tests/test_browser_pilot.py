"""A researcher previews a draft study as a rater in real Chromium, under the real
Content-Security-Policy: the study page's "Preview as rater", consent, instructions
and a rating in the real rating page, a banner on every page, "Preview finished" at
the end and the way back; the rating is kept, marked pilot, and counted nowhere."""

from __future__ import annotations

import pytest

from annotation import selectors
from annotation.models import Rating, StimulusTally, Study
from tests.factories import StimulusFactory, StudyFactory, UserFactory

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("serve_media"),
]
BANNER = "Pilot preview: your ratings are not counted."


def test_researcher_previews_a_draft_and_the_rating_is_not_counted(live_server, csp_page):
    researcher = UserFactory(username="paula")
    study = StudyFactory(
        owner=researcher,
        slug="pilot-web",
        title="Pilot study",
        status=Study.Status.DRAFT,
        protocol="perspectives",
        session_size=1,
        ratings_per_stimulus=1,
        min_view_seconds=0.5,
        completion_code="DONE-77",
    )
    StimulusFactory.create_batch(2, study=study, width=32, height=24)
    page, violations = csp_page
    base = live_server.url

    page.goto(f"{base}/accounts/login/")
    page.fill("#id_username", "paula")
    page.fill("#id_password", "pw")
    page.click("#sign-in")
    page.wait_for_url(f"{base}/studies/")
    page.goto(f"{base}/studies/{study.slug}/")
    page.click("#study-nav-pilot")

    page.wait_for_url(f"{base}/s/{study.slug}/")
    assert BANNER in page.locator("#pilot-banner").inner_text()
    assert "Before you start" in page.locator("main").inner_text()
    page.click("#agree")
    assert BANNER in page.locator("#pilot-banner").inner_text()
    page.click("#start")

    # The real rating page, with the banner above it.
    page.locator("input.slider").first.wait_for()
    assert BANNER in page.locator("#pilot-banner").inner_text()
    shown = page.locator("#stimulus").get_attribute("data-id")
    for slider in page.locator("input.slider").all():
        slider.focus()
        page.keyboard.press("ArrowRight")
    page.locator("#rate-submit:enabled").wait_for()
    page.click("#rate-submit")

    finished = page.locator("#pilot-finished")
    finished.wait_for()
    assert "Preview finished" in finished.inner_text()
    assert page.locator(".completion-code").count() == 0
    assert "DONE-77" not in page.content()

    rating = Rating.objects.get()
    assert rating.is_pilot and str(rating.stimulus_id) == shown
    assert rating.rater.pilot_user == researcher
    assert not StimulusTally.objects.filter(ratings__gt=0).exists()
    progress = selectors.study_progress(study)
    assert progress["n_ratings"] == 0 and progress["untouched"] == 2

    page.click("#pilot-done")
    page.wait_for_url(f"{base}/studies/{study.slug}/")
    assert violations == []
