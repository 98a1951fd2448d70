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
from scoring.models import Prediction, ScoringJob
from tests.factories import StimulusFactory, StudyFactory

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
    assert first.status_code == 500  # the client was NOT told it succeeded
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
    assert first.status_code == 500
    assert Rating.objects.count() == 1  # written before the drop
    retry = _post(client, body)
    assert retry.status_code == 200 and retry.json()["created"] is False  # a replay
    assert Rating.objects.filter(rater=rater).count() == 1
    assert retry.json()["rating"]["id"] == Rating.objects.get().pk


@pytest.mark.django_db(transaction=True)
def test_broker_down_when_a_job_starts_then_back(researcher_a, monkeypatch):
    from kombu.exceptions import OperationalError as BrokerError

    from scoring import tasks

    study = StudyFactory(slug="nobroker", owner=researcher_a)
    StimulusFactory.create_batch(3, study=study)
    model_version_register(name="sharp", kind="baseline", baseline="sharpness")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=researcher_a)}")

    def down(*args, **kwargs):
        raise BrokerError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")

    real_delay = tasks.score_job.delay
    monkeypatch.setattr(tasks.score_job, "delay", down)
    response = client.post(
        "/api/v1/scoring-jobs/", {"study": "nobroker", "model_version": "sharp"}, format="json"
    )
    assert response.status_code == 503 and response["Retry-After"]
    assert "broker" in response.json()["detail"]
    job = ScoringJob.objects.get()
    assert job.status == "queued" and job.waiting_for_broker  # kept, not lost
    # The broker is back: the next look at the jobs sends it, and it runs.
    monkeypatch.setattr(tasks.score_job, "delay", real_delay)
    listed = client.get("/api/v1/scoring-jobs/").json()
    assert listed["count"] == 1
    job.refresh_from_db()
    assert not job.waiting_for_broker and job.status == "done"
    assert Prediction.objects.count() == 3


@pytest.mark.django_db(transaction=True)
def test_export_job_with_broker_down_then_back(researcher_a, monkeypatch):
    from kombu.exceptions import OperationalError as BrokerError

    from scoring import tasks
    from scoring.models import ExportJob

    study = StudyFactory(slug="exportdown", owner=researcher_a)
    StimulusFactory.create_batch(2, study=study)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=researcher_a)}")
    real_delay = tasks.run_export.delay

    def down(*args, **kwargs):
        raise BrokerError("Connection refused")

    monkeypatch.setattr(tasks.run_export, "delay", down)
    response = client.post(
        "/api/v1/exports/", {"study": "exportdown", "format": "ratings-csv"}, format="json"
    )
    assert response.status_code == 503 and response["Retry-After"]
    job = ExportJob.objects.get()
    assert job.status == "queued" and job.waiting_for_broker
    monkeypatch.setattr(tasks.run_export, "delay", real_delay)
    detail = client.get(f"/api/v1/exports/{job.pk}/").json()
    assert detail["status"] == "done" and detail["download_url"]
    download = client.get(f"/api/v1/exports/{job.pk}/download/")
    assert download.status_code == 200
    assert b"".join(download.streaming_content).startswith(b"rating_id,rater,")
