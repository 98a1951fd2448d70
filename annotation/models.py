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
from django.db.models.functions import Cast, Length
from django.db.models.lookups import LessThanOrEqual
from django.urls import reverse
from django.utils import timezone, translation

from annotation import protocol as proto
from studyweb.boundary import has_control_characters
from studyweb.jobs import Job
from studyweb.language_codes import LANGUAGES


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


def validate_lowercase_slug(value) -> None:
    """New study links in lowercase: ``/s/Demo/`` beside ``/s/demo/`` would be a
    lookalike link of another study. (Slugs are unique as written; studies made
    before this rule keep theirs.)"""
    if isinstance(value, str) and value != value.lower():
        raise ValidationError(
            "Use lowercase letters in the slug: study links differing only in letter "
            "case would look alike.",
            code="uppercase",
        )


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


# The ranges of a study's numeric settings: one table for the model's validators (the
# study form, the admin), the database's checks and the API's serializer. Integer
# fields stop below PostgreSQL's 4-byte limit: psycopg wraps a larger value silently
# (4294967301 was stored as 5).
STUDY_BOUNDS: dict[str, tuple[int | float, int | float]] = {
    "ratings_per_stimulus": (1, 1000),
    "session_size": (1, 10_000),
    "max_items_per_rater": (1, 2**31 - 1),
    "gold_rate": (0.0, 0.5),
    "gold_fail_limit": (0, 100),
    "min_view_seconds": (0.0, 600.0),
    "break_every": (1, 10_000),
    "claim_ttl_seconds": (10, 86_400),
    "min_session_items": (1, 10_000),
    # Viewing conditions (annotation.viewing): the smallest browser window, in CSS px.
    "min_viewport_width": (1, 100_000),
    "min_viewport_height": (1, 100_000),
}

#: The settings above that may be empty (none set).
STUDY_OPTIONAL_BOUNDS = (
    "max_items_per_rater",
    "min_session_items",
    "min_viewport_width",
    "min_viewport_height",
)


def study_bounds(name: str) -> list:
    low, high = STUDY_BOUNDS[name]
    return [MinValueValidator(low), MaxValueValidator(high)]


def _study_range_checks() -> list[models.CheckConstraint]:
    checks = []
    for name, (low, high) in STUDY_BOUNDS.items():
        condition = Q(**{f"{name}__gte": low}) & Q(**{f"{name}__lte": high})
        if name in STUDY_OPTIONAL_BOUNDS:  # empty: none set
            condition = Q(**{f"{name}__isnull": True}) | condition
        checks.append(models.CheckConstraint(condition=condition, name=f"study_{name}_range"))
    return checks


# The viewing conditions a rater's page reports with each rating (annotation.viewing):
# one table for the submit's parser and the database's checks. Sizes are CSS or device
# pixels; a device-pixel ratio and a zoom below 1 are a zoomed-out page.
VIEWING_BOUNDS: dict[str, tuple[int | float, int | float]] = {
    "viewport_width": (1, 100_000),
    "viewport_height": (1, 100_000),
    "screen_width": (1, 100_000),
    "screen_height": (1, 100_000),
    "device_pixel_ratio": (0.05, 20.0),
    "zoom": (0.05, 20.0),
}
#: The size an image was shown at (Rating), in CSS and in device pixels.
SHOWN_BOUNDS: dict[str, tuple[int, int]] = {
    f"shown_{unit}_{side}": (1, 100_000)
    for unit in ("css", "device")
    for side in ("width", "height")
}
#: Browser families as the rater's page names them.
BROWSER_CHOICES = [
    ("chrome", "Chrome"),
    ("edge", "Edge"),
    ("firefox", "Firefox"),
    ("safari", "Safari"),
    ("opera", "Opera"),
    ("samsung", "Samsung Internet"),
    ("other", "Other"),
]


def _nullable_ranges(model: str, bounds: dict) -> list[models.CheckConstraint]:
    return [
        models.CheckConstraint(
            condition=Q(**{f"{name}__isnull": True})
            | (Q(**{f"{name}__gte": low}) & Q(**{f"{name}__lte": high})),
            name=f"{model}_{name}_range",
        )
        for name, (low, high) in bounds.items()
    ]


# Researchers' texts shown to raters, and an image's prompt (a metadata CSV cell):
# bounded in the forms and the API (max_length) and in the database.
MAX_STUDY_TEXT_CHARS = 20_000
MAX_PROMPT_CHARS = 4_000


def _text_within(model: str, name: str, chars: int) -> models.CheckConstraint:
    return models.CheckConstraint(
        condition=LessThanOrEqual(Length(name), chars), name=f"{model}_{name}_length"
    )


# A rater's crowd-platform parameters: at most this many keys (the entry links carry
# two or three); the database bounds the stored JSON's size.
MAX_PLATFORM_KEYS = 10
MAX_PLATFORM_JSON_CHARS = 4096


#: The researcher's texts a study may give per language (Study.texts), with their limits.
TRANSLATED_TEXTS = {"title": 200, "consent_text": 20_000, "instructions": 20_000}
MAX_TEXTS_JSON_CHARS = 200_000


def validate_study_texts(value) -> None:
    if not isinstance(value, dict):
        raise ValidationError('an object of languages, e.g. {"zh-hans": {"title": "..."}}')
    codes = [code for code, _ in LANGUAGES]
    for code, texts in value.items():
        if code not in codes:
            raise ValidationError(f"unknown language {code!r}; one of {', '.join(codes)}")
        if not isinstance(texts, dict):
            raise ValidationError(f"{code}: an object of texts ({', '.join(TRANSLATED_TEXTS)})")
        for name, text in texts.items():
            if name not in TRANSLATED_TEXTS:
                known = ", ".join(TRANSLATED_TEXTS)
                raise ValidationError(f"{code}: {name!r} is not a text of the study ({known})")
            if not isinstance(text, str):
                raise ValidationError(f"{code}.{name}: a string")
            if len(text) > TRANSLATED_TEXTS[name]:
                raise ValidationError(
                    f"{code}.{name}: at most {TRANSLATED_TEXTS[name]:,} characters"
                )
            if has_control_characters(text, free_text=name != "title"):
                raise ValidationError(f"{code}.{name}: control characters are refused")


class Study(models.Model):
    class Status(models.TextChoices):
        DRAFT = "draft", "Draft"
        OPEN = "open", "Open"
        PAUSED = "paused", "Paused"
        CLOSED = "closed", "Closed"

    slug = models.SlugField(max_length=64, unique=True, validators=[validate_lowercase_slug])
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
    instructions = models.TextField(
        blank=True, max_length=MAX_STUDY_TEXT_CHARS, help_text="Shown to raters before training."
    )
    consent_text = models.TextField(
        blank=True,
        max_length=MAX_STUDY_TEXT_CHARS,
        help_text="Shown on the consent page; a default text is used when empty.",
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
        "ratings per stimulus (K)", default=15, validators=study_bounds("ratings_per_stimulus")
    )
    session_size = models.PositiveIntegerField(
        default=50,
        validators=study_bounds("session_size"),
        help_text="Items per session, gold and repeat checks included.",
    )
    max_items_per_rater = models.PositiveIntegerField(
        null=True,
        blank=True,
        validators=study_bounds("max_items_per_rater"),
        help_text="Cap over all sessions of one rater; empty = no cap.",
    )
    gold_rate = models.FloatField(
        default=0.1,
        validators=study_bounds("gold_rate"),
        help_text="Share of gold items interleaved among test items.",
    )
    gold_fail_limit = models.PositiveSmallIntegerField(
        default=2,
        validators=study_bounds("gold_fail_limit"),
        help_text="Gold failures after which a rater is excluded (F).",
    )
    repeat_check = models.BooleanField(
        default=False,
        help_text="Show one already-rated stimulus again per session (intra-rater consistency).",
    )
    min_view_seconds = models.FloatField(default=3.0, validators=study_bounds("min_view_seconds"))
    break_every = models.PositiveIntegerField(
        default=40,
        validators=study_bounds("break_every"),
        help_text="A break screen every N items.",
    )
    claim_ttl_seconds = models.PositiveIntegerField(
        default=600,
        validators=study_bounds("claim_ttl_seconds"),
        help_text="How long a claim lives.",
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
        validators=study_bounds("min_session_items"),
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
    language = models.CharField(
        max_length=8,
        blank=True,
        default="",
        choices=LANGUAGES,
        help_text=(
            "The language raters read the study in; empty: each rater's browser language "
            "(raters can switch either way)."
        ),
    )
    texts = models.JSONField(
        default=dict,
        blank=True,
        validators=[validate_study_texts],
        help_text=(
            "The title, consent text and instructions in other languages, shown to raters "
            'reading the study in that language: {"zh-hans": {"title": "...", ...}}.'
        ),
    )
    # Viewing conditions: what the rater's page checks before the first image, and
    # the submit refuses (annotation.viewing) when the page reports otherwise.
    min_viewport_width = models.PositiveIntegerField(
        "minimum window width",
        null=True,
        blank=True,
        validators=study_bounds("min_viewport_width"),
        help_text="Narrowest browser window raters may rate in, in CSS pixels; empty: any.",
    )
    min_viewport_height = models.PositiveIntegerField(
        "minimum window height",
        null=True,
        blank=True,
        validators=study_bounds("min_viewport_height"),
        help_text="Lowest browser window raters may rate in, in CSS pixels; empty: any.",
    )
    refuse_touch = models.BooleanField(
        "refuse phones and touch devices",
        default=False,
        db_default=False,
        help_text="Raters on a touch screen (phones, tablets) cannot rate.",
    )
    native_pixels = models.BooleanField(
        "show images at native device pixels",
        default=False,
        db_default=False,
        help_text=(
            "One image pixel per screen pixel, whatever the page zoom or screen density "
            "(large images scroll); otherwise images are fitted to the window."
        ),
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
            *_study_range_checks(),
            _text_within("study", "instructions", MAX_STUDY_TEXT_CHARS),
            _text_within("study", "consent_text", MAX_STUDY_TEXT_CHARS),
            models.CheckConstraint(
                condition=Q(language__in=["", *(code for code, _ in LANGUAGES)]),
                name="study_language_known",
            ),
            models.CheckConstraint(
                condition=LessThanOrEqual(
                    Length(Cast("texts", models.TextField())), MAX_TEXTS_JSON_CHARS
                ),
                name="study_texts_bounded",
            ),
            models.CheckConstraint(
                condition=Q(protocol__in=list(proto.PRESETS)), name="study_protocol_known"
            ),
            models.CheckConstraint(
                condition=Q(scale__in=list(proto.SCALES)), name="study_scale_known"
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

    def text(self, name: str, language: str | None = None) -> str:
        """The researcher's text ``name`` (TRANSLATED_TEXTS) in ``language`` (default:
        the active one, the rater's), else as written in the settings."""
        language = (language or translation.get_language() or "").lower()
        given = self.texts.get(language, {}) if isinstance(self.texts, dict) else {}
        return given.get(name) or getattr(self, name)

    @property
    def rater_title(self) -> str:
        return self.text("title")

    @property
    def rater_instructions(self) -> str:
        return self.text("instructions")

    @property
    def rater_consent_text(self) -> str:
        return self.text("consent_text")

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
        NO_WORK = "no_work", "No work (study full, or closed before they finished)"

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
    prompt = models.TextField(blank=True, max_length=MAX_PROMPT_CHARS)
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
            _text_within("stimulus", "prompt", MAX_PROMPT_CHARS),
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


#: A rater's pay decision (Rater.pay_decision): not decided yet, approve or reject.
PAY_DECISION_CHOICES = [("", "Not decided"), ("approve", "Approve"), ("reject", "Reject")]


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
    # Whether the rater is paid, decided apart from ``status`` (whether their ratings
    # are used in the MOS), as P.808 and P.910 practice (annotation.rater_decisions).
    pay_decision = models.CharField(
        max_length=8, choices=PAY_DECISION_CHOICES, blank=True, default=""
    )

    class Meta:
        ordering = ["study", "id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(pay_decision__in=[k for k, _ in PAY_DECISION_CHOICES]),
                name="rater_pay_decision_known",
            ),
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
            models.CheckConstraint(
                condition=LessThanOrEqual(
                    Length(Cast("platform", models.TextField())), MAX_PLATFORM_JSON_CHARS
                ),
                name="rater_platform_bounded",
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
    # The end of the break the rater is on (rater_flow): kept here, not in the page,
    # so a reload during the break shows the break again instead of the next image.
    break_until = models.DateTimeField(null=True, blank=True)
    # The viewing conditions the rater's page last reported (annotation.viewing); empty
    # when none were (scripted clients). Sizes in CSS pixels.
    viewport_width = models.PositiveIntegerField(null=True, blank=True)
    viewport_height = models.PositiveIntegerField(null=True, blank=True)
    screen_width = models.PositiveIntegerField(null=True, blank=True)
    screen_height = models.PositiveIntegerField(null=True, blank=True)
    device_pixel_ratio = models.FloatField(null=True, blank=True)
    zoom = models.FloatField(null=True, blank=True, help_text="Browser zoom, where known.")
    browser = models.CharField(
        max_length=16, blank=True, default="", db_default="", choices=BROWSER_CHOICES
    )
    touch = models.BooleanField(null=True, blank=True, help_text="A touch screen.")

    class Meta:
        ordering = ["-started_at"]
        constraints = [
            *_nullable_ranges("session", VIEWING_BOUNDS),
            models.CheckConstraint(
                condition=Q(browser__in=["", *(k for k, _ in BROWSER_CHOICES)]),
                name="session_browser_known",
            ),
        ]

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
    # The size the image was shown at, as the rater's page reported it; empty when not.
    shown_css_width = models.PositiveIntegerField(null=True, blank=True)
    shown_css_height = models.PositiveIntegerField(null=True, blank=True)
    shown_device_width = models.PositiveIntegerField(null=True, blank=True)
    shown_device_height = models.PositiveIntegerField(null=True, blank=True)
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
            *_nullable_ranges("rating", SHOWN_BOUNDS),
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


class RaterDecision(models.Model):
    """A researcher's decision about one rater, kept for good: who, when and why.

    Two separate questions (annotation.rater_decisions): whether the rater's ratings
    are used in the MOS (exclude, include: ``Rater.status``) and whether they are paid
    (approve, reject: ``Rater.pay_decision``). Every decision but an approval says why.
    """

    class Kind(models.TextChoices):
        EXCLUDE = "exclude", "Excluded from the MOS"
        INCLUDE = "include", "Re-included in the MOS"
        APPROVE = "approve", "Approved for payment"
        REJECT = "reject", "Rejected for payment"

    rater = models.ForeignKey(Rater, on_delete=models.CASCADE, related_name="decisions")
    kind = models.CharField(max_length=8, choices=Kind.choices)
    reason = models.TextField(blank=True)
    # What the decision replaced: the status (or pay decision) and its reason.
    previous = models.CharField(max_length=10, blank=True)
    previous_reason = models.TextField(blank=True)
    # The account may go; the name stays with the record.
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="rater_decisions",
    )
    decided_by_name = models.CharField(max_length=150)
    decided_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["rater", "decided_at", "id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(kind__in=["exclude", "include", "approve", "reject"]),
                name="rater_decision_kind_known",
            ),
            models.CheckConstraint(
                condition=Q(kind="approve") | ~Q(reason=""), name="rater_decision_says_why"
            ),
            models.CheckConstraint(
                condition=~Q(decided_by_name=""), name="rater_decision_says_who"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()}: {self.rater} by {self.decided_by_name}"

    def previous_display(self) -> str:
        """What the decision replaced, in words (a status, or a pay decision)."""
        if self.kind in (self.Kind.EXCLUDE, self.Kind.INCLUDE):
            return dict(Rater.Status.choices).get(self.previous, self.previous)
        return dict(PAY_DECISION_CHOICES).get(self.previous, self.previous)


class PaymentExport(models.Model):
    """A file for a crowd platform's bulk actions (annotation.payments): approvals,
    rejections or bonuses, with the rule that chose a bonus's raters. Its lines say
    who was in it, so nobody is approved, rejected or given a bonus twice."""

    class Kind(models.TextChoices):
        APPROVE = "approve", "Approvals"
        REJECT = "reject", "Rejections"
        BONUS = "bonus", "Bonuses"

    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="payment_exports")
    platform = models.CharField(max_length=16, choices=PLATFORM_CHOICES[:2])
    kind = models.CharField(max_length=8, choices=Kind.choices)
    rule = models.JSONField(default=dict, blank=True, help_text="A bonus's rule and amount.")
    # Raters of the kind left out for want of an id the platform needs (MTurk
    # assignment ids), so the page can say so: [{rater, pseudonym, missing}].
    left_out = models.JSONField(default=list, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="payment_exports",
    )
    created_by_name = models.CharField(max_length=150)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["study", "-created_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(platform__in=["prolific", "mturk"]), name="payment_export_platform"
            ),
            models.CheckConstraint(
                condition=Q(kind__in=["approve", "reject", "bonus"]), name="payment_export_kind"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_platform_display()} {self.kind} export {self.pk} of {self.study_id}"


class PaymentExportLine(models.Model):
    """One rater (one MTurk assignment) in a payment export. ``kind`` repeats the
    export's so the database itself refuses a second approval or rejection of the same
    assignment and a second bonus of the same rater."""

    export = models.ForeignKey(PaymentExport, on_delete=models.CASCADE, related_name="lines")
    rater = models.ForeignKey(Rater, on_delete=models.CASCADE, related_name="payment_lines")
    kind = models.CharField(max_length=8, choices=PaymentExport.Kind.choices)
    external_id = models.CharField(max_length=128)
    assignment_id = models.CharField(max_length=128, blank=True)
    hit_id = models.CharField(max_length=128, blank=True)
    amount = models.DecimalField(max_digits=8, decimal_places=2, null=True, blank=True)
    reason = models.TextField(blank=True)

    class Meta:
        ordering = ["export", "id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(kind__in=["approve", "reject", "bonus"]),
                name="payment_line_kind",
            ),
            models.CheckConstraint(condition=~Q(external_id=""), name="payment_line_has_id"),
            # A bonus has a positive amount; approvals and rejections have none.
            models.CheckConstraint(
                condition=(Q(kind="bonus") & Q(amount__isnull=False) & Q(amount__gt=0))
                | (~Q(kind="bonus") & Q(amount__isnull=True)),
                name="payment_line_amount",
            ),
            models.CheckConstraint(
                condition=~Q(kind="reject") | ~Q(reason=""), name="payment_line_reject_says_why"
            ),
            # One verdict exported per assignment (Prolific: per rater, assignment ""),
            models.UniqueConstraint(
                fields=["rater", "assignment_id"],
                condition=Q(kind__in=["approve", "reject"]),
                name="payment_line_verdict_once",
            ),
            # and one bonus per rater.
            models.UniqueConstraint(
                fields=["rater"], condition=Q(kind="bonus"), name="payment_line_bonus_once"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kind} of {self.external_id} in export {self.export_id}"
