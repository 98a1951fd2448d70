"""Studies, stimuli, raters, sessions, claims and ratings; researchers' API tokens.

Invariants live in the database (constraints below), not only in Python:
one rating per (rater, stimulus, repetition), a unique client id per rating,
unique (study, sha256) per stimulus, and every score inside the scale and
present exactly for the dimensions of the study's protocol preset.
"""

from __future__ import annotations

import secrets
import uuid
from datetime import timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import F, Q
from django.urls import reverse
from django.utils import timezone

from annotation import protocol as proto
from studyweb.jobs import Job


def new_token() -> str:
    """An unguessable rater token (256 bits)."""
    return secrets.token_urlsafe(32)


def new_completion_code() -> str:
    return secrets.token_hex(4).upper()


#: The links a study can hand to crowd platforms (Rater.Source values), in page order.
PLATFORM_CHOICES = [
    ("prolific", "Prolific"),
    ("mturk", "MTurk"),
    ("anonymous", "Anonymous link"),
]


def all_platforms() -> list[str]:
    return [key for key, _ in PLATFORM_CHOICES]


def validate_platforms(value) -> None:
    """A non-empty list of known platforms, each once (a study nobody can enter is a
    mistake, not a setting: pause or close it instead)."""
    known = all_platforms()
    if not isinstance(value, list) or not value:
        raise ValidationError("choose at least one platform", code="platforms_empty")
    unknown = [v for v in value if v not in known]
    if unknown:
        raise ValidationError(
            f"unknown platform(s): {', '.join(map(str, unknown))} (known: {', '.join(known)})",
            code="platforms_unknown",
        )
    if len(set(value)) != len(value):
        raise ValidationError("each platform once", code="platforms_repeated")


#: What a study does by itself once every test stimulus has its K ratings.
WHEN_COMPLETE_CHOICES = [
    ("close", "Close the study"),
    ("pause", "Pause the study"),
]


class Study(models.Model):
    class Status(models.TextChoices):
        DRAFT = "draft", "Draft"
        OPEN = "open", "Open"
        PAUSED = "paused", "Paused"
        CLOSED = "closed", "Closed"

    slug = models.SlugField(max_length=64, unique=True)
    title = models.CharField(max_length=200)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="owned_studies"
    )
    shared_with = models.ManyToManyField(
        settings.AUTH_USER_MODEL,
        blank=True,
        through="StudyShare",
        related_name="shared_studies",
        help_text="Researchers the study is shared with (view-only or edit: StudyShare).",
    )
    instructions = models.TextField(blank=True, help_text="Shown to raters before training.")
    consent_text = models.TextField(
        blank=True, help_text="Shown on the consent page; a default text is used when empty."
    )
    protocol = models.CharField(
        max_length=16,
        choices=[(k, proto.PRESET_LABELS[k]) for k in proto.PRESETS],
        default=proto.DEFAULT_PRESET,
    )
    scale = models.CharField(
        max_length=16,
        choices=[(k, s.label) for k, s in proto.SCALES.items()],
        default=proto.DEFAULT_SCALE,
    )
    ratings_per_stimulus = models.PositiveSmallIntegerField(
        "ratings per stimulus (K)", default=15, validators=[MinValueValidator(1)]
    )
    session_size = models.PositiveIntegerField(
        default=50, validators=[MinValueValidator(1)], help_text="Test items per session."
    )
    max_items_per_rater = models.PositiveIntegerField(
        null=True, blank=True, help_text="Cap over all sessions of one rater; empty = no cap."
    )
    gold_rate = models.FloatField(
        default=0.1,
        validators=[MinValueValidator(0.0), MaxValueValidator(0.5)],
        help_text="Share of gold items interleaved among test items.",
    )
    gold_fail_limit = models.PositiveSmallIntegerField(
        default=2, help_text="Gold failures after which a rater is excluded (F)."
    )
    repeat_check = models.BooleanField(
        default=False,
        help_text="Show one already-rated stimulus again per session (intra-rater consistency).",
    )
    min_view_seconds = models.FloatField(default=3.0, validators=[MinValueValidator(0.0)])
    break_every = models.PositiveIntegerField(
        default=40, validators=[MinValueValidator(1)], help_text="A break screen every N items."
    )
    claim_ttl_seconds = models.PositiveIntegerField(
        default=600, validators=[MinValueValidator(10)], help_text="How long a claim lives."
    )
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.DRAFT)
    completion_code = models.CharField(max_length=64, default=new_completion_code)
    completion_url = models.URLField(
        blank=True, help_text="Crowd platform URL raters are sent to at the end."
    )
    platforms = models.JSONField(
        default=all_platforms,
        validators=[validate_platforms],
        help_text="Links the study accepts: prolific, mturk, anonymous (a list).",
    )
    min_session_items = models.PositiveIntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(1)],
        help_text=(
            "Fewest items a rater is admitted for when the study has no work left for a "
            "full session; empty = a full session only."
        ),
    )
    when_complete = models.CharField(
        max_length=8,
        choices=WHEN_COMPLETE_CHOICES,
        default="close",
        help_text="What the study does by itself once every test image has its K ratings.",
    )
    # Why the study last changed its status by itself (e.g. every test image has its
    # ratings), shown on the study page; cleared when a researcher changes the status.
    status_note = models.CharField(max_length=300, blank=True, editable=False)
    status_note_at = models.DateTimeField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "studies"
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(
                condition=Q(ratings_per_stimulus__gte=1), name="study_k_positive"
            ),
            models.CheckConstraint(condition=Q(session_size__gte=1), name="study_session_size"),
            models.CheckConstraint(
                condition=Q(gold_rate__gte=0) & Q(gold_rate__lte=0.5), name="study_gold_rate"
            ),
            models.CheckConstraint(
                condition=Q(protocol__in=list(proto.PRESETS)), name="study_protocol_known"
            ),
            models.CheckConstraint(
                condition=Q(scale__in=list(proto.SCALES)), name="study_scale_known"
            ),
            models.CheckConstraint(
                condition=Q(min_session_items__isnull=True) | Q(min_session_items__gte=1),
                name="study_min_session_items",
            ),
            models.CheckConstraint(
                condition=Q(when_complete__in=[k for k, _ in WHEN_COMPLETE_CHOICES]),
                name="study_when_complete_known",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.title} ({self.slug})"

    def get_absolute_url(self) -> str:
        return reverse("annotation:study-entry", args=[self.slug])

    @property
    def dimensions(self) -> list[proto.Dimension]:
        return proto.dimensions_for(self.protocol)

    @property
    def scale_def(self) -> proto.Scale:
        return proto.get_scale(self.scale)

    @property
    def is_open(self) -> bool:
        return self.status == self.Status.OPEN


class StudyOutcome(models.Model):
    """The code (and optional redirect) a rater gets at one end of the study, per crowd
    platform: completed, screened out by quality control, or turned away with no work.

    ``platform`` empty: every platform without a row of its own. Without any row the
    study's ``completion_code`` and ``completion_url`` are the completed outcome (so
    studies made before outcomes keep working); screened out and no work then carry
    no code. Prolific studies set one completion code per action (approve, screened
    out with pay, ...), which is why each kind has its own code.
    """

    class Kind(models.TextChoices):
        COMPLETED = "completed", "Completed"
        SCREENED_OUT = "screened_out", "Screened out (excluded by quality control)"
        NO_WORK = "no_work", "No work (study full)"

    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="outcomes")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    platform = models.CharField(
        max_length=16,
        blank=True,
        choices=PLATFORM_CHOICES,
        help_text="The crowd platform this row is for; empty: every platform.",
    )
    code = models.CharField(max_length=64, blank=True)
    redirect_url = models.URLField(blank=True)

    class Meta:
        ordering = ["study", "kind", "platform"]
        constraints = [
            models.UniqueConstraint(
                fields=["study", "kind", "platform"], name="study_outcome_once"
            ),
            models.CheckConstraint(
                condition=Q(kind__in=["completed", "screened_out", "no_work"]),
                name="study_outcome_kind_known",
            ),
            models.CheckConstraint(
                condition=Q(platform__in=["", *[k for k, _ in PLATFORM_CHOICES]]),
                name="study_outcome_platform_known",
            ),
            # A row that gives the rater nothing would only hide the default.
            models.CheckConstraint(
                condition=~Q(code="", redirect_url=""), name="study_outcome_not_empty"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.study_id} {self.kind} {self.platform or 'any'}: {self.code}"


class StudyShare(models.Model):
    """A study shared with another researcher: view-only, or edit (settings, stimuli,
    status). Only the owner (or an admin) shares and deletes the study."""

    class Level(models.TextChoices):
        VIEW = "view", "Can view"
        EDIT = "edit", "Can edit"

    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="shares")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="study_shares"
    )
    level = models.CharField(max_length=4, choices=Level.choices, default=Level.VIEW)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["study", "user__username"]
        constraints = [
            models.UniqueConstraint(fields=["study", "user"], name="study_share_once"),
            models.CheckConstraint(
                condition=Q(level__in=["view", "edit"]), name="study_share_level_known"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.study.slug} shared with {self.user} ({self.level})"


class Stimulus(models.Model):
    class Role(models.TextChoices):
        TEST = "test", "Test"
        TRAINING = "training", "Training"
        GOLD = "gold", "Gold"

    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="stimuli")
    image = models.ImageField(upload_to="stimuli/", max_length=255)
    original_name = models.CharField(max_length=255, help_text="File name as imported.")
    sha256 = models.CharField(max_length=64)
    width = models.PositiveIntegerField()
    height = models.PositiveIntegerField()
    byte_size = models.PositiveBigIntegerField(default=0)
    role = models.CharField(max_length=8, choices=Role.choices, default=Role.TEST)
    generator = models.CharField(max_length=128, blank=True, db_index=True)
    task = models.CharField(max_length=128, blank=True, db_index=True)
    prompt = models.TextField(blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    # Researcher's expected range on the overall dimension, for gold and training items.
    expected_low = models.FloatField(null=True, blank=True)
    expected_high = models.FloatField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name_plural = "stimuli"
        ordering = ["study", "id"]
        constraints = [
            models.UniqueConstraint(fields=["study", "sha256"], name="stimulus_unique_sha"),
            models.CheckConstraint(
                condition=Q(role__in=["test", "training", "gold"]), name="stimulus_role_known"
            ),
            models.CheckConstraint(
                condition=Q(expected_low__isnull=True)
                | Q(expected_high__isnull=True)
                | Q(expected_low__lte=F("expected_high")),
                name="stimulus_expected_range_ordered",
            ),
            # A gold question without an expected answer could never be checked.
            models.CheckConstraint(
                condition=~Q(role="gold")
                | (Q(expected_low__isnull=False) & Q(expected_high__isnull=False)),
                name="stimulus_gold_has_range",
            ),
        ]
        indexes = [models.Index(fields=["study", "role"])]

    def __str__(self) -> str:
        return self.original_name

    @property
    def expected_center(self) -> float | None:
        if self.expected_low is None or self.expected_high is None:
            return None
        return (self.expected_low + self.expected_high) / 2


class StimulusTally(models.Model):
    """Counted ratings (repetition 1, not pilot) per stimulus, kept by database triggers
    on Rating (migrations 0002 and 0005).

    Assignment reads it to rank thousands of stimuli without counting each one's
    ratings on every claim. Django never writes it: the triggers (migration 0002)
    count every insert, delete and update of a rating, whatever wrote it (the
    rating service, the admin, a script), so it cannot drift from the ratings.
    A stimulus without a row has no ratings yet.
    """

    stimulus = models.OneToOneField(
        Stimulus, on_delete=models.CASCADE, primary_key=True, related_name="tally"
    )
    ratings = models.PositiveIntegerField(default=0)

    class Meta:
        verbose_name_plural = "stimulus tallies"

    def __str__(self) -> str:
        return f"{self.stimulus_id}: {self.ratings}"


class Rater(models.Model):
    class Source(models.TextChoices):
        PROLIFIC = "prolific", "Prolific"
        MTURK = "mturk", "MTurk"
        ANONYMOUS = "anonymous", "Anonymous link"
        SIMULATED = "simulated", "Simulated (demo)"
        # A researcher walking the study as a rater sees it (preview): their ratings are
        # marked pilot and never count toward K, MOS, exports or agreement.
        PILOT = "pilot", "Pilot (researcher preview)"

    class Status(models.TextChoices):
        ACTIVE = "active", "Active"
        COMPLETED = "completed", "Completed"
        EXCLUDED = "excluded", "Excluded"

    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="raters")
    external_id = models.CharField(max_length=128, blank=True)
    source = models.CharField(max_length=16, choices=Source.choices, default=Source.ANONYMOUS)
    token = models.CharField(max_length=64, unique=True, default=new_token, editable=False)
    pseudonym = models.CharField(max_length=16, editable=False, blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.ACTIVE)
    status_reason = models.TextField(blank=True)
    flags = models.JSONField(
        default=dict, blank=True, help_text="Quality flags, e.g. straight-lining."
    )
    platform = models.JSONField(default=dict, blank=True, help_text="Crowd-platform parameters.")
    pilot_user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="pilot_raters",
        help_text="The researcher previewing the study (pilot raters only).",
    )
    gold_failures = models.PositiveSmallIntegerField(default=0)
    consented_at = models.DateTimeField(null=True, blank=True)
    training_done_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["study", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["study", "source", "external_id"],
                condition=~Q(external_id=""),
                name="rater_unique_external_id",
            ),
            models.CheckConstraint(
                condition=Q(source="pilot", pilot_user__isnull=False)
                | (~Q(source="pilot") & Q(pilot_user__isnull=True)),
                name="rater_pilot_has_user",
            ),
        ]
        indexes = [
            # The few pilot raters, read once per claim query (annotation.statements).
            models.Index(
                fields=["id"], condition=Q(source="pilot"), name="annotation_rater_pilot_ids"
            ),
        ]

    def __str__(self) -> str:
        return self.pseudonym or f"rater {self.pk}"

    def save(self, *args, **kwargs):
        if not self.pseudonym:
            # Exports carry the pseudonym, never the crowd-platform id.
            self.pseudonym = "R" + secrets.token_hex(5).upper()
        super().save(*args, **kwargs)


class Session(models.Model):
    class Stage(models.TextChoices):
        CONSENT = "consent", "Consent"
        INSTRUCTIONS = "instructions", "Instructions"
        TRAINING = "training", "Training"
        RATING = "rating", "Rating"
        DONE = "done", "Done"
        STOPPED = "stopped", "Stopped"

    rater = models.ForeignKey(Rater, on_delete=models.CASCADE, related_name="sessions")
    stage = models.CharField(max_length=16, choices=Stage.choices, default=Stage.CONSENT)
    planned_items = models.PositiveIntegerField(default=0)
    platform_session_id = models.CharField(max_length=128, blank=True)
    user_agent = models.CharField(max_length=400, blank=True)
    started_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-started_at"]

    def __str__(self) -> str:
        return f"session {self.pk} of {self.rater}"


def default_claim_expiry():
    return timezone.now() + timedelta(minutes=10)


class Claim(models.Model):
    """A stimulus reserved for one rater until it is rated or the claim expires."""

    stimulus = models.ForeignKey(Stimulus, on_delete=models.CASCADE, related_name="claims")
    rater = models.ForeignKey(Rater, on_delete=models.CASCADE, related_name="claims")
    session = models.ForeignKey(Session, on_delete=models.CASCADE, related_name="claims")
    repetition = models.PositiveSmallIntegerField(default=1)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(default=default_claim_expiry, db_index=True)

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["rater", "stimulus", "repetition"], name="claim_unique_per_rater"
            ),
        ]

    def __str__(self) -> str:
        return f"claim {self.stimulus_id} by {self.rater_id}"

    @property
    def is_live(self) -> bool:
        return self.expires_at > timezone.now()


def _score_checks() -> list[models.CheckConstraint]:
    """Database checks generated from protocol.py: each score inside its scale, and
    present exactly for the dimensions of the rating's preset."""
    checks = []
    for dim in proto.DIMENSION_KEYS:
        in_scale = Q()
        for scale in proto.SCALES.values():
            bounds = Q(**{f"{dim}__gte": scale.minimum, f"{dim}__lte": scale.maximum})
            if scale.integer:
                bounds &= Q(**{f"{dim}__in": _integer_points(scale)})
            in_scale |= Q(scale=scale.key) & bounds
        checks.append(
            models.CheckConstraint(
                condition=Q(**{f"{dim}__isnull": True}) | in_scale, name=f"rating_{dim}_in_scale"
            )
        )
    presence = Q()
    for preset, keys in proto.PRESETS.items():
        clause = Q(protocol=preset)
        for dim in proto.DIMENSION_KEYS:
            clause &= Q(**{f"{dim}__isnull": dim not in keys})
        presence |= clause
    checks.append(models.CheckConstraint(condition=presence, name="rating_dimensions_match_preset"))
    return checks


def _integer_points(scale: proto.Scale) -> list[float]:
    return [float(v) for v in range(int(scale.minimum), int(scale.maximum) + 1)]


class Rating(models.Model):
    """One rater's scores for one stimulus: one column per protocol dimension."""

    stimulus = models.ForeignKey(Stimulus, on_delete=models.PROTECT, related_name="ratings")
    rater = models.ForeignKey(Rater, on_delete=models.PROTECT, related_name="ratings")
    session = models.ForeignKey(Session, on_delete=models.PROTECT, related_name="ratings")
    # Copied from the study at write time so the database can check the scores.
    protocol = models.CharField(max_length=16)
    scale = models.CharField(max_length=16)
    repetition = models.PositiveSmallIntegerField(default=1)
    is_gold = models.BooleanField(default=False)
    # Copied from the rater at write time: a researcher's preview rating. Pilot ratings
    # are kept (the researcher sees them) but never counted: not in the tally, K, MOS,
    # exports or agreement.
    # db_default: statements written outside Django (bulk loads, benchmarks) are real
    # ratings unless they say otherwise.
    is_pilot = models.BooleanField(default=False, db_default=False)
    viewing_seconds = models.FloatField(help_text="Time the image was shown before submit.")
    client_id = models.UUIDField(unique=True, default=uuid.uuid4)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(
                fields=["rater", "stimulus", "repetition"], name="rating_once_per_repetition"
            ),
            models.CheckConstraint(condition=Q(repetition__in=[1, 2]), name="rating_repetition"),
            models.CheckConstraint(
                condition=Q(viewing_seconds__gte=0) & Q(viewing_seconds__lte=86400),
                name="rating_viewing_time",
            ),
            *_score_checks(),
        ]
        indexes = [models.Index(fields=["stimulus", "repetition"])]

    def __str__(self) -> str:
        return f"rating {self.pk}: {self.rater_id} on {self.stimulus_id}"

    def scores(self) -> dict[str, float]:
        return {
            key: getattr(self, key)
            for key in proto.PRESETS.get(self.protocol, ())
            if getattr(self, key) is not None
        }


for _dim in proto.DIMENSIONS:
    Rating.add_to_class(_dim.key, models.FloatField(_dim.label, null=True, blank=True))


class ApiToken(models.Model):
    """A researcher's named API key, for scripts (``Authorization: Token <key>``).

    Only the SHA-256 of the key is stored: the key is shown once, when it is created
    (annotation.tokens). A researcher has as many as they like, each with its own name;
    revoking one deletes it. DRF's one-per-account ``authtoken.Token`` keeps working
    beside these (annotation.auth)."""

    NAME_MAX_LENGTH = 100

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens"
    )
    name = models.CharField(max_length=NAME_MAX_LENGTH)
    key_hash = models.CharField(max_length=64, unique=True, editable=False)
    # The key's first characters, so that a listed token can be told apart.
    key_prefix = models.CharField(max_length=16, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["user", "name"], name="api_token_name_per_user"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.key_prefix}…)"


class ImportJob(Job):
    """Stimuli imported by a worker from an uploaded zip (many files uploaded together
    are packed into one zip by the upload page), with an optional metadata CSV.

    ``total`` is the number of image entries, ``done`` those handled so far; the
    per-file report (imported / skipped / rejected, with the reason) is ``report``."""

    task_name = "annotation.tasks.run_import"
    noun = "import"

    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="import_jobs")
    archive = models.FileField(upload_to="imports/", max_length=300)
    archive_name = models.CharField(max_length=255, help_text="The uploaded file's name.")
    metadata = models.FileField(upload_to="imports/", max_length=300, blank=True)
    default_role = models.CharField(
        max_length=8, choices=Stimulus.Role.choices, default=Stimulus.Role.TEST
    )
    imported = models.PositiveIntegerField(default=0)
    skipped = models.PositiveIntegerField(default=0)
    rejected = models.PositiveIntegerField(default=0)
    report = models.JSONField(
        default=list, blank=True, help_text="One {name, status, reason} per file."
    )

    class Meta(Job.Meta):
        pass

    def __str__(self) -> str:
        return f"import {self.pk} into {self.study.slug} ({self.status})"
