"""What a researcher reads about raters (reads only): why a rater needs attention,
their quality flags in words with the values of now (not those of when the flag was
raised), and the timeline of their sessions and of the decisions taken about them."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from django.db.models import Count, F, Max, Min, Q, QuerySet, Sum

from annotation import quality
from annotation.models import PaymentExportLine, Rater, RaterDecision, Rating, Study

#: The flags' names in words (Rater.flags keys); an unknown key is shown as written.
FLAG_NAMES = {"straight_lining": "Straight-lining"}


@dataclass(frozen=True)
class Overall:
    """A rater's overall scores of test items (first repetition), as the
    straight-lining check counts them (annotation.quality)."""

    n: int
    variance: float | None


def overall_stats(rater_ids: Iterable[int]) -> dict[int, Overall]:
    """Count and sample variance of each rater's overall scores, in one query."""
    rows = (
        Rating.objects.filter(rater_id__in=list(rater_ids), repetition=1, is_gold=False)
        .values("rater_id")
        .annotate(n=Count("id"), s=Sum("overall"), ss=Sum(F("overall") * F("overall")))
    )
    stats = {}
    for row in rows:
        n, s, ss = row["n"], row["s"] or 0.0, row["ss"] or 0.0
        variance = max(0.0, (ss - s * s / n) / (n - 1)) if n > 1 else None
        stats[row["rater_id"]] = Overall(n, variance)
    return stats


def flags_in_words(rater: Rater, now: Overall | None) -> list[dict[str, str]]:
    """Each flag as {name, text}, with the current count and variance of the rater's
    overall scores where the flag is about them."""
    words = []
    threshold = quality.STRAIGHT_LINE_VARIANCE.get(rater.study.scale, 0.1)
    for key, raised in (rater.flags or {}).items():
        name = FLAG_NAMES.get(key, key.replace("_", " ").capitalize())
        if key == "straight_lining" and now is not None and now.variance is not None:
            text = (
                f"overall scores vary little: variance {now.variance:.3g} over {now.n} items "
                f"now (flagged below {threshold:g} after {quality.STRAIGHT_LINE_MIN_ITEMS} "
                "items)"
            )
        else:
            text = str(raised)
        words.append({"key": key, "name": name, "text": text})
    return words


def attention_reasons(rater: Rater, now: Overall | None) -> list[str]:
    """Why a rater needs the researcher's attention, in words; empty: they do not."""
    reasons = []
    if rater.status == Rater.Status.EXCLUDED:
        reasons.append(f"Excluded from the MOS: {rater.status_reason or 'no reason recorded'}")
    for flag in flags_in_words(rater, now):
        reasons.append(f"{flag['name']}: {flag['text']}")
    limit = rater.study.gold_fail_limit
    if rater.gold_failures and rater.status != Rater.Status.EXCLUDED:
        of = f" (excluded at {limit})" if limit else ""
        reasons.append(f"Failed {rater.gold_failures} gold question(s){of}")
    return reasons


def attention_raters(study: Study, limit: int = 200) -> list[dict[str, Any]]:
    """The study's raters who need attention (excluded, flagged or with failed gold
    questions), each with the reasons in words; in-progress raters with none are not."""
    raters = list(
        Rater.objects.filter(study=study)
        .exclude(source=Rater.Source.PILOT)
        .filter(Q(status=Rater.Status.EXCLUDED) | ~Q(flags={}) | Q(gold_failures__gt=0))
        .select_related("study")
        .order_by("status", "id")[:limit]
    )
    stats = overall_stats(r.pk for r in raters)
    rows = []
    for rater in raters:
        reasons = attention_reasons(rater, stats.get(rater.pk))
        if reasons:
            rows.append({"rater": rater, "reasons": reasons})
    return rows


def raters_table(study: Study, status: str = "", pay: str = "") -> QuerySet[Rater]:
    """The study's raters (no previews) with their counts, filtered by status and pay
    decision when given."""
    qs = (
        Rater.objects.filter(study=study)
        .exclude(source=Rater.Source.PILOT)
        .select_related("study")
        .annotate(
            n_ratings=Count("ratings", filter=Q(ratings__is_pilot=False), distinct=True),
            last_rating=Max("ratings__created_at"),
        )
        .order_by("id")
    )
    if status in Rater.Status.values:
        qs = qs.filter(status=status)
    if pay in ("none", "approve", "reject"):
        qs = qs.filter(pay_decision="" if pay == "none" else pay)
    return qs


def timeline(rater: Rater) -> list[dict[str, Any]]:
    """The rater's story, oldest first: arrival, each session (stages, ratings, gold
    failures, end), quality exclusion, the researchers' decisions and the payment
    exports that carried them. Each event is {at, what, detail}."""
    events: list[dict[str, Any]] = []

    def add(at, what, detail=""):
        if at is not None:
            events.append({"at": at, "what": what, "detail": detail})

    source = rater.get_source_display()
    add(
        rater.created_at,
        f"Arrived from {source}",
        f"id {rater.external_id}" if rater.external_id else "no platform id",
    )
    add(rater.consented_at, "Gave consent")
    add(rater.training_done_at, "Finished training")
    per_session = {
        row["session_id"]: row
        for row in Rating.objects.filter(rater=rater)
        .values("session_id")
        .annotate(
            n=Count("id"),
            gold=Count("id", filter=Q(is_gold=True)),
            first=Min("created_at"),
            last=Max("created_at"),
        )
    }
    for session in rater.sessions.order_by("started_at", "id"):
        extra = f"assignment {session.platform_session_id}" if session.platform_session_id else ""
        planned = f"{session.planned_items} items planned" if session.planned_items else ""
        add(
            session.started_at,
            f"Session {session.pk} started",
            "; ".join(x for x in (planned, extra) if x),
        )
        rated = per_session.get(session.pk)
        if rated:
            add(rated["first"], f"First rating (session {session.pk})")
            add(
                rated["last"],
                f"Last rating (session {session.pk})",
                f"{rated['n']} ratings, {rated['gold']} of them gold questions",
            )
        end = session.get_stage_display()
        if session.finished_at:
            add(session.finished_at, f"Session {session.pk} ended", f"stage: {end}")
        else:
            events.append(
                {
                    "at": None,
                    "what": f"Session {session.pk} still open",
                    "detail": f"stage now: {end}",
                }
            )
    for rating in (
        Rating.objects.filter(rater=rater, is_gold=True)
        .select_related("stimulus")
        .order_by("created_at")
    ):
        if quality.gold_passed(rating) is False:
            add(
                rating.created_at,
                "Failed a gold question",
                f"{rating.stimulus.original_name} rated {rating.scores()['overall']:g}, expected "
                f"{rating.stimulus.expected_low:g}-{rating.stimulus.expected_high:g}",
            )
    for decision in RaterDecision.objects.filter(rater=rater).order_by("decided_at", "id"):
        add(
            decision.decided_at,
            decision.get_kind_display(),
            f"by {decision.decided_by_name}" + (f": {decision.reason}" if decision.reason else ""),
        )
    for line in PaymentExportLine.objects.filter(rater=rater).select_related("export"):
        export = line.export
        amount = f" {line.amount:.2f}" if line.amount is not None else ""
        add(
            export.created_at,
            f"In {export.get_platform_display()} {export.get_kind_display().lower()} "
            f"file #{export.pk}",
            f"by {export.created_by_name}{amount}"
            + (f", assignment {line.assignment_id}" if line.assignment_id else ""),
        )
    dated = sorted((e for e in events if e["at"] is not None), key=lambda e: e["at"])
    return dated + [e for e in events if e["at"] is None]
