"""A researcher uploads a zip and a metadata CSV on the stimuli page in real Chromium,
under the real Content-Security-Policy: both progress bars reach the end, the report
names the broken file as rejected with its reason, the gallery shows the imported
ones, and the page does not scroll sideways on a laptop or a phone."""

from __future__ import annotations

import io
import random
import zipfile

import pytest
from PIL import Image

from annotation.models import ImportJob, Stimulus
from tests.factories import StudyFactory, UserFactory

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("serve_media"),
]


def picture(seed: int, size=(640, 360)) -> bytes:
    rng = random.Random(seed)
    img = Image.new("RGB", size, tuple(rng.randrange(256) for _ in range(3)))
    for _ in range(40):
        x, y = rng.randrange(size[0]), rng.randrange(size[1])
        img.paste(tuple(rng.randrange(256) for _ in range(3)), (x, y, x + 40, y + 30))
    buffer = io.BytesIO()
    img.save(buffer, "PNG")
    return buffer.getvalue()


def fits(page) -> tuple[int, int]:
    return tuple(page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]"))


@pytest.mark.parametrize("viewport", [(1280, 800), (390, 844)], ids=["laptop", "phone"])
def test_upload_a_zip_and_csv_and_read_the_report(live_server, csp_page, tmp_path, viewport):
    owner = UserFactory(username="uploader")
    study = StudyFactory(owner=owner, slug="upload-round", title="Upload round")
    broken = picture(9)
    names = [f"generated-image-with-a-long-descriptive-name-{i:02d}.png" for i in range(6)]
    archive = tmp_path / "round.zip"
    with zipfile.ZipFile(archive, "w") as bundle:
        for i, name in enumerate(names):
            bundle.writestr(name, picture(i))
        bundle.writestr("broken.png", broken[: len(broken) // 3])
    csv = tmp_path / "metadata.csv"
    csv.write_text(
        "filename,generator,task,prompt\n"
        + "".join(f"{n},painter-{i % 2},t2i,a prompt for image {i}\n" for i, n in enumerate(names))
    )

    page, violations = csp_page
    page.set_viewport_size({"width": viewport[0], "height": viewport[1]})
    page.goto(f"{live_server.url}/accounts/login/")
    page.fill("#id_username", "uploader")
    page.fill("#id_password", "pw")
    page.click("#sign-in")
    page.wait_for_url(f"{live_server.url}/studies/")
    page.goto(f"{live_server.url}/studies/{study.slug}/stimuli/")
    assert "No stimulus matches." in page.locator("#gallery-count").inner_text()

    page.set_input_files("#id_files", str(archive))
    page.set_input_files("#id_metadata", str(csv))
    page.select_option("#id_default_role", "test")
    page.click("#upload-submit")
    table = page.locator("#import-report-table")
    table.wait_for()
    for bar in ("#upload-progress", "#import-progress"):
        value, maximum = page.locator(bar).evaluate("el => [el.value, el.max]")
        assert value == maximum, f"{bar} stopped at {value} of {maximum}"
    assert page.locator("#import-progress-text").inner_text() == "7 / 7"
    assert page.locator("#import-summary").inner_text() == "6 imported, 0 skipped, 1 rejected."
    rejected = table.locator("tr.status-rejected")
    assert rejected.count() == 1
    assert rejected.locator("td.name").inner_text() == "broken.png"
    assert "truncated or corrupt" in rejected.locator("td").nth(2).inner_text()
    assert table.locator("tr.status-imported").count() == 6
    assert fits(page)[0] <= fits(page)[1], f"upload report: {fits(page)}"
    # The gallery was refreshed when the import finished: counted, filterable and
    # shown without a manual reload, the report still in view.
    assert "import=" in page.url
    assert page.locator("#gallery-count").inner_text() == "1–6 of 6 shown"
    assert page.locator("#gallery li.stimulus-card").count() == 6
    generators = page.locator("#id_generator option").all_inner_texts()
    assert "painter-0" in generators and "painter-1" in generators
    imported = table.locator("tr.status-imported td").nth(2).inner_text()
    assert "640×360 PNG" in imported and "generator painter-" in imported

    job = ImportJob.objects.get()
    assert (job.status, job.imported, job.rejected) == ("done", 6, 1)
    assert Stimulus.objects.filter(study=study, generator="painter-1").count() == 3

    page.goto(f"{live_server.url}/studies/{study.slug}/stimuli/")
    assert page.locator("#gallery li.stimulus-card").count() == 6
    first = page.locator("#gallery img").first
    first.scroll_into_view_if_needed()
    page.wait_for_load_state("networkidle")
    assert first.evaluate("img => img.complete && img.naturalWidth") == 640
    assert fits(page)[0] <= fits(page)[1], f"gallery: {fits(page)}"
    page.goto(f"{live_server.url}/studies/{study.slug}/imports/{job.pk}/")
    assert page.locator("#import-report-table tr.status-rejected").count() == 1
    assert fits(page)[0] <= fits(page)[1], f"import page: {fits(page)}"
    assert violations == []
