"""What the researcher pages' review asked for: rejected raters drawn in the bias
figure even when their images lost their MOS, the counts of images with and without
a MOS, the sortable MOS table, the degenerate-fit label on the agreement page, the
confirmation of Pause and Close, and one header on every study page."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest
from django.urls import reverse

from annotation.models import Study
from scoring.numerics import agreement
from scoring.workspace import dashboard, views
from tests.factories import (
    AnalysisFactory,
    ImportJobFactory,
    ModelVersionFactory,
    RaterFactory,
    RaterResultFactory,
    RatingFactory,
    StimulusFactory,
    StimulusResultFactory,
    StudyFactory,
)

pytestmark = pytest.mark.django_db

NO_SCORES = "no scores left: every rater of this stimulus was rejected"
REASON = "BT.500: P = 1, Q = 1, n = 2: (P+Q)/n = 1.0 > 0.05 and |P-Q|/(P+Q) = 0.0 < 0.3"


@pytest.fixture
def lost():
    """A BT.500 analysis of 4 images: a and b rated by two kept raters (MOS 50 and
    70), c and d only by two raters BT.500 rejected, so c and d have no MOS and the
    rejected raters no bias against it. Rejected raters' scores: 80/60 and 40/20."""
    study = StudyFactory(protocol="overall", scale="continuous", slug="lost")
    a, b, c, d = (StimulusFactory(study=study, original_name=f"{n}.png") for n in "abcd")
    kept = [RaterFactory(study=study, pseudonym=f"RKEPT{i}") for i in (1, 2)]
    gone = [RaterFactory(study=study, pseudonym=f"RGONE{i}") for i in (1, 2)]
    for rater, (sa, sb) in zip(kept, [(45, 65), (55, 75)], strict=True):
        RatingFactory(stimulus=a, rater=rater, overall=sa)
        RatingFactory(stimulus=b, rater=rater, overall=sb)
    for rater, (sc, sd) in zip(gone, [(80, 60), (40, 20)], strict=True):
        RatingFactory(stimulus=c, rater=rater, overall=sc)
        RatingFactory(stimulus=d, rater=rater, overall=sd)
    analysis = AnalysisFactory(study=study, method="bt500", n_stimuli=4, n_raters=4, n_ratings=8)
    StimulusResultFactory(analysis=analysis, stimulus=a, mos=50, ci_low=40, ci_high=60, n=2)
    StimulusResultFactory(analysis=analysis, stimulus=b, mos=70, ci_low=61, ci_high=79, n=2)
    for s in (c, d):
        StimulusResultFactory(
            analysis=analysis, stimulus=s, mos=None, std=None, ci_low=None, ci_high=None,
            n=0, note=NO_SCORES,
        )  # fmt: skip
    for rater, bias in zip(kept, (-5.0, 5.0), strict=True):
        RaterResultFactory(
            analysis=analysis, rater=rater, n=2, bias=bias, inconsistency=0.0,
            per_dimension={"overall": {"n": 2, "bias": bias, "inconsistency": 0.0}},
        )  # fmt: skip
    for rater in gone:
        RaterResultFactory(
            analysis=analysis, rater=rater, n=2, bias=None, inconsistency=None, p=1, q=1,
            rejected=True, decided_by="overall", reason=REASON,
            per_dimension={"overall": {
                "n": 2, "bias": None, "inconsistency": None, "P": 1.0, "Q": 1.0, "rejected": True,
            }},
        )  # fmt: skip
    return study, analysis


def get(client, study, name="scoring:study-detail", **params):
    client.force_login(study.owner)
    response = client.get(reverse(name, args=[study.slug]), params)
    assert response.status_code == 200
    return response.content.decode()


def figure(body: str, element_id: str) -> dict:
    found = re.search(
        rf'<script id="{element_id}" type="application/json">(.*?)</script>', body, re.S
    )
    return json.loads(found.group(1))


# --- 1. the rejected raters are drawn --------------------------------------------------


def test_rejected_raters_without_a_mos_are_drawn_against_the_all_raters_mean(client, lost):
    study, _ = lost
    body = get(client, study)
    spec = figure(body, "spec-bias")
    points = {p["rater"]: p for p in spec["data"]["values"]}
    assert set(points) == {"RKEPT1", "RKEPT2", "RGONE1", "RGONE2"}
    # c: 80 and 40 (mean 60), d: 60 and 20 (mean 40): +20 and -20 on both images.
    assert points["RGONE1"]["bias"] == pytest.approx(20.0)
    assert points["RGONE2"]["bias"] == pytest.approx(-20.0)
    assert points["RGONE1"]["inconsistency"] == pytest.approx(0.0)
    assert {points[r]["status"] for r in ("RGONE1", "RGONE2")} == {"rejected"}
    assert points["RGONE1"]["against"] == "all raters' mean"
    assert points["RKEPT1"]["status"] == "kept" and points["RKEPT1"]["against"] == "MOS"
    # The caption names the marker the legend draws (a red cross, "+"), and says why.
    shape = spec["layer"][1]["encoding"]["shape"]["scale"]
    assert shape["range"][shape["domain"].index("rejected")] == "cross"
    assert "Rejected raters are red crosses (+)" in body
    assert "compared with the mean of all those images' raters" in body
    # The rejected-raters table has the numbers too, marked as such.
    table = re.search(r'<table class="table" id="rejected">(.*?)</table>', body, re.S).group(1)
    assert "20.0<sup" in table and "-20.0<sup" in table and "&ndash;" not in table


# --- 2. counts: images with and without a MOS -----------------------------------------


def test_the_page_says_how_many_images_have_a_mos_and_why_the_others_do_not(client, lost):
    study, _ = lost
    body = get(client, study)
    counts = re.search(r'<p id="mos-counts"[^>]*>(.*?)</p>', body, re.S).group(1)
    text = re.sub(r"<[^>]+>", "", counts)
    assert "MOS for 2 of 4 images" in text
    assert f"2 have none (2: {NO_SCORES})" in text
    assert "2 images with a MOS, sorted by MOS" in body


# --- 3. the MOS table --------------------------------------------------------------------


def mos_rows(body: str) -> list[list[str]]:
    table = re.search(r'<table class="table mos-table" id="mos-table">(.*?)</table>', body, re.S)
    rows = re.findall(r"<tr>(.*?)</tr>", table.group(1).split("<tbody>")[1], re.S)
    return [
        [re.sub(r"<[^>]+>", "", c).strip() for c in re.findall(r"<td[^>]*>(.*?)</td>", r, re.S)]
        for r in rows
    ]


def test_mos_table_sorts_by_mos_by_default_and_by_any_column_on_request(client, lost):
    study, analysis = lost
    rows = mos_rows(get(client, study))
    # MOS ascending, images without a MOS last; name, MOS, CI, n, SD.
    assert [r[0] for r in rows] == ["a.png", "b.png", "c.png", "d.png"]
    assert rows[0] == ["a.png", "50.0", "[40.0, 60.0]", "2", "10.0"]
    assert rows[2][1:3] == ["–", "–"]
    assert [r[0] for r in mos_rows(get(client, study, sort="-mos"))][:2] == ["b.png", "a.png"]
    assert [r[0] for r in mos_rows(get(client, study, sort="-filename"))] == [
        "d.png", "c.png", "b.png", "a.png",
    ]  # fmt: skip
    body = get(client, study, sort="mos")
    # The current column's link flips its direction; each row has its thumbnail.
    assert f"?analysis={analysis.pk}&amp;dimension=overall&amp;sort=-mos#mos-table" in body
    assert body.count('class="thumb-small"') == 4
    assert "<script>" not in body.split('id="mos-table"')[1].split("</table>")[0]
    # A bad sort falls back to MOS.
    assert [r[0] for r in mos_rows(get(client, study, sort="evil"))][0] == "a.png"


def test_mos_table_is_limited_with_a_show_all_link():
    rows = [{"filename": f"{i}.png", "mos": float(i), "n": 3} for i in range(60)]
    table = dashboard.mos_table(rows, None, show_all=False)
    assert table["shown"] == dashboard.MOS_TABLE_ROWS and table["limited"]
    assert [r["filename"] for r in table["rows"][:2]] == ["0.png", "1.png"]
    everything = dashboard.mos_table(rows, "-n", show_all=True)
    assert everything["shown"] == 60 and not everything["limited"]


def test_mos_figure_x_axis_says_images_sorted_by_mos(client, lost):
    study, _ = lost
    spec = figure(get(client, study), "spec-mos")
    assert spec["encoding"]["x"]["title"] == "images, sorted by MOS"


def test_reason_is_cut_between_clauses_with_3_significant_digits():
    parts = dashboard.reason_parts(
        "BT.500: P = 2, Q = 3, n = 18: (P+Q)/n = 0.2778 > 0.05 and |P-Q|/(P+Q) = 0.0 < 0.3"
    )
    assert parts == [
        "BT.500:",
        "P = 2, Q = 3, n = 18:",
        "(P+Q)/n = 0.278 > 0.05 and",
        "|P-Q|/(P+Q) = 0 < 0.3",
    ]


# --- 4. agreement: a degenerate fit is labelled, counts said once -----------------------


def test_fit_check_flags_a_step_and_a_sign_disagreement():
    rng = np.random.default_rng(1)
    x = np.linspace(0, 100, 40)
    y = 50 + 10 * np.sign(x - 50) + rng.normal(0, 1, 40)
    step = agreement.fit_check(x, y, [60, 40, 50, 0.01], srcc=0.8, plcc=0.9)
    assert "nearly a step" in step["degenerate"]
    assert step["plcc_raw"] == pytest.approx(float(np.corrcoef(x, y)[0, 1]))
    sign = agreement.fit_check(x, y, [60, 40, 50, 20.0], srcc=-0.14, plcc=0.27)
    assert sign["degenerate"] == "PLCC after the fit has another sign than SRCC"
    fine = agreement.fit_check(x, y, [60, 40, 50, 20.0], srcc=0.8, plcc=0.9)
    assert fine["degenerate"] == ""
    assert agreement.fit_check(x, y, None, srcc=0.8, plcc=0.9)["degenerate"] == ""
    assert math.isnan(agreement.fit_check([1, 1], [2, 3], None, None, None)["plcc_raw"])


def report(**overrides) -> dict:
    row = {
        "prediction": "naturalness", "mos": "overall", "label": "naturalness / overall MOS",
        "n": 36, "srcc": -0.1427, "krcc": -0.0951, "plcc": 0.2712, "rmse": 15.8,
        "fit": "ok", "plcc_on": "logistic", "b1": 46.8, "b2": 61.4, "b3": 633.0, "b4": 9.5,
        "plcc_raw": -0.12, "degenerate": "PLCC after the fit has another sign than SRCC",
        "notes": "dropped 18 pair(s) with a missing or non-finite prediction or MOS; "
        "PLCC interval: undefined on 70 of 200 resamples",
        **overrides,
    }  # fmt: skip
    return {
        "study": "s", "model_version": "m", "analysis": 1, "analysis_method": "bt500",
        "n": 54, "n_both": 36, "pairs": [row], "by_generator": [{**row, "generator": "painter-a"}],
        "by_task": [{**row, "task": "clean"}], "points": [],
    }  # fmt: skip


def test_agreement_labels_a_degenerate_fit_and_says_the_counts_once(client, lost, monkeypatch):
    study, _ = lost
    ModelVersionFactory(name="m")
    monkeypatch.setattr(views.agreement_report, "agreement_report", lambda *a, **k: report())
    body = get(client, study, "scoring:agreement", v="m")
    # Unreliable PLCC with the raw PLCC beside it, in the pairs, per generator and per task.
    assert body.count("0.271 unreliable</span>") == 3
    assert body.count('<small class="plcc-raw">raw -0.120</small>') == 3
    assert "degenerate logistic fit: PLCC after the fit has another sign than SRCC" in body
    # The images with both a MOS and a prediction, once; no "dropped" note per row.
    text = re.sub(r"<[^>]+>", "", body)
    assert "36 images with both a MOS and a prediction" in text
    assert "18 more with a prediction have no overall MOS" in text
    assert "dropped 18 pair" not in body
    # The resampling notes sit in disclosures, not in the rows' text.
    assert body.count("undefined on 70 of 200 resamples") == 3
    for found in re.finditer("undefined on 70 of 200 resamples", body):
        before = body[: found.start()]
        assert before.rfind("<details") > before.rfind("</details>")
    # Per task is the same table as per generator (notes column included).
    assert 'id="task-1"' in body and 'id="generator-1"' in body
    assert body.count("<th>notes</th>") == 2


def test_compare_with_does_not_offer_the_chosen_version(client, lost, monkeypatch):
    study, _ = lost
    ModelVersionFactory(name="m")
    ModelVersionFactory(name="other")
    monkeypatch.setattr(views.agreement_report, "agreement_report", lambda *a, **k: report())
    body = get(client, study, "scoring:agreement", v="m")
    compare = re.search(r'<select name="v" id="compare-with">(.*?)</select>', body, re.S).group(1)
    assert 'value="other"' in compare and 'value="m"' not in compare


# --- 8. Pause and Close ask first -------------------------------------------------------


def test_pause_and_close_ask_for_confirmation(client):
    study = StudyFactory(status=Study.Status.OPEN)
    body = get(client, study)
    forms = re.findall(r'<form method="post"[^>]*class="status-form"[^>]*>.*?</form>', body, re.S)
    by_status = {re.search(r'name="status" value="(\w+)"', f).group(1): f for f in forms}
    assert set(by_status) == {"paused", "closed"}
    assert 'data-confirm="Pause the study?' in by_status["paused"]
    assert 'data-confirm="Close the study?' in by_status["closed"]
    assert "js/confirm.js" in body
    # Opening a draft does not ask.
    draft = StudyFactory(status=Study.Status.DRAFT)
    body = get(client, draft)
    opening = re.search(
        r'<form[^>]*class="status-form"[^>]*>\s*<input[^>]*>\s*<input[^>]*value="open"', body
    )
    assert opening and "data-confirm" not in opening.group(0)


# --- 9. one header on every study page ----------------------------------------------------


def test_every_study_page_has_the_study_header_and_nav(client, lost):
    study, _ = lost
    job = ImportJobFactory(study=study, created_by=study.owner)
    pages = {
        "overview": reverse("scoring:study-detail", args=[study.slug]),
        "agreement": reverse("scoring:agreement", args=[study.slug]),
        "settings": reverse("scoring:study-edit", args=[study.slug]),
        "sharing": reverse("scoring:study-sharing", args=[study.slug]),
        "stimuli": reverse("scoring:stimuli", args=[study.slug]),
    }
    client.force_login(study.owner)
    for here, url in pages.items():
        body = client.get(url).content.decode()
        assert body.count('id="study-header"') == 1, here
        assert f'href="{reverse("scoring:study-list")}" id="back-to-studies"' in body, here
        assert re.search(rf"<h1>{study.title} <span[^>]*id=\"study-status\">Open</span></h1>", body)
        assert f'id="study-nav-{here}" aria-current="page"' in body, here
        assert 'class="link-button nav-button" id="study-nav-pilot"' in body, here
    url = reverse("scoring:import-job", args=[study.slug, job.pk])
    body = client.get(url).content.decode()
    assert body.count('id="study-header"') == 1
    assert 'id="study-nav-stimuli" aria-current="page"' in body


def test_header_says_the_protocol_and_progress_counts_gold_and_training(client, lost):
    study, _ = lost
    study.protocol = "agin"
    study.save(update_fields=["protocol"])
    StimulusFactory(study=study, role="training")
    body = get(client, study)
    assert 'id="study-protocol">AGIN (13 dimensions)</span>' in body
    assert "the 3 above" not in body
    assert "partly rated" in body and "in progress" not in body
    assert "besides them 0 gold and 1 training item" in body


def test_copy_buttons_sit_beside_the_rater_links(client, lost):
    study, _ = lost
    body = get(client, study)
    assert 'data-copy="link-anonymous"' in body and "js/copy.js" in body


# --- 8 and 11 in the browser: confirm.js and copy.js under the real CSP ----------------


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_pause_asks_first_and_copy_says_copied_in_the_browser(live_server, csp_page):
    from django.contrib.auth import get_user_model

    page, violations = csp_page
    owner = get_user_model().objects.create_user("pat", password="pw")
    study = StudyFactory(owner=owner, status=Study.Status.OPEN, slug="asks")
    page.goto(f"{live_server.url}/accounts/login/?next=/studies/asks/")
    page.fill("#id_username", "pat")
    page.fill("#id_password", "pw")
    page.click("#sign-in")
    page.locator("#study-header").wait_for()
    asked: list[str] = []
    page.once("dialog", lambda d: (asked.append(d.message), d.dismiss()))
    page.click("#status-paused")
    page.wait_for_timeout(500)
    assert asked and asked[0].startswith("Pause the study?")
    study.refresh_from_db()
    assert study.status == Study.Status.OPEN  # dismissed: nothing posted
    page.once("dialog", lambda d: d.accept())
    page.click("#status-paused")
    page.locator(".messages", has_text="Study paused").wait_for()
    study.refresh_from_db()
    assert study.status == Study.Status.PAUSED
    # Copy: "Copied" with the clipboard, or a fallback that says what to do; never an error.
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.click("#copy-anonymous")
    page.wait_for_function(
        "document.getElementById('copy-anonymous').textContent !== 'Copy'", timeout=3000
    )
    assert page.inner_text("#copy-anonymous") in ("Copied", "Selected: press Ctrl+C")
    assert errors == [] and violations == []
