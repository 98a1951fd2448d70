"""The agreement dashboard and report on a rated study scored by baselines."""

from __future__ import annotations

import io

import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse

from annotation.models import Rating, Study
from scoring.analyses.services import analysis_create, analysis_run
from scoring.model_scoring import model_cache as runtime
from scoring.model_scoring.agreement_report import AgreementUnavailable, agreement_report
from scoring.model_scoring.services import model_version_register, scoring_job_start
from tests.factories import rated_study

pytestmark = pytest.mark.django_db


@pytest.fixture(scope="module")
def scored(django_db_setup, django_db_blocker):
    """A study rated by 12 simulated raters (60 test images: clean, blurred...), a P.910
    analysis, and two baselines' predictions (built once)."""
    with django_db_blocker.unblock():
        runtime.clear_cache()
        study = rated_study(n_raters=12, slug="scored")
        analysis_run(analysis_id=analysis_create(study=study, method="p910", enqueue=False).pk)
        for name in ("sharpness", "luminance"):
            version = model_version_register(name=name, kind="baseline", baseline=name)
            job, _ = scoring_job_start(model_version=version, study=study, enqueue=False)
            from scoring.tasks import score_job

            score_job(job.pk)  # in-process; the batches run eagerly too
        yield study
        Rating.objects.filter(stimulus__study=study).delete()
        study.delete()
        study.owner.delete()
        from scoring.models import ModelVersion

        ModelVersion.objects.all().delete()


def test_report_has_pairs_groups_and_intervals(scored):
    from scoring.models import ModelVersion

    report = agreement_report(
        scored, ModelVersion.objects.get(name="sharpness"), n_boot=200, group_boot=50
    )
    assert report["n"] > 30
    pairs = {r["prediction"]: r for r in report["pairs"]}
    assert set(pairs) == {"naturalness", "technical_pred", "rationality_pred"} or len(pairs) == 3
    nat = pairs["naturalness"]
    assert -1 <= nat["srcc"] <= 1 and nat["srcc_low"] <= nat["srcc"] <= nat["srcc_high"]
    assert {r["generator"] for r in report["by_generator"]} == {
        "painter-a",
        "painter-b",
        "painter-c",
    }
    assert report["by_task"]


def test_blurred_images_are_less_sharp_and_worse_rated(scored):
    """Ground truth check: the sharpness baseline agrees positively with people on blur."""
    from scoring.models import ModelVersion, Prediction

    version = ModelVersion.objects.get(name="sharpness")
    blur = Prediction.objects.filter(model_version=version, stimulus__metadata__degradation="blur")
    clean = Prediction.objects.filter(model_version=version, stimulus__metadata__degradation="none")
    assert max(p.naturalness for p in blur) < max(p.naturalness for p in clean)


def test_dashboard_for_owner_admin_and_404_for_others(client, scored, researcher_b, admin_user):
    url = reverse("scoring:agreement", args=[scored.slug]) + "?v=sharpness&v=luminance"
    client.force_login(researcher_b)
    assert client.get(url).status_code == 404  # as a missing study: no existence oracle
    client.logout()
    assert client.get(url).status_code == 302  # to the login page
    client.force_login(scored.owner)
    response = client.get(url)
    assert response.status_code == 200
    body = response.content.decode()
    # Two versions side by side, each with its scatter (a Vega-Lite specification the
    # page draws with vega-embed) and its logistic sampled as a line.
    for number in (1, 2):
        assert f'<script id="spec-scatter-{number}" type="application/json">' in body
        assert f'id="figure-scatter-{number}"' in body
    assert '"type": "line"' in body and "painter-b" in body and "Per generator" in body
    assert 'class="scatter"' not in body and "<polyline" not in body  # no hand-drawn geometry
    client.force_login(admin_user)
    assert client.get(url).status_code == 200


def test_rater_token_gets_nothing(client, scored):
    rater = scored.raters.first()
    client.cookies["rater_token"] = rater.token
    response = client.get(reverse("scoring:agreement", args=[scored.slug]))
    assert response.status_code == 302


def test_predictions_csv_and_jobs_json(client, scored):
    client.force_login(scored.owner)
    response = client.get(reverse("scoring:predictions-csv", args=[scored.slug, "sharpness"]))
    lines = b"".join(response.streaming_content).decode().splitlines()
    assert lines[0] == "image,technical,rationality,naturalness,artifact_map,generator,task"
    assert len(lines) == 1 + 60
    jobs = client.get(reverse("scoring:jobs-json", args=[scored.slug])).json()["jobs"]
    assert {j["status"] for j in jobs} == {"done"} and all(j["done"] == 60 for j in jobs)


def test_no_analysis_is_a_clear_message(researcher_a):
    from scoring.model_scoring.agreement_report import reference_analysis

    study = Study.objects.create(slug="bare", title="Bare", owner=researcher_a)
    with pytest.raises(AgreementUnavailable, match="no finished MOS analysis"):
        reference_analysis(study)


def test_agreement_command_database_mode(scored):
    import json

    out = io.StringIO()
    call_command(
        "agreement",
        scored.slug,
        "--model-version",
        "sharpness",
        "--json",
        "--n-boot",
        "100",
        stdout=out,
    )
    data = json.loads(out.getvalue())
    from scoring.models import StimulusResult

    rated = StimulusResult.objects.filter(analysis_id=data["analysis"], dimension="overall")
    assert data["model_version"] == "sharpness" and data["n"] == rated.count() > 20
    assert {"srcc", "krcc", "plcc", "rmse", "logistic_params", "ci95"} <= set(data["pairs"][0])
    with pytest.raises(CommandError, match="no model version"):
        call_command("agreement", scored.slug, "--model-version", "nope", stdout=io.StringIO())
