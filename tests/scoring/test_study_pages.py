"""The study settings pages: create, edit and clone a study, open, pause and close it,
each through the services of annotation.studies and only by the study's owner."""

from __future__ import annotations

import re

import pytest
from django.contrib.messages import get_messages
from django.shortcuts import resolve_url
from django.urls import reverse

from annotation import protocol as proto
from annotation.models import Stimulus, Study
from scoring.workspace.study_forms import FIELDS
from tests.factories import StimulusFactory, StudyFactory, UserFactory

pytestmark = pytest.mark.django_db

CREATE = reverse("scoring:study-create")

EVERY_SETTING = {
    "title": "Portraits, round 2",
    "slug": "portraits-2",
    "instructions": "Rate how natural each portrait looks.",
    "consent_text": "You agree that your ratings are stored anonymously.",
    "protocol": "perspectives",
    "scale": "acr5",
    "ratings_per_stimulus": "25",
    "session_size": "40",
    "max_items_per_rater": "120",
    "min_view_seconds": "2.5",
    "break_every": "20",
    "gold_rate": "0.2",
    "gold_fail_limit": "3",
    "repeat_check": "on",
    "claim_ttl_seconds": "900",
    "completion_code": "DONE42",
    "completion_url": "https://app.prolific.com/submissions/complete?cc=DONE42",
    "platforms": ["anonymous", "prolific"],
    "min_session_items": "10",
    "when_complete": "pause",
    "min_viewport_width": "1024",
    "min_viewport_height": "600",
    "refuse_touch": "on",
    "native_pixels": "on",
}

STORED = {
    "title": "Portraits, round 2",
    "slug": "portraits-2",
    "instructions": "Rate how natural each portrait looks.",
    "consent_text": "You agree that your ratings are stored anonymously.",
    "protocol": "perspectives",
    "scale": "acr5",
    "ratings_per_stimulus": 25,
    "session_size": 40,
    "max_items_per_rater": 120,
    "min_view_seconds": 2.5,
    "break_every": 20,
    "gold_rate": 0.2,
    "gold_fail_limit": 3,
    "repeat_check": True,
    "claim_ttl_seconds": 900,
    "completion_code": "DONE42",
    "completion_url": "https://app.prolific.com/submissions/complete?cc=DONE42",
    "platforms": ["prolific", "anonymous"],  # kept in page order
    "min_session_items": 10,
    "when_complete": "pause",
    "min_viewport_width": 1024,
    "min_viewport_height": 600,
    "refuse_touch": True,
    "native_pixels": True,
    "language": "",
}


def settings_of(study: Study) -> dict:
    return {name: getattr(study, name) for name in FIELDS}


def post_data(study: Study, **changes) -> dict:
    """The edit form as the browser sends it: every setting, with ``changes``."""
    data = {}
    for name in FIELDS:
        value = getattr(study, name)
        if name == "repeat_check":
            if value:
                data[name] = "on"
        elif name == "platforms":
            data[name] = list(value)
        elif value is not None:
            data[name] = str(value)
    for name, value in changes.items():
        if value is None:
            data.pop(name, None)
        else:
            data[name] = value
    return data


def messages_of(response) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


@pytest.fixture
def owner_client(client, researcher_a):
    client.force_login(researcher_a)
    return client


# --- Create ------------------------------------------------------------------------


def test_create_page_shows_every_setting_with_help(owner_client):
    response = owner_client.get(CREATE)
    assert response.status_code == 200
    page = response.content.decode()
    for name in FIELDS:
        assert f'name="{name}"' in page, name
    for label in proto.PRESET_LABELS.values():
        assert label in page
    for scale in proto.SCALES.values():
        assert scale.label in page
    assert "How many raters rate each test image" in page
    assert "An image must be shown this long" in page
    assert 'id="id_ratings_per_stimulus_helptext"' in page
    assert "disabled" not in page  # nothing is locked on a new study


def test_create_with_every_setting_stores_it(owner_client, researcher_a):
    response = owner_client.post(CREATE, EVERY_SETTING)
    assert response.status_code == 302
    study = Study.objects.get(slug="portraits-2")
    assert response["Location"] == reverse("scoring:study-detail", args=[study.slug])
    assert settings_of(study) == STORED
    assert study.owner == researcher_a
    assert study.status == Study.Status.DRAFT
    page = owner_client.get(response["Location"]).content.decode()
    assert "Portraits, round 2" in page and "created as a draft" in page


def test_create_with_defaults_only_needs_title_and_slug(owner_client):
    form = owner_client.get(CREATE).context["form"]
    data = {name: form[name].value() for name in FIELDS if form[name].value() is not None}
    assert data.pop("repeat_check") is False
    data.update(title="Defaults", slug="defaults")
    assert owner_client.post(CREATE, data).status_code == 302
    study = Study.objects.get(slug="defaults")
    assert study.protocol == proto.DEFAULT_PRESET and study.scale == proto.DEFAULT_SCALE
    assert study.ratings_per_stimulus == 15 and study.max_items_per_rater is None
    assert len(study.completion_code) == 8


@pytest.mark.parametrize(
    "changes, field, message",
    [
        ({"ratings_per_stimulus": "0"}, "ratings_per_stimulus", "greater than or equal to 1"),
        ({"ratings_per_stimulus": "-1"}, "ratings_per_stimulus", "greater than or equal to 1"),
        ({"ratings_per_stimulus": "1001"}, "ratings_per_stimulus", "less than or equal to 1000"),
        ({"gold_rate": "0.7"}, "gold_rate", "less than or equal to 0.5"),
        ({"gold_rate": "nan"}, "gold_rate", "Enter a number"),
        ({"session_size": "10001"}, "session_size", "less than or equal to 10000"),
        ({"min_view_seconds": "601"}, "min_view_seconds", "less than or equal to 600"),
        ({"break_every": "0"}, "break_every", "greater than or equal to 1"),
        ({"claim_ttl_seconds": "5"}, "claim_ttl_seconds", "greater than or equal to 10"),
        ({"claim_ttl_seconds": "86401"}, "claim_ttl_seconds", "less than or equal to 86400"),
        ({"max_items_per_rater": "0"}, "max_items_per_rater", "greater than or equal to 1"),
        ({"max_items_per_rater": str(2**31)}, "max_items_per_rater", "less than or equal to"),
        ({"gold_fail_limit": "101"}, "gold_fail_limit", "less than or equal to 100"),
        ({"title": "Bad\x00title"}, "title", "NUL character"),
        ({"instructions": "Rate\x00"}, "instructions", "NUL character"),
        ({"title": ""}, "title", "This field is required"),
        ({"slug": "has spaces"}, "slug", "valid “slug”"),
        ({"slug": "new"}, "slug", "reserved"),
        ({"slug": "Study-A"}, "slug", "lowercase"),
        ({"slug": "study-a"}, "slug", "A study already uses this slug"),
        ({"protocol": "nine-dims"}, "protocol", "Select a valid choice"),
        ({"scale": "acr11"}, "scale", "Select a valid choice"),
        ({"completion_url": "javascript:alert(1)"}, "completion_url", "Enter a valid URL"),
    ],
)
def test_bad_values_show_the_error_and_create_nothing(
    owner_client, study_a, changes, field, message
):
    before = Study.objects.count()
    response = owner_client.post(CREATE, {**EVERY_SETTING, **changes})
    assert response.status_code == 200
    form = response.context["form"]
    assert field in form.errors
    assert any(message in e for e in form.errors[field]), form.errors[field]
    # One message a problem: the study's bounds replace the model field's own.
    assert len(form.errors[field]) == 1, form.errors[field]
    page = response.content.decode()
    assert "nothing was saved" in page
    assert f'id="id_{field}_error"' in page
    assert Study.objects.count() == before


# --- Edit --------------------------------------------------------------------------


def test_edit_page_of_an_open_study_shows_locked_settings_with_reasons(owner_client, study_a):
    response = owner_client.get(reverse("scoring:study-edit", args=[study_a.slug]))
    assert response.status_code == 200
    form = response.context["form"]
    assert {n for n, f in form.fields.items() if f.disabled} == {"slug", "protocol", "scale"}
    page = response.content.decode()
    assert "what raters rate cannot change once the study has opened" in page
    assert "the rating scale cannot change once the study has opened" in page
    assert "links handed to crowd platforms point to it" in page
    assert 'aria-describedby="id_protocol_lock id_protocol_helptext" disabled' in page


def test_edit_of_a_draft_locks_only_the_slug(owner_client, researcher_a):
    draft = StudyFactory(owner=researcher_a, status=Study.Status.DRAFT, protocol="overall")
    url = reverse("scoring:study-edit", args=[draft.slug])
    assert {n for n, f in owner_client.get(url).context["form"].fields.items() if f.disabled} == {
        "slug"
    }
    response = owner_client.post(url, post_data(draft, protocol="agin", scale="acr5"))
    assert response.status_code == 302
    draft.refresh_from_db()
    assert (draft.protocol, draft.scale) == ("agin", "acr5")


def test_crafted_post_cannot_change_locked_settings_of_an_open_study(owner_client, study_a):
    url = reverse("scoring:study-edit", args=[study_a.slug])
    data = post_data(
        study_a, title="A's study, renamed", protocol="agin", scale="acr5", slug="hijacked"
    )
    response = owner_client.post(url, data)
    assert response.status_code == 302
    study_a.refresh_from_db()
    assert study_a.title == "A's study, renamed"
    assert (study_a.slug, study_a.protocol, study_a.scale) == (
        "study-a",
        "perspectives",
        "continuous",
    )
    notes = messages_of(response)
    assert any("was not changed: what raters rate cannot change" in m for m in notes), notes
    assert any(m == "Saved: title." for m in notes), notes


def test_invalid_edit_changes_nothing(owner_client, study_a):
    before = settings_of(study_a)
    url = reverse("scoring:study-edit", args=[study_a.slug])
    response = owner_client.post(url, post_data(study_a, title="", session_size="0"))
    assert response.status_code == 200
    assert set(response.context["form"].errors) == {"title", "session_size"}
    study_a.refresh_from_db()
    assert settings_of(study_a) == before


def test_edit_sends_only_the_changed_settings(owner_client, study_a, monkeypatch):
    from scoring.workspace import views

    seen = {}
    real = views.study_update

    def spy(*, study, changes):
        seen.update(changes)
        return real(study=study, changes=changes)

    monkeypatch.setattr(views, "study_update", spy)
    url = reverse("scoring:study-edit", args=[study_a.slug])
    response = owner_client.post(url, post_data(study_a, gold_rate="0.25", repeat_check="on"))
    assert response.status_code == 302
    assert seen == {"gold_rate": 0.25, "repeat_check": True}
    unchanged = owner_client.post(url, post_data(Study.objects.get(pk=study_a.pk)))
    assert messages_of(unchanged)[-1] == "Nothing to change."
    # A blank "when complete" keeps the study's choice: no change either, not "Saved".
    blank = owner_client.post(url, post_data(Study.objects.get(pk=study_a.pk), when_complete=""))
    assert messages_of(blank)[-1] == "Nothing to change."


def test_a_refusal_of_the_service_shows_on_its_field(owner_client, study_a, monkeypatch):
    from annotation.studies import StudyRuleError
    from scoring.workspace import views

    def refuse(*, study, changes):
        raise StudyRuleError("the rating scale cannot change", field="scale")

    monkeypatch.setattr(views, "study_update", refuse)
    url = reverse("scoring:study-edit", args=[study_a.slug])
    response = owner_client.post(url, post_data(study_a, title="New"))
    assert response.status_code == 200
    assert response.context["form"].errors["scale"] == ["the rating scale cannot change"]
    study_a.refresh_from_db()
    assert study_a.title == "A's study"


# --- Clone -------------------------------------------------------------------------


def test_clone_copies_the_settings_not_the_stimuli(owner_client, researcher_a, study_a):
    StimulusFactory(study=study_a)
    StimulusFactory(study=study_a, role=Stimulus.Role.TRAINING)
    study_a.shared_with.add(UserFactory(username="colleague"))
    url = reverse("scoring:study-clone", args=[study_a.slug])
    response = owner_client.get(url)
    assert response.status_code == 200
    form = response.context["form"]
    assert form["title"].value() == "Copy of A's study"
    assert form["slug"].value() == "study-a-copy"
    assert form["completion_code"].value() != study_a.completion_code
    assert not any(f.disabled for f in form.fields.values())
    assert "Sharing is not copied" in response.content.decode()
    # Copying the stimuli is offered (ticked); a form sent without the box copies none.
    assert 'id="copy-stimuli" checked' in response.content.decode()

    data = {name: form[name].value() for name in FIELDS if form[name].value() is not None}
    if data.pop("repeat_check"):
        data["repeat_check"] = "on"
    response = owner_client.post(url, data)
    assert response.status_code == 302
    clone = Study.objects.get(slug="study-a-copy")
    assert response["Location"] == reverse("scoring:study-detail", args=[clone.slug])
    assert clone.status == Study.Status.DRAFT
    assert clone.owner == researcher_a
    assert clone.stimuli.count() == 0 and study_a.stimuli.count() == 2
    assert not clone.shared_with.exists()
    same = ["title", "slug", "completion_code"]
    assert {k: v for k, v in settings_of(clone).items() if k not in same} == {
        k: v for k, v in settings_of(study_a).items() if k not in same
    }
    # A second clone gets the next free slug.
    assert owner_client.get(url).context["form"]["slug"].value() == "study-a-copy-2"


def test_clone_can_copy_the_stimuli_sharing_their_files(
    owner_client, researcher_a, django_capture_on_commit_callbacks
):
    """A replication on the same images: roles, metadata and ranges copied (ranges onto
    the new scale), the files shared; deleting the clone keeps the original's files."""
    from django.core.files.base import ContentFile

    from annotation.models import Stimulus
    from tests.factories import png_bytes

    source = StudyFactory(owner=researcher_a, slug="replicated", scale="acr5")
    gold = StimulusFactory(study=source, role="gold", expected_low=1, expected_high=2)
    gold.image.save("gold.png", ContentFile(png_bytes()), save=True)
    StimulusFactory(study=source, generator="SDXL", metadata={"seed": 7})
    url = reverse("scoring:study-clone", args=[source.slug])
    form = owner_client.get(url).text
    assert 'id="copy-stimuli" checked' in form and "Copy its 2 stimuli" in form
    data = {**post_data(source, slug="replica", scale="continuous"), "copy_stimuli": "1"}
    response = owner_client.post(url, data)
    assert response.status_code == 302, response.context["form"].errors
    assert "with its 2 stimuli" in messages_of(response)[0]
    clone = Study.objects.get(slug="replica")
    copied = {s.role: s for s in clone.stimuli.all()}
    assert copied["gold"].image.name == gold.image.name  # the same file
    assert (copied["gold"].expected_low, copied["gold"].expected_high) == (0, 25)
    assert copied["test"].generator == "SDXL" and copied["test"].metadata == {"seed": 7}
    storage = gold.image.storage
    assert storage.exists(gold.image.name)
    with django_capture_on_commit_callbacks(execute=True) as deleting:
        deleted = owner_client.post(
            reverse("scoring:study-delete", args=["replica"]), {"confirm_slug": "replica"}
        )
    assert deleting  # the files' delete ran
    assert deleted.status_code == 302 and not Study.objects.filter(slug="replica").exists()
    assert storage.exists(gold.image.name)  # the original still shows it
    assert Stimulus.objects.filter(study=source).count() == 2


def test_clone_with_a_taken_slug_is_refused(owner_client, study_a):
    url = reverse("scoring:study-clone", args=[study_a.slug])
    response = owner_client.post(url, {**EVERY_SETTING, "slug": "study-a"})
    assert response.status_code == 200
    assert "slug" in response.context["form"].errors
    assert Study.objects.count() == 1


# --- Open, pause, close --------------------------------------------------------------


def status(client, study, target):
    return client.post(reverse("scoring:study-status", args=[study.slug]), {"status": target})


def test_open_without_test_stimuli_is_refused_with_a_message(owner_client, researcher_a):
    draft = StudyFactory(owner=researcher_a, status=Study.Status.DRAFT)
    StimulusFactory(study=draft, role=Stimulus.Role.TRAINING)
    response = status(owner_client, draft, "open")
    assert response.status_code == 302
    assert response["Location"] == reverse("scoring:study-detail", args=[draft.slug])
    draft.refresh_from_db()
    assert draft.status == Study.Status.DRAFT
    page = owner_client.get(response["Location"]).content.decode()
    assert "import test stimuli before opening the study" in page


def test_open_pause_close_and_reopen(owner_client, researcher_a):
    study = StudyFactory(owner=researcher_a, status=Study.Status.DRAFT)
    StimulusFactory(study=study)
    detail = reverse("scoring:study-detail", args=[study.slug])

    def buttons():
        return [a["status"] for a in owner_client.get(detail).context["status_actions"]]

    assert buttons() == ["open", "closed"]
    for target, shown in [
        ("open", ["paused", "closed"]),
        ("paused", ["open", "closed"]),
        ("open", ["paused", "closed"]),
        ("closed", ["open"]),
        ("open", ["paused", "closed"]),
    ]:
        response = status(owner_client, study, target)
        assert response.status_code == 302
        study.refresh_from_db()
        assert study.status == target
        assert buttons() == shown
    page = owner_client.get(detail).content.decode()
    assert 'id="status-paused"' in page and ">Pause</button>" in page
    assert "edit in admin" not in page


def test_pause_and_close_say_how_many_raters_they_stop_midway(owner_client, researcher_a):
    import html

    from tests.factories import rater_at_rating

    study = StudyFactory(owner=researcher_a, status=Study.Status.OPEN)
    StimulusFactory.create_batch(3, study=study)
    detail = reverse("scoring:study-detail", args=[study.slug])
    confirm = re.compile(r'data-confirm="([^"]*)"')
    assert all("middle" not in c for c in confirm.findall(owner_client.get(detail).text))
    rater_at_rating(study, "p-1")
    rater_at_rating(study, "p-2")
    pause, close = confirm.findall(owner_client.get(detail).text)
    assert "2 raters are in the middle of a session" in pause
    assert "cannot go on until you resume it" in pause
    assert "no no-work code is set, so they get no code" in close
    from tests.factories import StudyOutcomeFactory

    StudyOutcomeFactory(study=study, kind="no_work", code="NW-1")
    close = html.unescape(confirm.findall(owner_client.get(detail).text)[1])
    assert "they stop, and get the study's no-work code" in close
    # Paused, closing stops the same raters: counted too.
    study.status = Study.Status.PAUSED
    study.save(update_fields=["status"])
    shown = confirm.findall(owner_client.get(detail).text)
    assert any("2 raters are in the middle of a session" in c for c in shown), shown


def test_a_status_the_study_already_has_says_so(owner_client, researcher_a):
    study = StudyFactory(owner=researcher_a, status=Study.Status.OPEN)
    StimulusFactory(study=study)
    response = status(owner_client, study, "open")
    assert messages_of(response) == ["The study was already open."]
    study.refresh_from_db()
    assert study.status == Study.Status.OPEN


def test_refused_transitions_leave_the_status(owner_client, researcher_a):
    study = StudyFactory(owner=researcher_a, status=Study.Status.DRAFT)
    opened = StudyFactory(owner=researcher_a, status=Study.Status.OPEN)
    response = status(owner_client, opened, "draft")
    assert any("an open study cannot become draft" in m for m in messages_of(response))
    for target, why in [("paused", "a draft study cannot become paused"), ("gone", "unknown")]:
        response = status(owner_client, study, target)
        assert response.status_code == 302
        assert any(why in m for m in messages_of(response))
        study.refresh_from_db()
        assert study.status == Study.Status.DRAFT
    assert owner_client.get(reverse("scoring:study-status", args=[study.slug])).status_code == 405


# --- Who may ------------------------------------------------------------------------


def test_another_researcher_cannot_edit_clone_or_change_status(client, researcher_b, study_a):
    client.force_login(researcher_b)
    before = settings_of(study_a)
    edit = reverse("scoring:study-edit", args=[study_a.slug])
    clone = reverse("scoring:study-clone", args=[study_a.slug])
    assert client.get(edit).status_code == 404
    assert client.post(edit, post_data(study_a, title="Mine now")).status_code == 404
    assert client.get(clone).status_code == 404
    assert client.post(clone, {**EVERY_SETTING, "slug": "stolen"}).status_code == 404
    assert status(client, study_a, "closed").status_code == 404
    # Another researcher's study and a missing one get the same answer (no oracle).
    missing = client.get(reverse("scoring:study-edit", args=["no-such-study"]))
    assert missing.status_code == 404
    assert client.get(edit).content == missing.content
    study_a.refresh_from_db()
    assert settings_of(study_a) == before and study_a.status == Study.Status.OPEN
    assert Study.objects.count() == 1


def test_a_shared_user_views_but_cannot_change(client, researcher_b, study_a):
    study_a.shared_with.add(researcher_b)
    client.force_login(researcher_b)
    response = client.get(reverse("scoring:study-detail", args=[study_a.slug]))
    assert response.status_code == 200
    page = response.content.decode()
    assert 'id="edit-study"' not in page and 'id="status-closed"' not in page
    edit = reverse("scoring:study-edit", args=[study_a.slug])
    assert client.get(edit).status_code == 403
    assert client.post(edit, post_data(study_a, title="Shared edit")).status_code == 403
    assert client.get(reverse("scoring:study-clone", args=[study_a.slug])).status_code == 403
    assert status(client, study_a, "paused").status_code == 403
    study_a.refresh_from_db()
    assert study_a.title == "A's study" and study_a.status == Study.Status.OPEN


def test_owner_and_superuser_see_the_actions(client, admin_user, study_a):
    client.force_login(admin_user)
    page = client.get(reverse("scoring:study-detail", args=[study_a.slug])).content.decode()
    assert 'id="edit-study"' in page and 'id="clone-study"' in page
    response = client.post(
        reverse("scoring:study-edit", args=[study_a.slug]), post_data(study_a, title="By admin")
    )
    assert response.status_code == 302
    study_a.refresh_from_db()
    assert study_a.title == "By admin"


def test_signed_out_visitors_go_to_sign_in(client, settings, study_a):
    sign_in = resolve_url(settings.LOGIN_URL)
    for url in [
        CREATE,
        reverse("scoring:study-edit", args=[study_a.slug]),
        reverse("scoring:study-clone", args=[study_a.slug]),
    ]:
        response = client.get(url)
        assert response.status_code == 302 and response["Location"].startswith(sign_in)
    assert status(client, study_a, "closed").status_code == 302
    study_a.refresh_from_db()
    assert study_a.status == Study.Status.OPEN


def test_study_list_links_to_the_create_page(owner_client, study_a):
    page = owner_client.get(reverse("scoring:study-list")).content.decode()
    assert f'href="{CREATE}"' in page and "New study" in page
    assert "admin/annotation/study/add" not in page


# --- In the browser ------------------------------------------------------------------


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_create_a_study_in_the_browser(live_server, csp_page, researcher_a):
    page, violations = csp_page
    page.goto(f"{live_server.url}/accounts/login/?next=/studies/")
    page.fill("#id_username", "researcher_a")
    page.fill("#id_password", "pw")
    page.click("#sign-in")
    page.click("#new-study")
    page.fill("#id_title", "Landscapes")
    page.fill("#id_slug", "landscapes")
    page.select_option("#id_protocol", "overall")
    page.select_option("#id_scale", "acr5")
    page.fill("#id_ratings_per_stimulus", "0")
    page.click("#save-study")
    error = page.locator("#id_ratings_per_stimulus_error").inner_text()
    assert "greater than or equal to 1" in error
    page.fill("#id_ratings_per_stimulus", "20")
    page.click("#save-study")
    page.locator("h1", has_text="Landscapes").wait_for()
    assert page.url.endswith("/studies/landscapes/")
    main = page.locator("main").inner_text()
    assert "Draft" in main and "created as a draft" in main
    assert page.locator("#status-open").is_visible()
    assert violations == []
    study = Study.objects.get(slug="landscapes")
    assert (study.owner, study.protocol, study.scale, study.ratings_per_stimulus) == (
        researcher_a,
        "overall",
        "acr5",
        20,
    )


# --- Crowd platforms ------------------------------------------------------------------


def test_new_studies_accept_every_platform(owner_client):
    data = {**EVERY_SETTING}
    data.pop("platforms")
    response = owner_client.post(CREATE, {**data, "platforms": ["prolific", "mturk", "anonymous"]})
    assert response.status_code == 302
    assert Study.objects.get(slug="portraits-2").platforms == ["prolific", "mturk", "anonymous"]


@pytest.mark.parametrize(
    ("platforms", "message"),
    [([], "Choose at least one platform"), (["prolific", "myspace"], "not one of the available")],
)
def test_platforms_are_refused_on_the_field(owner_client, study_a, platforms, message):
    url = reverse("scoring:study-edit", args=[study_a.slug])
    data = post_data(study_a, platforms=None)
    if platforms:
        data["platforms"] = platforms
    response = owner_client.post(url, data)
    assert response.status_code == 200
    assert message in " ".join(response.context["form"].errors["platforms"])
    study_a.refresh_from_db()
    assert study_a.platforms == ["prolific", "mturk", "anonymous"]


def test_platforms_change_through_the_api_with_the_same_rules(researcher_a, study_a):
    from rest_framework.test import APIClient

    api = APIClient()
    api.force_authenticate(researcher_a)
    url = f"/api/v1/studies/{study_a.slug}/"
    for bad in ([], ["prolific", "prolific"], ["fax"], "prolific"):
        response = api.patch(url, {"platforms": bad}, format="json")
        assert response.status_code == 400, bad
        assert "platforms" in response.json()["fields"]
    assert api.patch(url, {"platforms": ["mturk"]}, format="json").status_code == 200
    study_a.refresh_from_db()
    assert study_a.platforms == ["mturk"]


def test_the_study_page_shows_only_the_links_the_study_takes(owner_client, study_a):
    detail = reverse("scoring:study-detail", args=[study_a.slug])
    page = owner_client.get(detail).content.decode()
    assert all(f'id="link-{p}"' in page for p in ("anonymous", "prolific", "mturk"))
    study_a.platforms = ["prolific"]
    study_a.save()
    page = owner_client.get(detail).content.decode()
    assert 'id="link-prolific"' in page
    assert 'id="link-anonymous"' not in page and 'id="link-mturk"' not in page


# --- Raters' language -----------------------------------------------------------------


def test_the_form_sets_the_language_and_the_texts_per_language(owner_client, study_a):
    url = reverse("scoring:study-edit", args=[study_a.slug])
    page = owner_client.get(url)
    assert "Title (简体中文)" in page.text and "Each rater&#x27;s browser language" in page.text
    data = post_data(
        study_a,
        language="zh-hans",
        **{"title__zh-hans": "生成图像的自然度", "consent_text__zh-hans": "中文知情同意。"},
    )
    response = owner_client.post(url, data)
    assert response.status_code == 302, response.content.decode()[:3000]
    study = Study.objects.get(pk=study_a.pk)
    assert study.language == "zh-hans"
    chinese = {"title": "生成图像的自然度", "consent_text": "中文知情同意。"}
    assert study.texts == {"zh-hans": chinese}
    # The edit page shows them again; clearing a text removes it.
    again = owner_client.get(url)
    assert again.context["form"]["title__zh-hans"].value() == "生成图像的自然度"
    data["consent_text__zh-hans"] = ""
    assert owner_client.post(url, data).status_code == 302
    assert Study.objects.get(pk=study_a.pk).texts == {"zh-hans": {"title": "生成图像的自然度"}}
    # A clone copies them.
    clone = owner_client.get(reverse("scoring:study-clone", args=[study_a.slug]))
    assert clone.context["form"]["title__zh-hans"].value() == "生成图像的自然度"


def test_a_text_with_control_characters_is_refused_on_its_field(owner_client, study_a):
    url = reverse("scoring:study-edit", args=[study_a.slug])
    response = owner_client.post(url, post_data(study_a, **{"title__zh-hans": "a\x1bb"}))
    assert response.status_code in (200, 400) and "Remove the control characters" in response.text
    assert Study.objects.get(pk=study_a.pk).texts == {}


# --- Delete ---------------------------------------------------------------------------


def test_the_owner_deletes_an_unrated_study_after_typing_its_slug(owner_client, researcher_a):
    from annotation.models import Stimulus

    study = StudyFactory(owner=researcher_a, slug="to-go", status=Study.Status.DRAFT)
    StimulusFactory.create_batch(2, study=study)
    edit = reverse("scoring:study-edit", args=[study.slug])
    assert 'id="delete-form"' in owner_client.get(edit).text
    url = reverse("scoring:study-delete", args=[study.slug])
    wrong = owner_client.post(url, {"confirm_slug": "to-g"})
    assert wrong.status_code == 302 and wrong["Location"].endswith("/edit/?delete=mistyped#delete")
    told = owner_client.get(wrong["Location"]).text  # in the card, as an alert
    assert 'id="delete-error" role="alert"' in told and 'aria-invalid="true"' in told
    assert Study.objects.filter(slug="to-go").exists()
    assert owner_client.get(url).status_code == 405
    done = owner_client.post(url, {"confirm_slug": "to-go"})
    assert done.status_code == 302 and done["Location"] == reverse("scoring:study-list")
    assert "deleted" in messages_of(done)[0]
    listed = owner_client.get(done["Location"]).text  # the study list shows it
    assert 'id="messages" role="status"' in listed and "(to-go) deleted" in listed
    assert not Study.objects.filter(slug="to-go").exists()
    assert not Stimulus.objects.filter(study_id=study.pk).exists()


def test_a_rated_study_is_not_deleted_and_the_page_says_close_it(owner_client, researcher_a):
    from tests.factories import RatingFactory

    study = StudyFactory(owner=researcher_a, slug="rated", status=Study.Status.OPEN)
    RatingFactory(stimulus=StimulusFactory(study=study))
    page = owner_client.get(reverse("scoring:study-edit", args=[study.slug])).text
    assert 'id="delete-refused"' in page and 'id="delete-form"' not in page
    refused = owner_client.post(
        reverse("scoring:study-delete", args=[study.slug]), {"confirm_slug": "rated"}
    )
    assert refused["Location"].endswith("?delete=rated#delete")
    assert 'id="delete-refused"' in owner_client.get(refused["Location"]).text
    assert Study.objects.filter(slug="rated").exists()


@pytest.mark.parametrize("who, expected", [("editor", 403), ("viewer", 403), ("stranger", 404)])
def test_only_the_owner_may_delete(client, researcher_a, who, expected):
    from tests.factories import StudyShareFactory

    study = StudyFactory(owner=researcher_a, slug="kept", status=Study.Status.DRAFT)
    user = UserFactory()
    if who != "stranger":
        StudyShareFactory(study=study, user=user, level="edit" if who == "editor" else "view")
    client.force_login(user)
    response = client.post(
        reverse("scoring:study-delete", args=[study.slug]), {"confirm_slug": "kept"}
    )
    assert response.status_code == expected
    assert Study.objects.filter(slug="kept").exists()
    if who == "editor":
        page = client.get(reverse("scoring:study-edit", args=[study.slug])).text
        assert 'id="delete"' not in page
