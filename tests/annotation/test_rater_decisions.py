"""Decisions about a rater (annotation.rater_decisions): exclude and re-include for the
MOS, approve and reject for pay, each recorded with who, when and why; the two kept
apart; bad input refused with nothing changed; the database's own invariants."""

from __future__ import annotations

import pytest
from django.db import IntegrityError, transaction
from django.utils import timezone

from annotation import rater_review
from annotation.models import Rater, RaterDecision, Session
from annotation.rater_decisions import (
    DecisionError,
    rater_exclude,
    rater_in_study,
    rater_include,
    rater_set_pay,
    raters_approve_completed,
)
from scoring.analyses.selectors import ratings_frame
from tests.factories import (
    ClaimFactory,
    PilotRaterFactory,
    RaterFactory,
    RatingFactory,
    SessionFactory,
    StimulusFactory,
    StudyFactory,
    UserFactory,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def researcher():
    return UserFactory(username="decider")


@pytest.fixture
def rated():
    """A Prolific rater with one finished session and two ratings of test items."""
    study = StudyFactory()
    rater = RaterFactory(study=study, source=Rater.Source.PROLIFIC, external_id="5f1a2b3c4d")
    session = SessionFactory(rater=rater, stage=Session.Stage.DONE, finished_at=timezone.now())
    for score in (20, 80):
        RatingFactory(
            stimulus=StimulusFactory(study=study), rater=rater, session=session, score=score
        )
    Rater.objects.filter(pk=rater.pk).update(status=Rater.Status.COMPLETED)
    rater.refresh_from_db()
    return rater


def test_exclude_then_include_is_recorded_with_who_when_why(rated, researcher):
    before = timezone.now()
    ClaimFactory(rater=rated, stimulus=StimulusFactory(study=rated.study))
    decision = rater_exclude(rater=rated, reason="  answered at random  ", user=researcher)

    rated.refresh_from_db()
    assert rated.status == Rater.Status.EXCLUDED
    assert rated.status_reason == "answered at random"
    assert rated.claims.count() == 0  # reserved images back to the pool
    assert (decision.kind, decision.reason) == ("exclude", "answered at random")
    assert (decision.decided_by, decision.decided_by_name) == (researcher, "decider")
    assert decision.decided_at >= before
    assert (decision.previous, decision.previous_reason) == ("completed", "")
    # The MOS no longer reads the rater's ratings.
    assert rated.pk not in set(ratings_frame(rated.study)["rater"])

    back = rater_include(rater=rated, reason="checked by hand: fine", user=researcher)
    rated.refresh_from_db()
    # A finished session: completed again, and used in the MOS again.
    assert rated.status == Rater.Status.COMPLETED and rated.status_reason == ""
    assert (back.kind, back.previous, back.previous_reason) == (
        "include",
        "excluded",
        "answered at random",
    )
    assert rated.pk in set(ratings_frame(rated.study)["rater"])
    assert list(rated.decisions.values_list("kind", flat=True)) == ["exclude", "include"]


def test_reinclude_a_rater_the_gold_rule_excluded_who_never_finished(researcher):
    rater = RaterFactory(
        status=Rater.Status.EXCLUDED, status_reason="failed 2 gold question(s) (limit 2)"
    )
    # The gold rule stopped (and so finished) the session: not a done one.
    SessionFactory(rater=rater, stage=Session.Stage.STOPPED, finished_at=timezone.now())
    decision = rater_include(rater=rater, reason="the gold item was mislabelled", user=researcher)
    rater.refresh_from_db()
    assert rater.status == Rater.Status.ACTIVE
    assert decision.previous_reason == "failed 2 gold question(s) (limit 2)"


@pytest.mark.parametrize("reason", ["", "   ", None, 12])
def test_exclude_without_a_reason_changes_nothing(rated, researcher, reason):
    with pytest.raises(DecisionError) as exc:
        rater_exclude(rater=rated, reason=reason, user=researcher)
    assert exc.value.field == "reason"
    rated.refresh_from_db()
    assert rated.status == Rater.Status.COMPLETED
    assert not RaterDecision.objects.exists()


def test_refusals_that_change_nothing(rated, researcher):
    with pytest.raises(DecisionError, match="not excluded"):
        rater_include(rater=rated, reason="why not", user=researcher)
    rater_exclude(rater=rated, reason="bad", user=researcher)
    with pytest.raises(DecisionError, match="already excluded"):
        rater_exclude(rater=rated, reason="bad again", user=researcher)
    with pytest.raises(DecisionError) as exc:
        rater_set_pay(rater=rated, decision="maybe", user=researcher)
    assert exc.value.field == "decision"
    with pytest.raises(DecisionError) as exc:
        rater_set_pay(rater=rated, decision="reject", reason=" ", user=researcher)
    assert exc.value.field == "reason"
    with pytest.raises(DecisionError):
        rater_exclude(rater=rated, reason="x" * 2001, user=researcher)
    assert rated.decisions.count() == 1
    rated.refresh_from_db()
    assert rated.pay_decision == ""


def test_unknown_rater_and_pilot_rater_are_not_in_the_study(rated):
    other = RaterFactory()
    pilot = PilotRaterFactory(study=rated.study)
    assert rater_in_study(rated.study, str(rated.pk)) == rated
    for rater_id in (other.pk, pilot.pk, 999999, "abc", None):
        with pytest.raises(DecisionError) as exc:
            rater_in_study(rated.study, rater_id)
        assert exc.value.status == 404


def test_pay_decision_is_independent_of_mos_use(rated, researcher):
    rater_set_pay(rater=rated, decision="approve", user=researcher)
    rated.refresh_from_db()
    assert (rated.pay_decision, rated.status) == ("approve", Rater.Status.COMPLETED)
    assert rated.pk in set(ratings_frame(rated.study)["rater"])

    # Excluded from the MOS, still approved for pay.
    rater_exclude(rater=rated, reason="disagrees with everyone", user=researcher)
    rated.refresh_from_db()
    assert (rated.pay_decision, rated.status) == ("approve", Rater.Status.EXCLUDED)

    # Rejected for pay, and re-included: used in the MOS, still not paid.
    rater_set_pay(rater=rated, decision="reject", reason="did not finish", user=researcher)
    rater_include(rater=rated, reason="ratings are fine", user=researcher)
    rated.refresh_from_db()
    assert (rated.pay_decision, rated.status) == ("reject", Rater.Status.COMPLETED)
    kinds = list(rated.decisions.values_list("kind", "previous"))
    assert kinds == [
        ("approve", ""),
        ("exclude", "completed"),
        ("reject", "approve"),
        ("include", "excluded"),
    ]


def test_approve_every_finished_rater_leaves_others_and_decided_ones(rated, researcher):
    study = rated.study
    unfinished = RaterFactory(study=study, source=Rater.Source.PROLIFIC, external_id="abc123")
    SessionFactory(rater=unfinished)
    rejected = RaterFactory(study=study, source=Rater.Source.PROLIFIC, external_id="rej999")
    SessionFactory(rater=rejected, finished_at=timezone.now())
    rater_set_pay(rater=rejected, decision="reject", reason="copied answers", user=researcher)

    # Stopped by the gold rule: left to the researcher.
    stopped = RaterFactory(study=study, source=Rater.Source.PROLIFIC, external_id="gold01")
    SessionFactory(rater=stopped, stage=Session.Stage.STOPPED, finished_at=timezone.now())
    Rater.objects.filter(pk=stopped.pk).update(status=Rater.Status.EXCLUDED)
    # Completed, then excluded from the MOS by hand: still paid (pay is apart).
    rater_exclude(rater=rated, reason="disagrees with the crowd", user=researcher)

    assert raters_approve_completed(study=study, user=researcher) == 1
    assert raters_approve_completed(study=study, user=researcher) == 0
    assert dict(Rater.objects.filter(study=study).values_list("pk", "pay_decision")) == {
        rated.pk: "approve",
        unfinished.pk: "",
        rejected.pk: "reject",
        stopped.pk: "",
    }
    assert rated.decisions.get(kind="approve").decided_by_name == "decider"


def test_database_refuses_a_decision_without_why_or_who(rated):
    with pytest.raises(IntegrityError), transaction.atomic():
        RaterDecision.objects.create(rater=rated, kind="exclude", reason="", decided_by_name="x")
    with pytest.raises(IntegrityError), transaction.atomic():
        RaterDecision.objects.create(rater=rated, kind="exclude", reason="r", decided_by_name="")
    with pytest.raises(IntegrityError), transaction.atomic():
        RaterDecision.objects.create(rater=rated, kind="ban", reason="r", decided_by_name="x")
    with pytest.raises(IntegrityError), transaction.atomic():
        Rater.objects.filter(pk=rated.pk).update(pay_decision="maybe")
    # An approval may go without a reason.
    RaterDecision.objects.create(rater=rated, kind="approve", reason="", decided_by_name="x")


def test_flags_in_words_carry_the_current_values():
    study = StudyFactory(scale="acr5", protocol="overall")
    rater = RaterFactory(
        study=study, flags={"straight_lining": "variance of overall scores 0 over 10 items"}
    )
    session = SessionFactory(rater=rater)
    for i in range(20):
        RatingFactory(
            stimulus=StimulusFactory(study=study), rater=rater, session=session, score=3 if i else 4
        )
    now = rater_review.overall_stats([rater.pk])[rater.pk]
    assert now.n == 20
    assert now.variance == pytest.approx(0.05)
    words = rater_review.flags_in_words(rater, now)
    assert words[0]["name"] == "Straight-lining"
    assert "over 20 items now" in words[0]["text"] and "0.05" in words[0]["text"]
    assert "straight_lining" not in words[0]["text"]
    reasons = rater_review.attention_reasons(rater, now)
    assert reasons == [f"Straight-lining: {words[0]['text']}"]


def test_attention_leaves_out_raters_with_no_reason():
    study = StudyFactory()
    plain = RaterFactory(study=study)  # in progress, nothing wrong
    gold = RaterFactory(study=study, gold_failures=1)
    excluded = RaterFactory(study=study, status=Rater.Status.EXCLUDED, status_reason="by hand")
    rows = rater_review.attention_raters(study)
    assert [row["rater"].pk for row in rows] == [gold.pk, excluded.pk] or [
        row["rater"].pk for row in rows
    ] == [excluded.pk, gold.pk]
    assert plain.pk not in [row["rater"].pk for row in rows]
    reasons = {row["rater"].pk: row["reasons"] for row in rows}
    assert reasons[excluded.pk] == ["Excluded from the MOS: by hand"]
    assert reasons[gold.pk][0].startswith("Failed 1 gold question(s)")


def test_timeline_tells_the_story_in_order(rated, researcher):
    rater_exclude(rater=rated, reason="too fast", user=researcher)
    events = rater_review.timeline(rated)
    whats = [e["what"] for e in events]
    assert whats[0] == "Arrived from Prolific"
    assert events[0]["detail"] == "id 5f1a2b3c4d"
    assert any(w.startswith("Session") and w.endswith("started") for w in whats)
    assert any(w.startswith("Last rating") for w in whats)
    assert whats[-1] == "Excluded from the MOS"
    assert events[-1]["detail"] == "by decider: too fast"
    times = [e["at"] for e in events if e["at"] is not None]
    assert times == sorted(times)


def test_timeline_names_each_failed_gold_question(rated):
    gold = StimulusFactory(
        study=rated.study,
        role="gold",
        original_name="gold-sky.png",
        expected_low=60,
        expected_high=100,
    )
    RatingFactory(stimulus=gold, rater=rated, session=rated.sessions.get(), score=10)
    passed = StimulusFactory(study=rated.study, role="gold", expected_low=0, expected_high=100)
    RatingFactory(stimulus=passed, rater=rated, session=rated.sessions.get(), score=10)
    failed = [e for e in rater_review.timeline(rated) if e["what"] == "Failed a gold question"]
    assert [e["detail"] for e in failed] == ["gold-sky.png rated 10, expected 60-100"]


# --- the same through the REST API -----------------------------------------------------


def api_as(user):
    from rest_framework.test import APIClient

    client = APIClient()
    client.force_authenticate(user)
    return client


def test_api_lists_raters_and_records_decisions(rated):
    from tests.factories import StudyShareFactory

    owner = rated.study.owner
    base = f"/api/v1/studies/{rated.study.slug}/raters/"
    listed = api_as(owner).get(base)
    assert listed.status_code == 200
    assert listed.json()["count"] == 1
    rows = listed.json()["results"]
    assert [(r["id"], r["external_id"], r["status"], r["pay_decision"]) for r in rows] == [
        (rated.pk, "5f1a2b3c4d", "completed", "")
    ]

    decide = f"/api/v1/studies/{rated.study.slug}/rater-decisions/"
    made = api_as(owner).post(
        decide, {"rater": rated.pk, "action": "exclude", "reason": "bot"}, format="json"
    )
    assert made.status_code == 201
    body = made.json()
    assert body["decision"]["kind"] == "exclude" and body["decision"]["reason"] == "bot"
    assert body["decision"]["decided_by"] == owner.get_username()
    assert body["rater"]["status"] == "excluded"
    assert RaterDecision.objects.get(rater=rated).decided_by == owner

    # Bad input: the error contract's JSON, nothing changed.
    for payload, status, field, code in (
        ({"action": "include", "reason": "  "}, 400, "reason", "invalid"),
        ({"action": "ban", "reason": "x"}, 400, "action", "invalid"),
        ({"action": "exclude", "reason": "again"}, 409, "rater", "already_excluded"),
        ({"rater": "me", "action": "exclude", "reason": "x"}, 400, "rater", "invalid"),
    ):
        refused = api_as(owner).post(decide, {"rater": rated.pk, **payload}, format="json")
        assert refused.status_code == status, refused.content
        assert field in refused.json()["fields"] and refused.json()["error"] == code
    missing = api_as(owner).post(decide, {"rater": 999999, "action": "approve"}, format="json")
    assert missing.json()["error"] == "not_found"
    assert missing.status_code == 404 and missing.json()["fields"] == {
        "rater": "no such rater in this study"
    }

    viewer = UserFactory(username="viewer")
    StudyShareFactory(study=rated.study, user=viewer, level="view")
    assert api_as(viewer).get(base).status_code == 200
    denied = api_as(viewer).post(decide, {"rater": rated.pk, "action": "approve"}, format="json")
    assert denied.status_code == 403
    stranger = api_as(UserFactory(username="stranger"))
    assert stranger.get(base).status_code == 404
    assert (
        stranger.post(decide, {"rater": rated.pk, "action": "approve"}, format="json").status_code
        == 404
    )
    assert RaterDecision.objects.filter(rater=rated).count() == 1
    rated.refresh_from_db()
    assert (rated.status, rated.pay_decision) == ("excluded", "")
