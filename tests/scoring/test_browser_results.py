"""The results pages in real Chromium under the real Content-Security-Policy: every
figure is drawn (vega-embed, served from static/, expressions interpreted: no
'unsafe-eval'), the agreement scatter over predictions from 0.45 to 18,864 has a log
axis with tick labels and a rank switch, a point's tooltip shows the image, and
neither page scrolls sideways at a laptop's or a phone's width."""

from __future__ import annotations

import pytest
from django.conf import settings
from django.test import Client

from annotation.models import Stimulus
from scoring.analyses.services import analysis_create, analysis_run
from scoring.model_scoring.agreement_report import agreement_report
from tests.factories import ModelVersionFactory, PredictionFactory, rated_study

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("serve_media"),
]

VIEWPORTS = [(1280, 800), (390, 844)]


def sign_in(page, live_server, user) -> None:
    """Sign in by handing the browser a session made for ``user`` (its cookie)."""
    client = Client()
    client.force_login(user)
    cookie = client.cookies[settings.SESSION_COOKIE_NAME]
    page.context.add_cookies(
        [{"name": settings.SESSION_COOKIE_NAME, "value": cookie.value, "url": live_server.url}]
    )


def figures_drawn(page) -> list[str]:
    """Wait for every figure of the page, and return their ids; each must be drawn as
    SVG (the renderer figures.js asks for) with its action menu."""
    ids = page.eval_on_selector_all(".vega-figure", "els => els.map(e => e.id)")
    for figure in ids:
        page.locator(f'#{figure}[data-rendered="true"]').wait_for()
        assert page.locator(f"#{figure} svg.marks").count() == 1, figure
        assert page.locator(f"#{figure} details").count() == 1  # Save as SVG / PNG
    return ids


def no_sideways_scroll(page) -> None:
    width, inner = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    assert width <= inner, f"the page scrolls sideways: {width} > {inner}"


def x_axis(page, figure: str) -> tuple[str, list[str]]:
    """The x axis's accessible description (Vega writes its scale type there) and its
    tick labels."""
    axis = f'#{figure} g.role-axis[aria-label^="X-axis"]'
    label = page.locator(axis).get_attribute("aria-label")
    ticks = page.eval_on_selector_all(
        f"{axis} g.role-axis-label text", "els => els.map(e => e.textContent)"
    )
    return label, ticks


def test_results_pages_draw_their_figures_under_the_policy(live_server, csp_page):
    page, violations = csp_page
    study = rated_study(n_raters=20, slug="browser-results")
    analysis = analysis_run(
        analysis_id=analysis_create(
            study=study, method="bt500", options={"include_excluded": True}, enqueue=False
        ).pk
    )
    assert analysis.status == "done", analysis.error
    version = ModelVersionFactory(name="wide-span")
    tests = list(study.stimuli.filter(role=Stimulus.Role.TEST).order_by("pk"))
    for i, stimulus in enumerate(tests):
        value = 0.45 * (18864 / 0.45) ** (i / (len(tests) - 1))  # 0.45 .. 18,864
        PredictionFactory(
            model_version=version,
            stimulus=stimulus,
            naturalness=value,
            technical=value,
            rationality=value,
        )
    # The bootstrap behind the agreement page takes seconds on a loaded machine: computed
    # (and cached, as the page would) before the browser asks for it.
    agreement_report(study, version, analysis)
    page.set_default_navigation_timeout(60_000)
    sign_in(page, live_server, study.owner)

    # The study page: progress, MOS per image, rater bias, 13 distributions.
    for width, height in VIEWPORTS:
        page.set_viewport_size({"width": width, "height": height})
        page.goto(f"{live_server.url}/studies/{study.slug}/")
        drawn = figures_drawn(page)
        assert {"figure-ratings", "figure-mos", "figure-bias", "figure-hist-overall"} <= set(drawn)
        assert len([f for f in drawn if f.startswith("figure-hist-")]) == 13
        no_sideways_scroll(page)
    page.locator("#figure-mos details summary").click()
    menu = page.locator("#figure-mos .vega-actions").inner_text()
    assert "Save as SVG" in menu and "Save as PNG" in menu
    assert page.locator("#rejected").count() == 1
    assert page.locator("#download-ratings-csv").is_visible()

    # The agreement page: the scatter over four orders of magnitude.
    for width, height in VIEWPORTS:
        page.set_viewport_size({"width": width, "height": height})
        page.goto(f"{live_server.url}/studies/{study.slug}/agreement/?v={version.name}")
        assert figures_drawn(page) == ["figure-scatter-1"]
        scatter = page.locator("#figure-scatter-1")
        assert scatter.get_attribute("data-axis") == "log"
        description, labels = x_axis(page, "figure-scatter-1")
        assert "for a log scale" in description
        # Log ticks at the decades the predictions span, labelled.
        assert {"1", "10", "100", "1000", "10000"} <= set(labels), labels
        no_sideways_scroll(page)
        assert "after the logistic fit" in page.locator("table.metrics").inner_text()

    # Hover: the image and its numbers.
    page.set_viewport_size({"width": 1280, "height": 800})
    page.locator("#figure-scatter-1 g.mark-symbol.role-mark path").first.hover()
    tooltip = page.locator("#vg-tooltip-element")
    tooltip.locator("img").wait_for()
    assert "/media/" in tooltip.locator("img").get_attribute("src")
    assert "prediction" in tooltip.inner_text()

    # Switch to the rank axis: redrawn, ranks 1..n on x.
    page.check('input[name="axis-1"][value="rank"]')
    page.locator('#figure-scatter-1[data-axis="rank"][data-rendered="true"]').wait_for()
    description, labels = x_axis(page, "figure-scatter-1")
    assert "rank" in description and "for a linear scale" in description
    assert labels and max(float(t) for t in labels) <= len(tests) + 1
    assert violations == []
