"""A new researcher's whole round in real Chromium, under the real Content-Security-
Policy, from the home page to a downloaded MOS dataset (issue #13's journey):

sign in from the home page; create a study; upload a zip and a metadata CSV where
one file is broken (reported, the rest imported); preview the study as a rater (the
pilot rating is not counted); open it; a rater completes a session; run BT.500 and
see the MOS figure; download the AGIN CSV and check its rows; a second researcher
sees nothing of the study until it is shared with them, then views but cannot edit."""

from __future__ import annotations

import csv
import io
import random
import re
import zipfile

import pytest
from PIL import Image

from annotation.models import Rating, Stimulus, StimulusTally, Study
from scoring.models import Analysis
from tests.factories import UserFactory, raters_rate_everything

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("serve_media"),
]


def picture(seed: int) -> bytes:
    rng = random.Random(seed)
    img = Image.new("RGB", (96, 64), tuple(rng.randrange(256) for _ in range(3)))
    for _ in range(12):
        x, y = rng.randrange(96), rng.randrange(64)
        img.paste(tuple(rng.randrange(256) for _ in range(3)), (x, y, x + 12, y + 9))
    buffer = io.BytesIO()
    img.save(buffer, "PNG")
    return buffer.getvalue()


def sign_in(page, base: str, username: str) -> None:
    page.goto(f"{base}/accounts/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", "pw")
    page.click("#sign-in")
    page.wait_for_url(f"{base}/studies/")


def rate_shown_image(page, previous: str | None = None) -> str:
    """Wait for an image other than ``previous``, move every slider, submit; its id."""
    if previous is not None:
        page.locator(f"#stimulus:not([data-id='{previous}'])").wait_for()
    page.locator("input.slider").first.wait_for()
    shown = page.locator("#stimulus").get_attribute("data-id")
    for slider in page.locator("input.slider").all():
        slider.focus()
        page.keyboard.press("ArrowRight")
    page.locator("#rate-submit:enabled").wait_for()
    page.click("#rate-submit")
    return shown


def test_from_an_empty_account_to_a_downloaded_mos_dataset(
    live_server, csp_page, browser, tmp_path
):
    UserFactory(username="nina")
    UserFactory(username="omar")
    page, violations = csp_page
    base = live_server.url

    # 1. Sign in from the home page.
    page.goto(f"{base}/")
    page.click("#researcher-sign-in")
    page.wait_for_url(f"{base}/accounts/login/")
    page.fill("#id_username", "nina")
    page.fill("#id_password", "pw")
    page.click("#sign-in")
    page.wait_for_url(f"{base}/studies/")

    # 2. Create a study in the browser.
    page.click("#new-study")
    page.fill("#id_title", "Street scenes")
    page.fill("#id_slug", "street-scenes")
    page.select_option("#id_protocol", "overall")
    page.fill("#id_ratings_per_stimulus", "3")
    page.fill("#id_session_size", "4")
    page.fill("#id_min_view_seconds", "0.3")
    page.fill("#id_gold_rate", "0")
    page.click("#save-study")
    page.wait_for_url(f"{base}/studies/street-scenes/")
    study = Study.objects.get(slug="street-scenes")
    assert study.status == Study.Status.DRAFT and study.owner.username == "nina"

    # 3. Upload a zip with a broken file and a metadata CSV.
    names = [f"scene-{i}.png" for i in range(4)]
    archive = tmp_path / "scenes.zip"
    with zipfile.ZipFile(archive, "w") as bundle:
        for i, name in enumerate(names):
            bundle.writestr(name, picture(i))
        broken = picture(99)
        bundle.writestr("broken.png", broken[: len(broken) // 2])
    metadata = tmp_path / "metadata.csv"
    metadata.write_text(
        "filename,generator,task\n" + "".join(f"{n},gen-{i % 2},t2i\n" for i, n in enumerate(names))
    )
    page.click("#study-nav-stimuli")
    page.set_input_files("#id_files", str(archive))
    page.set_input_files("#id_metadata", str(metadata))
    page.click("#upload-submit")
    page.locator("#import-report-table").wait_for()
    assert page.locator("#import-summary").inner_text() == "4 imported, 0 skipped, 1 rejected."
    rejected = page.locator("#import-report-table tr.status-rejected")
    assert rejected.count() == 1 and "broken.png" in rejected.inner_text()
    assert study.stimuli.filter(role=Stimulus.Role.TEST).count() == 4

    # 4. Preview as a rater: the pilot rating is stored, marked, and not counted.
    page.goto(f"{base}/studies/street-scenes/")
    page.click("#study-nav-pilot")
    page.wait_for_url(f"{base}/s/street-scenes/")
    assert page.locator("#pilot-banner").is_visible()
    page.click("#agree")
    page.click("#start")
    first = rate_shown_image(page)
    page.locator(f"#stimulus:not([data-id='{first}'])").wait_for()  # the rating was taken
    pilot = Rating.objects.get()
    assert pilot.is_pilot
    assert not StimulusTally.objects.filter(ratings__gt=0).exists()
    page.click("#pilot-back")
    page.wait_for_url(f"{base}/studies/street-scenes/")

    # 5. Open the study.
    page.click("#status-open")
    page.wait_for_url(f"{base}/studies/street-scenes/")
    study.refresh_from_db()
    assert study.status == Study.Status.OPEN

    # 6. A rater completes a session by the anonymous link (own browser, own cookies).
    rater_context = browser.new_context(viewport={"width": 390, "height": 844})
    rater_page = rater_context.new_page()
    rater_page.set_default_timeout(15_000)
    rater_page.goto(f"{base}/s/street-scenes/")
    rater_page.click("#agree")
    rater_page.click("#start")
    rated: list[str] = []
    for _ in range(4):
        rated.append(rate_shown_image(rater_page, rated[-1] if rated else None))
    rater_page.locator("#completion-code").wait_for()
    assert rater_page.locator("#completion-code").inner_text() == study.completion_code
    rater_context.close()
    assert len(set(rated)) == 4
    assert Rating.objects.filter(is_pilot=False).count() == 4
    raters_rate_everything(study, 2)  # two more raters, so each image has K = 3

    # 7. Run BT.500 and see the MOS figure.
    page.goto(f"{base}/studies/street-scenes/")
    page.select_option("#analysis-method", "bt500")
    page.click("#run-analysis")
    page.wait_for_url(re.compile(re.escape(f"{base}/studies/street-scenes/") + r"(\?.*)?$"))
    analysis = Analysis.objects.get(study=study)
    assert analysis.status == Analysis.Status.DONE, analysis.error
    assert analysis.n_ratings == 12  # the pilot's rating is not among them
    page.locator("#figure-mos[data-rendered='true'] svg").first.wait_for()
    assert (
        page.locator("#figure-mos svg .mark-symbol path, #figure-mos svg .mark-point path").count()
        >= 4
    )

    # 8. Download the AGIN CSV and check its rows.
    with page.expect_download() as download:
        page.click("#download-agin-csv")
    rows = list(csv.DictReader(io.StringIO(download.value.path().read_text())))
    assert sorted(row["filename"] for row in rows) == sorted(names)
    for row in rows:
        assert 0 <= float(row["MOS_nat"]) <= 100
        assert row["n_nat"] == "3"
        assert row["generator"] in {"gen-0", "gen-1"}

    # 9. A second researcher sees nothing until the study is shared, then only views.
    omar_context = browser.new_context(viewport={"width": 1280, "height": 800})
    omar = omar_context.new_page()
    omar.set_default_timeout(15_000)
    sign_in(omar, base, "omar")
    assert "street-scenes" not in omar.content()
    # 404 alike for a missing study and another researcher's (nothing says it exists).
    assert omar.goto(f"{base}/studies/street-scenes/").status == 404

    page.click("#study-nav-sharing")
    page.fill("#id_username", "omar")
    page.select_option("#id_level", "view")
    page.click("#share-submit")
    assert "omar" in page.locator("#shares").inner_text()

    omar.goto(f"{base}/studies/")
    omar.click("a[href='/studies/street-scenes/']")
    omar.wait_for_url(f"{base}/studies/street-scenes/")
    assert omar.locator("#study-nav-settings").count() == 0
    assert omar.locator("#status-closed").count() == 0
    assert omar.goto(f"{base}/studies/street-scenes/edit/").status == 403
    omar_context.close()
    assert violations == []
