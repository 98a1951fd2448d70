"""The rules of a study's settings and status, used alike by the API, the pages
and the admin (its change form and its actions come through here).

- A study opens only with test stimuli to rate.
- What raters rate (protocol and scale) is fixed once the study has left draft:
  ratings already given were made on that scale.
- The slug never changes: links handed to crowd platforms point to it.
- A study with ratings is closed, never deleted.
- A study is shared with other researchers view-only or for editing; only its
  owner (or an admin) shares it (annotation.permissions says who may do what).
"""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import transaction

from annotation.models import Rating, Stimulus, Study, StudyShare, validate_platforms
from studyweb.errors import ServiceError

#: Settings fixed once a study has left draft, with the reason shown to researchers.
LOCKED_ONCE_OPEN = {
    "protocol": "what raters rate cannot change once the study has opened",
    "scale": "the rating scale cannot change once the study has opened",
}

#: Status changes a researcher may make: from -> allowed targets.
TRANSITIONS: dict[str, set[str]] = {
    Study.Status.DRAFT: {Study.Status.OPEN, Study.Status.CLOSED},
    Study.Status.OPEN: {Study.Status.PAUSED, Study.Status.CLOSED},
    Study.Status.PAUSED: {Study.Status.OPEN, Study.Status.CLOSED},
    Study.Status.CLOSED: {Study.Status.OPEN},
}


class StudyRuleError(ServiceError):
    """A change the study's rules refuse."""

    status = 409


def locked_fields(study: Study) -> dict[str, str]:
    """Settings that can no longer change, with why (empty while the study is a draft)."""
    if study.pk is None or study.status == Study.Status.DRAFT:
        return {}
    return dict(LOCKED_ONCE_OPEN)


def study_create(*, owner, **fields) -> Study:
    study = Study(owner=owner, **fields)
    study.full_clean()
    study.save()
    return study


def study_update(*, study: Study, changes: dict) -> Study:
    """Apply ``changes`` (field -> value) under the study's rules; nothing changes on refusal."""
    with transaction.atomic():
        current = Study.objects.select_for_update().get(pk=study.pk)
        if "slug" in changes and changes["slug"] != current.slug:
            raise StudyRuleError(
                "the slug cannot change: links already point to it", code="locked", field="slug"
            )
        if "status" in changes and changes["status"] != current.status:
            raise StudyRuleError(
                "change the status with open, pause or close", code="locked", field="status"
            )
        for name, why in locked_fields(current).items():
            if name in changes and changes[name] != getattr(current, name):
                raise StudyRuleError(why, code="locked", field=name)
        if "platforms" in changes:
            try:
                validate_platforms(changes["platforms"])
            except ValidationError as exc:
                raise StudyRuleError(exc.messages[0], field="platforms", status=400) from None
        for name, value in changes.items():
            setattr(current, name, value)
        current.save()
    study.refresh_from_db()
    return study


def study_set_status(*, study: Study, status: str) -> Study:
    """Open, pause or close a study (the rules above); a repeat of the current status is kept."""
    if status not in Study.Status.values:
        raise StudyRuleError(f"unknown status {status!r}", field="status", status=400)
    with transaction.atomic():
        current = Study.objects.select_for_update().get(pk=study.pk)
        if status != current.status:
            if status not in TRANSITIONS[current.status]:
                raise StudyRuleError(
                    f"a {current.status} study cannot become {status}",
                    code="bad_transition",
                    field="status",
                )
            if (
                status == Study.Status.OPEN
                and not current.stimuli.filter(role=Stimulus.Role.TEST).exists()
            ):
                raise StudyRuleError(
                    "import test stimuli before opening the study",
                    code="no_test_stimuli",
                    field="status",
                )
            current.status = status
            current.save(update_fields=["status", "updated_at"])
    study.refresh_from_db()
    return study


def study_delete(*, study: Study) -> None:
    """Delete a study nobody has rated; pilot ratings (the researchers' previews) go with it."""
    with transaction.atomic():
        ratings = Rating.objects.filter(stimulus__study=study)
        if ratings.filter(is_pilot=False).exists():
            raise StudyRuleError(
                "the study has ratings: close it instead of deleting",
                code="has_ratings",
                field="slug",
            )
        ratings.delete()  # pilot ratings only: they protect their raters and stimuli
        study.delete()


# --- Sharing ------------------------------------------------------------------------


def study_share(*, study: Study, username: str, level: str) -> StudyShare:
    """Share the study with a researcher by user name, view-only or edit; sharing again
    changes the level. The owner needs no share; accounts that cannot sign in get none."""
    if level not in StudyShare.Level.values:
        raise StudyRuleError(
            "choose view-only or edit", code="bad_level", field="level", status=400
        )
    name = (username or "").strip()
    if not name:
        raise StudyRuleError("enter a user name", code="required", field="username", status=400)
    user = get_user_model().objects.filter(username__iexact=name, is_active=True).first()
    if user is None:
        raise StudyRuleError(
            f"no active account is called {name!r}", code="no_user", field="username", status=400
        )
    if user.pk == study.owner_id:
        raise StudyRuleError(
            f"{user.get_username()} owns the study", code="owner", field="username"
        )
    share, _ = StudyShare.objects.update_or_create(
        study=study, user=user, defaults={"level": level}
    )
    return share


def study_unshare(*, study: Study, share_id: int) -> None:
    deleted, _ = StudyShare.objects.filter(study=study, pk=share_id).delete()
    if not deleted:
        raise StudyRuleError(
            "the study is not shared with that account (any more)",
            code="no_share",
            status=404,
        )
