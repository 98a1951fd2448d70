"""Analyses stored from the database: simulated careless raters, the study page."""

from __future__ import annotations

import io

import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse

from annotation.models import Rater, Rating, Study
from scoring.analyses.selectors import ratings_frame
from scoring.analyses.services import AnalysisError, analysis_create, analysis_run
from scoring.models import Analysis, RaterResult, StimulusResult
from tests.factories import rated_study

pytestmark = pytest.mark.django_db


@pytest.fixture(scope="module")
def rated(django_db_setup, django_db_blocker):
    """A study rated by 20 simulated raters (2 careless), built once for this module."""
    with django_db_blocker.unblock():
        study = rated_study(n_raters=20, slug="simulated")
        yield study
        # Ratings are protected evidence: remove them first, then the rest of the study.
        Rating.objects.filter(stimulus__study=study).delete()
        study.delete()
        study.owner.delete()


def test_ratings_frame_is_long_and_leaves_out_gold_and_excluded(rated):
    frame = ratings_frame(rated)
    assert list(frame.columns) == ["rater", "stimulus", "dimension", "score", "repetition"]
    assert set(frame["dimension"]) == {d.key for d in rated.dimensions}
    assert len(set(frame["rater"])) >= 2
    # Exclude one rater by hand: the frame must leave them out.
    victim = Rater.objects.filter(study=rated, pk__in=set(frame["rater"])).first()
    Rater.objects.filter(pk=victim.pk).update(status="excluded")
    frame = ratings_frame(rated)
    excluded = set(
        Rater.objects.filter(study=rated, status="excluded").values_list("pk", flat=True)
    )
    assert victim.pk in excluded and not excluded & set(frame["rater"])

    gold = set(rated.stimuli.exclude(role="test").values_list("pk", flat=True))
    assert gold and not gold & set(frame["stimulus"])
    with_excluded = ratings_frame(rated, include_excluded=True)
    assert excluded <= set(with_excluded["rater"])
    assert len(frame) % 13 == 0


@pytest.mark.parametrize("method", ["mean", "zscore", "bt500", "p913", "p910"])
def test_every_method_stores_results_per_stimulus_and_dimension(rated, method):
    analysis = analysis_create(study=rated, method=method, enqueue=False)
    analysis = analysis_run(analysis_id=analysis.pk)
    assert analysis.status == Analysis.Status.DONE, analysis.error
    n_test = rated.stimuli.filter(role="test", ratings__isnull=False).distinct().count()
    assert StimulusResult.objects.filter(analysis=analysis).count() == n_test * 13
    assert RaterResult.objects.filter(analysis=analysis).count() == analysis.n_raters
    assert analysis.reliability["measure"]


def test_p910_with_careless_raters_kept(rated):
    analysis = analysis_create(
        study=rated, method="p910", options={"include_excluded": True}, enqueue=False
    )
    analysis = analysis_run(analysis_id=analysis.pk)
    results = {r.rater_id: r for r in analysis.rater_results.all()}
    careless = Rater.objects.filter(study=rated, platform__careless=True)
    worst = max(results.values(), key=lambda r: r.inconsistency)
    assert worst.rater_id in set(careless.values_list("pk", flat=True))


def test_mos_tracks_the_ground_truth(rated):
    import numpy as np

    analysis = analysis_run(
        analysis_id=analysis_create(study=rated, method="p910", enqueue=False).pk
    )
    rows = [
        (r.mos, r.stimulus.metadata["truth"]["overall"])
        for r in analysis.stimulus_results.filter(dimension="overall").select_related("stimulus")
    ]
    mos, truth = np.array(rows).T
    assert np.corrcoef(mos, truth)[0, 1] > 0.8  # 4-8 noisy ratings per image


def test_bad_requests_and_empty_study(researcher_a, caplog):
    study = Study.objects.create(slug="empty", title="Empty", owner=researcher_a)
    with pytest.raises(AnalysisError, match="unknown method"):
        analysis_create(study=study, method="median", enqueue=False)
    with pytest.raises(AnalysisError, match="unknown option"):
        analysis_create(study=study, method="mean", options={"ci": "wide"}, enqueue=False)
    analysis = analysis_run(
        analysis_id=analysis_create(study=study, method="mean", enqueue=False).pk
    )
    assert analysis.status == "failed" and "no ratings" in analysis.error
    # An expected refusal is a warning the operator can read, not an error's traceback.
    refused = [r for r in caplog.records if "refused" in r.getMessage()]
    assert [r.levelname for r in refused] == ["WARNING"] and refused[0].exc_info is None
    with pytest.raises(CommandError, match="failed"):
        call_command("run_analysis", "empty", stdout=io.StringIO())


def test_command_prints_rejections(rated):
    out = io.StringIO()
    call_command("run_analysis", rated.slug, "--method", "bt500", "--include-excluded", stdout=out)
    assert "rater(s) rejected" in out.getvalue()
    assert "reliability:" in out.getvalue()


def test_study_page_permissions(client, rated, researcher_b, admin_user):
    url = reverse("scoring:study-detail", args=[rated.slug])
    assert client.get(url).status_code == 302  # anonymous: to the login page
    client.force_login(researcher_b)
    assert client.get(url).status_code == 404  # the same answer as a missing study
    client.force_login(rated.owner)
    response = client.get(url)
    assert response.status_code == 200
    body = response.content.decode()
    assert "PROLIFIC_PID={{%PROLIFIC_PID%}}" in body
    assert "complete" in body and "median per item" in body
    client.force_login(admin_user)
    assert client.get(url).status_code == 200


def test_study_page_runs_an_analysis_and_shows_it(
    client, rated, django_capture_on_commit_callbacks
):
    client.force_login(rated.owner)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            reverse("scoring:analysis-start", args=[rated.slug]), {"method": "bt500"}
        )
    response = client.get(response.url)
    assert response.status_code == 200
    analysis = Analysis.objects.filter(study=rated).latest("created_at")
    assert analysis.status == "done"  # eager in tests
    body = response.content.decode()
    assert "MOS histogram of Overall naturalness" in body
    assert "Rejected raters" in body


def test_analysis_records_the_method_version_of_the_registry(rated, monkeypatch):
    from scoring.numerics import mos

    analysis = analysis_run(analysis_id=analysis_create(study=rated, method="p913").pk)
    assert analysis.status == "done"
    assert analysis.method_version == mos.REGISTRY["p913"].version != ""
    # A new version of a method is what later analyses record; old ones keep theirs.
    monkeypatch.setitem(
        mos.REGISTRY,
        "p913",
        mos.REGISTRY["p913"].__class__(**{**mos.REGISTRY["p913"].__dict__, "version": "2.0"}),
    )
    newer = analysis_create(study=rated, method="p913", enqueue=False)
    assert newer.method_version == "2.0"
    analysis.refresh_from_db()
    assert analysis.method_version != "2.0"
