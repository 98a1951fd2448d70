"""Places and outcomes in real Chromium, under the real Content-Security-Policy: a
rater arriving at a full study gets the "study full" page with the way back to
Prolific; a Prolific rater excluded by the gold checks gets the screened-out code and
redirect, and the reason in words; the consent page states the real session."""

from __future__ import annotations

import pytest

from annotation import rater_flow
from annotation.models import Rater, Session, Study, StudyOutcome
from tests.factories import StimulusFactory, StudyFactory

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("serve_media"),
]
PROLIFIC_DONE = "https://app.prolific.com/submissions/complete"


def make_study(slug: str, n: int, **fields) -> Study:
    values = {
        "protocol": "perspectives",
        "session_size": 2,
        "ratings_per_stimulus": 1,
        "min_view_seconds": 0.2,
        "completion_code": "DONE-1",
        "completion_url": PROLIFIC_DONE,
        **fields,
    }
    study = StudyFactory(slug=slug, title="Places study", **values)
    StimulusFactory.create_batch(n, study=study, width=32, height=24)
    for kind, code in (("screened_out", "SCREEN-9"), ("no_work", "NOWORK-3")):
        StudyOutcome.objects.create(
            study=study, kind=kind, platform="prolific", code=code, redirect_url=PROLIFIC_DONE
        )
    return study


def link(live_server, study: Study, pid: str) -> str:
    return f"{live_server.url}/s/{study.slug}/?PROLIFIC_PID={pid}&STUDY_ID=s1&SESSION_ID=x1"


def test_a_rater_arriving_at_a_full_study_gets_the_study_full_page(live_server, csp_page):
    page, violations = csp_page
    study = make_study("full", n=2)
    # One rater holds the study's two places.
    rater_flow.platform_enter(study=study, source="prolific", external_id="first", platform={})
    page.goto(link(live_server, study, "late"))
    assert page.locator("h1").inner_text() == "This study is full"
    assert page.locator("#completion-code").inner_text() == "NOWORK-3"
    back = page.locator("#finish")
    assert back.inner_text() == "Return to Prolific"
    assert back.get_attribute("href") == f"{PROLIFIC_DONE}?cc=NOWORK-3"
    assert page.locator("#copy-code").is_visible()  # completion.js ran under the CSP
    assert not Rater.objects.filter(external_id="late").exists()
    assert violations == []


def test_consent_states_the_real_number_of_items(live_server, csp_page):
    page, violations = csp_page
    study = make_study("honest", n=3, session_size=2, min_session_items=1)
    rater_flow.platform_enter(study=study, source="prolific", external_id="first", platform={})
    page.goto(link(live_server, study, "second"))
    facts = page.locator("#consent-facts").inner_text()
    assert "You will rate 1 image." in facts and "about 1 minute" in facts
    assert violations == []


def test_a_prolific_rater_excluded_by_gold_checks_gets_the_screened_out_code(live_server, csp_page):
    page, violations = csp_page
    study = make_study("gold", n=4, session_size=4, gold_rate=0.5, gold_fail_limit=1)
    StimulusFactory(study=study, role="gold", expected_low=90, expected_high=100)
    page.goto(link(live_server, study, "careless"))
    page.click("#agree")
    page.click("#start")
    for position in (1, 2):  # a test image, then the gold one: both rated near the middle
        # The progress is set after the sliders are reset for the new image.
        page.locator("#progress-text", has_text=f"Image {position} of 4").wait_for()
        for slider in ("overall", "technical", "rationality"):
            page.locator(f"#dim-{slider}").focus()
            page.keyboard.press("ArrowRight")
        page.locator("#rate-submit:enabled").click()
    page.locator("#screened-out").wait_for()
    assert page.locator("h1").inner_text() == "Your participation has ended"
    assert "check images" in page.locator("#ended-reason").inner_text()
    assert page.locator("#completion-code").inner_text() == "SCREEN-9"
    back = page.locator("#finish")
    assert back.get_attribute("href") == f"{PROLIFIC_DONE}?cc=SCREEN-9"
    rater = Rater.objects.get(external_id="careless")
    assert rater.status == Rater.Status.EXCLUDED
    assert rater.sessions.get().stage == Session.Stage.STOPPED
    assert violations == []


def test_the_last_rating_closes_the_study_and_the_rater_still_gets_the_code(live_server, csp_page):
    page, violations = csp_page
    study = make_study("last", n=1, session_size=1)
    page.goto(link(live_server, study, "only"))
    page.click("#agree")
    page.click("#start")
    page.locator("#dim-overall").wait_for()
    for slider in ("overall", "technical", "rationality"):
        page.locator(f"#dim-{slider}").focus()
        page.keyboard.press("ArrowRight")
    page.locator("#rate-submit:enabled").click()
    page.locator("#completion-code").wait_for()
    assert page.locator("#completion-code").inner_text() == "DONE-1"
    assert "you rated 1 image" in page.locator("article").inner_text()
    study.refresh_from_db()
    assert study.status == Study.Status.CLOSED and "by itself" in study.status_note
    # The rater's link still shows their code; a newcomer finds the study closed.
    page.goto(link(live_server, study, "only"))
    assert page.locator("#completion-code").inner_text() == "DONE-1"
    page.goto(link(live_server, study, "newcomer"))
    assert "This study is closed" in page.locator("article").inner_text()
    assert violations == []
