"""Files for the crowd platforms' bulk actions: who is approved, rejected or given a
bonus, each export recorded with its lines (``PaymentExport``) so nobody is approved,
rejected or given a bonus twice: a rater (an MTurk assignment) already in an export of
the kind is left out of the next one, and the database refuses a second line anyway.

Which raters are paid is the researcher's pay decision (annotation.rater_decisions),
not whether their ratings are used in the MOS. Who gets a bonus is chosen by a rule on
an analysis (scoring.exports.payments); this module records and writes the file.

The formats follow the platforms' documentation:

- Prolific, approvals and rejections: one participant ID (``PROLIFIC_PID``) per line,
  as the submissions page's bulk approve / reject by ID takes them (the reasons stay
  on our rater pages: Prolific asks for its own at rejection).
- Prolific, bonuses: ``participant_id,amount`` per line, no header, the amount in the
  study's currency with two decimals and no symbol ("Bulk bonus payment" on the
  submissions page, researcher help "Bonus payments").
- MTurk, approvals and rejections: the Requester website's batch results CSV, reduced
  to the columns its "Upload CSV" review reads: ``AssignmentId, WorkerId, HITId,
  Approve, Reject``, with ``x`` in Approve or the reason in Reject (Requester UI guide,
  "Review assignments offline").
- MTurk, bonuses: ``WorkerId, AssignmentId, BonusAmount, Reason``, the four required
  fields of the SendBonus operation (``aws mturk send-bonus``), BonusAmount in US
  dollars with no symbol.

MTurk needs the assignment id, which the entry link stores (``assignmentId``: the
session's ``platform_session_id``, the rater's ``platform["assignment_id"]``); a rater
without one is left out of the file and named in ``PaymentExport.left_out``.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from django.db import IntegrityError, transaction
from django.http import HttpResponse

from annotation.models import (
    PaymentExport,
    PaymentExportLine,
    Rater,
    RaterDecision,
    Study,
)
from studyweb.boundary import has_control_characters
from studyweb.errors import ServiceError

PLATFORMS = {"prolific": Rater.Source.PROLIFIC, "mturk": Rater.Source.MTURK}
#: A bonus larger than this is a typing mistake (the platforms cap bonuses too).
BONUS_MAX = Decimal("100.00")
#: The ids the platforms hand out: letters, digits, "_" and "-". Anything else came
#: from a hand-edited link and would not be found (or could be a spreadsheet formula).
PLATFORM_ID = re.compile(r"^[A-Za-z0-9_-]{1,128}$")
MTURK_BATCH_COLUMNS = ["AssignmentId", "WorkerId", "HITId", "Approve", "Reject"]
MTURK_BONUS_COLUMNS = ["WorkerId", "AssignmentId", "BonusAmount", "Reason"]


class PaymentError(ServiceError):
    """A payment export that cannot be made as asked."""


@dataclass(frozen=True)
class BonusChoice:
    """A rater a bonus rule chose, with the amount and why (shown on the page)."""

    rater: Rater
    amount: Decimal
    why: str = ""


def bonus_amount(value) -> Decimal:
    """A positive amount with at most two decimals, up to :data:`BONUS_MAX`."""
    try:
        amount = Decimal(str(value).strip())
    except (InvalidOperation, ValueError):
        raise PaymentError("the bonus amount is not a number", field="amount") from None
    if not amount.is_finite() or amount <= 0:
        raise PaymentError("the bonus amount must be more than 0", field="amount")
    if amount > BONUS_MAX:
        raise PaymentError(f"the bonus amount is over {BONUS_MAX}", field="amount")
    if amount != amount.quantize(Decimal("0.01")):
        raise PaymentError("the bonus amount has at most two decimals", field="amount")
    return amount.quantize(Decimal("0.01"))


def _platform(platform: str) -> str:
    if platform not in PLATFORMS:
        raise PaymentError(
            f"unknown platform {platform!r}; use {' or '.join(PLATFORMS)}", field="platform"
        )
    return platform


def assignments(rater: Rater) -> list[tuple[str, str]]:
    """An MTurk worker's (assignment id, HIT id) pairs in this study, oldest first: one
    per session that came with an assignment id. The entry link keeps the latest HIT
    id only (``platform["hit_id"]``), so older assignments have an empty HIT id."""
    platform = rater.platform or {}
    ids: list[str] = []
    for sid in rater.sessions.order_by("started_at", "id").values_list(
        "platform_session_id", flat=True
    ):
        if sid and sid not in ids:
            ids.append(sid)
    latest = platform.get("assignment_id", "")
    if latest and latest not in ids:
        ids.append(latest)
    hit = platform.get("hit_id", "")
    return [(a, hit if a == latest else "") for a in ids]


def _targets(rater: Rater, platform: str) -> tuple[list[tuple[str, str]], str]:
    """The (assignment id, HIT id) lines a rater takes in a file ([("", "")] on
    Prolific), or none and what is missing."""
    if not PLATFORM_ID.match(rater.external_id or ""):
        return [], f"no usable {'Prolific participant' if platform == 'prolific' else 'worker'} id"
    if platform == "prolific":
        return [("", "")], ""
    pairs = [(a, h) for a, h in assignments(rater) if PLATFORM_ID.match(a)]
    if not pairs:
        return [], "no assignment id (the entry link had no assignmentId)"
    return pairs, ""


def _reject_reasons(raters: list[Rater]) -> dict[int, str]:
    """Each rater's latest reason for rejecting their work."""
    reasons: dict[int, str] = {}
    for rater_id, reason in (
        RaterDecision.objects.filter(rater__in=raters, kind=RaterDecision.Kind.REJECT)
        .order_by("decided_at", "id")
        .values_list("rater_id", "reason")
    ):
        reasons[rater_id] = reason
    return reasons


def _who(user) -> str:
    name = user.get_username() if user is not None else ""
    if not name:
        raise PaymentError("an export needs the researcher who makes it", field="user")
    return name


def payment_export_verdicts(*, study: Study, platform: str, kind: str, user) -> PaymentExport:
    """Record and return an export of the raters (assignments) whose work the
    researcher approved (``kind`` "approve") or rejected ("reject") and that no earlier
    export of either kind carried. Empty when there is nobody new."""
    platform = _platform(platform)
    if kind not in (PaymentExport.Kind.APPROVE, PaymentExport.Kind.REJECT):
        raise PaymentError("the export is 'approve', 'reject' or 'bonus'", field="kind")
    who = _who(user)
    with transaction.atomic():
        raters = list(
            Rater.objects.select_for_update()
            .filter(study=study, source=PLATFORMS[platform], pay_decision=kind)
            .order_by("id")
        )
        sent = set(
            PaymentExportLine.objects.filter(
                rater__in=raters, kind__in=["approve", "reject"]
            ).values_list("rater_id", "assignment_id")
        )
        reasons = _reject_reasons(raters) if kind == PaymentExport.Kind.REJECT else {}
        export = PaymentExport.objects.create(
            study=study, platform=platform, kind=kind, created_by=user, created_by_name=who
        )
        lines, left_out = [], []
        for rater in raters:
            pairs, missing = _targets(rater, platform)
            if missing:
                left_out.append(
                    {"rater": rater.pk, "pseudonym": rater.pseudonym, "missing": missing}
                )
            for assignment_id, hit_id in pairs:
                if (rater.pk, assignment_id) in sent:
                    continue
                lines.append(
                    PaymentExportLine(
                        export=export,
                        rater=rater,
                        kind=kind,
                        external_id=rater.external_id,
                        assignment_id=assignment_id,
                        hit_id=hit_id,
                        reason=reasons.get(rater.pk, ""),
                    )
                )
        PaymentExportLine.objects.bulk_create(lines)
        if left_out:
            export.left_out = left_out
            export.save(update_fields=["left_out"])
    return export


def payment_export_bonus(
    *,
    study: Study,
    platform: str,
    choices: list[BonusChoice],
    rule: dict,
    reason: str,
    user,
) -> PaymentExport:
    """Record and return a bonus export of the chosen raters of the platform who had
    no bonus yet (in any earlier export) and whose work was not rejected. ``rule`` is
    kept with it (the analysis, the thresholds, the amount), ``reason`` is what the
    worker reads (MTurk requires one)."""
    platform = _platform(platform)
    text = (reason or "").strip() if isinstance(reason, str | None) else ""
    if not text:
        raise PaymentError("say why the bonus is paid: the worker reads it", field="reason")
    if len(text) > 1000:
        raise PaymentError("the bonus reason is longer than 1000 characters", field="reason")
    if has_control_characters(text, free_text=True):
        # The worker reads it in the platform's file: no NUL, escape or the like.
        raise PaymentError(
            "remove the control characters (such as NUL or escape) from the reason",
            field="reason",
        )
    who = _who(user)
    source = PLATFORMS[platform]
    with transaction.atomic():
        ids = [c.rater.pk for c in choices if c.rater.study_id == study.pk]
        raters = {
            r.pk: r for r in Rater.objects.select_for_update().filter(pk__in=ids, source=source)
        }
        paid = set(
            PaymentExportLine.objects.filter(rater_id__in=raters, kind="bonus").values_list(
                "rater_id", flat=True
            )
        )
        export = PaymentExport.objects.create(
            study=study,
            platform=platform,
            kind=PaymentExport.Kind.BONUS,
            rule=rule,
            created_by=user,
            created_by_name=who,
        )
        lines, left_out = [], []
        for choice in choices:
            rater = raters.get(choice.rater.pk)
            if rater is None or rater.pk in paid or rater.pay_decision == "reject":
                continue
            amount = bonus_amount(choice.amount)
            pairs, missing = _targets(rater, platform)
            if missing:
                left_out.append(
                    {"rater": rater.pk, "pseudonym": rater.pseudonym, "missing": missing}
                )
                continue
            assignment_id, _ = pairs[-1]  # MTurk pays a bonus on one assignment: the latest
            lines.append(
                PaymentExportLine(
                    export=export,
                    rater=rater,
                    kind=PaymentExport.Kind.BONUS,
                    external_id=rater.external_id,
                    assignment_id=assignment_id,
                    amount=amount,
                    reason=text,
                )
            )
        try:
            with transaction.atomic():
                PaymentExportLine.objects.bulk_create(lines)
        except IntegrityError:
            # Another export paid one of them between our read and our write.
            raise PaymentError(
                "another export paid some of these raters just now; make it again",
                status=409,
            ) from None
        if left_out:
            export.left_out = left_out
            export.save(update_fields=["left_out"])
    return export


def _money(amount: Decimal | None) -> str:
    return f"{amount:.2f}" if amount is not None else ""


def payment_file_response(export: PaymentExport) -> HttpResponse:
    """The export's file as a download (the raters page and the API alike)."""
    name, content_type, text = payment_file(export)
    response = HttpResponse(text, content_type=content_type)
    response["Content-Disposition"] = f'attachment; filename="{name}"'
    return response


def payment_file(export: PaymentExport) -> tuple[str, str, str]:
    """(file name, content type, text) of an export, from its recorded lines: the same
    file however often it is downloaded."""
    lines = list(export.lines.order_by("id"))
    stem = f"{export.study.slug}-{export.platform}-{export.kind}-{export.pk}"
    if export.platform == "prolific":
        if export.kind == PaymentExport.Kind.BONUS:
            text = "".join(f"{line.external_id},{_money(line.amount)}\n" for line in lines)
            return f"{stem}.csv", "text/csv; charset=utf-8", text
        text = "".join(f"{line.external_id}\n" for line in lines)
        return f"{stem}.txt", "text/plain; charset=utf-8", text
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    if export.kind == PaymentExport.Kind.BONUS:
        writer.writerow(MTURK_BONUS_COLUMNS)
        for line in lines:
            writer.writerow(
                [line.external_id, line.assignment_id, _money(line.amount), _cell(line.reason)]
            )
    else:
        writer.writerow(MTURK_BATCH_COLUMNS)
        approve = export.kind == PaymentExport.Kind.APPROVE
        for line in lines:
            writer.writerow(
                [
                    line.assignment_id,
                    line.external_id,
                    line.hit_id,
                    "x" if approve else "",
                    "" if approve else _cell(line.reason),
                ]
            )
    return f"{stem}.csv", "text/csv; charset=utf-8", buffer.getvalue()


def _cell(text: str) -> str:
    """A researcher's free text in a CSV cell, never read as a spreadsheet formula."""
    text = " ".join(text.split())
    return "'" + text if text[:1] in ("=", "+", "-", "@") else text


def pending_counts(study: Study) -> dict[str, dict[str, int]]:
    """Per platform: raters decided approve / reject whose verdict no export carried
    yet, and bonuses already exported (for the page's summary)."""
    counts: dict[str, dict[str, int]] = {}
    for platform, source in PLATFORMS.items():
        raters = Rater.objects.filter(study=study, source=source)
        sent = PaymentExportLine.objects.filter(rater__study=study, rater__source=source)
        counts[platform] = {
            "approve": raters.filter(pay_decision="approve")
            .exclude(payment_lines__kind__in=["approve", "reject"])
            .count(),
            "reject": raters.filter(pay_decision="reject")
            .exclude(payment_lines__kind__in=["approve", "reject"])
            .count(),
            "undecided": raters.filter(pay_decision="").count(),
            "bonused": sent.filter(kind="bonus").count(),
        }
    return counts
