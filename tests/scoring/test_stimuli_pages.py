"""The stimuli pages: the gallery (filters, pages, rating counts), the upload with and
without JavaScript, the import's page and JSON, role changes and removal, and who may
do what (a view-only share sees the gallery and changes nothing)."""

from __future__ import annotations

import io
import re
import zipfile

import pytest
from django.urls import reverse

from annotation.models import ImportJob, Stimulus, StudyShare
from tests.factories import (
    ImportJobFactory,
    RatingFactory,
    StimulusFactory,
    StudyFactory,
    UserFactory,
    png_bytes,
)

pytestmark = pytest.mark.django_db


def zip_of(entries: dict[str, bytes]) -> io.BytesIO:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    buffer.seek(0)
    buffer.name = "round.zip"
    return buffer


def named(data: bytes, name: str) -> io.BytesIO:
    buffer = io.BytesIO(data)
    buffer.name = name
    return buffer


def cards(html: str) -> list[str]:
    return re.findall(r'<li class="stimulus-card[^"]*" id="stimulus-(\d+)"', html)


@pytest.fixture
def owner(db):
    return UserFactory(username="owner")


@pytest.fixture
def study(owner):
    return StudyFactory(owner=owner, slug="gal", title="Gallery study", ratings_per_stimulus=2)


@pytest.fixture
def as_owner(client, owner):
    client.force_login(owner)
    return client


def gallery(study, **params) -> str:
    url = reverse("scoring:stimuli", args=[study.slug])
    if params:
        url += "?" + "&".join(f"{k}={v}" for k, v in params.items())
    return url


# --- The gallery --------------------------------------------------------------------


def test_the_gallery_shows_each_stimulus_with_its_facts(as_owner, study):
    rated = StimulusFactory(
        study=study,
        original_name="portrait.png",
        generator="painter-a",
        task="t2i",
        width=640,
        height=320,
        metadata={"strength": 0.5},
    )
    RatingFactory(stimulus=rated)
    StimulusFactory(study=study, original_name="other.png")
    response = as_owner.get(gallery(study))
    assert response.status_code == 200
    html = response.content.decode()
    card = html[html.index(f'id="stimulus-{rated.pk}"') :]
    card = card[: card.index("</li>")]
    # The stored image, scaled into the 160 px box, loaded when scrolled to.
    assert f'src="{rated.image.url}"' in card
    assert 'width="160" height="80" loading="lazy"' in card
    assert '<dd class="role">Test</dd>' in card
    assert '<dd class="generator">painter-a</dd>' in card
    assert '<dd class="num ratings">1 / 2</dd>' in card
    assert '<dt>task</dt><dd class="meta">t2i</dd>' in card
    assert '<dt>strength</dt><dd class="meta">0.5</dd>' in card
    # Editors get the role select; a rated stimulus has no remove button.
    assert f'id="role-{rated.pk}"' in card and f'id="remove-{rated.pk}"' not in card
    assert 'id="study-nav-stimuli" aria-current="page"' in html
    assert 'id="upload-form"' in html and "js/upload.js" in html


def test_filters_by_role_generator_ratings_and_name(as_owner, study):
    a = StimulusFactory(study=study, original_name="cat-1.png", generator="painter-a")
    b = StimulusFactory(study=study, original_name="dog-1.png", generator="painter-b")
    c = StimulusFactory(
        study=study, original_name="cat-2.png", role="gold", expected_low=1, expected_high=9
    )
    RatingFactory(stimulus=b)
    RatingFactory(stimulus=b)
    RatingFactory(stimulus=c)

    def shown(**params):
        response = as_owner.get(gallery(study, **params))
        assert response.status_code == 200
        return [int(pk) for pk in cards(response.content.decode())]

    assert shown() == [a.pk, b.pk, c.pk]
    assert shown(role="gold") == [c.pk]
    assert shown(generator="painter-b") == [b.pk]
    assert shown(generator="(none)") == [c.pk]
    assert shown(rated="rated") == [b.pk, c.pk]
    assert shown(rated="unrated") == [a.pk]
    assert shown(rated="complete") == [b.pk]
    assert shown(q="CAT") == [a.pk, c.pk]
    assert shown(q="cat", role="test") == [a.pk]
    # A bad filter value is named on its field and not applied; the others are.
    response = as_owner.get(gallery(study, role="judge", q="dog"))
    html = response.content.decode()
    assert 'id="id_role_error"' in html and "not applied" in html
    assert [int(pk) for pk in cards(html)] == [b.pk]


def test_the_gallery_pages_and_never_loads_every_stimulus(
    as_owner, study, django_assert_max_num_queries
):
    made = StimulusFactory.create_batch(60, study=study, generator="g")
    with django_assert_max_num_queries(14):
        first = as_owner.get(gallery(study))
    html = first.content.decode()
    assert len(cards(html)) == 48
    assert "1&ndash;48 of 60 shown" in html and "Page 1 of 2" in html
    second = as_owner.get(gallery(study, generator="g", page=2)).content.decode()
    assert [int(pk) for pk in cards(second)] == [s.pk for s in made[48:]]
    assert 'href="?generator=g&amp;page=1"' in second  # the filters follow the pages
    # Past the end, or not a number: the nearest page, never an error.
    assert len(cards(as_owner.get(gallery(study, page=99)).content.decode())) == 12
    assert len(cards(as_owner.get(gallery(study, page="x")).content.decode())) == 48


# --- Who may do what ----------------------------------------------------------------


def test_a_view_only_researcher_sees_the_gallery_and_changes_nothing(client, study):
    viewer = UserFactory(username="viewer")
    StudyShare.objects.create(study=study, user=viewer, level=StudyShare.Level.VIEW)
    stimulus = StimulusFactory(study=study)
    client.force_login(viewer)
    html = client.get(gallery(study)).content.decode()
    assert cards(html) == [str(stimulus.pk)]
    assert 'id="upload-form"' not in html and 'id="role-' not in html and "remove-" not in html
    slug = study.slug
    upload = client.post(
        reverse("scoring:stimuli-upload", args=[slug]),
        {"files": named(png_bytes(), "a.png"), "default_role": "test"},
    )
    role = client.post(
        reverse("scoring:stimulus-role", args=[slug, stimulus.pk]), {"role": "training"}
    )
    remove = client.post(reverse("scoring:stimulus-remove", args=[slug, stimulus.pk]))
    assert (upload.status_code, role.status_code, remove.status_code) == (403, 403, 403)
    assert list(study.stimuli.values_list("pk", "role")) == [(stimulus.pk, "test")]
    assert not ImportJob.objects.exists()


def test_an_editor_share_may_change_the_stimuli(client, study):
    editor = UserFactory(username="editor")
    StudyShare.objects.create(study=study, user=editor, level=StudyShare.Level.EDIT)
    stimulus = StimulusFactory(study=study)
    client.force_login(editor)
    response = client.post(
        reverse("scoring:stimulus-role", args=[study.slug, stimulus.pk]), {"role": "training"}
    )
    assert response.status_code == 302
    assert Stimulus.objects.get(pk=stimulus.pk).role == "training"


def test_a_stranger_sees_nothing(client, study):
    client.force_login(UserFactory(username="stranger"))
    assert client.get(gallery(study)).status_code == 403
    job = ImportJobFactory(study=study)
    assert (
        client.get(reverse("scoring:import-status", args=[study.slug, job.pk])).status_code == 403
    )
    assert client.get(reverse("scoring:import-job", args=[study.slug, job.pk])).status_code == 403


# --- Upload -------------------------------------------------------------------------

CSV = b"filename,generator\na.png,painter-a\nbroken.png,painter-b\n"


def test_upload_without_javascript_leads_to_the_report(
    as_owner, study, django_capture_on_commit_callbacks
):
    archive = zip_of({"a.png": png_bytes((1, 2, 3)), "broken.png": b"\x89PNG\r\n\x1a\nnope"})
    with django_capture_on_commit_callbacks(execute=True):
        response = as_owner.post(
            reverse("scoring:stimuli-upload", args=[study.slug]),
            {"files": archive, "metadata": named(CSV, "m.csv"), "default_role": "test"},
        )
    job = ImportJob.objects.get()
    assert response.status_code == 302
    assert response["Location"] == reverse("scoring:import-job", args=[study.slug, job.pk])
    page = as_owner.get(response["Location"]).content.decode()
    assert 'data-finished="1"' in page
    assert re.search(r'<tr class="status-rejected"><td class="name">broken.png</td>', page)
    assert re.search(r'<tr class="status-imported"><td class="name">a.png</td>', page)
    assert study.stimuli.get().generator == "painter-a"
    # The gallery lists the import.
    recent = as_owner.get(gallery(study)).content.decode()
    assert f'href="{reverse("scoring:import-job", args=[study.slug, job.pk])}"' in recent


def test_upload_with_javascript_answers_json_and_the_status_follows(
    as_owner, study, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = as_owner.post(
            reverse("scoring:stimuli-upload", args=[study.slug]),
            {
                "files": [
                    named(png_bytes((9, 9, 9)), "a.png"),
                    named(png_bytes((8, 8, 8)), "b.png"),
                ],
                "default_role": "training",
            },
            headers={"X-Requested-With": "XMLHttpRequest", "Accept": "application/json"},
        )
    assert response.status_code == 202
    body = response.json()
    job = ImportJob.objects.get()
    assert body["status_url"] == reverse("scoring:import-status", args=[study.slug, job.pk])
    assert body["job"]["total"] == 2
    status = as_owner.get(body["status_url"]).json()["job"]
    assert (status["status"], status["done"], status["total"], status["finished"]) == (
        "done",
        2,
        2,
        True,
    )
    assert [(r["name"], r["status"]) for r in status["report"]] == [
        ("a.png", "imported"),
        ("b.png", "imported"),
    ]
    assert set(study.stimuli.values_list("role", flat=True)) == {"training"}


def test_a_broken_csv_is_refused_on_its_field_and_nothing_changes(as_owner, study):
    bad = b"filename,expected_low,expected_high\na.png,10,x\n"
    url = reverse("scoring:stimuli-upload", args=[study.slug])
    response = as_owner.post(
        url,
        {
            "files": named(png_bytes(), "a.png"),
            "metadata": named(bad, "m.csv"),
            "default_role": "test",
        },
    )
    assert response.status_code == 400
    html = response.content.decode()
    error = re.search(r'id="id_metadata_error">(.*?)</ul>', html, re.S).group(1)
    assert "line 2, column &#x27;expected_high&#x27;" in error
    assert "The upload was refused; nothing was imported." in html
    as_json = as_owner.post(
        url,
        {
            "files": named(png_bytes(), "a.png"),
            "metadata": named(bad, "m.csv"),
            "default_role": "test",
        },
        headers={"X-Requested-With": "XMLHttpRequest"},
    )
    assert as_json.status_code == 400
    assert "line 2" in as_json.json()["fields"]["metadata"]
    nothing = as_owner.post(url, {"default_role": "test"}, headers={"Accept": "application/json"})
    assert nothing.json()["fields"] == {"files": "Choose a zip archive or one or more image files."}
    assert not ImportJob.objects.exists() and not study.stimuli.exists()


def test_the_upload_url_shows_the_gallery_form_on_get(as_owner, study):
    response = as_owner.get(reverse("scoring:stimuli-upload", args=[study.slug]))
    assert response.status_code == 302 and response["Location"].endswith("/stimuli/#upload")


def test_a_running_import_page_follows_the_job(as_owner, study):
    job = ImportJobFactory(study=study, status="running", total=10, done=4, imported=4, report=[])
    html = as_owner.get(reverse("scoring:import-job", args=[study.slug, job.pk])).content.decode()
    assert 'data-finished="0"' in html and 'max="10" value="4"' in html
    status = as_owner.get(reverse("scoring:import-status", args=[study.slug, job.pk])).json()
    assert status["job"]["report"] == [] and status["job"]["percent"] == 40.0
    other = StudyFactory(owner=study.owner)
    assert (
        as_owner.get(reverse("scoring:import-status", args=[other.slug, job.pk])).status_code == 404
    )


# --- Role and removal ---------------------------------------------------------------


def test_role_change_keeps_the_filters_and_refusals_show_on_the_stimulus(as_owner, study):
    plain = StimulusFactory(study=study, generator="g")
    rated = StimulusFactory(study=study, generator="g")
    RatingFactory(stimulus=rated)
    url = reverse("scoring:stimulus-role", args=[study.slug, plain.pk]) + "?generator=g"
    done = as_owner.post(url, {"role": "training"})
    assert done.status_code == 302 and done["Location"] == gallery(study, generator="g")
    assert Stimulus.objects.get(pk=plain.pk).role == "training"

    gold = as_owner.post(url, {"role": "gold"})
    assert gold.status_code == 400
    html = gold.content.decode()
    assert re.search(rf'id="stimulus-{plain.pk}-error">[^<]*expected_low and expected_high', html)
    assert Stimulus.objects.get(pk=plain.pk).role == "training"

    refused = as_owner.post(
        reverse("scoring:stimulus-role", args=[study.slug, rated.pk]), {"role": "training"}
    )
    assert refused.status_code == 409
    assert re.search(rf'id="stimulus-{rated.pk}-error">[^<]*1 rating', refused.content.decode())
    assert Stimulus.objects.get(pk=rated.pk).role == "test"


def test_remove_works_when_unrated_and_is_refused_with_the_count(
    as_owner, study, django_capture_on_commit_callbacks
):
    unrated = StimulusFactory(study=study)
    rated = StimulusFactory(study=study)
    RatingFactory(stimulus=rated)
    RatingFactory(stimulus=rated, is_pilot=True)
    with django_capture_on_commit_callbacks(execute=True):
        removed = as_owner.post(reverse("scoring:stimulus-remove", args=[study.slug, unrated.pk]))
    assert removed.status_code == 302
    assert not Stimulus.objects.filter(pk=unrated.pk).exists()
    refused = as_owner.post(reverse("scoring:stimulus-remove", args=[study.slug, rated.pk]))
    assert refused.status_code == 409
    assert "2 rating(s) (1 of them pilot)" in refused.content.decode()
    assert Stimulus.objects.filter(pk=rated.pk).exists()
    other = StimulusFactory()  # another study's stimulus is not found under this study
    response = as_owner.post(reverse("scoring:stimulus-remove", args=[study.slug, other.pk]))
    assert response.status_code == 404
