"""Payment files for the crowd platforms (annotation.payments, scoring.exports.payments):
Prolific's bulk lists and MTurk's batch CSVs, column by column; what was exported is
recorded so a second file of the same raters is empty; the bonus rule computed from a
real analysis of a seeded study; bad rule numbers refused with nothing recorded."""

from __future__ import annotations

import csv
import io
import math
from decimal import Decimal

import pytest
from django.db import IntegrityError, transaction
from django.utils import timezone

from annotation.models import PaymentExport, PaymentExportLine, Rater, Session
from annotation.payments import (
    MTURK_BATCH_COLUMNS,
    MTURK_BONUS_COLUMNS,
    PaymentError,
    payment_export_verdicts,
    payment_file,
)
from annotation.rater_decisions import DecisionError, rater_set_pay
from scoring.analyses.services import analysis_create, analysis_run
from scoring.exports.payments import bonus_export_create, bonus_ranking, bonus_rule_parse
from scoring.models import RaterResult
from tests.factories import RaterFactory, SessionFactory, StudyFactory, UserFactory, rated_study

pytestmark = pytest.mark.django_db


@pytest.fixture
def researcher():
    return UserFactory(username="payer")


def prolific(study, pid):
    rater = RaterFactory(study=study, source=Rater.Source.PROLIFIC, external_id=pid)
    SessionFactory(rater=rater, stage=Session.Stage.DONE, finished_at=timezone.now())
    return rater


def mturk(study, worker, assignment="", hit=""):
    platform = {k: v for k, v in {"assignment_id": assignment, "hit_id": hit}.items() if v}
    rater = RaterFactory(
        study=study, source=Rater.Source.MTURK, external_id=worker, platform=platform
    )
    SessionFactory(
        rater=rater,
        stage=Session.Stage.DONE,
        finished_at=timezone.now(),
        platform_session_id=assignment,
    )
    return rater


def read_csv(text):
    return list(csv.reader(io.StringIO(text)))


def test_prolific_approve_and_reject_lists(researcher):
    study = StudyFactory(slug="pay-p")
    a, b, c = (prolific(study, pid) for pid in ("60aaa1", "60bbb2", "60ccc3"))
    prolific(study, "60ddd4")  # no pay decision: in no file
    for rater in (a, b):
        rater_set_pay(rater=rater, decision="approve", user=researcher)
    rater_set_pay(rater=c, decision="reject", reason="no ratings after item 3", user=researcher)

    approvals = payment_export_verdicts(
        study=study, platform="prolific", kind="approve", user=researcher
    )
    name, content_type, text = payment_file(approvals)
    assert name == f"pay-p-prolific-approve-{approvals.pk}.txt"
    assert content_type.startswith("text/plain")
    assert text == "60aaa1\n60bbb2\n"  # one participant ID per line
    assert approvals.created_by_name == "payer"

    rejections = payment_export_verdicts(
        study=study, platform="prolific", kind="reject", user=researcher
    )
    assert payment_file(rejections)[2] == "60ccc3\n"
    assert rejections.lines.get().reason == "no ratings after item 3"

    # What was exported is recorded: the same file again is empty.
    again = payment_export_verdicts(
        study=study, platform="prolific", kind="approve", user=researcher
    )
    assert again.lines.count() == 0 and payment_file(again)[2] == ""
    # A verdict the platform has acted on stays.
    with pytest.raises(DecisionError) as exc:
        rater_set_pay(rater=a, decision="reject", reason="changed my mind", user=researcher)
    assert exc.value.status == 409 and "export #" in exc.value.message
    a.refresh_from_db()
    assert a.pay_decision == "approve"


def test_mturk_batch_results_csv_and_missing_assignment(researcher):
    study = StudyFactory(slug="pay-m")
    ok = mturk(study, "A1WORKER", "3ASSIGN1", "3HIT1")
    bad = mturk(study, "A2WORKER", "3ASSIGN2", "3HIT1")
    lost = mturk(study, "A3WORKER")  # entered without an assignmentId
    for rater in (ok, lost):
        rater_set_pay(rater=rater, decision="approve", user=researcher)
    rater_set_pay(
        rater=bad, decision="reject", reason="=SUM(A1) all the same score", user=researcher
    )

    approvals = payment_export_verdicts(
        study=study, platform="mturk", kind="approve", user=researcher
    )
    name, content_type, text = payment_file(approvals)
    assert name.endswith(".csv") and content_type.startswith("text/csv")
    rows = read_csv(text)
    assert (
        rows[0] == MTURK_BATCH_COLUMNS == ["AssignmentId", "WorkerId", "HITId", "Approve", "Reject"]
    )
    assert rows[1:] == [["3ASSIGN1", "A1WORKER", "3HIT1", "x", ""]]
    assert approvals.left_out == [
        {
            "rater": lost.pk,
            "pseudonym": lost.pseudonym,
            "missing": "no assignment id (the entry link had no assignmentId)",
        }
    ]

    rejections = payment_export_verdicts(
        study=study, platform="mturk", kind="reject", user=researcher
    )
    rows = read_csv(payment_file(rejections)[2])
    # The reason in Reject, never read as a spreadsheet formula.
    assert rows[1:] == [["3ASSIGN2", "A2WORKER", "3HIT1", "", "'=SUM(A1) all the same score"]]

    # A second assignment of the approved worker comes in a later file, alone.
    Session.objects.create(rater=ok, platform_session_id="3ASSIGN9", finished_at=timezone.now())
    later = payment_export_verdicts(study=study, platform="mturk", kind="approve", user=researcher)
    assert read_csv(payment_file(later)[2])[1:] == [["3ASSIGN9", "A1WORKER", "", "x", ""]]
    assert (
        payment_export_verdicts(
            study=study, platform="mturk", kind="approve", user=researcher
        ).lines.count()
        == 0
    )


def test_bad_export_requests_record_nothing(researcher):
    study = StudyFactory()
    for platform, kind in (("upwork", "approve"), ("prolific", "pay"), ("prolific", "bonus")):
        with pytest.raises(PaymentError):
            payment_export_verdicts(study=study, platform=platform, kind=kind, user=researcher)
    assert not PaymentExport.objects.exists()


def test_database_refuses_a_second_bonus_or_verdict(researcher):
    study = StudyFactory()
    rater = prolific(study, "60eee5")
    export = PaymentExport.objects.create(
        study=study, platform="prolific", kind="bonus", created_by_name="x"
    )
    PaymentExportLine.objects.create(
        export=export, rater=rater, kind="bonus", external_id="60eee5", amount=Decimal("1.00")
    )
    with pytest.raises(IntegrityError), transaction.atomic():
        PaymentExportLine.objects.create(
            export=export, rater=rater, kind="bonus", external_id="60eee5", amount=Decimal("2")
        )
    with pytest.raises(IntegrityError), transaction.atomic():
        PaymentExportLine.objects.create(export=export, rater=rater, kind="approve", external_id="")
    PaymentExportLine.objects.create(export=export, rater=rater, kind="approve", external_id="p")
    with pytest.raises(IntegrityError), transaction.atomic():
        PaymentExportLine.objects.create(
            export=export, rater=rater, kind="reject", external_id="p", reason="no"
        )
    with pytest.raises(IntegrityError), transaction.atomic():
        # A bonus needs a positive amount.
        PaymentExportLine.objects.create(
            export=export, rater=prolific(study, "60fff6"), kind="bonus", external_id="q"
        )


# --- the bonus rule on a real analysis -------------------------------------------------


@pytest.fixture
def analysed(researcher):
    """A seeded study of 20 simulated raters made Prolific (even) and MTurk (odd)
    raters, with a finished BT.500 analysis."""
    study = rated_study(n_raters=20, n_scenes=6, items_per_rater=14, slug="bonus-study")
    for i, rater in enumerate(Rater.objects.filter(study=study).order_by("id")):
        if i % 2 == 0:
            Rater.objects.filter(pk=rater.pk).update(
                source=Rater.Source.PROLIFIC, external_id=f"P{i:03d}abc"
            )
        else:
            Rater.objects.filter(pk=rater.pk).update(
                source=Rater.Source.MTURK,
                external_id=f"W{i:03d}",
                platform={"assignment_id": f"ASG{i:03d}", "hit_id": "HIT1"},
            )
            Session.objects.filter(rater=rater).update(platform_session_id=f"ASG{i:03d}")
    analysis = analysis_run(
        analysis_id=analysis_create(study=study, method="bt500", enqueue=False).pk
    )
    assert analysis.status == "done", analysis.error
    return study, analysis


def rule(chosen, **changes):
    data = {
        "analysis": str(chosen.pk),
        "min_corr": "0.7",
        "top_percent": "20",
        "amount": "0.50",
        "currency": "GBP",
        "reason": "Top agreement with the MOS",
        "platform": "prolific",
        **changes,
    }
    return data


def test_bonus_rule_chooses_the_top_share_at_or_above_the_threshold(analysed):
    study, analysis = analysed
    parsed = bonus_rule_parse(study, rule(analysis))
    ranking = bonus_ranking(study, parsed)

    # The same rule computed straight from the analysis's stored verdicts.
    results = sorted(
        RaterResult.objects.filter(analysis=analysis, corr__isnull=False),
        key=lambda r: (-r.corr, r.rater_id),
    )
    n_top = math.ceil(len(results) * 0.20)
    expected = {r.rater_id for r in results[:n_top] if r.corr >= 0.7 and not r.rejected}
    assert len(results) >= 15 and n_top >= 3
    assert {row["rater"].pk for row in ranking if row["chosen"]} == expected
    assert expected, "the seeded study's best raters agree with the MOS"
    assert [row["rank"] for row in ranking] == list(range(1, len(results) + 1))
    corrs = [row["corr"] for row in ranking]
    assert corrs == sorted(corrs, reverse=True)
    # A threshold nobody reaches chooses nobody; the whole crowd with none.
    assert not any(
        r["chosen"]
        for r in bonus_ranking(study, bonus_rule_parse(study, rule(analysis, min_corr="1")))
    )
    everyone = bonus_ranking(
        study, bonus_rule_parse(study, rule(analysis, top_percent="100", min_corr="-1"))
    )
    assert {r["rater"].pk for r in everyone if r["chosen"]} == {
        r.rater_id for r in results if not r.rejected and r.rater.status != "excluded"
    }


def test_bonus_files_and_a_second_export_of_the_same_raters_is_empty(analysed, researcher):
    study, analysis = analysed
    parsed = bonus_rule_parse(study, rule(analysis, top_percent="100", min_corr="0"))
    chosen = [r["rater"] for r in bonus_ranking(study, parsed) if r["chosen"]]
    prolific_ids = sorted(r.external_id for r in chosen if r.source == "prolific")
    mturk_ids = sorted(r.external_id for r in chosen if r.source == "mturk")
    assert prolific_ids and mturk_ids

    first = bonus_export_create(study=study, platform="prolific", rule=parsed, user=researcher)
    name, content_type, text = payment_file(first)
    assert name.endswith(".csv")
    lines = text.splitlines()
    assert sorted(line.split(",")[0] for line in lines) == prolific_ids
    assert all(line.split(",")[1] == "0.50" and line.count(",") == 1 for line in lines)
    assert first.rule["analysis_id"] == analysis.pk and first.rule["amount"] == "0.50"
    assert first.rule["min_corr"] == 0.0 and first.rule["top_percent"] == 100.0

    second = bonus_export_create(study=study, platform="prolific", rule=parsed, user=researcher)
    assert second.lines.count() == 0 and payment_file(second)[2] == ""

    mparsed = bonus_rule_parse(
        study, rule(analysis, top_percent="100", min_corr="0", platform="mturk")
    )
    assert mparsed.currency == "USD"  # MTurk pays in dollars whatever was asked
    mfile = bonus_export_create(study=study, platform="mturk", rule=mparsed, user=researcher)
    rows = read_csv(payment_file(mfile)[2])
    assert rows[0] == MTURK_BONUS_COLUMNS == ["WorkerId", "AssignmentId", "BonusAmount", "Reason"]
    assert sorted(r[0] for r in rows[1:]) == mturk_ids
    for worker, assignment, amount, reason in rows[1:]:
        assert assignment == "ASG" + worker[1:]
        assert (amount, reason) == ("0.50", "Top agreement with the MOS")
    again = bonus_export_create(study=study, platform="mturk", rule=mparsed, user=researcher)
    assert read_csv(payment_file(again)[2]) == [MTURK_BONUS_COLUMNS]


def test_a_rejected_rater_gets_no_bonus(analysed, researcher):
    study, analysis = analysed
    parsed = bonus_rule_parse(study, rule(analysis, top_percent="100", min_corr="0"))
    chosen = [
        r["rater"]
        for r in bonus_ranking(study, parsed)
        if r["chosen"] and r["rater"].source == "prolific"
    ]
    rater_set_pay(rater=chosen[0], decision="reject", reason="did the study twice", user=researcher)
    export = bonus_export_create(study=study, platform="prolific", rule=parsed, user=researcher)
    assert chosen[0].pk not in set(export.lines.values_list("rater_id", flat=True))
    assert export.lines.count() == len(chosen) - 1


@pytest.mark.parametrize(
    "changes, field",
    [
        ({"min_corr": "1.5"}, "min_corr"),
        ({"min_corr": "abc"}, "min_corr"),
        ({"min_corr": "nan"}, "min_corr"),
        ({"top_percent": "0"}, "top_percent"),
        ({"top_percent": "120"}, "top_percent"),
        ({"amount": "-1"}, "amount"),
        ({"amount": "0"}, "amount"),
        ({"amount": "0.123"}, "amount"),
        ({"amount": "five"}, "amount"),
        ({"amount": "1000"}, "amount"),
        ({"currency": "BTC"}, "currency"),
        ({"reason": "  "}, "reason"),
        ({"analysis": "999999"}, "analysis"),
        ({"analysis": "x"}, "analysis"),
    ],
)
def test_bad_rule_numbers_are_refused_on_their_field(analysed, changes, field):
    study, analysis = analysed
    with pytest.raises(PaymentError) as exc:
        bonus_rule_parse(study, rule(analysis, **changes))
    assert exc.value.field == field
    assert not PaymentExport.objects.exists()


def test_a_study_with_payment_files_and_no_ratings_can_still_be_deleted(researcher):
    from annotation.models import RaterDecision, Study
    from annotation.studies import study_delete

    study = StudyFactory(slug="pay-delete")
    rater = prolific(study, "60ggg7")
    rater_set_pay(rater=rater, decision="approve", user=researcher)
    payment_export_verdicts(study=study, platform="prolific", kind="approve", user=researcher)
    study_delete(study=study)
    assert not Study.objects.filter(slug="pay-delete").exists()
    assert not PaymentExportLine.objects.exists() and not RaterDecision.objects.exists()


def _api(user):
    from rest_framework.test import APIClient

    client = APIClient()
    client.force_authenticate(user)
    return client


def test_payment_files_through_the_api_follow_the_raters_page(researcher):
    """/api/v1/studies/<slug>/payment-files/: made by owners and editors, listed and
    downloaded by everyone the study is shared with; bad requests record nothing."""
    from tests.factories import StudyShareFactory

    study = StudyFactory(slug="pay-api", owner=researcher)
    for pid in ("60aaa1", "60bbb2"):
        rater_set_pay(rater=prolific(study, pid), decision="approve", user=researcher)
    base = "/api/v1/studies/pay-api/payment-files/"
    made = _api(researcher).post(base, {"platform": "prolific", "kind": "approve"}, format="json")
    assert made.status_code == 201, made.content
    assert made.json()["lines"] == 2 and made.json()["created_by_name"] == "payer"
    download = _api(researcher).get(made.json()["download_url"])
    assert download.status_code == 200 and download.content == b"60aaa1\n60bbb2\n"
    assert download["Content-Disposition"].endswith(
        f'pay-api-prolific-approve-{made.json()["id"]}.txt"'
    )

    viewer = UserFactory(username="viewer")
    StudyShareFactory(study=study, user=viewer, level="view")
    assert [row["id"] for row in _api(viewer).get(base).json()] == [made.json()["id"]]
    refused = _api(viewer).post(base, {"platform": "prolific", "kind": "reject"}, format="json")
    assert refused.status_code == 403
    for body, field in (
        ({"platform": "upwork", "kind": "approve"}, "platform"),
        ({"platform": "prolific", "kind": "pay"}, "kind"),
        ({"platform": "prolific", "kind": "bonus"}, "analysis"),
    ):
        bad = _api(researcher).post(base, body, format="json")
        assert bad.status_code == 400 and field in bad.json()["fields"], bad.content
    assert PaymentExport.objects.filter(study=study).count() == 1
    stranger = UserFactory(username="stranger")
    assert _api(stranger).get(base).status_code == 404
    assert _api(stranger).get(made.json()["download_url"]).status_code == 404


def test_a_bonus_file_through_the_api(analysed, researcher):
    study, analysis = analysed
    study.owner = researcher
    study.save(update_fields=["owner"])
    body = rule(analysis, top_percent="100", min_corr="0") | {"kind": "bonus"}
    made = _api(researcher).post(
        f"/api/v1/studies/{study.slug}/payment-files/", body, format="json"
    )
    assert made.status_code == 201, made.content
    assert made.json()["rule"]["analysis_id"] == analysis.pk and made.json()["lines"] > 0
    refused = _api(researcher).post(
        f"/api/v1/studies/{study.slug}/payment-files/", body | {"top_percent": "0"}, format="json"
    )
    assert refused.status_code == 400 and "top_percent" in refused.json()["fields"]
