"""The results on the study page and the agreement page: MOS per image with its
interval (sorted), distributions, the rater bias figure, rejected raters whose n is
the n of their reason, the CI method chosen in the page, raw ratings downloadable
before any analysis, the analyses' live status, and rounded agreement tables with
full precision in their download."""

from __future__ import annotations

import csv
import html
import io
import json
import re

import pytest
from django.contrib.messages import get_messages
from django.urls import reverse

from annotation import protocol
from annotation.models import Rating, Stimulus
from scoring.analyses.services import analysis_create, analysis_run
from scoring.models import Analysis, RaterResult, StimulusResult
from scoring.workspace import views
from tests.factories import (
    ModelVersionFactory,
    PredictionFactory,
    StimulusFactory,
    StudyFactory,
    UserFactory,
    rated_study,
    raters_rate_everything,
)

pytestmark = pytest.mark.django_db


@pytest.fixture(scope="module")
def analysed(django_db_setup, django_db_blocker):
    """A study rated by 20 simulated raters (careless ones included in the analysis),
    with a finished BT.500 analysis that rejects them (built once for this module)."""
    with django_db_blocker.unblock():
        study = rated_study(n_raters=20, slug="results")
        analysis = analysis_run(
            analysis_id=analysis_create(
                study=study, method="bt500", options={"include_excluded": True}, enqueue=False
            ).pk
        )
        assert analysis.status == "done", analysis.error
        yield study, analysis
        Rating.objects.filter(stimulus__study=study).delete()
        study.delete()
        study.owner.delete()


def page(client, study, **params):
    client.force_login(study.owner)
    url = reverse("scoring:study-detail", args=[study.slug])
    response = client.get(url, params)
    assert response.status_code == 200
    return response.content.decode()


def spec(body: str, element_id: str) -> dict:
    """A figure's Vega-Lite specification, as the page embeds it (json_script)."""
    match = re.search(
        rf'<script id="{re.escape(element_id)}" type="application/json">(.*?)</script>',
        body,
        re.S,
    )
    assert match, f"no {element_id} in the page"
    return json.loads(match.group(1))


def layer_values(figure: dict) -> list[dict]:
    return figure["data"]["values"]


# --- the study page after an analysis ----------------------------------------------------


def test_mos_per_image_is_sorted_with_its_interval(client, analysed):
    study, analysis = analysed
    body = page(client, study)
    mos = spec(body, "spec-mos")
    values = layer_values(mos)
    stored = StimulusResult.objects.filter(
        analysis=analysis, dimension="overall", mos__isnull=False
    )
    assert len(values) == stored.count() > 30
    assert [v["rank"] for v in values] == list(range(1, len(values) + 1))
    assert [v["mos"] for v in values] == sorted(v["mos"] for v in values)
    for v in values:
        assert v["ci_low"] <= v["mos"] <= v["ci_high"]
        assert v["image"].startswith("/media/")
    rule, dots = mos["layer"]
    assert (rule["encoding"]["y"]["field"], rule["encoding"]["y2"]["field"]) == (
        "ci_low",
        "ci_high",
    )
    assert dots["encoding"]["href"] == {"field": "image"}
    assert "MOS per image: Overall naturalness" in body
    # The interval's method is named where the results are.
    assert "Normal: MOS ± 1.96 × SE" in html.unescape(body)


def test_the_dimension_is_chosen_in_the_page(client, analysed):
    study, analysis = analysed
    body = page(client, study, dimension="blur")
    mos = spec(body, "spec-mos")
    assert mos["layer"][1]["encoding"]["y"]["title"] == "Blur MOS"
    blur = StimulusResult.objects.filter(analysis=analysis, dimension="blur", mos__isnull=False)
    assert len(layer_values(mos)) == blur.count()
    assert '<option value="blur" selected>' in body
    # Unknown dimension: overall.
    body = page(client, study, dimension="nonsense")
    assert spec(body, "spec-mos")["layer"][1]["encoding"]["y"]["title"] == (
        "Overall naturalness MOS"
    )


def test_every_dimension_has_its_distribution(client, analysed):
    study, analysis = analysed
    body = page(client, study)
    for dim in protocol.dimensions_for(study.protocol):
        figure = spec(body, f"spec-hist-{dim.key}")
        bars = figure["layer"][0]["data"]["values"]
        n = StimulusResult.objects.filter(
            analysis=analysis, dimension=dim.key, mos__isnull=False
        ).count()
        assert sum(b["count"] for b in bars) == n
        assert figure["title"]["text"] == dim.label
        assert f"MOS histogram of {dim.label}" in body


def test_bias_figure_has_every_rater_and_marks_the_rejected(client, analysed):
    study, analysis = analysed
    body = page(client, study)
    bias = spec(body, "spec-bias")
    points = {v["rater"]: v for v in layer_values(bias)}
    results = RaterResult.objects.filter(analysis=analysis).select_related("rater")
    for r in results:
        if r.bias is None:
            continue
        point = points[r.rater.pseudonym]
        assert point["bias"] == pytest.approx(r.per_dimension["overall"]["bias"])
        assert point["inconsistency"] == pytest.approx(r.per_dimension["overall"]["inconsistency"])
        assert point["status"] == ("rejected" if r.rejected else "kept")
    assert any(v["status"] == "rejected" for v in points.values())
    dots = bias["layer"][1]["encoding"]
    assert (dots["x"]["field"], dots["y"]["field"]) == ("bias", "inconsistency")


def test_rejected_raters_show_the_n_their_reason_uses(client, analysed):
    study, analysis = analysed
    rejected = list(
        RaterResult.objects.filter(analysis=analysis, rejected=True).select_related("rater")
    )
    assert rejected, "the careless raters are rejected by BT.500"
    body = page(client, study)
    table = re.search(r'<table class="table" id="rejected">(.*?)</table>', body, re.S).group(1)
    rows = re.findall(r"<tr>(.*?)</tr>", table.split("<tbody>")[1], re.S)
    assert len(rows) == len(rejected)
    for r in rejected:
        n = r.per_dimension["overall"]["n"]
        # The reason counts that n ("P = .., Q = .., n = 18: (P+Q)/n = ...")...
        assert f", n = {n}: (P+Q)/n = " in r.reason
        assert n < r.n  # (the stored n counts the scores of all 13 dimensions)
        row = next(row for row in rows if r.rater.pseudonym in row)
        cells = [
            re.sub(r"<[^>]+>", " ", c).split()
            for c in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)
        ]
        # ...and so does the table: n of the deciding dimension, and n per dimension.
        assert cells[2] == [str(n)]
        assert " ".join(cells[3]) == f"{n} on each of 13 dimensions"
        assert str(r.n) not in cells[2]
        assert cells[4] == [str(round(r.p))] and cells[5] == [str(round(r.q))]  # counts
        # The reason, its numbers at 3 significant digits, each clause unbroken.
        reason_cell = re.findall(r'<td class="text reason">(.*?)</td>', row, re.S)[0]
        spans = re.findall(r'<span class="nowrap">(.*?)</span>', reason_cell)
        text = html.unescape(" ".join(spans))
        assert text.replace(" and", " and") == re.sub(
            r"\d+\.\d+", lambda m: format(float(m.group(0)), ".3g"), r.reason
        )
        assert any(s.startswith("|P-Q|/(P+Q) = ") for s in map(html.unescape, spans))
        assert not re.search(r"\d\.\d{4}", text)  # 0.2778 -> 0.278


def test_raw_ratings_download_before_any_analysis(client):
    study = StudyFactory(protocol="overall", scale="acr5", ratings_per_stimulus=2)
    StimulusFactory.create_batch(3, study=study)
    raters_rate_everything(study, 2)
    body = page(client, study)
    assert not Analysis.objects.filter(study=study).exists()
    assert "No finished analysis yet" in body
    for fmt in ("ratings-csv", "ratings-parquet"):
        url = reverse("scoring:export", args=[study.slug, fmt])
        assert f'href="{url}"' in body
    # MOS datasets wait for an analysis; the raw ratings come now.
    assert reverse("scoring:export", args=[study.slug, "agin-csv"]) not in body
    response = client.get(reverse("scoring:export", args=[study.slug, "ratings-csv"]))
    assert response.status_code == 200
    lines = b"".join(response.streaming_content).decode().splitlines()
    assert len(lines) == 1 + 2 * 3  # header + one row per score (one dimension)


def test_study_pages_show_the_study_nav(client, analysed):
    study, _ = analysed
    body = page(client, study)
    assert 'id="study-nav-overview" aria-current="page"' in body
    client.force_login(study.owner)
    body = client.get(reverse("scoring:agreement", args=[study.slug])).content.decode()
    assert 'id="study-nav-agreement" aria-current="page"' in body


# --- starting an analysis: the CI method, the message, the live status -------------------


def test_the_ci_method_is_chosen_in_the_form_and_shown_with_the_results(client, analysed):
    study, _ = analysed
    body = page(client, study)
    assert '<select name="ci" id="analysis-ci"' in body
    assert 'value="normal" selected' in body and 'value="t"' in body
    response = client.post(
        reverse("scoring:analysis-start", args=[study.slug]), {"method": "mean", "ci": "t"}
    )
    analysis = Analysis.objects.filter(study=study).latest("created_at")
    assert analysis.options == {"ci": "t"} and analysis.status == "done"
    # Eager tasks (as `make run`): the analysis has run, and the message says so.
    assert response.url.endswith(f"?analysis={analysis.pk}")
    said = [str(m) for m in get_messages(response.wsgi_request)]
    assert said == [f"Analysis {analysis.pk} (mean) is done: its results are below."]
    body = client.get(response.url).content.decode()
    assert "Student t: MOS ± t(0.975, n − 1) × SE" in html.unescape(body)
    narrow = layer_values(spec(body, "spec-mos"))
    assert "Student t" in spec(body, "spec-mos")["description"]
    assert all(v["ci"].startswith("[") for v in narrow if v["n"] >= 2)


def test_a_bad_ci_is_refused_and_nothing_is_queued(client, analysed):
    study, _ = analysed
    before = Analysis.objects.filter(study=study).count()
    client.force_login(study.owner)
    response = client.post(
        reverse("scoring:analysis-start", args=[study.slug]), {"method": "mean", "ci": "bogus"}
    )
    assert Analysis.objects.filter(study=study).count() == before
    said = [str(m) for m in get_messages(response.wsgi_request)]
    assert any("unknown option ci='bogus'" in m for m in said)


def test_a_queued_analysis_says_queued_and_its_status_is_live(client, analysed, monkeypatch):
    study, _ = analysed
    real = views.analysis_create
    monkeypatch.setattr(
        views, "analysis_create", lambda **kw: real(**{**kw, "enqueue": False})
    )  # a worker has not taken it yet
    client.force_login(study.owner)
    response = client.post(reverse("scoring:analysis-start", args=[study.slug]), {"method": "p910"})
    queued = Analysis.objects.filter(study=study).latest("created_at")
    assert queued.status == "queued"
    said = [str(m) for m in get_messages(response.wsgi_request)]
    assert said == [f"Analysis {queued.pk} (p910) is queued: its status below updates by itself."]
    body = client.get(response.url).content.decode()
    assert f'<tr data-analysis="{queued.pk}" data-status="queued"' in body
    state = client.get(reverse("scoring:jobs-json", args=[study.slug])).json()["analyses"]
    mine = next(a for a in state if a["id"] == queued.pk)
    assert mine["status"] == "queued" and mine["status_label"].startswith("Queued")
    analysis_run(analysis_id=queued.pk)
    state = client.get(reverse("scoring:jobs-json", args=[study.slug])).json()["analyses"]
    assert next(a for a in state if a["id"] == queued.pk)["status"] == "done"


def test_another_researcher_gets_no_status(client, analysed):
    study, _ = analysed
    client.force_login(UserFactory(username="stranger"))
    assert client.get(reverse("scoring:jobs-json", args=[study.slug])).status_code == 404


# --- the agreement page ------------------------------------------------------------------


def fake_report(**overrides) -> dict:
    row = {
        "prediction": "naturalness",
        "mos": "overall",
        "label": "naturalness / overall MOS",
        "n": 54,
        "srcc": -0.1427,
        "krcc": -0.0951,
        "plcc": 0.2712,
        "rmse": 15.8321,
        "srcc_low": -0.41,
        "srcc_high": 1.728e-17,
        "krcc_low": -0.29,
        "krcc_high": 0.01,
        "plcc_low": 0.11,
        "plcc_high": 0.52,
        "rmse_low": 12.9,
        "rmse_high": 17.7,
        "fit": "ok",
        "plcc_on": "logistic",
        "b1": 46.87,
        "b2": 61.4,
        "b3": 633.39,
        "b4": 9.54,
        "notes": "",
    }
    return {
        "study": "s",
        "model_version": "m",
        "analysis": 1,
        "analysis_method": "bt500",
        "n": 54,
        "pairs": [{**row, **overrides}],
        "by_generator": [{**row, "generator": "painter-a"}],
        "by_task": [{**row, "task": "clean"}],
        "points": [],
    }


@pytest.fixture
def predicted(analysed):
    """The analysed study scored by a model whose predictions span 0.45 to 18,864."""
    study, analysis = analysed
    version = ModelVersionFactory(name="wide-span")
    tests = list(study.stimuli.filter(role=Stimulus.Role.TEST).order_by("pk"))
    for i, stimulus in enumerate(tests):
        value = 0.45 * (18864 / 0.45) ** (i / (len(tests) - 1))
        PredictionFactory(
            model_version=version,
            stimulus=stimulus,
            naturalness=value,
            technical=value,
            rationality=value,
        )
    return study, analysis, version


def test_agreement_table_rounds_for_reading_and_labels_plcc(client, analysed, monkeypatch):
    study, analysis = analysed
    ModelVersionFactory(name="m")
    monkeypatch.setattr(views.agreement_report, "agreement_report", lambda *a, **k: fake_report())
    client.force_login(study.owner)
    body = client.get(reverse("scoring:agreement", args=[study.slug]) + "?v=m").content.decode()
    assert "1.728e-17" not in body and "e-17" not in body
    assert "[-0.410, 0.00]" in body  # the SRCC interval, rounded
    assert "-0.143" in body and "0.271" in body
    assert "after the logistic fit" in body
    assert "PLCC and RMSE are computed after a monotonic 4-parameter logistic fit" in body
    # When the fit failed, the row says PLCC is on raw predictions.
    monkeypatch.setattr(
        views.agreement_report,
        "agreement_report",
        lambda *a, **k: fake_report(fit="failed: constant MOS", plcc_on="raw"),
    )
    body = client.get(reverse("scoring:agreement", args=[study.slug]) + "?v=m").content.decode()
    assert "logistic fit failed: PLCC on raw predictions" in body


def test_agreement_scatter_spans_orders_of_magnitude_on_a_log_axis(client, predicted):
    study, analysis, version = predicted
    client.force_login(study.owner)
    url = reverse("scoring:agreement", args=[study.slug]) + f"?v={version.name}"
    body = client.get(url).content.decode()
    scatter = spec(body, "spec-scatter-1")
    assert scatter["default"] == "log" and set(scatter["specs"]) == {"log", "rank"}
    dots, curve = scatter["specs"]["log"]["layer"]
    xs = [d["prediction"] for d in dots["data"]["values"]]
    assert min(xs) == pytest.approx(0.45) and max(xs) == pytest.approx(18864)
    assert dots["encoding"]["x"]["scale"]["type"] == "log"
    assert len(curve["data"]["values"]) >= 200
    images = {d["image"] for d in dots["data"]["values"]}
    assert all(i.startswith("/media/") for i in images) and len(images) == len(xs)
    assert 'name="axis-1" value="rank"' in body and 'name="axis-1" value="log" checked' in body


def test_agreement_csv_keeps_full_precision(client, predicted):
    study, analysis, version = predicted
    client.force_login(study.owner)
    url = reverse("scoring:agreement-csv", args=[study.slug, version.name]) + f"?a={analysis.pk}"
    response = client.get(url)
    assert response.status_code == 200
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    overall = [r for r in rows if r["scope"] == "overall"]
    assert {r["prediction"] for r in overall} == {
        "naturalness",
        "technical_pred",
        "rationality_pred",
    }
    srcc = overall[0]["srcc"]
    assert len(srcc.split(".")[1]) > 6  # not rounded
    assert {r["scope"] for r in rows} == {"overall", "generator", "task"}
    assert all(r["group"] for r in rows if r["scope"] != "overall")
    client.force_login(UserFactory(username="nosy"))
    assert client.get(url).status_code == 404
