"""Faults: the database connection drops during a submit; the broker is down when a
scoring job starts. Nothing a rater was told succeeded is lost, nothing is doubled."""

from __future__ import annotations

import json
import uuid

import pytest
from django.db import connection
from django.test import Client
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from annotation import assignment, services, statements
from annotation.models import Rating, Session
from scoring.model_scoring.services import model_version_register
from tests.factories import StimulusFactory, StudyFactory, raters_rate_everything

SCORES = {"overall": 61, "technical": 52, "rationality": 73}


@pytest.fixture
def rating_setup(db):
    study = StudyFactory(slug="fault", protocol="perspectives", ratings_per_stimulus=2)
    StimulusFactory.create_batch(2, study=study)
    rater, _ = services.rater_enter(study=study, source="prolific", external_id="F1")
    session = services.session_start(rater=rater)
    services.session_advance(session=session, stage=Session.Stage.RATING)
    claim = assignment.claim_next(session=session)
    client = Client(raise_request_exception=False, HTTP_X_RATER_TOKEN=rater.token)
    body = json.dumps(
        {
            "stimulus": claim.stimulus_id,
            "scores": SCORES,
            "client_id": str(uuid.uuid4()),
            "viewing_seconds": 5.0,
        }
    )
    return client, body, rater


def _post(client, body):
    response = client.post("/s/fault/submit", body, content_type="application/json")
    # A server drops an unusable connection when the request ends (close_old_connections);
    # the test client leaves that signal unconnected, so do it here.
    connection.close_if_unusable_or_obsolete()
    return response


def _kill_own_connection():
    """What a dropped connection looks like to Django: the server ends our backend."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_terminate_backend(pg_backend_pid())")


@pytest.mark.django_db(transaction=True)
def test_connection_drops_before_commit_then_retry(rating_setup, monkeypatch):
    client, body, rater = rating_setup
    original = statements.delete_claim

    def dropping_delete(claim_id):
        # After the rating's INSERT, before COMMIT; only the first attempt fails.
        monkeypatch.setattr(statements, "delete_claim", original)
        _kill_own_connection()
        return original(claim_id)

    monkeypatch.setattr(statements, "delete_claim", dropping_delete)
    first = _post(client, body)
    # A JSON 503 (the database went away): the client was NOT told it succeeded.
    assert first.status_code == 503 and first.json()["error"], first.content
    assert Rating.objects.count() == 0  # the transaction rolled back with the connection
    retry = _post(client, body)
    assert retry.status_code == 201, retry.content
    assert Rating.objects.filter(rater=rater).count() == 1


@pytest.mark.django_db(transaction=True)
def test_connection_drops_after_commit_then_retry(rating_setup, monkeypatch):
    client, body, rater = rating_setup
    from annotation import quality

    original = quality.after_rating

    def dropping_after_rating(**kwargs):
        monkeypatch.setattr(quality, "after_rating", original)
        _kill_own_connection()  # the rating is committed; the answer never leaves
        return original(**kwargs)

    monkeypatch.setattr(quality, "after_rating", dropping_after_rating)
    first = _post(client, body)
    assert first.status_code == 503 and first.json()["error"], first.content
    assert Rating.objects.count() == 1  # written before the drop
    retry = _post(client, body)
    assert retry.status_code == 200 and retry.json()["created"] is False  # a replay
    assert Rating.objects.filter(rater=rater).count() == 1
    assert retry.json()["rating"]["id"] == Rating.objects.get().pk


def _broker_down(*args, **kwargs):
    # What Celery's Redis result backend raises after its retries (not a kombu error).
    raise RuntimeError("Retry limit exceeded while trying to reconnect to the Celery redis")


JOB_REQUESTS = [
    ("scoring job", "/api/v1/scoring-jobs/", {"study": "nobroker", "model_version": "sharp"}),
    ("export", "/api/v1/exports/", {"study": "nobroker", "format": "ratings-csv"}),
    ("analysis", "/api/v1/analyses/", {"study": "nobroker", "method": "mean"}),
]


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(("kind", "path", "body"), JOB_REQUESTS, ids=[k for k, *_ in JOB_REQUESTS])
def test_broker_down_when_a_job_starts_then_back(researcher_a, monkeypatch, kind, path, body):
    """Whatever the Celery client raises: a JSON 503 naming the job, the row kept
    waiting, a second request joins (scoring) or waits too, and the workers' tick
    sends each job once when the broker is back."""
    from studyweb import jobs

    study = StudyFactory(slug="nobroker", owner=researcher_a, status="open")
    StimulusFactory.create_batch(3, study=study)
    raters_rate_everything(study, 2)  # so the analysis has data
    model_version_register(name="sharp", kind="baseline", baseline="sharpness")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=researcher_a)}")

    real_publish = jobs._publish
    sent = []
    monkeypatch.setattr(jobs, "_publish", _broker_down)
    response = client.post(path, body, format="json")
    assert response.status_code == 503 and response["Retry-After"]
    data = response.json()
    assert data["error"] == "broker_unavailable" and "broker" in data["detail"]
    assert data["job"]["kind"] == kind and data["job"]["waiting_for_broker"] is True
    assert f"{kind} {data['job']['id']}" in data["detail"]
    model = next(m for m in jobs.job_kinds() if m.noun == kind)
    job = model.objects.get(pk=data["job"]["id"])
    assert job.status == "queued" and job.waiting_for_broker  # kept, not lost
    # Reads never send (the broker may be back, but sending is the workers' tick).
    monkeypatch.setattr(jobs, "_publish", lambda j: sent.append(j.pk) or real_publish(j))
    client.get(path)
    assert sent == []
    if kind == "scoring job":  # a second request while waiting joins the same job
        monkeypatch.setattr(jobs, "_publish", _broker_down)
        again = client.post(path, body, format="json")
        assert again.status_code == 503 and again.json()["job"]["id"] == job.pk
        assert model.objects.count() == 1
        monkeypatch.setattr(jobs, "_publish", lambda j: sent.append(j.pk) or real_publish(j))
    assert jobs.jobs_tick()["sent"] == 1
    assert jobs.jobs_tick()["sent"] == 0  # sent once
    assert sent == [job.pk]
    job.refresh_from_db()
    assert not job.waiting_for_broker and job.status == "done", (job.status, job.error)


@pytest.mark.django_db(transaction=True)
def test_broker_down_the_study_page_says_the_analysis_waits(client, researcher_a, monkeypatch):
    from studyweb import jobs

    study = StudyFactory(slug="pagedown", owner=researcher_a)
    monkeypatch.setattr(jobs, "_publish", _broker_down)
    client.force_login(researcher_a)
    response = client.post(f"/studies/{study.slug}/analyses/", {"method": "mean"}, follow=True)
    assert response.status_code == 200
    shown = [str(m) for m in response.context["messages"]]
    analysis = study.analyses.get()
    assert any(f"analysis {analysis.pk} is saved and waits for the task broker" in m for m in shown)
    assert analysis.status == "queued" and analysis.waiting_for_broker
