"""Every researcher page at a laptop's and a phone's width in real Chromium, under the
real Content-Security-Policy: nothing scrolls sideways, nothing breaks the policy.

The study is the kind a researcher meets after a round: rated by 20 raters with
careless ones rejected, a finished BT.500 analysis, model predictions spanning four
orders of magnitude, long names, shares."""

from __future__ import annotations

import pytest

from annotation.models import Stimulus, StudyShare
from scoring.analyses.services import analysis_create
from scoring.model_scoring.agreement_report import agreement_report
from scoring.models import Analysis
from tests.factories import ModelVersionFactory, PredictionFactory, UserFactory, rated_study

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("serve_media"),
]


PAGES = [
    "/studies/",
    "/studies/new/",
    "/studies/{slug}/",
    "/studies/{slug}/edit/",
    "/studies/{slug}/clone/",
    "/studies/{slug}/sharing/",
    "/studies/{slug}/stimuli/",
    "/studies/{slug}/agreement/",
    "/accounts/tokens/",
    "/accounts/password/",
]


@pytest.mark.parametrize("viewport", [(1280, 800), (390, 844)], ids=["laptop", "phone"])
def test_no_researcher_page_scrolls_sideways(live_server, browser, viewport):
    owner = UserFactory(username="researcher-with-a-rather-long-account-name")
    study = rated_study(
        owner=owner,
        slug="portraits-of-people-in-their-everyday-surroundings-2026",
        title="Portraits of people in their everyday surroundings, second round (2026)",
    )
    StudyShare.objects.create(study=study, user=UserFactory(username="colleague-one"))
    analysis_create(study=study, method="bt500", user=owner)
    version = ModelVersionFactory(name="joint-agin-release-2024-06")
    for i, stimulus in enumerate(study.stimuli.filter(role=Stimulus.Role.TEST)):
        value = 0.45 * (1.3**i)  # 0.45 .. ~18,000: four orders of magnitude
        PredictionFactory(
            model_version=version,
            stimulus=stimulus,
            technical=value,
            rationality=value / 2,
            naturalness=value * 3,
        )

    # The page's bootstrap intervals take seconds on a loaded 2-core machine; computed
    # (and cached) here as a finished scoring job's first viewer would have done.
    agreement_report(study, version, Analysis.objects.get(study=study))

    width, height = viewport
    context = browser.new_context(viewport={"width": width, "height": height})  # CSP enforced
    tab = context.new_page()
    tab.set_default_timeout(15_000)
    violations: list[str] = []
    tab.on(
        "console",
        lambda msg: violations.append(msg.text) if "Content Security Policy" in msg.text else None,
    )
    tab.goto(f"{live_server.url}/accounts/login/")
    sizes = tab.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    assert sizes[0] <= sizes[1], f"sign-in page is {sizes[0]} px wide at {sizes[1]} px"
    tab.fill("#id_username", owner.username)
    tab.fill("#id_password", "pw")
    tab.click("#sign-in")
    tab.wait_for_url(f"{live_server.url}/studies/")

    too_wide = []
    for page in PAGES:
        url = live_server.url + page.format(slug=study.slug)
        response = tab.goto(url)
        assert response is not None and response.status == 200, url
        tab.wait_for_load_state("networkidle")
        scroll, inner = tab.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
        if scroll > inner:
            too_wide.append(f"{page}: {scroll} px at {inner} px")
    context.close()
    assert too_wide == []
    assert violations == []
