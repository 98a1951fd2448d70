"""Hostile input on the pages' forms (the API's side is tests/test_bad_input_catalogue.py):
each case a 400 that says what was wrong, never a 500, and the database unchanged."""

from __future__ import annotations

import pytest
from django.test import Client

from annotation.models import RaterDecision
from tests.factories import (
    ModelVersionFactory,
    RaterFactory,
    StimulusFactory,
    StudyFactory,
)
from tests.test_bad_input_catalogue import counts

pytestmark = pytest.mark.django_db


@pytest.fixture
def page(researcher_a):
    client = Client(raise_request_exception=False)
    client.force_login(researcher_a)
    return client


@pytest.fixture
def study(researcher_a):
    study = StudyFactory(slug="pages", owner=researcher_a, status="open")
    StimulusFactory.create_batch(2, study=study)
    return study


def form(client, path, body: bytes, charset: str | None = None, **headers):
    content_type = "application/x-www-form-urlencoded"
    if charset:
        content_type += f"; charset={charset}"
    return client.generic("POST", path, body, content_type=content_type, **headers)


@pytest.mark.parametrize("charset", ["latin-1", "iso-8859-1", "utf-16"])
@pytest.mark.parametrize("path", ["/accounts/login/", "/studies/new/", "/accounts/tokens/"])
def test_a_form_that_names_another_charset_is_a_400_that_says_utf8(page, study, path, charset):
    """Django reads page forms in UTF-8 only and raised BadRequest from inside the
    error page's own CSRF check (a 500); now a 400 naming the charset."""
    before = counts()
    response = form(page, path, b"username=x&slug=latin&title=%E9t%E9", charset)
    assert response.status_code == 400
    assert b"UTF-8" in response.content and charset.encode() in response.content
    assert counts() == before


@pytest.mark.parametrize("charset", ["utf8", "UTF-8", "Utf8"])
def test_other_spellings_of_utf8_are_read_as_utf8(page, study, charset):
    rater = RaterFactory(study=study, external_id="R-3")
    path = f"/studies/{study.slug}/raters/{rater.pk}/decide/"
    response = form(page, path, b"action=exclude&reason=%C3%A9t%C3%A9", charset)
    assert response.status_code == 302, response.content[:300]
    assert RaterDecision.objects.get(rater=rater).reason == "été"


def test_a_page_refusal_is_json_for_a_script_that_asks_for_json(page, study):
    response = form(
        page, "/studies/new/", b"slug=x&title=a", "latin-1", HTTP_ACCEPT="application/json"
    )
    assert response.status_code == 400
    assert response.json()["error"] == "bad_request"
    assert "UTF-8" in response.json()["fields"]["form"]


def test_nul_in_fields_read_outside_a_form_class_is_refused_with_a_message(page, study):
    """Fields read from request.POST directly (a scoring job's model version, a rater
    decision's reason, a bonus's reason) reached PostgreSQL as a DataError (500)."""
    from tests.factories import AnalysisFactory

    ModelVersionFactory(name="sharp")
    rater = RaterFactory(study=study, external_id="R-1", source="prolific")
    analysis = AnalysisFactory(study=study)
    decide = f"/studies/{study.slug}/raters/{rater.pk}/decide/"
    bonus = (
        f"kind=bonus&platform=prolific&analysis={analysis.pk}&min_corr=0&top_percent=50"
        "&amount=1.00&currency=GBP&reason=a{}b"
    )
    cases = [
        (f"/studies/{study.slug}/jobs/", b"model_version=a%00b", "choose a registered model"),
        (decide, b"action=approve&reason=a%00b", "remove the control characters"),
        (decide, b"action=exclude&reason=a%1Bb", "remove the control characters"),
        (
            f"/studies/{study.slug}/payments/",
            bonus.format("%00").encode(),
            "remove the control characters",
        ),
    ]
    before = counts()
    for path, body, message in cases:
        response = form(page, path, body)
        assert response.status_code in (302, 400, 409), (path, body, response.status_code)
        if response.status_code == 302:
            response = page.get(response["Location"])
        assert message in response.content.decode(), (path, body)
    assert counts() == before
    assert not RaterDecision.objects.exists()


def test_tab_and_newlines_in_free_text_are_kept(page, study):
    rater = RaterFactory(study=study, external_id="R-2")
    response = form(
        page,
        f"/studies/{study.slug}/raters/{rater.pk}/decide/",
        b"action=exclude&reason=first%0D%0Asecond%09third",
    )
    assert response.status_code == 302
    assert RaterDecision.objects.get(rater=rater).reason == "first\r\nsecond\tthird"


def test_a_page_form_over_the_size_limit_says_so(page, study, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    before = counts()
    response = form(page, "/studies/new/", b"slug=big&title=" + b"x" * 5000)
    assert response.status_code == 400
    assert b"larger than this site accepts" in response.content
    settings.DATA_UPLOAD_MAX_NUMBER_FIELDS = 10
    many = "&".join(f"f{i}=1" for i in range(20)).encode()
    response = form(page, "/studies/new/", many)
    assert response.status_code == 400 and b"more fields" in response.content
    assert counts() == before


@pytest.mark.sqlite_too
@pytest.mark.parametrize(
    "raw", ["99999999999999999999", "9223372036854775808", "-99999999999999999999"]
)
def test_ids_past_8_bytes_are_no_such_stimulus_on_either_database(page, study, raw):
    """SQLite's driver cannot send such an id (OverflowError, a 500 on make run's
    database); PostgreSQL found no row. Both now say so on the gallery."""
    before = counts()
    body = f"action=role&role=test&ids={raw}".encode()
    response = form(page, f"/studies/{study.slug}/stimuli/", body)
    assert response.status_code == 302
    follow = page.get(response["Location"])
    assert f"#{int(raw)}".encode() in follow.content  # named as not in this study
    assert counts() == before


@pytest.mark.sqlite_too
def test_an_admin_address_with_an_id_past_8_bytes_is_a_404(admin_user):
    client = Client(raise_request_exception=False)
    client.force_login(admin_user)
    response = client.get("/admin/annotation/stimulustally/99999999999999999999/change/")
    # PostgreSQL: the admin's own "does not exist" redirect; SQLite: a 404.
    assert response.status_code in (302, 404)
