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
    AnalysisFactory,
    ImportJobFactory,
    RatingFactory,
    StimulusFactory,
    StimulusResultFactory,
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
    assert '<dd class="num mos">–</dd>' in card  # no analysis yet
    # Task and free metadata are collapsed behind a disclosure, so cards stay short.
    meta = card[card.index('<details class="stimulus-meta">') :]
    assert "<summary>Metadata (2)</summary>" in meta
    assert '<dt>task</dt><dd class="meta">t2i</dd>' in meta
    assert '<dt>strength</dt><dd class="meta">0.5</dd>' in meta
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
    assert client.get(gallery(study)).status_code == 404
    job = ImportJobFactory(study=study)
    assert (
        client.get(reverse("scoring:import-status", args=[study.slug, job.pk])).status_code == 404
    )
    assert client.get(reverse("scoring:import-job", args=[study.slug, job.pk])).status_code == 404


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


def test_every_bad_csv_row_is_its_own_item_on_the_page_and_in_json(as_owner, study):
    bad = b"filename,role,expected_low,expected_high\na.png,goldd,,\nb.png,gold,80,20\n"
    url = reverse("scoring:stimuli-upload", args=[study.slug])

    def send(**headers):
        files = {"files": named(png_bytes(), "a.png"), "metadata": named(bad, "m.csv")}
        return as_owner.post(url, {**files, "default_role": "test"}, headers=headers)

    html = send().content.decode()
    error = re.search(r'id="id_metadata_error">(.*?)</ul>', html, re.S).group(1)
    items = re.findall(r"<li>(.*?)</li>", error, re.S)
    assert len(items) == 3 and "2 rows refused" in items[0], items
    assert "line 2, column &#x27;role&#x27;" in items[1] and "gold, test, training" in items[1]
    assert "line 3, column &#x27;expected_high&#x27;" in items[2]
    lines = send(**{"X-Requested-With": "XMLHttpRequest"}).json()["fields"]["metadata"]
    assert len(lines.split("\n")) == 3
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


def test_forms_on_a_later_page_post_back_to_that_page(as_owner, study, monkeypatch):
    """A refusal on page 2 used to render page 1, where its stimulus (and so its
    message) was not: the researcher saw no error at all."""
    from scoring.workspace import stimuli as gallery_views

    monkeypatch.setattr(gallery_views, "PAGE_SIZE", 2)
    StimulusFactory.create_batch(4, study=study, generator="g")
    html = as_owner.get(gallery(study, generator="g") + "&page=2").content.decode()
    on_page_two = re.findall(r'action="[^"]*/stimuli/(\d+)/role/\?([^"]*)"', html)
    assert len(on_page_two) == 2
    assert all(q == "generator=g&amp;page=2" for _, q in on_page_two), on_page_two
    assert 'class="bulk-form"' in html and "stimuli/?generator=g&amp;page=2" in html
    pk = int(on_page_two[0][0])
    refused = as_owner.post(
        reverse("scoring:stimulus-role", args=[study.slug, pk]) + "?generator=g&page=2",
        {"role": "gold"},
    )
    assert refused.status_code == 400
    assert re.search(rf'id="stimulus-{pk}-error">[^<]*expected_low', refused.content.decode())
    first = as_owner.get(gallery(study, generator="g")).content.decode()
    assert set(re.findall(r'/stimuli/\d+/role/\?([^"]*)"', first)) == {"generator=g"}


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


def _card(html: str, pk: int) -> str:
    card = html[html.index(f'id="stimulus-{pk}"') :]
    return card[: card.index("</li>\n")]


def test_nested_metadata_is_a_key_value_list_with_numbers_rounded(as_owner, study):
    stimulus = StimulusFactory(
        study=study,
        metadata={
            "truth": {"overall": 40.0, "technical": 33.33333, "note": None},
            "scene": 99,
            "strength": 0.87412,
            "tags": ["blur", 2.5],
        },
    )
    card = _card(as_owner.get(gallery(study)).content.decode(), stimulus.pk)
    assert "{&#x27;overall&#x27;" not in card and "{'overall'" not in card
    truth = re.search(r'<dt>truth</dt><dd class="meta"><ul class="meta-sub">(.*?)</ul></dd>', card)
    assert truth, card
    # (PostgreSQL's jsonb keeps its own key order.)
    assert sorted(
        re.findall(r'<li><span class="meta-key">(\w+)</span> ([^<]*)</li>', truth[1])
    ) == [
        ("note", "–"),
        ("overall", "40"),
        ("technical", "33.3"),
    ]
    assert '<dt>scene</dt><dd class="meta">99</dd>' in card
    assert '<dt>strength</dt><dd class="meta">0.874</dd>' in card
    assert '<dt>tags</dt><dd class="meta">blur, 2.5</dd>' in card


def test_cards_show_the_latest_analysis_mos_and_sort_by_it(as_owner, study):
    low = StimulusFactory(study=study, original_name="b-low.png")
    high = StimulusFactory(study=study, original_name="c-high.png")
    none = StimulusFactory(study=study, original_name="a-none.png")
    for _ in range(2):
        RatingFactory(stimulus=low)
    RatingFactory(stimulus=none)
    old = AnalysisFactory(study=study)
    StimulusResultFactory(analysis=old, stimulus=low, mos=90.0)
    latest = AnalysisFactory(study=study)
    StimulusResultFactory(analysis=latest, stimulus=low, mos=21.456)
    StimulusResultFactory(analysis=latest, stimulus=high, mos=77.0)
    # Another dimension of the same analysis is not the card's MOS.
    StimulusResultFactory(analysis=latest, stimulus=none, dimension="technical", mos=5.0)
    AnalysisFactory(study=study, status="running", finished_at=None)  # not finished: ignored

    html = as_owner.get(gallery(study)).content.decode()
    assert '<dd class="num mos">21.5</dd>' in _card(html, low.pk)
    assert '<dd class="num mos">77.0</dd>' in _card(html, high.pk)
    assert '<dd class="num mos">–</dd>' in _card(html, none.pk)
    assert f"from analysis #{latest.pk}" in html

    def order(sort):
        return [int(pk) for pk in cards(as_owner.get(gallery(study, sort=sort)).content.decode())]

    assert order("") == [low.pk, high.pk, none.pk]
    assert order("name") == [none.pk, low.pk, high.pk]
    assert order("newest") == [none.pk, high.pk, low.pk]
    assert order("ratings") == [low.pk, none.pk, high.pk]
    assert order("fewest") == [high.pk, none.pk, low.pk]
    assert order("mos") == [high.pk, low.pk, none.pk]  # no MOS last either way
    assert order("mos_low") == [low.pk, high.pk, none.pk]


def test_sorting_keeps_across_pages(as_owner, study, django_assert_max_num_queries):
    made = StimulusFactory.create_batch(50, study=study)
    with django_assert_max_num_queries(14):
        html = as_owner.get(gallery(study, sort="newest")).content.decode()
    assert [int(pk) for pk in cards(html)] == [s.pk for s in reversed(made)][:48]
    assert 'href="?sort=newest&amp;page=2"' in html
    second = as_owner.get(gallery(study, sort="newest", page=2)).content.decode()
    assert [int(pk) for pk in cards(second)] == [made[1].pk, made[0].pk]


def test_bulk_role_change_reports_each_refusal_and_does_the_rest(as_owner, study):
    a = StimulusFactory(study=study, original_name="a.png")
    b = StimulusFactory(study=study, original_name="b.png")
    rated = StimulusFactory(study=study, original_name="rated.png")
    RatingFactory(stimulus=rated)
    foreign = StimulusFactory(original_name="foreign.png")  # another study's
    url = gallery(study) + "?sort=name"
    response = as_owner.post(
        url,
        {"action": "role", "role": "training", "ids": [a.pk, rated.pk, b.pk, foreign.pk]},
        follow=True,
    )
    assert response.redirect_chain == [(gallery(study, sort="name"), 302)]
    roles = dict(Stimulus.objects.values_list("original_name", "role"))
    assert (roles["a.png"], roles["b.png"], roles["rated.png"]) == ("training", "training", "test")
    assert roles["foreign.png"] == "test"
    html = response.content.decode()
    messages = re.findall(r'<li class="(\w+)">(.*?)</li>', html[html.index('id="messages"') :])
    texts = [text for _, text in messages]
    assert "2 of 4 selected stimuli set to training." in texts
    assert "2 of 4 selected stimuli not set to training; each is named below." in texts
    assert any(t.startswith("rated.png: rated.png keeps its role (test)") for t in texts)
    assert f"#{foreign.pk}: not in this study (removed meanwhile?)" in texts

    # Gold needs a range: refused per stimulus, with the reason.
    gold = as_owner.post(
        gallery(study), {"action": "role", "role": "gold", "ids": [a.pk]}, follow=True
    )
    assert "a.png: a.png has no expected range" in gold.content.decode()
    assert Stimulus.objects.get(pk=a.pk).role == "training"


def test_bulk_removal_removes_the_unrated_and_keeps_the_rated(
    as_owner, study, django_capture_on_commit_callbacks
):
    a = StimulusFactory(study=study, original_name="a.png")
    rated = StimulusFactory(study=study, original_name="rated.png")
    RatingFactory(stimulus=rated)
    with django_capture_on_commit_callbacks(execute=True):
        response = as_owner.post(
            gallery(study), {"action": "remove", "ids": [a.pk, rated.pk]}, follow=True
        )
    assert list(study.stimuli.values_list("pk", flat=True)) == [rated.pk]
    html = response.content.decode()
    assert "1 of 2 selected stimuli removed." in html
    assert "rated.png: rated.png has 1 rating(s)" in html
    # Nothing selected, or a view-only share: nothing changes.
    assert (
        "no stimulus was selected"
        in as_owner.post(gallery(study), {"action": "remove"}, follow=True).content.decode()
    )
    viewer = UserFactory(username="viewer")
    StudyShare.objects.create(study=study, user=viewer, level=StudyShare.Level.VIEW)
    as_owner.force_login(viewer)
    refused = as_owner.post(gallery(study), {"action": "remove", "ids": [rated.pk]})
    assert refused.status_code == 403 and study.stimuli.count() == 1


def test_the_gallery_shows_a_finished_import_s_report_and_recent_imports_name_the_csv(
    as_owner, study, django_capture_on_commit_callbacks
):
    archive = zip_of({"a.png": png_bytes((1, 2, 3))})
    with django_capture_on_commit_callbacks(execute=True):
        as_owner.post(
            reverse("scoring:stimuli-upload", args=[study.slug]),
            {"files": archive, "metadata": named(CSV, "painters.csv"), "default_role": "test"},
        )
    job = ImportJob.objects.get()
    html = as_owner.get(
        gallery(study, generator="painter-a", **{"import": job.pk})
    ).content.decode()
    report = html[html.index('id="import-report"') :]
    assert '<p id="import-summary">1 imported, 0 skipped, 0 rejected.</p>' in report
    imported = re.search(r'<tr class="status-imported"><td class="name">a.png</td>.*?</tr>', report)
    assert imported and "32×24 PNG, role test, generator painter-a" in imported.group(0)
    csv_row = re.search(r'<tr class="status-metadata"><td class="name">painters.csv</td>', report)
    assert csv_row
    assert "1 stimulus" in html and "1&ndash;1 of 1 shown" in html
    # The filters are kept and the import is not carried into the pages' links.
    assert 'value="painter-a" selected' in html
    recent = html[html.index('id="recent-imports"') :]
    row = recent[recent.index(f"#{job.pk}</a>") :]
    assert job.created_at.strftime("%Y-%m-%d") in row[: row.index("</tr>")]
    assert '<td class="name csv-name">painters.csv</td>' in row
    # An unknown or unfinished import is not shown.
    running = ImportJobFactory(study=study, status="running", total=3, done=1)
    for bad in (running.pk, "x", 999999):
        page = as_owner.get(gallery(study, **{"import": bad})).content.decode()
        assert 'id="import-summary"' not in page
