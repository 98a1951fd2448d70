"""Every model has a usable admin: changelists with filters and search render."""

from __future__ import annotations

import uuid

import pytest
from django.urls import reverse

from annotation.models import Rating
from tests.factories import RaterFactory, SessionFactory, StimulusFactory, StudyFactory

pytestmark = pytest.mark.django_db

MODELS = ["study", "stimulus", "rater", "session", "claim", "rating"]


@pytest.fixture
def data():
    study = StudyFactory(slug="adm", protocol="overall")
    stimulus = StimulusFactory(study=study, original_name="seen.png", generator="SDXL")
    rater = RaterFactory(study=study, external_id="P-77", source="prolific")
    session = SessionFactory(rater=rater)
    Rating.objects.create(
        stimulus=stimulus,
        rater=rater,
        session=session,
        protocol="overall",
        scale="continuous",
        overall=42,
        viewing_seconds=5,
        client_id=uuid.uuid4(),
    )
    return study


@pytest.mark.parametrize("model", MODELS)
def test_changelists_render_with_search_and_filters(client, admin_user, data, model):
    client.force_login(admin_user)
    url = reverse(f"admin:annotation_{model}_changelist")
    assert client.get(url).status_code == 200
    assert client.get(url, {"q": "seen"}).status_code == 200


def test_stimulus_list_shows_ratings_per_stimulus(client, admin_user, data):
    client.force_login(admin_user)
    response = client.get(reverse("admin:annotation_stimulus_changelist"), {"o": "-9"})
    assert response.status_code == 200
    row = response.context["cl"].result_list.get(original_name="seen.png")
    assert row._n_ratings == 1


def test_study_actions_change_status(client, admin_user, data):
    client.force_login(admin_user)
    response = client.post(
        reverse("admin:annotation_study_changelist"),
        {"action": "pause_studies", "_selected_action": [data.pk]},
    )
    assert response.status_code == 302
    data.refresh_from_db()
    assert data.status == "paused"


def test_ratings_are_read_only_in_admin(client, admin_user, data):
    client.force_login(admin_user)
    rating = Rating.objects.get()
    assert client.get(reverse("admin:annotation_rating_add")).status_code == 403
    client.post(reverse("admin:annotation_rating_change", args=[rating.pk]), {"overall": 99})
    rating.refresh_from_db()
    assert rating.overall == 42


def test_admin_open_action_keeps_the_study_rules(client, admin_user):
    """The admin's open action goes through the study rules: no opening without
    test stimuli; the refusal is shown and nothing changes."""
    empty = StudyFactory(slug="adm-empty", status="draft")
    ready = StudyFactory(slug="adm-ready", status="draft")
    StimulusFactory(study=ready)
    client.force_login(admin_user)
    response = client.post(
        reverse("admin:annotation_study_changelist"),
        {"action": "open_studies", "_selected_action": [empty.pk, ready.pk]},
        follow=True,
    )
    shown = [str(m) for m in response.context["messages"]]
    assert any("adm-empty: import test stimuli before opening" in m for m in shown), shown
    empty.refresh_from_db()
    ready.refresh_from_db()
    assert (empty.status, ready.status) == ("draft", "open")


def test_admin_change_form_shows_locked_settings_and_cannot_change_them(client, admin_user, data):
    client.force_login(admin_user)
    url = reverse("admin:annotation_study_change", args=[data.pk])
    form = client.get(url).context["adminform"]
    readonly = set(form.readonly_fields)
    assert {"protocol", "scale", "status", "slug"} <= readonly  # the study is open
    # A crafted POST cannot change them either: read-only fields are not in the form.
    response = client.post(
        url,
        {
            "title": "Renamed",
            "owner": data.owner_id,
            "protocol": "agin",
            "scale": "acr5",
            "ratings_per_stimulus": 3,
            "session_size": 10,
            "gold_rate": 0,
            "gold_fail_limit": 2,
            "min_view_seconds": 0,
            "break_every": 40,
            "claim_ttl_seconds": 600,
            "completion_code": data.completion_code,
            "platforms": '["prolific", "mturk", "anonymous"]',
            "when_complete": "close",
            # The shares inline's management form (no shares).
            "shares-TOTAL_FORMS": "0",
            "shares-INITIAL_FORMS": "0",
        },
    )
    assert response.status_code == 302, response.content[:500]
    data.refresh_from_db()
    assert data.title == "Renamed"
    assert (data.protocol, data.scale) == ("overall", "continuous")


def test_admin_shares_a_study_with_a_level(client, admin_user, data):
    """The study's shares are an inline of its change form, each with its level."""
    from annotation.models import StudyShare
    from tests.factories import UserFactory

    colleague = UserFactory(username="colleague")
    client.force_login(admin_user)
    url = reverse("admin:annotation_study_change", args=[data.pk])
    response = client.post(
        url,
        {
            "title": data.title,
            "owner": data.owner_id,
            "ratings_per_stimulus": data.ratings_per_stimulus,
            "session_size": data.session_size,
            "gold_rate": data.gold_rate,
            "gold_fail_limit": data.gold_fail_limit,
            "min_view_seconds": data.min_view_seconds,
            "break_every": data.break_every,
            "claim_ttl_seconds": data.claim_ttl_seconds,
            "completion_code": data.completion_code,
            "platforms": '["prolific"]',
            "when_complete": "close",
            "shares-TOTAL_FORMS": "1",
            "shares-INITIAL_FORMS": "0",
            "shares-0-user": colleague.pk,
            "shares-0-level": "edit",
        },
    )
    assert response.status_code == 302, response.content[:500]
    assert StudyShare.objects.get(study=data).level == "edit"
    data.refresh_from_db()
    assert data.platforms == ["prolific"]
