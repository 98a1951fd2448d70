"""A researcher in Chromium, under the real Content-Security-Policy: from the study
page's "Raters needing attention" to the rater's page, excludes them with a reason,
re-runs the analysis from there, approves the others and downloads the Prolific file."""

from __future__ import annotations

import pytest
from django.utils import timezone

from annotation.models import Rater, RaterDecision, Session
from scoring.models import Analysis
from tests.factories import (
    RaterFactory,
    RatingFactory,
    SessionFactory,
    StimulusFactory,
    StudyFactory,
    UserFactory,
)

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def sign_in(page, base: str, username: str) -> None:
    page.goto(f"{base}/accounts/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", "pw")
    page.click("#sign-in")
    page.wait_for_url(f"{base}/studies/")


def test_exclude_rerun_and_approve_in_the_browser(live_server, csp_page):
    page, violations = csp_page
    owner = UserFactory(username="rita")
    study = StudyFactory(owner=owner, slug="browser-raters", protocol="overall", scale="acr5")
    stimuli = [StimulusFactory(study=study) for _ in range(4)]
    raters = []
    for i in range(3):
        rater = RaterFactory(study=study, source=Rater.Source.PROLIFIC, external_id=f"60pid{i}")
        session = SessionFactory(rater=rater, stage=Session.Stage.DONE, finished_at=timezone.now())
        for j, stimulus in enumerate(stimuli):
            RatingFactory(stimulus=stimulus, rater=rater, session=session, score=1 + (i + j) % 5)
        raters.append(rater)
    Rater.objects.filter(study=study).update(status=Rater.Status.COMPLETED)
    Rater.objects.filter(pk=raters[0].pk).update(gold_failures=1)

    base = live_server.url
    sign_in(page, base, "rita")
    page.goto(f"{base}/studies/{study.slug}/")
    attention = page.locator("#attention-table")
    attention.filter(has_text="60pid0").wait_for()
    assert "Failed 1 gold question" in attention.inner_text()
    attention.get_by_role("link", name=raters[0].pseudonym).click()

    page.locator("#rater-external-id").filter(has_text="60pid0").wait_for()
    page.fill("#use-reason", "rated before the images loaded")
    page.click("#use-submit")
    page.locator("#rerun-stale").wait_for()
    assert "Excluded" in page.locator("#rater-status").inner_text()
    page.click("#rerun-analysis")
    page.wait_for_url(f"{base}/studies/{study.slug}/**")
    analysis = Analysis.objects.get(study=study)
    assert analysis.method == "bt500"

    page.goto(f"{base}/studies/{study.slug}/raters/")
    page.once("dialog", lambda dialog: dialog.accept())  # confirm.js asks first
    page.click("#approve-completed")
    page.locator(".messages").filter(has_text="Approved for payment: 3").wait_for()
    page.select_option("#verdicts-platform", "prolific")
    page.select_option("#verdicts-kind", "approve")
    page.click("#verdicts-submit")
    with page.expect_download() as download:
        page.locator("a[id^=download-export-]").first.click()
    path = download.value.path()
    assert open(path).read() == "60pid0\n60pid1\n60pid2\n"
    decision = RaterDecision.objects.get(rater=raters[0], kind="exclude")
    assert decision.decided_by_name == "rita"

    # At a phone's width nothing scrolls sideways (tables scroll inside their frame).
    page.set_viewport_size({"width": 390, "height": 844})
    too_wide = []
    for url in (
        f"/studies/{study.slug}/raters/",
        f"/studies/{study.slug}/raters/{raters[0].pk}/",
        f"/studies/{study.slug}/",
    ):
        page.goto(base + url)
        scroll, inner = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
        if scroll > inner:
            too_wide.append(f"{url}: {scroll} px at {inner} px")
    assert too_wide == []
    assert violations == []
