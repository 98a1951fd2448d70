"""Sharing a study: view-only or edit, given and taken back by the owner only, the same
rules on the pages and the API (annotation.studies, annotation.permissions)."""

from __future__ import annotations

import pytest
from django.urls import reverse
from rest_framework.test import APIClient

from annotation.models import Study, StudyShare
from tests.factories import StimulusFactory, StudyFactory, UserFactory

pytestmark = pytest.mark.django_db


def sharing_url(study):
    return reverse("scoring:study-sharing", args=[study.slug])


def share(client, study, username, level="view"):
    return client.post(sharing_url(study), {"username": username, "level": level})


@pytest.fixture
def owner(client, researcher_a):
    client.force_login(researcher_a)
    return client


def as_user(user):
    from django.test import Client

    c = Client()
    c.force_login(user)
    return c


def api_as(user):
    c = APIClient()
    c.force_authenticate(user)
    return c


def test_a_study_is_invisible_until_shared_then_view_only(owner, study_a, researcher_b):
    other = as_user(researcher_b)
    detail = reverse("scoring:study-detail", args=[study_a.slug])
    assert other.get(detail).status_code == 404
    assert detail not in other.get(reverse("scoring:study-list")).content.decode()
    assert api_as(researcher_b).get(f"/api/v1/studies/{study_a.slug}/").status_code == 404

    response = share(owner, study_a, "researcher_b", "view")
    assert response.status_code == 302
    assert StudyShare.objects.get(study=study_a, user=researcher_b).level == "view"

    assert other.get(detail).status_code == 200
    assert detail in other.get(reverse("scoring:study-list")).content.decode()
    body = api_as(researcher_b).get(f"/api/v1/studies/{study_a.slug}/").json()
    assert body["access"] == "view"
    # View-only: no settings, status, sharing or deletion, on the pages or the API.
    assert other.get(reverse("scoring:study-edit", args=[study_a.slug])).status_code == 403
    assert (
        other.post(
            reverse("scoring:study-status", args=[study_a.slug]), {"status": "paused"}
        ).status_code
        == 403
    )
    assert share(other, study_a, "researcher_b", "edit").status_code == 403
    api = api_as(researcher_b)
    patched = api.patch(f"/api/v1/studies/{study_a.slug}/", {"title": "Hijacked"}, format="json")
    assert patched.status_code == 403 and "view-only" in patched.json()["detail"]
    assert api.post(f"/api/v1/studies/{study_a.slug}/pause/").status_code == 403
    assert api.delete(f"/api/v1/studies/{study_a.slug}/").status_code == 403
    study_a.refresh_from_db()
    assert study_a.title == "A's study" and study_a.status == Study.Status.OPEN
    assert StudyShare.objects.get(study=study_a, user=researcher_b).level == "view"
    # The sharing page shows the list, read-only.
    page = other.get(sharing_url(study_a)).content.decode()
    assert 'id="share-researcher_b"' in page and 'id="share-form"' not in page


def test_edit_access_changes_settings_and_status_but_not_sharing(owner, study_a, researcher_b):
    share(owner, study_a, "researcher_b", "edit")
    other = as_user(researcher_b)
    api = api_as(researcher_b)
    assert api.get(f"/api/v1/studies/{study_a.slug}/").json()["access"] == "edit"
    patched = api.patch(f"/api/v1/studies/{study_a.slug}/", {"title": "Edited"}, format="json")
    assert patched.status_code == 200
    response = other.post(
        reverse("scoring:study-status", args=[study_a.slug]), {"status": "paused"}
    )
    assert response.status_code == 302
    study_a.refresh_from_db()
    assert study_a.title == "Edited" and study_a.status == Study.Status.PAUSED
    # Sharing and deleting stay with the owner.
    third = UserFactory(username="third")
    assert share(other, study_a, "third", "view").status_code == 403
    assert not StudyShare.objects.filter(user=third).exists()
    empty = StudyFactory(owner=study_a.owner, slug="empty")
    share(owner, empty, "researcher_b", "edit")
    assert api.delete("/api/v1/studies/empty/").status_code == 403
    assert Study.objects.filter(slug="empty").exists()


def test_sharing_again_changes_the_level_and_removing_takes_access_back(
    owner, study_a, researcher_b
):
    share(owner, study_a, "researcher_b", "view")
    share(owner, study_a, "Researcher_B", "edit")  # user names match without case
    assert list(study_a.shares.values_list("user__username", "level")) == [("researcher_b", "edit")]
    share_id = study_a.shares.get().pk
    response = owner.post(reverse("scoring:study-unshare", args=[study_a.slug, share_id]))
    assert response.status_code == 302
    assert not study_a.shares.exists()
    assert as_user(researcher_b).get(sharing_url(study_a)).status_code == 404
    # Removing it twice says so and changes nothing.
    again = owner.post(reverse("scoring:study-unshare", args=[study_a.slug, share_id]), follow=True)
    assert "not shared with that account" in again.content.decode()


@pytest.mark.parametrize(
    ("data", "field", "message"),
    [
        ({"username": "nobody", "level": "view"}, "username", "no active account"),
        ({"username": "", "level": "view"}, "username", "required"),
        ({"username": "researcher_a", "level": "view"}, "username", "owns the study"),
        ({"username": "researcher_b", "level": "admin"}, "level", "valid choice"),
    ],
)
def test_bad_shares_are_refused_on_the_field_and_change_nothing(
    owner, study_a, researcher_b, data, field, message
):
    response = owner.post(sharing_url(study_a), data)
    assert response.status_code == 400
    errors = response.context["form"].errors
    assert message in " ".join(errors[field])
    assert f'id="id_{field}_error"' in response.content.decode()
    assert not StudyShare.objects.exists()


def test_an_inactive_account_gets_no_share(owner, study_a):
    UserFactory(username="gone", is_active=False)
    response = share(owner, study_a, "gone")
    assert response.status_code == 400
    assert not StudyShare.objects.exists()


def test_a_stranger_cannot_read_or_change_sharing(study_a, researcher_b):
    stranger = as_user(researcher_b)
    assert stranger.get(sharing_url(study_a)).status_code == 404
    assert share(stranger, study_a, "researcher_b", "edit").status_code == 404
    assert not StudyShare.objects.exists()


def test_an_editor_may_upload_stimuli_through_the_api_but_a_viewer_may_not(
    owner, study_a, researcher_b, tmp_path
):
    """The API's stimulus upload follows the share level (edit: yes, view: 403)."""
    import io

    from PIL import Image

    def png():
        buffer = io.BytesIO()
        Image.new("RGB", (8, 8), (10, 200, 30)).save(buffer, format="PNG")
        buffer.seek(0)
        buffer.name = "green.png"
        return buffer

    StimulusFactory(study=study_a)
    url = f"/api/v1/studies/{study_a.slug}/stimuli/"
    share(owner, study_a, "researcher_b", "view")
    refused = api_as(researcher_b).post(url, {"file": png()}, format="multipart")
    assert refused.status_code == 403
    assert study_a.stimuli.count() == 1
    share(owner, study_a, "researcher_b", "edit")
    accepted = api_as(researcher_b).post(url, {"file": png()}, format="multipart")
    assert accepted.status_code == 201, accepted.content
    assert study_a.stimuli.count() == 2


def test_the_sharing_table_has_a_change_column_and_the_empty_state_outside_it(
    owner, study_a, researcher_b
):
    import re

    page = owner.get(sharing_url(study_a)).content.decode()
    table = page[page.index('<table class="table shares"') : page.index("</table>")]
    assert re.findall(r'<th scope="col">([^<]*)</th>', table) == ["Researcher", "Access", "Change"]
    assert "Not shared with anyone yet" not in table
    assert 'id="shares-empty"' in page[page.index("</table>") :]
    share(owner, study_a, "researcher_b", "edit")
    page = owner.get(sharing_url(study_a)).content.decode()
    assert 'id="shares-empty"' not in page
    row = page[page.index('id="share-researcher_b"') :]
    row = row[: row.index("</tr>")]
    # As many cells as headers: the level as text, the change and removal under "Change".
    assert len(re.findall(r"<td[ >]", row)) == 3
    assert '<td class="share-level">Can edit</td>' in row
    assert 'id="unshare-researcher_b"' in row


def test_the_favicon_is_linked_and_served_for_favicon_ico(client, owner, study_a):
    page = owner.get(sharing_url(study_a)).content.decode()
    assert '<link rel="icon" href="/static/img/favicon.svg" type="image/svg+xml">' in page
    response = client.get("/favicon.ico")
    assert response.status_code == 302 and response["Location"] == "/static/img/favicon.svg"


def test_a_viewer_reads_scoring_jobs_but_only_an_editor_starts_or_cancels_them(
    owner, study_a, researcher_b
):
    """Scoring spends GPU time and cancelling stops the owner's work: the API and the
    agreement page refuse both to a view-only share, and let an editor do them."""
    from scoring.model_scoring.services import model_version_register
    from scoring.models import ScoringJob

    StimulusFactory(study=study_a)
    version = model_version_register(name="sharp", kind="baseline", baseline="sharpness")
    job = ScoringJob.objects.create(model_version=version, study=study_a, total=1)
    share(owner, study_a, "researcher_b", "view")
    api, page = api_as(researcher_b), as_user(researcher_b)
    assert api.get(f"/api/v1/scoring-jobs/{job.pk}/").status_code == 200
    start = {"study": study_a.slug, "model_version": "sharp", "force": True}
    refused = api.post("/api/v1/scoring-jobs/", start, format="json")
    assert refused.status_code == 403 and "view-only" in refused.json()["detail"]
    assert api.post(f"/api/v1/scoring-jobs/{job.pk}/cancel/").status_code == 403
    agreement = reverse("scoring:agreement", args=[study_a.slug])
    shown = page.get(agreement).content.decode()
    assert "view-only" in shown
    assert reverse("scoring:job-cancel", args=[study_a.slug, job.pk]) not in shown
    cancel = reverse("scoring:job-cancel", args=[study_a.slug, job.pk])
    assert page.post(cancel).status_code == 403
    assert page.post(reverse("scoring:job-create", args=[study_a.slug]), start).status_code == 403
    job.refresh_from_db()
    assert job.status == "queued" and ScoringJob.objects.count() == 1

    share(owner, study_a, "researcher_b", "edit")
    assert (
        reverse("scoring:job-cancel", args=[study_a.slug, job.pk])
        in page.get(agreement).content.decode()
    )
    assert api.post(f"/api/v1/scoring-jobs/{job.pk}/cancel/").status_code == 200
    job.refresh_from_db()
    assert job.status == "cancelled"


def test_a_viewer_reads_analyses_but_only_an_editor_runs_one(owner, study_a, researcher_b):
    """An analysis becomes the study's shown results and downloads: a view-only share
    used to run one and change what the owner downloaded."""
    from scoring.models import Analysis

    StimulusFactory(study=study_a)
    share(owner, study_a, "researcher_b", "view")
    api, page = api_as(researcher_b), as_user(researcher_b)
    body = {"study": study_a.slug, "method": "mean"}
    refused = api.post("/api/v1/analyses/", body, format="json")
    assert refused.status_code == 403 and "view-only" in refused.json()["detail"]
    start = reverse("scoring:analysis-start", args=[study_a.slug])
    refused_page = page.post(start, {"method": "mean"})
    # The 403 page says why, not only "no access".
    assert refused_page.status_code == 403
    assert "only its owner or an editor can run analyses" in refused_page.content.decode()
    detail = page.get(reverse("scoring:study-detail", args=[study_a.slug])).content.decode()
    assert 'id="analysis-view-only"' in detail and 'id="run-analysis"' not in detail
    assert not Analysis.objects.exists()

    share(owner, study_a, "researcher_b", "edit")
    assert api.post("/api/v1/analyses/", body, format="json").status_code == 201
    detail = page.get(reverse("scoring:study-detail", args=[study_a.slug])).content.decode()
    assert 'id="run-analysis"' in detail
    assert Analysis.objects.count() == 1


def test_the_api_lists_gives_changes_and_takes_back_shares_for_the_owner_only(
    study_a, researcher_a, researcher_b
):
    """/api/v1/studies/<slug>/shares/: the same rules as the sharing page (the owner
    shares and takes back; a sharer reads who else has it; refusals change nothing)."""
    editor = UserFactory(username="editor_c", is_staff=True)
    base = f"/api/v1/studies/{study_a.slug}/shares/"
    owner = api_as(researcher_a)
    made = owner.post(base, {"username": "Researcher_B", "level": "view"}, format="json")
    assert made.status_code == 200, made.content
    assert made.json()["username"] == "researcher_b" and made.json()["level"] == "view"
    changed = owner.post(base, {"username": "researcher_b", "level": "edit"}, format="json")
    assert changed.json()["id"] == made.json()["id"] and changed.json()["level"] == "edit"
    owner.post(base, {"username": "editor_c", "level": "edit"}, format="json")
    listed = api_as(researcher_b).get(base).json()
    assert [(r["username"], r["level"]) for r in listed] == [
        ("editor_c", "edit"),
        ("researcher_b", "edit"),
    ]
    # An editor may change the study but not who shares it.
    refused = api_as(editor).post(
        base, {"username": "researcher_b", "level": "view"}, format="json"
    )
    assert refused.status_code == 403
    for body, field in (
        ({"username": "nobody-here", "level": "view"}, "username"),
        ({"username": "researcher_b", "level": "admin"}, "level"),
    ):
        bad = owner.post(base, body, format="json")
        assert bad.status_code == 400 and field in bad.json()["fields"], bad.content
    assert StudyShare.objects.get(user=researcher_b).level == "edit"
    share_id = made.json()["id"]
    assert api_as(editor).delete(f"{base}{share_id}/").status_code == 403
    assert owner.delete(f"{base}{share_id}/").status_code == 204
    assert owner.delete(f"{base}{share_id}/").status_code == 404
    assert api_as(researcher_b).get(base).status_code == 404  # no longer shared
    assert list(StudyShare.objects.values_list("user__username", flat=True)) == ["editor_c"]
