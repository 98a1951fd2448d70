"""The server-rendered pages and the admin in real Chromium."""

from __future__ import annotations

import pytest

from annotation.models import Study
from tests.factories import StimulusFactory, StudyFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_paused_and_closed_studies_show_a_clear_page(live_server, page):
    StudyFactory(slug="later", title="Later study", status=Study.Status.PAUSED)
    StudyFactory(slug="over", title="Finished study", status=Study.Status.CLOSED)
    StudyFactory(slug="soon", title="Draft study", status=Study.Status.DRAFT)
    for slug, text in [("later", "paused"), ("over", "closed"), ("soon", "not started yet")]:
        response = page.goto(f"{live_server.url}/s/{slug}/")
        assert response.status == 200
        assert text in page.locator("main").inner_text()
    response = page.goto(f"{live_server.url}/s/no-such-study/")
    assert response.status == 404


def test_admin_lists_stimuli_with_rating_counts(live_server, page, admin_user):
    study = StudyFactory(slug="adm", title="Admin study")
    StimulusFactory(study=study, original_name="first.png")
    page.goto(f"{live_server.url}/admin/login/")
    page.fill("#id_username", "admin")
    page.fill("#id_password", "pw")
    page.click("input[type=submit]")
    page.goto(f"{live_server.url}/admin/annotation/stimulus/")
    table = page.locator("#result_list")
    assert "first.png" in table.inner_text()
    assert "RATINGS" in table.locator("thead").inner_text().upper()
    page.goto(f"{live_server.url}/admin/annotation/study/")
    assert "adm" in page.locator("#result_list").inner_text()
