"""Viewing conditions on the researcher's side: appended to the raw-ratings exports
(the earlier columns in place), summed up on the study page, and set in the study form."""

from __future__ import annotations

import csv
import io

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from annotation.models import Rater, Session, Study
from scoring.exports.formats import VIEWING_COLUMNS, dataset_columns, export_stream
from scoring.workspace.study_forms import FIELDSETS
from scoring.workspace.viewing import viewing_summary
from tests.factories import (
    PilotRaterFactory,
    RaterFactory,
    RatingFactory,
    SessionFactory,
    StimulusFactory,
    StudyFactory,
)

pytestmark = pytest.mark.django_db

#: The raw-ratings columns before viewing conditions were added, in their order.
EARLIER_COLUMNS = [
    "rating_id",
    "rater",
    "session",
    "stimulus_id",
    "filename",
    "role",
    "dimension",
    "score",
    "repetition",
    "is_gold",
    "viewing_seconds",
    "created_at",
    "session_started_at",
]
LAPTOP = {
    "viewport_width": 1280,
    "viewport_height": 720,
    "screen_width": 1920,
    "screen_height": 1080,
    "device_pixel_ratio": 2.0,
    "zoom": 1.0,
    "browser": "chrome",
    "touch": False,
}


@pytest.fixture
def study(researcher_a):
    study = StudyFactory(slug="vs", owner=researcher_a, protocol="perspectives")
    StimulusFactory.create_batch(3, study=study)
    return study


def reporting_session(study: Study, **conditions) -> Session:
    session = SessionFactory(rater=RaterFactory(study=study))
    Session.objects.filter(pk=session.pk).update(**{**LAPTOP, **conditions})
    session.refresh_from_db()
    return session


def rate_all(study: Study, session: Session, **shown) -> None:
    for stimulus in study.stimuli.all():
        RatingFactory(stimulus=stimulus, rater=session.rater, session=session, **shown)


def _bytes(study, fmt) -> bytes:
    _, chunks = export_stream(study, fmt)
    return b"".join(chunks)


# --- Raw-ratings exports ---------------------------------------------------------------


def test_raw_ratings_csv_appends_the_viewing_columns(study):
    reported = reporting_session(study, browser="firefox", zoom=None)
    rate_all(study, reported, shown_css_width=640, shown_css_height=480, shown_device_width=1280)
    silent = SessionFactory(rater=RaterFactory(study=study))
    rate_all(study, silent)
    rows = list(csv.reader(io.StringIO(_bytes(study, "ratings-csv").decode())))
    header, body = rows[0], rows[1:]
    assert header == [*EARLIER_COLUMNS, *VIEWING_COLUMNS, "rater_status"]
    assert VIEWING_COLUMNS == [
        "shown_css_width",
        "shown_css_height",
        "shown_device_width",
        "shown_device_height",
        "viewport_width",
        "viewport_height",
        "screen_width",
        "screen_height",
        "device_pixel_ratio",
        "zoom",
        "browser",
        "touch",
    ]
    by_session = {}
    for row in body:
        by_session.setdefault(int(row[2]), []).append(dict(zip(header, row, strict=True)))
    assert len(by_session[reported.pk]) == 3 * 3  # three images, three dimensions
    first = by_session[reported.pk][0]
    assert [first[c] for c in VIEWING_COLUMNS] == [
        "640",
        "480",
        "1280",
        "",
        "1280",
        "720",
        "1920",
        "1080",
        "2.0",
        "",
        "firefox",
        "False",
    ]
    # Nothing reported: empty cells, the earlier columns as before.
    quiet = by_session[silent.pk][0]
    assert all(quiet[c] == "" for c in VIEWING_COLUMNS)
    assert quiet["viewing_seconds"] == "5.0" and quiet["dimension"] == "overall"


def test_raw_ratings_parquet_types_the_viewing_columns(study, tmp_path):
    rate_all(study, reporting_session(study), shown_css_width=500, shown_css_height=500)
    rate_all(study, SessionFactory(rater=RaterFactory(study=study)))
    (tmp_path / "r.parquet").write_bytes(_bytes(study, "ratings-parquet"))
    table = pq.read_table(tmp_path / "r.parquet")
    assert table.column_names == [*EARLIER_COLUMNS, *VIEWING_COLUMNS, "rater_status"]
    assert table.schema.field("viewport_width").type == pa.int64()
    assert table.schema.field("device_pixel_ratio").type == pa.float64()
    assert table.schema.field("touch").type == pa.bool_()
    values = table.column("viewport_width").to_pylist()
    assert sorted(values, key=lambda v: v is None)[:9] == [1280] * 9 and values.count(None) == 9
    assert set(table.column("browser").to_pylist()) == {"chrome", None}


def test_the_mos_dataset_columns_do_not_change(study):
    assert not set(VIEWING_COLUMNS) & set(dataset_columns(study))


# --- The study page's summary -------------------------------------------------------


def test_summary_of_the_reported_conditions(study):
    rate_all(study, reporting_session(study), shown_css_width=600, shown_css_height=400)
    rate_all(
        study,
        reporting_session(study, viewport_width=1440, viewport_height=900, device_pixel_ratio=1.0),
        shown_css_width=800,
        shown_css_height=600,
        shown_device_width=800,
        shown_device_height=600,
    )
    rate_all(
        study,
        reporting_session(
            study, viewport_width=390, viewport_height=844, browser="safari", touch=True
        ),
        shown_css_width=390,
        shown_css_height=260,
    )
    SessionFactory(rater=RaterFactory(study=study))  # a scripted client: nothing reported
    pilot = SessionFactory(rater=PilotRaterFactory(study=study))  # a preview: left out
    Session.objects.filter(pk=pilot.pk).update(**{**LAPTOP, "browser": "opera"})
    summary = viewing_summary(study)
    assert summary["sessions"] == 4 and summary["reported"] == 3
    assert summary["viewport"] == {"width": 1280, "height": 844}
    assert summary["screen"] == {"width": 1920, "height": 1080}
    assert summary["pixel_ratios"] == [{"value": "2", "count": 2}, {"value": "1", "count": 1}]
    assert summary["browsers"] == [{"name": "Chrome", "count": 2}, {"name": "Safari", "count": 1}]
    assert summary["touch"] == {"reported": 3, "touch": 1, "percent": 33}
    assert summary["ratings_shown"] == 9
    assert summary["shown_css"] == {"width": 600, "height": 400}
    assert summary["shown_device"] == {"width": 800, "height": 600}


def test_the_study_page_shows_the_summary(client, study, researcher_a):
    client.force_login(researcher_a)
    page = client.get(f"/studies/{study.slug}/").content.decode()
    assert 'id="viewing"' in page and 'id="viewing-none"' in page
    assert "None reported yet" in page
    rate_all(study, reporting_session(study), shown_css_width=640, shown_css_height=480)
    page = client.get(f"/studies/{study.slug}/").content.decode()
    assert 'id="viewing-none"' not in page
    assert "1 of 1 session reported" in page
    assert "1280&nbsp;&times;&nbsp;720" in page  # the window
    assert "640&nbsp;&times;&nbsp;480</span> CSS px" in page
    assert "Chrome (1)" in page and "2 (1)" in page


def test_summary_when_nothing_is_reported(study):
    rate_all(study, SessionFactory(rater=RaterFactory(study=study)))
    summary = viewing_summary(study)
    assert summary["sessions"] == 1 and summary["reported"] == 0
    assert summary["viewport"] is None and summary["shown_css"] is None
    assert summary["pixel_ratios"] == [] and summary["touch"]["percent"] is None


# --- The study form -----------------------------------------------------------------


def test_the_study_form_sets_the_viewing_options(client, study, researcher_a):
    assert dict(FIELDSETS)["Viewing conditions"] == [
        "min_viewport_width",
        "min_viewport_height",
        "refuse_touch",
        "native_pixels",
    ]
    client.force_login(researcher_a)
    form = client.get(f"/studies/{study.slug}/edit/")
    assert form.status_code == 200
    assert "Viewing conditions" in form.content.decode()
    data = {
        name: value
        for name, value in form.context["form"].initial.items()
        if value is not None and not isinstance(value, list | dict)
    }
    data.update(
        {
            "platforms": study.platforms,
            "min_viewport_width": "1024",
            "min_viewport_height": "",
            "refuse_touch": "on",
            "native_pixels": "on",
        }
    )
    data.pop("texts", None)
    response = client.post(f"/studies/{study.slug}/edit/", data)
    assert response.status_code == 302, response.context["form"].errors
    study.refresh_from_db()
    assert study.min_viewport_width == 1024 and study.min_viewport_height is None
    assert study.refuse_touch and study.native_pixels
    data["min_viewport_width"] = "0"
    response = client.post(f"/studies/{study.slug}/edit/", data)
    assert response.status_code == 200 and "min_viewport_width" in response.context["form"].errors
    assert Study.objects.get(pk=study.pk).min_viewport_width == 1024


def test_pilot_raters_do_not_count(study):
    pilot = SessionFactory(rater=PilotRaterFactory(study=study))
    Session.objects.filter(pk=pilot.pk).update(**LAPTOP)
    assert Rater.objects.filter(study=study).count() == 1
    assert viewing_summary(study)["sessions"] == 0
