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

import contextlib
from functools import partial

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.validators import URLValidator
from django.db import IntegrityError, models, transaction
from django.db.models import F
from django.db.models.functions import Ceil, Floor
from django.utils import formats, timezone

from annotation import assignment
from annotation import protocol as proto
from annotation.models import (
    PLATFORM_CHOICES,
    Rating,
    Stimulus,
    Study,
    StudyOutcome,
    StudyShare,
    validate_platforms,
)
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
    """A new study; ``outcomes`` (see ``outcomes_clean``) and the outcome fields for
    every platform (``OUTCOME_SHORTHANDS``) are written with it."""
    outcomes = _outcomes_from(None, fields)
    try:
        with transaction.atomic():
            study = Study(owner=owner, **fields)
            study.full_clean()
            study.save()
            _outcomes_write(study, outcomes)
    except IntegrityError:
        # Another request took the slug between full_clean's check and the insert:
        # the same refusal as when it was taken before.
        if Study.objects.filter(slug=fields.get("slug")).exists():
            raise StudyRuleError(
                "A study already uses this slug: choose another one.", field="slug", status=400
            ) from None
        raise
    return study


# --- Outcomes: codes and redirects per kind and crowd platform ----------------------

OUTCOME_CODE_MAX = 64
OUTCOME_URL_MAX = 200


def outcomes_clean(rows) -> list[dict]:
    """Outcome rows as given (a list of {kind, platform, code, redirect_url}), checked;
    a row with neither code nor URL removes that (kind, platform). Refused with the
    field and row it concerns; nothing is written on refusal."""
    if not isinstance(rows, list):
        raise StudyRuleError("outcomes must be a list", field="outcomes", status=400)
    kinds, platforms = StudyOutcome.Kind.values, ["", *(k for k, _ in PLATFORM_CHOICES)]
    seen, clean = set(), []
    for i, row in enumerate(rows):
        where = f"outcomes[{i}]"
        if not isinstance(row, dict):
            raise StudyRuleError(f"{where} must be an object", field="outcomes", status=400)
        kind, platform = row.get("kind"), row.get("platform", "") or ""
        code, url = row.get("code", "") or "", row.get("redirect_url", "") or ""
        if kind not in kinds:
            raise StudyRuleError(
                f"{where}.kind: one of {', '.join(kinds)}", field="outcomes", status=400
            )
        if platform not in platforms:
            raise StudyRuleError(
                f"{where}.platform: empty (every platform) or one of {', '.join(platforms[1:])}",
                field="outcomes",
                status=400,
            )
        if not isinstance(code, str) or len(code) > OUTCOME_CODE_MAX or "\x00" in code:
            raise StudyRuleError(
                f"{where}.code: text of at most {OUTCOME_CODE_MAX} characters",
                field="outcomes",
                status=400,
            )
        if not isinstance(url, str) or len(url) > OUTCOME_URL_MAX:
            raise StudyRuleError(
                f"{where}.redirect_url: a URL of at most {OUTCOME_URL_MAX} characters",
                field="outcomes",
                status=400,
            )
        if url:
            try:
                URLValidator(schemes=["http", "https"])(url)
            except ValidationError:
                raise StudyRuleError(
                    f"{where}.redirect_url: not a web address (http or https)",
                    field="outcomes",
                    status=400,
                ) from None
        if (kind, platform) in seen:
            raise StudyRuleError(
                f"{where}: {kind} for {platform or 'every platform'} is given twice",
                field="outcomes",
                status=400,
            )
        seen.add((kind, platform))
        clean.append(
            {"kind": kind, "platform": platform, "code": code.strip(), "redirect_url": url}
        )
    return clean


#: Outcome fields for every platform (the study form's): "<kind>_code", "<kind>_url".
OUTCOME_SHORTHANDS = {
    f"{kind}_{part}": (kind, part)
    for kind in StudyOutcome.Kind.values
    if kind != StudyOutcome.Kind.COMPLETED  # completed: completion_code, completion_url
    for part in ("code", "url")
}


def _outcomes_from(study: Study | None, fields: dict) -> list[dict]:
    """The outcome rows in ``fields`` (taken out of it), checked: ``outcomes`` and the
    shorthands; a shorthand's other half is the study's current row's."""
    rows = list(fields.pop("outcomes", None) or [])
    given: dict[str, dict] = {}
    for name in [n for n in OUTCOME_SHORTHANDS if n in fields]:
        kind, part = OUTCOME_SHORTHANDS[name]
        given.setdefault(kind, {})[part] = fields.pop(name) or ""
    for kind, parts in given.items():
        current = None
        if study is not None:
            current = StudyOutcome.objects.filter(study=study, kind=kind, platform="").first()
        rows.append(
            {
                "kind": kind,
                "platform": "",
                "code": parts.get("code", current.code if current else ""),
                "redirect_url": parts.get("url", current.redirect_url if current else ""),
            }
        )
    return outcomes_clean(rows)


def _outcomes_write(study: Study, rows: list[dict]) -> None:
    for row in rows:
        key = {"study": study, "kind": row["kind"], "platform": row["platform"]}
        if row["code"] or row["redirect_url"]:
            StudyOutcome.objects.update_or_create(
                **key, defaults={"code": row["code"], "redirect_url": row["redirect_url"]}
            )
        else:
            StudyOutcome.objects.filter(**key).delete()


def outcomes_of(study: Study) -> list[dict]:
    return [
        {"kind": o.kind, "platform": o.platform, "code": o.code, "redirect_url": o.redirect_url}
        for o in study.outcomes.all()
    ]


def study_update(*, study: Study, changes: dict) -> Study:
    """Apply ``changes`` (field -> value) under the study's rules; nothing changes on refusal.
    ``outcomes`` rows are set by (kind, platform); others are kept."""
    changes = dict(changes)
    outcomes = _outcomes_from(study, changes)
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
        scale_before = current.scale
        for name, value in changes.items():
            setattr(current, name, value)
        current.save()
        if current.scale != scale_before:
            expected_ranges_rescale(current, scale_before)
        _outcomes_write(current, outcomes)
    study.refresh_from_db()
    return study


#: What a copy of a stimulus does not take from its original: every other column is
#: copied, its file too (shared, not duplicated), so a new column needs no edit here.
STIMULUS_NOT_COPIED = ("id", "study", "created_at")


def study_stimuli_copy(*, source: Study, target: Study) -> int:
    """Every stimulus of ``source`` (each role, with its metadata and expected range)
    into ``target``, a clone that has none yet, for a replication on the same images.
    The files are shared, not copied: deleting either study keeps a file the other
    still shows (``_files_delete``). Ranges are mapped onto the target's scale when
    it differs. Returns how many were copied."""
    if target.stimuli.exists():
        raise StudyRuleError(
            "the study already has stimuli: copy into a new clone only",
            code="has_stimuli",
            field="copy_stimuli",
        )
    names = [f.attname for f in Stimulus._meta.concrete_fields if f.name not in STIMULUS_NOT_COPIED]
    copies = [
        # A file by its name: the original's FieldFile would be rebound to the copy.
        Stimulus(study=target, **{name: _stored(getattr(s, name)) for name in names})
        for s in source.stimuli.order_by("id")
    ]
    with transaction.atomic():
        Stimulus.objects.bulk_create(copies, batch_size=500)
        if source.scale != target.scale:
            expected_ranges_rescale(target, source.scale)
    return len(copies)


def _stored(value):
    return value.name if isinstance(value, models.fields.files.FieldFile) else value


def expected_ranges_rescale(study: Study, old_scale: str) -> int:
    """The gold and training items' expected ranges, mapped linearly from the old
    scale onto the study's new one (a draft's scale may change; its ranges were
    checked against the old one on import). Left as they were, a 1-2 range on a
    0-100 slider would fail every honest rater's gold answer. Returns how many."""
    old, new = proto.get_scale(old_scale), study.scale_def
    factor = (new.maximum - new.minimum) / (old.maximum - old.minimum)
    ranged = study.stimuli.filter(expected_low__isnull=False)
    count = ranged.update(
        expected_low=new.minimum + (F("expected_low") - old.minimum) * factor,
        expected_high=new.minimum + (F("expected_high") - old.minimum) * factor,
    )
    if new.integer:
        # Answers are whole numbers there: widened to the whole numbers around it, or
        # a range like 2.2-2.8 would hold no answer at all and fail every rater.
        ranged.update(expected_low=Floor("expected_low"), expected_high=Ceil("expected_high"))
    return count


def _article(word: str) -> str:
    return "an" if word[:1] in "aeiou" else "a"


def study_set_status(*, study: Study, status: str) -> Study:
    """Open, pause or close a study (the rules above); a repeat of the current status is kept."""
    if status not in Study.Status.values:
        raise StudyRuleError(f"unknown status {status!r}", field="status", status=400)
    with transaction.atomic():
        current = Study.objects.select_for_update().get(pk=study.pk)
        if status != current.status:
            if status not in TRANSITIONS[current.status]:
                raise StudyRuleError(
                    f"{_article(current.status)} {current.status} study cannot become {status}",
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
            # The researcher's change replaces the study's own note on why it stopped.
            current.status_note, current.status_note_at = "", None
            current.save(update_fields=["status", "status_note", "status_note_at", "updated_at"])
    study.refresh_from_db()
    return study


def study_complete_check(*, study: Study) -> bool:
    """Close (or pause: ``when_complete``) an open study by itself once every test
    stimulus has its K ratings and no session holding places has items left (its gold
    or repeat items: those raters finish first); the note says why. True when it did.

    Called after a rating that filled its stimulus, at every finished session and when
    a rater is turned away as the study is full (the last session may have lapsed)."""
    now = timezone.now()
    if study.status != Study.Status.OPEN or assignment.test_stimuli_with_room(study).exists():
        return False
    with transaction.atomic():
        current = Study.objects.select_for_update().get(pk=study.pk)
        if current.status != Study.Status.OPEN:
            return False
        if assignment.test_stimuli_with_room(current).exists():
            return False  # a researcher raised K or added images meanwhile
        busy = assignment.holding_sessions(current, now).filter(rated__lt=F("planned_items"))
        if busy.exists():
            return False
        paused = current.when_complete == "pause"
        current.status = Study.Status.PAUSED if paused else Study.Status.CLOSED
        k = current.ratings_per_stimulus
        when = formats.date_format(timezone.localtime(now), "DATETIME_FORMAT")
        current.status_note = (
            f"{'Paused' if paused else 'Closed'} by itself on {when}: every test image has "
            f"its {k} rating{'s' if k != 1 else ''}."
        )
        current.status_note_at = now
        current.save(update_fields=["status", "status_note", "status_note_at", "updated_at"])
    study.status, study.status_note = current.status, current.status_note
    return True


def study_has_ratings(study: Study) -> bool:
    """Whether anybody rated the study (previews do not count): such a study is data,
    closed rather than deleted."""
    return Rating.objects.filter(stimulus__study=study, is_pilot=False).exists()


def study_delete(*, study: Study) -> None:
    """Delete a study nobody has rated; pilot ratings (the researchers' previews) go with it."""
    with transaction.atomic():
        ratings = Rating.objects.filter(stimulus__study=study)
        if study_has_ratings(study):
            raise StudyRuleError(
                "the study has ratings: close it instead of deleting",
                code="has_ratings",
                field="slug",
            )
        ratings.delete()  # pilot ratings only: they protect their raters and stimuli
        files = _stored_files(study)
        study.delete()
        # The files go once the rows are gone for good (not if the delete rolls back).
        transaction.on_commit(partial(_files_delete, files))


def _stored_files(study: Study) -> list[tuple[type[models.Model], str, object, str]]:
    """Every file the study's rows hold (stimuli, imports, exports of any app: found
    through the relations, so this room names no other room's models), as (model,
    field, storage, name)."""
    found = []
    for rel in Study._meta.related_objects:
        if not rel.one_to_many:
            continue
        model = rel.related_model
        fields = [f for f in model._meta.concrete_fields if isinstance(f, models.FileField)]
        if not fields:
            continue
        rows = model._base_manager.filter(**{rel.field.name: study})
        for row in rows.only("pk", *(f.name for f in fields)):
            for field in fields:
                stored = getattr(row, field.name)
                if stored.name:
                    found.append((model, field.name, stored.storage, stored.name))
    return found


def _files_delete(files) -> None:
    # A cloned study's stimuli may share their files with the original's: a file goes
    # only when no row refers to it any more.
    for model, field, storage, name in files:
        if not model._base_manager.filter(**{field: name}).exists():
            with contextlib.suppress(OSError):
                storage.delete(name)


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
