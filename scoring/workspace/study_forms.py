"""The study settings form of the researcher pages (create, edit, clone).

It only validates: every write goes through the services of ``annotation.studies``.
Bounds are the model's (``STUDY_BOUNDS``, as the API's and the database's); settings
the study's rules lock (``locked_fields``, and the slug once the study exists) are
shown disabled with why.
"""

from __future__ import annotations

from django import forms
from django.core.validators import (
    MaxValueValidator,
    MinValueValidator,
    ProhibitNullCharactersValidator,
)

from annotation import protocol as proto
from annotation.models import (
    PLATFORM_CHOICES,
    STUDY_BOUNDS,
    TRANSLATED_TEXTS,
    Study,
    StudyOutcome,
    all_platforms,
    new_completion_code,
)
from annotation.studies import locked_fields, outcomes_of
from studyweb.forms import NoControlCharacters, PlainTextModelForm
from studyweb.language_codes import LANGUAGES

#: The slug never changes once the study exists (the service refuses it too).
SLUG_LOCK_REASON = "the slug never changes: links handed to crowd platforms point to it"

#: Paths under studies/ that a slug would shadow.
RESERVED_SLUGS = {"new"}

TITLE_MAX = 200  # Study.title's max_length

NUL_MESSAGE = "Remove the NUL character (\\x00): text cannot contain it."

#: (low, high) per number setting: the model's one table (also the database's checks
#: and the API's serializer), shown as the inputs' min and max.
BOUNDS = STUDY_BOUNDS

#: The outcomes other than completed (completed: completion_code and completion_url),
#: edited here for every platform at once; per-platform rows come through the API.
OUTCOME_KINDS = [StudyOutcome.Kind.SCREENED_OUT, StudyOutcome.Kind.NO_WORK]
OUTCOME_FIELDS = [f"{kind}_{part}" for kind in OUTCOME_KINDS for part in ("code", "url")]

#: The researcher's texts per rater language (Study.texts): "<text>__<language>".
TEXT_FIELDS = [f"{name}__{code}" for code, _ in LANGUAGES for name in TRANSLATED_TEXTS]

#: The form's sections: (legend, field names).
FIELDSETS: list[tuple[str, list[str]]] = [
    ("About the study", ["title", "slug", "instructions", "consent_text"]),
    ("What raters rate", ["protocol", "scale", "ratings_per_stimulus"]),
    (
        "Sessions",
        ["session_size", "max_items_per_rater", "min_view_seconds", "break_every"],
    ),
    (
        "Viewing conditions",
        ["min_viewport_width", "min_viewport_height", "refuse_touch", "native_pixels"],
    ),
    ("Quality control", ["gold_rate", "gold_fail_limit", "repeat_check"]),
    ("Places", ["min_session_items", "when_complete"]),
    ("Claims", ["claim_ttl_seconds"]),
    ("Crowd platforms and completion", ["platforms", "completion_code", "completion_url"]),
    ("Screened out and study full", OUTCOME_FIELDS),
    ("Raters' language", ["language", *TEXT_FIELDS]),
]

#: The study's own settings (model fields); the outcome fields are written as rows.
FIELDS = [
    name
    for _, names in FIELDSETS
    for name in names
    if name not in OUTCOME_FIELDS and name not in TEXT_FIELDS
]


class StudyForm(PlainTextModelForm):
    protocol = forms.ChoiceField(
        label="Protocol preset",
        choices=[(key, proto.PRESET_LABELS[key]) for key in proto.PRESETS],
        initial=proto.DEFAULT_PRESET,
        help_text="The dimensions raters score for every image.",
    )
    scale = forms.ChoiceField(
        label="Rating scale",
        choices=[(key, scale.label) for key, scale in proto.SCALES.items()],
        initial=proto.DEFAULT_SCALE,
        help_text="How raters give each score.",
    )
    completion_url = forms.URLField(
        label="Completion URL",
        required=False,
        max_length=200,
        assume_scheme="https",
        help_text=(
            "Crowd platform URL raters are sent to at the end (e.g. Prolific's completion "
            "link); empty: raters are shown the completion code only."
        ),
    )

    screened_out_code = forms.CharField(
        label="Screened-out code",
        required=False,
        max_length=64,
        help_text=(
            "Given to raters excluded by the gold checks, on a page that says why "
            "(e.g. Prolific's screen-out completion code); empty: no code."
        ),
    )
    screened_out_url = forms.URLField(
        label="Screened-out URL",
        required=False,
        max_length=200,
        assume_scheme="https",
        help_text="Where excluded raters are sent back (Prolific: the code is added as cc).",
    )
    no_work_code = forms.CharField(
        label="Study-full code",
        required=False,
        max_length=64,
        help_text=(
            "Given to raters turned away because no session's worth of work is left, "
            "and to raters whose study you close before they finish (e.g. Prolific's "
            "'no work' code); empty: no code."
        ),
    )
    no_work_url = forms.URLField(
        label="Study-full URL",
        required=False,
        max_length=200,
        assume_scheme="https",
        help_text="Where raters turned away are sent back to their platform.",
    )

    platforms = forms.MultipleChoiceField(
        label="Crowd platforms",
        choices=PLATFORM_CHOICES,
        initial=all_platforms,
        widget=forms.CheckboxSelectMultiple,
        error_messages={"required": "Choose at least one platform: raters enter by its link."},
        help_text=(
            "The links the study accepts; the study page shows one link per platform. "
            "A link of another platform is answered with a page saying the study does not "
            "take it."
        ),
    )

    class Meta:
        model = Study
        fields = FIELDS
        labels = {
            "instructions": "Description and rater instructions",
            "ratings_per_stimulus": "Ratings per image (K)",
            "max_items_per_rater": "Per-rater cap",
            "min_view_seconds": "Minimum viewing time (seconds)",
            "break_every": "Break interval (items)",
            "gold_fail_limit": "Gold failure limit (F)",
            "claim_ttl_seconds": "Claim timeout (seconds)",
            "repeat_check": "Repeat check",
            "min_session_items": "Minimum session (items)",
            "language": "Rater pages' language",
            "when_complete": "When every image has its ratings",
        }
        help_texts = {
            "language": (
                "The language of the rater pages; empty: each rater's browser language. "
                "Raters can switch either way. Give your own texts in each language below."
            ),
            "title": "Shown to raters and on your study list.",
            "slug": (
                "The study's address in rater links (lowercase letters, digits, hyphens, "
                "underscores); "
                "it cannot change once the study exists."
            ),
            "instructions": "Describes the study; shown to raters before training.",
            "consent_text": "Shown on the consent page; a default text is used when empty.",
            "ratings_per_stimulus": "How many raters rate each test image (1 to 1000).",
            "session_size": (
                "Images each rater rates in a session, gold and repeat checks included "
                "(1 to 10000)."
            ),
            "max_items_per_rater": (
                "Most test images one rater rates over all sessions; empty: no cap."
            ),
            "min_view_seconds": (
                "An image must be shown this long before its rating is accepted (0 to 600)."
            ),
            "break_every": "A break screen every N items (1 to 10000).",
            "gold_rate": (
                "Share of gold items (with a known expected range) among test items, "
                "0 to 0.5; 0: no gold items."
            ),
            "gold_fail_limit": "Gold failures after which a rater is excluded (0 to 100).",
            "repeat_check": (
                "Show one already-rated image again per session (intra-rater consistency)."
            ),
            "claim_ttl_seconds": (
                "How long an image handed to a rater stays reserved for them (10 to 86400)."
            ),
            "completion_code": "The code raters paste into the crowd platform at the end.",
            "min_session_items": (
                "A rater is admitted only when the study has work for a full session; set "
                "a smaller number to let the last images go to shorter sessions (raters are "
                "told the real number before they consent). Empty: full sessions only."
            ),
            "when_complete": (
                "Once every test image has its K ratings and the last raters finished, the "
                "study closes (or pauses) by itself; the study page says so."
            ),
        }
        widgets = {
            "instructions": forms.Textarea(attrs={"rows": 5}),
            "consent_text": forms.Textarea(attrs={"rows": 5}),
        }
        error_messages = {
            "slug": {"unique": "A study already uses this slug: choose another one."},
        }

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["language"].choices = [
            ("", "Each rater's browser language (raters can switch)"),
            *LANGUAGES,
        ]
        # One optional text field per (text, language), filled from Study.texts.
        for code, language in LANGUAGES:
            for name, limit in TRANSLATED_TEXTS.items():
                label = {"title": "Title", "consent_text": "Consent text"}.get(name, "Instructions")
                self.fields[f"{name}__{code}"] = forms.CharField(
                    label=f"{label} ({language})",
                    required=False,
                    max_length=limit,
                    widget=forms.TextInput() if name == "title" else forms.Textarea({"rows": 3}),
                    help_text=(
                        f"Shown to raters reading the study in {language}; empty: the text above."
                        if name == "title"
                        else ""
                    ),
                )
                field = self.fields[f"{name}__{code}"]
                field.validators.append(NoControlCharacters(multiline=name != "title"))
                given = (self.instance.texts or {}).get(code, {}) if self.instance.pk else {}
                self.initial.setdefault(f"{name}__{code}", given.get(name, ""))
        if self.instance.pk is not None:
            # The rows for every platform (platform "") fill the outcome fields.
            for row in outcomes_of(self.instance):
                if row["platform"] == "" and row["kind"] in OUTCOME_KINDS:
                    self.initial.setdefault(f"{row['kind']}_code", row["code"])
                    self.initial.setdefault(f"{row['kind']}_url", row["redirect_url"])
        for name, (low, high) in BOUNDS.items():
            field = self.fields[name]
            # The study's bounds replace the model field's own (a positive integer's
            # 0): one "at least" message, not two.
            field.validators = [
                v
                for v in field.validators
                if not isinstance(v, MinValueValidator | MaxValueValidator)
            ] + [MinValueValidator(low), MaxValueValidator(high)]
            field.widget.attrs.update({"min": low, "max": high})
        # The model's default is callable: compare edits with the stored code, not with a
        # hidden "initial-" copy of it that only a browser would post.
        self.fields["completion_code"].show_hidden_initial = False
        self.fields["when_complete"].required = False
        for name in ("gold_rate", "min_view_seconds"):
            self.fields[name].widget.attrs["step"] = "any"
        for field in self.fields.values():
            if isinstance(field, forms.CharField):
                field.validators = [
                    ProhibitNullCharactersValidator(message=NUL_MESSAGE)
                    if isinstance(v, ProhibitNullCharactersValidator)
                    else v
                    for v in field.validators
                ]
        # Locked settings: disabled (a posted value is ignored), each with its reason.
        self.locks: dict[str, str] = {}
        if self.instance.pk is not None:
            self.locks["slug"] = SLUG_LOCK_REASON
            self.locks.update(locked_fields(self.instance))
        for name, field in self.fields.items():
            field.lock_reason = self.locks.get(name, "")  # type: ignore[attr-defined]
            if name in self.locks:
                field.disabled = True
                auto_id = self[name].auto_id
                if auto_id:
                    described = f"{auto_id}_lock {auto_id}_helptext" if field.help_text else ""
                    field.widget.attrs["aria-describedby"] = described or f"{auto_id}_lock"

    def clean_when_complete(self) -> str:
        # Not sent (a script posting only some settings): the study's current choice.
        return self.cleaned_data.get("when_complete") or self.instance.when_complete

    def clean_platforms(self) -> list[str]:
        chosen = set(self.cleaned_data["platforms"])
        return [key for key, _ in PLATFORM_CHOICES if key in chosen]  # page order, once each

    def clean_slug(self) -> str:
        slug = self.cleaned_data["slug"]
        if slug in RESERVED_SLUGS and "slug" not in self.locks:
            raise forms.ValidationError(f"“{slug}” is reserved: choose another slug.")
        return slug

    def fieldsets(self) -> list[tuple[str, list[forms.BoundField]]]:
        return [(legend, [self[name] for name in names]) for legend, names in FIELDSETS]

    def texts(self) -> dict:
        """Study.texts from the per-language fields (empty ones left out)."""
        texts: dict[str, dict[str, str]] = {}
        for code, _ in LANGUAGES:
            for name in TRANSLATED_TEXTS:
                value = (self.cleaned_data.get(f"{name}__{code}") or "").strip()
                if value:
                    texts.setdefault(code, {})[name] = value
        return texts

    def settings(self) -> dict:
        """Every setting as cleaned, the outcome fields too (for study_create)."""
        values = {name: self.cleaned_data[name] for name in [*FIELDS, *OUTCOME_FIELDS]}
        return {**values, "texts": self.texts()}

    def changes(self) -> dict:
        """Only the settings the researcher changed (for study_update)."""
        # changed_data compares what was sent with the initial value; a field whose
        # clean keeps the study's own value for a blank (when_complete) is no change.
        # (Compared with the initial value: validation has already copied the cleaned
        # values onto self.instance.)
        kept = self.instance.pk is not None
        changed = {
            name: self.cleaned_data[name]
            for name in self.changed_data
            if name not in self.locks
            and name not in TEXT_FIELDS
            and not (kept and self.cleaned_data[name] == self[name].initial)
        }
        if any(name in TEXT_FIELDS for name in self.changed_data):
            changed["texts"] = self.texts()
        return changed


def clone_initial(source: Study) -> dict:
    """The settings of ``source`` for a new study: "Copy of" title, a free slug, a new code."""
    initial = {name: getattr(source, name) for name in FIELDS}
    for code, texts in (source.texts or {}).items():
        for name, text in texts.items():
            initial[f"{name}__{code}"] = text
    for row in outcomes_of(source):
        if row["platform"] == "" and row["kind"] in OUTCOME_KINDS:
            initial[f"{row['kind']}_code"] = row["code"]
            initial[f"{row['kind']}_url"] = row["redirect_url"]
    title = f"Copy of {source.title}"
    initial["title"] = title[:TITLE_MAX]
    initial["slug"] = free_slug(f"{source.slug}-copy")
    initial["completion_code"] = new_completion_code()
    return initial


def free_slug(base: str) -> str:
    """``base``, or ``base-2``, ``base-3``... : the first slug no study uses."""
    limit = 64
    base = base.lower()[:limit].rstrip("-") or "study"  # a study made before slugs were lowercase
    taken = set(
        Study.objects.filter(slug__startswith=base[: limit - 8]).values_list("slug", flat=True)
    )
    candidate, n = base, 1
    while candidate in taken or candidate in RESERVED_SLUGS:
        n += 1
        suffix = f"-{n}"
        candidate = base[: limit - len(suffix)].rstrip("-") + suffix
    return candidate
