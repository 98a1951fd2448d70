"""Places and outcomes (issue #14, items 1 and 2).

A rater is admitted only with the work promised on the consent page (a full session,
or the researcher's minimum); else the "study full" page with the no-work code. The
study closes (or pauses) by itself once every test image has its ratings. Completed,
screened out and no work each have their own code and redirect per platform, and
``finish`` before the work is done is refused.
"""

from __future__ import annotations

import random
import threading
import uuid
from collections import Counter

import pytest
from django.db import connections
from django.test import Client

from annotation import assignment, rater_flow, services, studies
from annotation.models import Rater, Rating, Session, Study, StudyOutcome
from tests.factories import StimulusFactory, StudyFactory, UserFactory

pytestmark = [pytest.mark.django_db, pytest.mark.sqlite_too]
GOOD = {"overall": 70, "technical": 60, "rationality": 80}
PROLIFIC_DONE = "https://app.prolific.com/submissions/complete"


def make_study(n=4, **fields):
    values = {"protocol": "perspectives", "ratings_per_stimulus": 1, "session_size": 2, **fields}
    study = StudyFactory(**values)
    StimulusFactory.create_batch(n, study=study)
    return study


def rate_all(rater, session):
    """Rate every item the session is handed; how many were rated."""
    n = 0
    while (claim := assignment.claim_next(session=session)) is not None:
        services.rating_submit(
            rater=rater,
            stimulus_id=claim.stimulus_id,
            scores=GOOD,
            client_id=uuid.uuid4(),
            viewing_seconds=3,
        )
        n += 1
    return n


def platform_rater(study, pid):
    context = rater_flow.platform_enter(
        study=study, source="prolific", external_id=pid, platform={"study_id": "S"}
    )
    services.session_advance(session=context.session, stage=Session.Stage.RATING)
    return context.rater, context.session


# --- Admission ----------------------------------------------------------------------


def test_places_are_taken_at_entry_and_the_next_rater_is_turned_away():
    study = make_study(n=4, session_size=2)  # K=1: 4 places, two sessions of 2
    first, _ = platform_rater(study, "p1")
    second, _ = platform_rater(study, "p2")
    assert [s.planned_items for s in Session.objects.order_by("pk")] == [2, 2]
    with pytest.raises(services.StudyFull):
        platform_rater(study, "p3")  # nobody has rated yet: the places are held
    assert not Rater.objects.filter(external_id="p3").exists()


def test_the_minimum_session_admits_a_shorter_session_told_before_consent():
    study = make_study(n=3, session_size=2, min_session_items=1)
    platform_rater(study, "p1")
    client = Client()
    page = client.get(f"/s/{study.slug}/", {"PROLIFIC_PID": "p2"})
    assert page.status_code == 200 and "annotation/consent.html" in [t.name for t in page.templates]
    assert "You will rate 1 image</strong>" in page.text and "about 1 minute" in page.text
    assert Rater.objects.get(external_id="p2").sessions.get().planned_items == 1


def test_consent_states_the_session_and_its_time():
    study = make_study(n=30, session_size=20, ratings_per_stimulus=3)
    StimulusFactory.create_batch(2, study=study, role="training")
    page = Client().get(f"/s/{study.slug}/", {"PROLIFIC_PID": "p1"})
    # 22 images (2 practice) x (10 s + 3 dimensions x 4 s) = 484 s: about 9 minutes.
    assert "You will rate 20 images</strong>, after 2 practice examples" in page.text
    assert "about 9 minutes" in page.text


def test_a_session_larger_than_the_study_is_the_study():
    study = make_study(n=3, session_size=50, ratings_per_stimulus=5)
    _, session = platform_rater(study, "p1")
    assert session.planned_items == 3  # never "Image 4 of 50"


def test_a_full_study_shows_the_full_page_with_the_no_work_code_and_nothing_written():
    study = make_study(n=2, session_size=2)
    StudyOutcome.objects.create(
        study=study, kind="no_work", platform="prolific", code="NOWORK", redirect_url=PROLIFIC_DONE
    )
    platform_rater(study, "p1")
    page = Client().get(f"/s/{study.slug}/", {"PROLIFIC_PID": "p2", "STUDY_ID": "S"})
    assert page.status_code == 409 and "This study is full" in page.text
    assert "NOWORK" in page.text and f'href="{PROLIFIC_DONE}?cc=NOWORK"' in page.text
    assert not Rater.objects.filter(external_id="p2").exists()


def test_a_new_anonymous_visitor_of_a_full_study_gets_the_full_page():
    study = make_study(n=2, session_size=2)
    platform_rater(study, "p1")
    page = Client().get(f"/s/{study.slug}/")
    assert page.status_code == 409 and "This study is full" in page.text
    assert "If you came from a recruitment platform, please return to it" in page.text
    assert Rater.objects.count() == 1


def test_a_visitor_whose_places_went_meanwhile_is_asked_again_with_the_real_number():
    study = make_study(n=3, session_size=2, min_session_items=1)
    client = Client()
    page = client.get(f"/s/{study.slug}/")
    assert 'name="items" value="2"' in page.text
    platform_rater(study, "p1")  # takes 2 of the 3 places meanwhile
    answer = client.post(
        f"/s/{study.slug}/consent", {"new_visitor": "1", "action": "agree", "items": "2"}
    )
    assert answer.status_code == 302 and answer.url.endswith("?changed=1")
    session = Rater.objects.get(source="anonymous").sessions.get()
    assert session.stage == Session.Stage.CONSENT and session.planned_items == 1
    again = client.get(answer.url)
    assert "numbers-changed" in again.text and "You will rate 1 image</strong>" in again.text
    client.post(f"/s/{study.slug}/consent", {"action": "agree"})
    session.refresh_from_db()
    assert session.stage == Session.Stage.INSTRUCTIONS


def test_a_visitor_who_agrees_as_promised_goes_on():
    study = make_study(n=4, session_size=2)
    client = Client()
    client.get(f"/s/{study.slug}/")
    answer = client.post(
        f"/s/{study.slug}/consent", {"new_visitor": "1", "action": "agree", "items": "2"}
    )
    assert answer.url == f"/s/{study.slug}/"
    assert Rater.objects.get().sessions.get().stage == Session.Stage.INSTRUCTIONS


def test_a_lapsed_session_frees_its_places():
    from datetime import timedelta

    from django.utils import timezone

    study = make_study(n=2, session_size=2)
    _, session = platform_rater(study, "p1")
    with pytest.raises(services.StudyFull):
        platform_rater(study, "p2")
    old = timezone.now() - assignment.PLACE_HOLD - timedelta(minutes=1)
    Session.objects.filter(pk=session.pk).update(started_at=old)
    _, second = platform_rater(study, "p2")
    assert second.planned_items == 2


def test_places_never_promise_what_assignment_cannot_give():
    """Random studies, rooms left uneven by earlier raters, raters arriving and rating
    in random interleavings: every admitted session gets every item it was planned."""
    rng = random.Random(14)
    for trial in range(12):
        k = rng.randint(2, 4)
        size = rng.randint(2, 4)
        study = make_study(
            n=rng.randint(3, 8),
            ratings_per_stimulus=k,
            session_size=size,
            min_session_items=rng.choice([None, 1, size - 1]),
        )
        stimuli = list(study.stimuli.all())
        # Earlier raters (finished) leave uneven rooms: the closest-to-done trap.
        for j in range(rng.randint(0, k - 1)):
            rater, session = platform_rater(study, f"t{trial}-early-{j}")
            services.session_finish(session=session)
        for stimulus in rng.sample(stimuli, len(stimuli) // 2):
            for _ in range(rng.randint(0, k - 1)):
                rater = Rater.objects.create(study=study, source="simulated")
                Rating.objects.create(
                    stimulus=stimulus,
                    rater=rater,
                    session=Session.objects.create(rater=rater, stage="done"),
                    protocol=study.protocol,
                    scale=study.scale,
                    viewing_seconds=3,
                    **GOOD,
                )
        active: list[tuple] = []
        arrivals = 0
        while arrivals < 12 or active:
            if arrivals < 12 and (not active or rng.random() < 0.4):
                arrivals += 1
                try:
                    rater, session = platform_rater(study, f"t{trial}-{arrivals}")
                except services.StudyFull:
                    continue
                active.append((rater, session, [0]))
                continue
            rater, session, done = rng.choice(active)
            claim = assignment.claim_next(session=session)
            if claim is None:
                assert done[0] == session.planned_items, (trial, session.planned_items, done)
                active.remove((rater, session, done))
                continue
            services.rating_submit(
                rater=rater,
                stimulus_id=claim.stimulus_id,
                scores=GOOD,
                client_id=uuid.uuid4(),
                viewing_seconds=3,
            )
            done[0] += 1


# --- The study closes (or pauses) by itself ------------------------------------------


@pytest.mark.parametrize("when, status", [("close", "closed"), ("pause", "paused")])
def test_the_study_stops_by_itself_when_every_image_has_its_ratings(when, status):
    study = make_study(n=2, session_size=2, when_complete=when)
    rater, session = platform_rater(study, "p1")
    assert rate_all(rater, session) == 2
    study.refresh_from_db()
    assert study.status == status
    assert "by itself" in study.status_note and "every test image has its 1 rating" in (
        study.status_note
    )
    # Reopened by the researcher (e.g. after raising K): the note goes.
    Study.objects.filter(pk=study.pk).update(ratings_per_stimulus=2)
    study.refresh_from_db()
    studies.study_set_status(study=study, status="open")
    assert study.status == "open" and study.status_note == ""


def test_the_study_waits_for_raters_still_owed_gold_items():
    study = make_study(n=2, session_size=3, gold_rate=0.5)
    StimulusFactory(study=study, role="gold", expected_low=0, expected_high=100)
    rater, session = platform_rater(study, "p1")
    assert session.planned_items == 3  # test, gold, test
    context = rater_flow.rater_context(Study.objects.get(pk=study.pk), rater)
    rated = 0
    while (step := rater_flow.next_step(context=context)).kind == "rate":
        services.rating_submit(
            rater=rater,
            stimulus_id=step.stimulus.pk,
            scores=GOOD,
            client_id=uuid.uuid4(),
            viewing_seconds=3,
        )
        rated += 1
        study.refresh_from_db()
        if rated < 3:
            assert study.status == "open"  # the rater still has an item to rate
        context = rater_flow.rater_context(Study.objects.get(pk=study.pk), rater)
    assert step.kind == "done"
    study.refresh_from_db()
    assert study.status == "closed"


def test_the_study_page_says_why_it_closed(client):
    owner = UserFactory(username="owner-places", is_staff=True)
    study = make_study(n=1, session_size=1, owner=owner)
    rater, session = platform_rater(study, "p1")
    rate_all(rater, session)
    client.force_login(owner)
    page = client.get(f"/studies/{study.slug}/")
    assert 'id="status-note"' in page.text and "Closed by itself" in page.text


# --- Outcomes -------------------------------------------------------------------------


def excluded_prolific(client, study, pid="P-X"):
    client.get(f"/s/{study.slug}/", {"PROLIFIC_PID": pid})
    rater = Rater.objects.get(external_id=pid)
    Rater.objects.filter(pk=rater.pk).update(
        status="excluded", status_reason="failed 2 gold question(s)"
    )
    return rater


def test_a_screened_out_prolific_rater_gets_the_screened_out_code_and_redirect(client):
    study = make_study(n=4, completion_code="DONE1", completion_url=PROLIFIC_DONE)
    StudyOutcome.objects.create(
        study=study, kind="screened_out", code="SCREEN", redirect_url=PROLIFIC_DONE
    )
    excluded_prolific(client, study)
    page = client.get(f"/s/{study.slug}/")
    assert "Your participation has ended" in page.text and "check images" in page.text
    assert "SCREEN" in page.text and "DONE1" not in page.text
    assert f'href="{PROLIFIC_DONE}?cc=SCREEN"' in page.text
    assert Rater.objects.get(external_id="P-X").sessions.get().stage == Session.Stage.STOPPED


def test_a_platform_row_wins_over_the_row_for_every_platform():
    study = make_study(completion_code="DONE1")
    StudyOutcome.objects.create(study=study, kind="completed", code="ANY")
    StudyOutcome.objects.create(study=study, kind="completed", platform="mturk", code="TURK")
    assert rater_flow.outcome_code(study, "completed", "mturk") == ("TURK", "")
    assert rater_flow.outcome_code(study, "completed", "prolific") == ("ANY", "")
    assert rater_flow.outcome_code(study, "screened_out", "prolific") == ("", "")
    StudyOutcome.objects.filter(study=study).delete()
    assert rater_flow.outcome_code(study, "completed", "prolific") == ("DONE1", "")


def test_an_mturk_screened_out_rater_submits_the_screened_out_code(client):
    study = make_study(n=4)
    StudyOutcome.objects.create(study=study, kind="screened_out", platform="mturk", code="MT-SO")
    client.get(
        f"/s/{study.slug}/",
        {
            "workerId": "W1",
            "assignmentId": "A1",
            "hitId": "H1",
            "turkSubmitTo": "https://workersandbox.mturk.com",
        },
    )
    Rater.objects.filter(external_id="W1").update(status="excluded")
    page = client.get(f"/s/{study.slug}/")
    assert 'action="https://workersandbox.mturk.com/mturk/externalSubmit"' in page.text
    assert 'name="completionCode" value="MT-SO"' in page.text


def test_an_outcome_row_that_gives_nothing_is_refused_by_the_database():
    from django.db import IntegrityError, transaction

    study = make_study()
    with pytest.raises(IntegrityError), transaction.atomic():
        StudyOutcome.objects.create(study=study, kind="no_work")
    with pytest.raises(IntegrityError), transaction.atomic():
        StudyOutcome.objects.create(study=study, kind="paid", code="X")
    StudyOutcome.objects.create(study=study, kind="no_work", code="A")
    with pytest.raises(IntegrityError), transaction.atomic():
        StudyOutcome.objects.create(study=study, kind="no_work", code="B")


# --- The scripted API: start and finish ----------------------------------------------


def post(client, url, body=None, token=None):
    headers = {"HTTP_X_RATER_TOKEN": token} if token else {}
    return client.post(url, body or {}, content_type="application/json", **headers)


def test_start_then_finish_without_rating_is_refused():
    study = make_study(n=4, session_size=2, completion_code="CODE-9")
    client = Client()
    start = post(
        client,
        f"/api/v1/rater/{study.slug}/start",
        {"consent": True, "source": "prolific", "external_id": "P-1"},
    )
    token = start.json()["token"]
    refused = post(client, f"/api/v1/rater/{study.slug}/finish", token=token)
    assert refused.status_code == 409 and refused.json()["error"] == "unfinished"
    assert "CODE-9" not in refused.text
    assert Rater.objects.get(external_id="P-1").status == "active"
    rater = Rater.objects.get(external_id="P-1")
    assert rate_all(rater, rater.sessions.get()) == 2
    done = post(client, f"/api/v1/rater/{study.slug}/finish", token=token).json()
    assert done["completion_code"] == "CODE-9" and done["status"] == "completed"
    assert done["outcome"] == "completed"


def test_start_on_a_full_study_answers_the_no_work_outcome_and_writes_nothing():
    study = make_study(n=2, session_size=2)
    StudyOutcome.objects.create(
        study=study, kind="no_work", code="NOWORK", redirect_url=PROLIFIC_DONE
    )
    platform_rater(study, "p1")
    answer = post(
        Client(),
        f"/api/v1/rater/{study.slug}/start",
        {"consent": True, "source": "prolific", "external_id": "P-2"},
    )
    assert answer.status_code == 409 and answer.json()["error"] == "study_full"
    assert answer.json()["outcome"] == {
        "kind": "no_work",
        "code": "NOWORK",
        "target": {
            "method": "get",
            "url": f"{PROLIFIC_DONE}?cc=NOWORK",
            "label": "Return to Prolific",
        },
    }
    assert not Rater.objects.filter(external_id="P-2").exists()


# --- Settings: the service, the form, the API ----------------------------------------


def test_outcomes_through_the_service_and_bad_rows_change_nothing():
    study = make_study()
    studies.study_update(
        study=study,
        changes={
            "outcomes": [
                {"kind": "screened_out", "platform": "prolific", "code": "SO"},
                {"kind": "no_work", "code": "NW", "redirect_url": "https://x.org/back"},
            ]
        },
    )
    assert studies.outcomes_of(study) == [
        {"kind": "no_work", "platform": "", "code": "NW", "redirect_url": "https://x.org/back"},
        {"kind": "screened_out", "platform": "prolific", "code": "SO", "redirect_url": ""},
    ]
    for bad in (
        [{"kind": "paid", "code": "X"}],
        [{"kind": "no_work", "platform": "facebook", "code": "X"}],
        [{"kind": "no_work", "redirect_url": "javascript:alert(1)"}],
        [{"kind": "no_work", "code": "A"}, {"kind": "no_work", "code": "B"}],
        "no_work",
    ):
        with pytest.raises(studies.StudyRuleError) as refused:
            studies.study_update(study=study, changes={"outcomes": bad, "title": "changed"})
        assert refused.value.field == "outcomes" and refused.value.status == 400
    study.refresh_from_db()
    assert study.title != "changed" and len(studies.outcomes_of(study)) == 2
    # A row with neither code nor URL removes it.
    studies.study_update(study=study, changes={"no_work_code": "", "no_work_url": ""})
    assert [o["kind"] for o in studies.outcomes_of(study)] == ["screened_out"]


def test_the_settings_form_saves_places_and_outcomes(client):
    from scoring.workspace.study_forms import FIELDS, StudyForm

    owner = UserFactory(username="owner-form", is_staff=True)
    study = make_study(owner=owner, status="draft")
    form = StudyForm(instance=study)
    data = {name: form[name].value() for name in FIELDS}
    data = {k: v for k, v in data.items() if v is not None}
    data.update(
        {
            "min_session_items": "5",
            "when_complete": "pause",
            "screened_out_code": "SO-1",
            "screened_out_url": "https://app.prolific.com/submissions/complete",
            "no_work_code": "NW-1",
        }
    )
    client.force_login(owner)
    answer = client.post(f"/studies/{study.slug}/edit/", data)
    assert answer.status_code == 302, answer.content.decode()[:2000]
    study.refresh_from_db()
    assert study.min_session_items == 5 and study.when_complete == "pause"
    assert rater_flow.outcome_code(study, "screened_out", "prolific") == (
        "SO-1",
        "https://app.prolific.com/submissions/complete",
    )
    assert rater_flow.outcome_code(study, "no_work", "mturk") == ("NW-1", "")
    page = client.get(f"/studies/{study.slug}/edit/")
    assert 'value="SO-1"' in page.text and "Minimum session (items)" in page.text


def test_the_api_reads_and_writes_places_and_outcomes(client):
    owner = UserFactory(username="owner-api", is_staff=True)
    study = make_study(owner=owner)
    client.force_login(owner)
    answer = client.patch(
        f"/api/v1/studies/{study.slug}/",
        {
            "min_session_items": 3,
            "when_complete": "pause",
            "outcomes": [{"kind": "completed", "platform": "prolific", "code": "C-P"}],
        },
        content_type="application/json",
    )
    assert answer.status_code == 200, answer.content
    body = answer.json()
    assert body["min_session_items"] == 3 and body["when_complete"] == "pause"
    assert body["outcomes"] == [
        {"kind": "completed", "platform": "prolific", "code": "C-P", "redirect_url": ""}
    ]
    assert body["status_note"] == ""


# --- The race for the last places (PostgreSQL: threads on their own connections) ----


@pytest.mark.django_db(transaction=True)
def test_race_for_the_last_places():
    """20 raters arrive at once for the last places: nobody is admitted for a session
    shorter than promised (each rates exactly what their session planned), the places
    are filled, and those turned away left no row."""
    study = make_study(n=6, ratings_per_stimulus=3, session_size=4, min_session_items=2)
    # Earlier raters left the rooms uneven: 3 stimuli need 1 more rating, 3 need 3.
    for stimulus in study.stimuli.order_by("pk")[:3]:
        for _ in range(2):
            rater = Rater.objects.create(study=study, source="simulated")
            session = Session.objects.create(rater=rater, stage="done")
            Rating.objects.create(
                stimulus=stimulus,
                rater=rater,
                session=session,
                protocol=study.protocol,
                scale=study.scale,
                viewing_seconds=3,
                **GOOD,
            )
    barrier = threading.Barrier(20)
    outcomes: dict[str, object] = {}
    errors: list[BaseException] = []

    def arrive(i):
        pid = f"racer-{i}"
        try:
            barrier.wait(timeout=30)
            try:
                rater, session = platform_rater(study, pid)
            except services.StudyFull:
                outcomes[pid] = "full"
                return
            outcomes[pid] = (session.planned_items, rate_all(rater, session))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=arrive, args=(i,)) for i in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors
    admitted = [v for v in outcomes.values() if v != "full"]
    assert admitted and all(planned == rated for planned, rated in admitted), outcomes
    assert all(planned >= 2 for planned, _ in admitted)  # never under the minimum
    assert sum(rated for _, rated in admitted) >= 9  # of the 12 ratings still missing
    turned_away = [pid for pid, v in outcomes.items() if v == "full"]
    assert not Rater.objects.filter(external_id__in=turned_away).exists()
    per_stimulus = Counter(
        Rating.objects.filter(stimulus__study=study).values_list("stimulus_id", flat=True)
    )
    assert max(per_stimulus.values()) <= 3
