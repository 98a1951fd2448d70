"""Analyses stored from the database: the demo's planted careless raters, the study page."""

from __future__ import annotations

import io

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.urls import reverse

from annotation.models import Rater, Rating, Study
from scoring.analyses.selectors import ratings_frame
from scoring.analyses.services import AnalysisError, analysis_create, analysis_run
from scoring.models import Analysis, RaterResult, StimulusResult

pytestmark = pytest.mark.django_db


@pytest.fixture(scope="module")
def demo_db(django_db_setup, django_db_blocker):
    """The demo study with 20 simulated raters, built once for this module."""
    with django_db_blocker.unblock():
        call_command("seed_demo", "--simulate-raters", "20", stdout=io.StringIO())
        yield Study.objects.get(slug="demo")
        # Ratings are protected evidence: remove them first, then the rest of the demo.
        Rating.objects.filter(stimulus__study__slug="demo").delete()
        Study.objects.filter(slug="demo").delete()
        get_user_model().objects.filter(username__in=["admin", "researcher"]).delete()


def test_ratings_frame_is_long_and_leaves_out_gold_and_excluded(demo_db):
    frame = ratings_frame(demo_db)
    assert list(frame.columns) == ["rater", "stimulus", "dimension", "score", "repetition"]
    assert set(frame["dimension"]) == {d.key for d in demo_db.dimensions}
    assert len(set(frame["rater"])) >= 2
    # Exclude one rater by hand: the frame must leave them out.
    victim = Rater.objects.filter(study=demo_db, pk__in=set(frame["rater"])).first()
    Rater.objects.filter(pk=victim.pk).update(status="excluded")
    frame = ratings_frame(demo_db)
    excluded = set(
        Rater.objects.filter(study=demo_db, status="excluded").values_list("pk", flat=True)
    )
    assert victim.pk in excluded and not excluded & set(frame["rater"])

    gold = set(demo_db.stimuli.exclude(role="test").values_list("pk", flat=True))
    assert gold and not gold & set(frame["stimulus"])
    with_excluded = ratings_frame(demo_db, include_excluded=True)
    assert excluded <= set(with_excluded["rater"])
    assert len(frame) % 13 == 0


@pytest.mark.parametrize("method", ["mean", "zscore", "bt500", "p913", "p910"])
def test_every_method_stores_results_per_stimulus_and_dimension(demo_db, method):
    analysis = analysis_create(study=demo_db, method=method, enqueue=False)
    analysis = analysis_run(analysis_id=analysis.pk)
    assert analysis.status == Analysis.Status.DONE, analysis.error
    n_test = demo_db.stimuli.filter(role="test", ratings__isnull=False).distinct().count()
    assert StimulusResult.objects.filter(analysis=analysis).count() == n_test * 13
    assert RaterResult.objects.filter(analysis=analysis).count() == analysis.n_raters
    assert analysis.reliability["measure"]


def test_bt500_on_the_demo_with_careless_raters_kept(demo_db):
    analysis = analysis_create(
        study=demo_db, method="p910", options={"include_excluded": True}, enqueue=False
    )
    analysis = analysis_run(analysis_id=analysis.pk)
    results = {r.rater_id: r for r in analysis.rater_results.all()}
    careless = Rater.objects.filter(study=demo_db, platform__careless=True)
    worst = max(results.values(), key=lambda r: r.inconsistency)
    assert worst.rater_id in set(careless.values_list("pk", flat=True))


def test_mos_tracks_the_demo_ground_truth(demo_db):
    import numpy as np

    analysis = analysis_run(
        analysis_id=analysis_create(study=demo_db, method="p910", enqueue=False).pk
    )
    rows = [
        (r.mos, r.stimulus.metadata["truth"]["overall"])
        for r in analysis.stimulus_results.filter(dimension="overall").select_related("stimulus")
    ]
    mos, truth = np.array(rows).T
    assert np.corrcoef(mos, truth)[0, 1] > 0.8  # 4-8 noisy ratings per image


def test_bad_requests_and_empty_study(researcher_a):
    study = Study.objects.create(slug="empty", title="Empty", owner=researcher_a)
    with pytest.raises(AnalysisError, match="unknown method"):
        analysis_create(study=study, method="median", enqueue=False)
    with pytest.raises(AnalysisError, match="unknown option"):
        analysis_create(study=study, method="mean", options={"ci": "wide"}, enqueue=False)
    analysis = analysis_run(
        analysis_id=analysis_create(study=study, method="mean", enqueue=False).pk
    )
    assert analysis.status == "failed" and "no ratings" in analysis.error
    with pytest.raises(CommandError, match="failed"):
        call_command("run_analysis", "empty", stdout=io.StringIO())


def test_command_prints_rejections(demo_db):
    out = io.StringIO()
    call_command("run_analysis", "demo", "--method", "bt500", "--include-excluded", stdout=out)
    assert "rater(s) rejected" in out.getvalue()
    assert "reliability:" in out.getvalue()


def test_study_page_permissions(client, demo_db, researcher_b, admin_user):
    url = reverse("scoring:study-detail", args=["demo"])
    assert client.get(url).status_code == 302  # anonymous: to the login page
    client.force_login(researcher_b)
    assert client.get(url).status_code == 403
    client.force_login(demo_db.owner)
    response = client.get(url)
    assert response.status_code == 200
    body = response.content.decode()
    assert "PROLIFIC_PID={{%PROLIFIC_PID%}}" in body
    assert "complete" in body and "median per item" in body
    client.force_login(admin_user)
    assert client.get(url).status_code == 200


def test_study_page_runs_an_analysis_and_shows_it(
    client, demo_db, django_capture_on_commit_callbacks
):
    client.force_login(demo_db.owner)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            reverse("scoring:analysis-start", args=["demo"]), {"method": "bt500"}
        )
    response = client.get(response.url)
    assert response.status_code == 200
    analysis = Analysis.objects.filter(study=demo_db).latest("created_at")
    assert analysis.status == "done"  # eager in tests
    body = response.content.decode()
    assert "MOS histogram of Overall naturalness" in body
    assert "Rejected raters" in body
