"""Pilot preview: a researcher walks a study as a rater sees it.

``pilot_start`` makes a fresh pilot rater (source ``pilot``, ``pilot_user`` the
researcher) for every preview, so a new preview starts from consent as a new
rater's would; the researcher's earlier previews of the study are ended (their
claims given back, their sessions stopped). Their ratings stay, marked pilot. A
preview left halfway is resumed by opening the study link again in the same
browser (the rater cookie), not by the preview button.

A pilot goes through the same pages and services as any rater, whatever the
study's status (draft, open, paused, closed), as long as the study has test
stimuli. What differs, and where:

- Its ratings are written with ``is_pilot`` (``services``), copied from the rater
  as protocol and scale are from the study. The tally triggers skip them (migration
  0005), so they never count toward K, and every reader of ratings leaves them out:
  study progress (``selectors``), MOS (``scoring.analyses.selectors``), the exports
  and the API's rating counts. Agreement is computed from MOS, so it follows.
- Its claims reserve nothing: the counts toward K leave them out (``statements``),
  and a pilot is handed any test stimulus it has not rated yet, at random, even one
  that already has its K ratings (``assignment``), so a full study can be previewed.
- Its gold and straight-lining checks run as for any rater: they concern the pilot
  alone, and show the researcher what raters meet (a preview can end at the gold
  limit; the preview button starts a fresh one).
- Its pages carry a banner and end with "Preview finished" and a link back to the
  study page, never the completion code or the crowd platform's link (``views``).
- Its token works only for the researcher who started it, signed in, while they
  may still view the study (``pilot_allowed``): a pilot cookie left in a shared
  browser opens nothing.

Whoever may view the study may preview it (view-only shares too): a preview
changes nothing that counts.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db import transaction
from django.urls import reverse
from django.utils import timezone

from annotation.models import Claim, Rater, Session, Stimulus, Study
from annotation.permissions import can_view_study
from studyweb.errors import ServiceError


class PilotRefused(ServiceError):
    """A preview that cannot start."""

    status = 409


@dataclass(frozen=True)
class PilotStart:
    rater: Rater  # the new pilot rater: its token goes in the rater cookie
    url: str  # the study link, where the preview starts (consent)


def is_pilot(rater: Rater) -> bool:
    return rater.source == Rater.Source.PILOT


def pilot_allowed(*, rater: Rater, user) -> bool:
    """Whether ``user`` may act as the pilot ``rater``: only the researcher who
    started it, signed in, and only while they may view the study."""
    return (
        is_pilot(rater)
        and user.is_authenticated
        and user.pk == rater.pilot_user_id
        and can_view_study(user, rater.study)
    )


def pilot_start(*, study: Study, user) -> PilotStart:
    """A new pilot preview of ``study`` by ``user``: a fresh pilot rater, whose
    pages start at consent; the user's earlier previews of the study are ended.
    Refused (``PilotRefused``, nothing written) for a user who may not view the
    study or a study without test stimuli."""
    if not can_view_study(user, study):
        raise PilotRefused(
            "only researchers who can view this study can preview it",
            code="forbidden",
            status=403,
        )
    if not study.stimuli.filter(role=Stimulus.Role.TEST).exists():
        raise PilotRefused(
            "the study has no test stimuli to preview: import some first",
            code="no_test_stimuli",
        )
    now = timezone.now()
    with transaction.atomic():
        earlier = Rater.objects.filter(study=study, source=Rater.Source.PILOT, pilot_user=user)
        Claim.objects.filter(rater__in=earlier).delete()
        Session.objects.filter(rater__in=earlier, finished_at__isnull=True).exclude(
            stage__in=[Session.Stage.DONE, Session.Stage.STOPPED]
        ).update(stage=Session.Stage.STOPPED, finished_at=now)
        earlier.filter(status=Rater.Status.ACTIVE).update(status=Rater.Status.COMPLETED)
        rater = Rater.objects.create(study=study, source=Rater.Source.PILOT, pilot_user=user)
    return PilotStart(rater, reverse("annotation:study-entry", args=[study.slug]))
