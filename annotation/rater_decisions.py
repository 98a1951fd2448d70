"""A researcher's decisions about a rater, each kept as a row saying who, when and why
(``RaterDecision``): exclude from the MOS and re-include, approve and reject for pay.

The two questions are kept apart, as P.808 and P.910 practice: a rater may be paid
whose ratings are not used (honest work that disagrees with the crowd), or the other
way round. Excluding changes ``Rater.status`` only; approving or rejecting changes
``Rater.pay_decision`` only. The MOS reads ``status`` (excluded raters' ratings are left
out, scoring.analyses.selectors), the platform files read ``pay_decision``
(annotation.payments). A pay decision already sent to the platform in a file stays:
the platform has acted on it.
"""

from __future__ import annotations

from django.db import transaction

from annotation.models import PaymentExportLine, Rater, RaterDecision, Session, Study
from studyweb.boundary import has_control_characters
from studyweb.errors import ServiceError

REASON_MAX = 2000


class DecisionError(ServiceError):
    """A decision that cannot be taken as asked (no reason, unknown rater, too late)."""


def _who(user) -> str:
    name = getattr(user, "get_username", lambda: "")() if user is not None else ""
    if not name:
        raise DecisionError("a decision needs the researcher who takes it", field="user")
    return name


def _reason(reason, *, required: bool) -> str:
    if reason is not None and not isinstance(reason, str):
        raise DecisionError("the reason must be text", field="reason")
    text = (reason or "").strip()
    if required and not text:
        raise DecisionError("say why: the reason is kept with the decision", field="reason")
    if len(text) > REASON_MAX:
        raise DecisionError(f"the reason is longer than {REASON_MAX} characters", field="reason")
    if has_control_characters(text, free_text=True):
        # NUL would reach PostgreSQL as a DataError; the others would be kept and exported.
        raise DecisionError(
            "remove the control characters (such as NUL or escape) from the reason",
            field="reason",
        )
    return text


def _record(
    locked: Rater, kind: str, reason: str, *, previous: str, user, who: str
) -> RaterDecision:
    """The decision's row: what was decided, why, by whom, and the value it replaced
    (the status reason too, when the decision is about the status)."""
    status = kind in (RaterDecision.Kind.EXCLUDE, RaterDecision.Kind.INCLUDE)
    return RaterDecision.objects.create(
        rater=locked,
        kind=kind,
        reason=reason,
        previous=previous,
        previous_reason=locked.status_reason if status else "",
        decided_by=user,
        decided_by_name=who,
    )


def rater_in_study(study: Study, rater_id) -> Rater:
    """The study's rater (never a pilot: previews are nobody's data), or a 404 refusal."""
    try:
        rater_id = int(rater_id)
    except (TypeError, ValueError):
        raise DecisionError(
            "no such rater in this study", code="not_found", field="rater", status=404
        ) from None
    rater = (
        Rater.objects.filter(study=study, pk=rater_id).exclude(source=Rater.Source.PILOT).first()
    )
    if rater is None:
        raise DecisionError(
            "no such rater in this study", code="not_found", field="rater", status=404
        )
    return rater


def _locked(rater: Rater) -> Rater:
    return Rater.objects.select_for_update().get(pk=rater.pk)


def rater_exclude(*, rater: Rater, reason: str, user) -> RaterDecision:
    """Leave the rater's ratings out of the MOS from the next analysis on; their
    reserved images go back to the pool, and a rater still rating is stopped at their
    next step, as the gold rule does (annotation.rater_flow). Their pay decision is not
    touched."""
    text = _reason(reason, required=True)
    who = _who(user)
    if rater.source == Rater.Source.PILOT:
        raise DecisionError("a preview rater's ratings are never used anyway", field="rater")
    with transaction.atomic():
        locked = _locked(rater)
        if locked.status == Rater.Status.EXCLUDED:
            raise DecisionError(
                "this rater is already excluded from the MOS",
                code="already_excluded",
                field="rater",
                status=409,
            )
        decision = _record(
            locked, RaterDecision.Kind.EXCLUDE, text, previous=locked.status, user=user, who=who
        )
        locked.status = Rater.Status.EXCLUDED
        locked.status_reason = text
        locked.save(update_fields=["status", "status_reason"])
        locked.claims.all().delete()
    rater.refresh_from_db()
    return decision


def rater_include(*, rater: Rater, reason: str, user) -> RaterDecision:
    """Use the rater's ratings in the MOS again (from the next analysis on), whoever
    excluded them (the gold rule or a researcher). They are completed again if one of
    their sessions was done; else active (a session the exclusion stopped is not done:
    a rater coming back may go on rating, never handed a completion code they did not
    earn)."""
    text = _reason(reason, required=True)
    who = _who(user)
    with transaction.atomic():
        locked = _locked(rater)
        if locked.status != Rater.Status.EXCLUDED:
            raise DecisionError(
                "this rater is not excluded: nothing to re-include",
                code="not_excluded",
                field="rater",
                status=409,
            )
        decision = _record(
            locked, RaterDecision.Kind.INCLUDE, text, previous=locked.status, user=user, who=who
        )
        finished = locked.sessions.filter(stage=Session.Stage.DONE).exists()
        locked.status = Rater.Status.COMPLETED if finished else Rater.Status.ACTIVE
        locked.status_reason = ""
        locked.save(update_fields=["status", "status_reason"])
    rater.refresh_from_db()
    return decision


def rater_set_pay(*, rater: Rater, decision: str, reason: str = "", user) -> RaterDecision:
    """Approve (reason optional) or reject (reason required: the platforms ask for one)
    the rater's work for payment. Whether their ratings are used is not touched."""
    if decision not in (RaterDecision.Kind.APPROVE, RaterDecision.Kind.REJECT):
        raise DecisionError("the pay decision is 'approve' or 'reject'", field="decision")
    text = _reason(reason, required=decision == RaterDecision.Kind.REJECT)
    who = _who(user)
    if rater.source == Rater.Source.PILOT:
        raise DecisionError("a preview rater is nobody to pay", field="rater")
    with transaction.atomic():
        locked = _locked(rater)
        sent = (
            PaymentExportLine.objects.filter(rater=locked, kind__in=["approve", "reject"])
            .select_related("export")
            .first()
        )
        if sent is not None:
            raise DecisionError(
                f"this rater's work was already sent to the platform as "
                f"{sent.get_kind_display().lower()}d in export #{sent.export_id} "
                f"({sent.export.created_at:%Y-%m-%d %H:%M}); change it on the platform",
                code="already_sent",
                field="decision",
                status=409,
            )
        if locked.pay_decision == decision:
            raise DecisionError(
                f"this rater is already {decision}d",
                code="already_decided",
                field="decision",
                status=409,
            )
        row = _record(locked, decision, text, previous=locked.pay_decision, user=user, who=who)
        locked.pay_decision = decision
        locked.save(update_fields=["pay_decision"])
    rater.refresh_from_db()
    return row


def raters_approve_completed(*, study: Study, user) -> int:
    """Approve for pay every rater who completed a session (stage done) and has no pay
    decision yet, excluded from the MOS or not: pay is not the MOS's question. Raters
    the gold rule stopped are left to the researcher. Returns how many."""
    who = _who(user)
    with transaction.atomic():
        raters = list(
            Rater.objects.select_for_update()
            .filter(
                study=study,
                pay_decision="",
                pk__in=Session.objects.filter(stage=Session.Stage.DONE).values("rater_id"),
            )
            .exclude(source__in=[Rater.Source.PILOT, Rater.Source.SIMULATED])
            .order_by("id")
        )
        RaterDecision.objects.bulk_create(
            RaterDecision(
                rater=r,
                kind=RaterDecision.Kind.APPROVE,
                reason="approved with every rater who completed the study",
                previous="",
                decided_by=user,
                decided_by_name=who,
            )
            for r in raters
        )
        Rater.objects.filter(pk__in=[r.pk for r in raters]).update(pay_decision="approve")
    return len(raters)
