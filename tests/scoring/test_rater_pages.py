"""The raters pages (scoring.workspace.raters) and the study page's "Raters needing
attention": external ids, flags in words, reasons, decisions with who and why, the
re-run of the analysis, payment files; viewers read, only owners and editors act."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from annotation.models import PaymentExport, Rater, RaterDecision, Session
from scoring.models import Analysis
from tests.factories import (
    RaterFactory,
    RatingFactory,
    SessionFactory,
    StimulusFactory,
    StudyFactory,
    StudyShareFactory,
    UserFactory,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def study(researcher_a):
    study = StudyFactory(owner=researcher_a, slug="raters-study", scale="acr5", protocol="overall")
    return study


@pytest.fixture
def flagged(study):
    """A Prolific rater who straight-lined over 20 items, flagged back at item 10."""
    rater = RaterFactory(
        study=study,
        source=Rater.Source.PROLIFIC,
        external_id="5f00prolific01",
        flags={"straight_lining": "variance of overall scores 0 over 10 items"},
    )
    session = SessionFactory(rater=rater, platform_session_id="sess-1")
    for _ in range(20):
        RatingFactory(stimulus=StimulusFactory(study=study), rater=rater, session=session, score=3)
    return rater


def client_for(user):
    c = Client()
    c.force_login(user)
    return c


def decide(client, rater, action, reason):
    url = reverse("scoring:rater-decide", args=[rater.study.slug, rater.pk])
    return client.post(url, {"action": action, "reason": reason})


def test_attention_lists_reasons_in_words_with_the_platform_id(researcher_a, study, flagged):
    RaterFactory(study=study)  # in progress, nothing wrong: not listed
    page = client_for(researcher_a).get(reverse("scoring:study-detail", args=[study.slug]))
    assert [row["rater"].pk for row in page.context["raters"]] == [flagged.pk]
    html = page.content.decode()
    section = html[html.index('id="attention"') : html.index('id="results"')]
    assert "5f00prolific01" in section
    assert "Straight-lining: overall scores vary little: variance 0 over 20 items now" in section
    assert "straight_lining" not in section and "over 10 items" not in section.replace(
        "after 10 items", ""
    )
    assert reverse("scoring:rater-detail", args=[study.slug, flagged.pk]) in section


def test_raters_list_and_detail_show_ids_flags_and_timeline(researcher_a, study, flagged):
    c = client_for(researcher_a)
    page = c.get(reverse("scoring:raters", args=[study.slug]))
    assert page.status_code == 200
    html = page.content.decode()
    assert "5f00prolific01" in html and "Straight-lining" in html
    assert 'id="study-nav-raters"' in html and 'id="bonus-needs-analysis"' in html
    detail = c.get(reverse("scoring:rater-detail", args=[study.slug, flagged.pk]))
    assert detail.status_code == 200
    body = detail.content.decode()
    assert "Prolific participant ID" in body and "5f00prolific01" in body
    whats = [e["what"] for e in detail.context["timeline"]]
    assert whats[0] == "Arrived from Prolific" and "Last rating (session" in " ".join(whats)
    assert 'id="use-form"' in body and 'id="pay-form"' in body


def test_exclude_and_reinclude_from_the_page_then_rerun_the_analysis(researcher_a, study, flagged):
    c = client_for(researcher_a)
    response = decide(c, flagged, "exclude", "straight-lined every item")
    assert response.status_code == 302
    flagged.refresh_from_db()
    assert flagged.status == Rater.Status.EXCLUDED
    decision = RaterDecision.objects.get(rater=flagged)
    assert (decision.kind, decision.reason, decision.decided_by) == (
        "exclude",
        "straight-lined every item",
        researcher_a,
    )
    detail = c.get(response.url)
    body = detail.content.decode()
    assert "re-run the analysis" in body  # the flash message
    assert detail.context["rerun"]["stale"] is True and 'id="rerun-stale"' in body
    assert "straight-lined every item" in body and "researcher_a" in body

    # The re-run button posts the latest analysis's settings to the study's analysis start.
    rerun = c.post(
        reverse("scoring:analysis-start", args=[study.slug]),
        {
            "method": detail.context["rerun"]["method"],
            "reject_on": detail.context["rerun"]["reject_on"],
            "ci": detail.context["rerun"]["ci"],
        },
    )
    assert rerun.status_code == 302
    analysis = Analysis.objects.get(study=study)
    assert analysis.method == "bt500"
    detail = c.get(reverse("scoring:rater-detail", args=[study.slug, flagged.pk]))
    assert detail.context["rerun"]["stale"] is False
    assert f"as #{analysis.pk}" in detail.content.decode()

    assert decide(c, flagged, "include", "looked again: honest").status_code == 302
    flagged.refresh_from_db()
    assert flagged.status == Rater.Status.ACTIVE  # the session never finished
    assert list(flagged.decisions.values_list("kind", flat=True)) == ["exclude", "include"]


@pytest.mark.parametrize(
    "action, reason, message",
    [
        ("exclude", "", "say why"),
        ("exclude", "   ", "say why"),
        ("reject", "", "say why"),
        ("ban", "because", "choose exclude, include, approve or reject"),
        ("include", "not excluded", "nothing to re-include"),
    ],
)
def test_bad_decisions_are_shown_on_the_page_and_change_nothing(
    researcher_a, flagged, action, reason, message
):
    response = decide(client_for(researcher_a), flagged, action, reason)
    assert response.status_code in (400, 409)
    assert 'id="decide-error"' in response.content.decode()
    assert message in response.content.decode()
    flagged.refresh_from_db()
    assert (flagged.status, flagged.pay_decision) == (Rater.Status.ACTIVE, "")
    assert not RaterDecision.objects.exists()


def test_unknown_rater_is_404(researcher_a, study, flagged):
    c = client_for(researcher_a)
    other = RaterFactory()  # another study's rater
    for rater_id in (other.pk, 999999):
        assert (
            c.get(reverse("scoring:rater-detail", args=[study.slug, rater_id])).status_code == 404
        )
        url = reverse("scoring:rater-decide", args=[study.slug, rater_id])
        assert c.post(url, {"action": "exclude", "reason": "x"}).status_code == 404
    other.refresh_from_db()
    assert other.status == Rater.Status.ACTIVE and not RaterDecision.objects.exists()


def test_view_only_sharer_reads_but_cannot_act(study, flagged, researcher_b):
    StudyShareFactory(study=study, user=researcher_b, level="view")
    viewer = client_for(researcher_b)
    page = viewer.get(reverse("scoring:raters", args=[study.slug]))
    assert page.status_code == 200 and 'id="payments-view-only"' in page.content.decode()
    detail = viewer.get(reverse("scoring:rater-detail", args=[study.slug, flagged.pk]))
    assert detail.status_code == 200
    assert 'id="decide-view-only"' in detail.content.decode()
    assert 'id="use-form"' not in detail.content.decode()

    for action, reason in (("exclude", "bad"), ("approve", ""), ("reject", "bad")):
        assert decide(viewer, flagged, action, reason).status_code == 403
    export = viewer.post(
        reverse("scoring:payment-export", args=[study.slug]),
        {"platform": "prolific", "kind": "approve"},
    )
    assert export.status_code == 403
    approve_all = viewer.post(reverse("scoring:raters-approve-completed", args=[study.slug]))
    assert approve_all.status_code == 403
    flagged.refresh_from_db()
    assert (flagged.status, flagged.pay_decision) == (Rater.Status.ACTIVE, "")
    assert not RaterDecision.objects.exists() and not PaymentExport.objects.exists()

    # A researcher the study is not shared with does not learn it exists.
    stranger = client_for(UserFactory(username="stranger"))
    assert stranger.get(reverse("scoring:raters", args=[study.slug])).status_code == 404
    assert decide(stranger, flagged, "exclude", "bad").status_code == 404


def test_editor_approves_and_downloads_the_prolific_file(study, flagged, researcher_b):
    StudyShareFactory(study=study, user=researcher_b, level="edit")
    editor = client_for(researcher_b)
    Session.objects.filter(rater=flagged).update(
        stage=Session.Stage.DONE, finished_at=timezone.now()
    )
    response = editor.post(reverse("scoring:raters-approve-completed", args=[study.slug]))
    assert response.status_code == 302
    flagged.refresh_from_db()
    assert flagged.pay_decision == "approve" and flagged.status == Rater.Status.ACTIVE

    made = editor.post(
        reverse("scoring:payment-export", args=[study.slug]),
        {"platform": "prolific", "kind": "approve"},
    )
    assert made.status_code == 302
    export = PaymentExport.objects.get()
    assert export.created_by == researcher_b
    download = editor.get(reverse("scoring:payment-download", args=[study.slug, export.pk]))
    assert download.status_code == 200
    assert download.content.decode() == "5f00prolific01\n"
    assert download["Content-Disposition"] == (
        f'attachment; filename="raters-study-prolific-approve-{export.pk}.txt"'
    )
    page = editor.get(reverse("scoring:raters", args=[study.slug]))
    assert f'id="export-{export.pk}"' in page.content.decode()

    # The same file again: recorded, empty, and said so.
    again = editor.post(
        reverse("scoring:payment-export", args=[study.slug]),
        {"platform": "prolific", "kind": "approve"},
        follow=True,
    )
    assert "is empty: nobody new" in again.content.decode()
    assert PaymentExport.objects.order_by("-pk").first().lines.count() == 0


def test_bad_bonus_rule_is_shown_on_the_page_and_records_nothing(researcher_a, study, flagged):
    c = client_for(researcher_a)
    analysis = Analysis.objects.create(study=study, method="bt500", status="done")
    analysis.finished_at = timezone.now()
    analysis.save()
    response = c.post(
        reverse("scoring:payment-export", args=[study.slug]),
        {
            "kind": "bonus",
            "platform": "prolific",
            "analysis": analysis.pk,
            "min_corr": "0.7",
            "top_percent": "250",
            "amount": "0.50",
            "currency": "GBP",
            "reason": "good work",
        },
    )
    assert response.status_code == 400
    body = response.content.decode()
    assert 'id="bonus-error"' in body and "percentage" in body
    assert 'value="250"' in body  # what was typed stays
    assert not PaymentExport.objects.exists()
    bad_platform = c.post(
        reverse("scoring:payment-export", args=[study.slug]),
        {"kind": "approve", "platform": "upwork"},
    )
    assert (
        bad_platform.status_code == 400 and 'id="verdicts-error"' in bad_platform.content.decode()
    )
    assert not PaymentExport.objects.exists()


def test_bonus_file_made_from_the_page_is_listed_with_its_rule_and_total(researcher_a):
    from tests.factories import rated_study

    study = rated_study(n_raters=10, n_scenes=4, items_per_rater=10, slug="bonus-page")
    study.owner = researcher_a
    study.save(update_fields=["owner"])
    for i, rater in enumerate(Rater.objects.filter(study=study).order_by("id")):
        Rater.objects.filter(pk=rater.pk).update(source="prolific", external_id=f"P{i:02d}x")
    c = client_for(researcher_a)
    c.post(reverse("scoring:analysis-start", args=[study.slug]), {"method": "bt500"})
    analysis = Analysis.objects.get(study=study, status="done")
    page = c.get(reverse("scoring:raters", args=[study.slug]))
    assert page.context["bonus"]["analysis"] == analysis.pk  # the latest, chosen by default
    # Each rater's correlation with the MOS in that analysis, to decide by.
    assert f"Correlation with the MOS (analysis #{analysis.pk})" in page.content.decode()
    best = max(
        (row for row in page.context["rows"] if row["verdict"] and row["verdict"].corr is not None),
        key=lambda row: row["verdict"].corr,
    )
    assert f"{best['verdict'].corr:.3f}" in page.content.decode()
    detail = c.get(reverse("scoring:rater-detail", args=[study.slug, best["rater"].pk]))
    assert f"#{analysis.pk}: correlation with the MOS {best['verdict'].corr:.3f}, kept" in (
        detail.content.decode()
    )
    form = {
        "kind": "bonus",
        "platform": "prolific",
        "analysis": analysis.pk,
        "min_corr": "0",
        "top_percent": "50",
        "amount": "1.25",
        "currency": "GBP",
        "reason": "careful work",
    }
    assert c.post(reverse("scoring:payment-export", args=[study.slug]), form).status_code == 302
    export = PaymentExport.objects.get(study=study)
    n = export.lines.count()
    assert n >= 1
    page = c.get(reverse("scoring:raters", args=[study.slug])).content.decode()
    row = page[page.index(f'id="export-{export.pk}"') :]
    row = row[: row.index("</tr>")]
    assert f"analysis #{analysis.pk}" in row and "top 50%" in row and "correlation &ge; 0," in row
    assert f"{n} (" in row and f"{Decimal('1.25') * n} GBP" in row
    download = c.get(reverse("scoring:payment-download", args=[study.slug, export.pk]))
    assert all(line.endswith(",1.25") for line in download.content.decode().splitlines())
    # The same rule again: an empty file, nobody paid twice.
    c.post(reverse("scoring:payment-export", args=[study.slug]), form)
    assert PaymentExport.objects.filter(study=study).order_by("-pk").first().lines.count() == 0


def test_admin_reads_decisions_and_payment_files_but_never_writes_them(admin_user, flagged):
    from tests.factories import PaymentExportLineFactory, RaterDecisionFactory

    decision = RaterDecisionFactory(rater=flagged)
    line = PaymentExportLineFactory(export__study=flagged.study)
    admin = client_for(admin_user)
    for name, pk in (("raterdecision", decision.pk), ("paymentexport", line.export_id)):
        assert admin.get(reverse(f"admin:annotation_{name}_changelist")).status_code == 200
        assert admin.get(reverse(f"admin:annotation_{name}_change", args=[pk])).status_code == 200
        assert admin.get(reverse(f"admin:annotation_{name}_add")).status_code == 403
        delete = admin.post(reverse(f"admin:annotation_{name}_delete", args=[pk]), {"post": "yes"})
        assert delete.status_code == 403
    # The rater's MOS use and pay are read-only in the admin: they change through the
    # recorded decisions only.
    page = admin.get(reverse("admin:annotation_rater_change", args=[flagged.pk]))
    assert page.status_code == 200
    assert 'name="status"' not in page.content.decode()
    assert 'name="pay_decision"' not in page.content.decode()
    assert RaterDecision.objects.count() == 1 and PaymentExport.objects.count() == 1


def test_payment_file_of_another_study_or_unknown_is_404(researcher_a, study):
    from tests.factories import PaymentExportFactory

    elsewhere = PaymentExportFactory()  # another researcher's study
    mine = PaymentExportFactory(study=study)
    c = client_for(researcher_a)
    for export_id in (elsewhere.pk, 999999):
        url = reverse("scoring:payment-download", args=[study.slug, export_id])
        assert c.get(url).status_code == 404
    assert c.get(reverse("scoring:payment-download", args=[study.slug, mine.pk])).status_code == 200
    stranger = client_for(UserFactory(username="nosy"))
    url = reverse("scoring:payment-download", args=[study.slug, mine.pk])
    assert stranger.get(url).status_code == 404
