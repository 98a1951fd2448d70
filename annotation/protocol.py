"""What raters rate: the ONE source of truth for dimensions, presets and scales.

The AGIN study (see docs/protocol.md) asks for overall naturalness and two
perspectives of five dimensions each. Models (Rating columns and their database
checks), forms, validation, exports and analyses all read this module; adding a
dimension here (plus a migration) is the only change needed to rate it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass


def gettext_noop(text: str) -> str:
    """Marks ``text`` for the raters' catalogues (Django's makemessages knows the name);
    the pages translate it when they show it, so this module stays free of Django."""
    return text


@dataclass(frozen=True)
class Dimension:
    key: str
    label: str
    definition: str
    group: str  # "overall", "technical" or "rationality"
    is_perspective: bool = False  # the perspective's own summary score


OVERALL = Dimension(
    "overall",
    gettext_noop("Overall naturalness"),
    gettext_noop(
        "How natural does the image look as a whole? Could it be a real photograph or a "
        "faithful depiction of a scene that could exist?"
    ),
    "overall",
    is_perspective=True,
)
TECHNICAL = Dimension(
    "technical",
    gettext_noop("Technical naturalness"),
    gettext_noop(
        "Judge the image as a picture: brightness, contrast, detail and sharpness, and "
        "whether it is free of visible generation artifacts."
    ),
    "technical",
    is_perspective=True,
)
RATIONALITY = Dimension(
    "rationality",
    gettext_noop("Rationality"),
    gettext_noop(
        "Judge the content: do the objects, colours, arrangement and surroundings make sense "
        "together, as they would in the real world?"
    ),
    "rationality",
    is_perspective=True,
)

TECHNICAL_DIMENSIONS = (
    Dimension(
        "luminance",
        gettext_noop("Luminance"),
        gettext_noop("Is the brightness natural, neither too dark nor washed out?"),
        "technical",
    ),
    Dimension(
        "contrast",
        gettext_noop("Contrast"),
        gettext_noop(
            "Is the difference between light and dark areas natural, neither flat nor harsh?"
        ),
        "technical",
    ),
    Dimension(
        "detail",
        gettext_noop("Detail"),
        gettext_noop(
            "Are textures and fine structures rich and plausible rather than smeared or missing?"
        ),
        "technical",
    ),
    Dimension(
        "blur",
        gettext_noop("Blur"),
        gettext_noop("Is the image sharp where it should be? A high score means no unwanted blur."),
        "technical",
    ),
    Dimension(
        "artifacts",
        gettext_noop("Artifacts"),
        gettext_noop(
            "Is the image free of generation artifacts such as distorted patterns, noise, "
            "blocks or melted regions? A high score means no artifacts."
        ),
        "technical",
    ),
)
RATIONALITY_DIMENSIONS = (
    Dimension(
        "existence",
        gettext_noop("Existence"),
        gettext_noop(
            "Could every object exist in reality, with a plausible shape and structure "
            "(no extra limbs, fused or impossible objects)?"
        ),
        "rationality",
    ),
    Dimension(
        "color",
        gettext_noop("Color"),
        gettext_noop(
            "Are the colours of objects plausible for what they are (no green sky, blue skin)?"
        ),
        "rationality",
    ),
    Dimension(
        "layout",
        gettext_noop("Layout"),
        gettext_noop(
            "Are objects placed, sized and oriented plausibly relative to each other "
            "(nothing floating, duplicated or cut apart)?"
        ),
        "rationality",
    ),
    Dimension(
        "context",
        gettext_noop("Context"),
        gettext_noop("Do the objects belong together in this scene and setting?"),
        "rationality",
    ),
    Dimension(
        "sensory_clarity",
        gettext_noop("Sensory clarity"),
        gettext_noop("Is it easy to tell at a glance what the image shows, without confusion?"),
        "rationality",
    ),
)

# Order matters: forms and exports present dimensions grouped as overall, then
# technical, then rationality (each perspective's score before its sub-dimensions).
DIMENSIONS: tuple[Dimension, ...] = (
    OVERALL,
    TECHNICAL,
    *TECHNICAL_DIMENSIONS,
    RATIONALITY,
    *RATIONALITY_DIMENSIONS,
)
DIMENSION_KEYS: tuple[str, ...] = tuple(d.key for d in DIMENSIONS)
BY_KEY: dict[str, Dimension] = {d.key: d for d in DIMENSIONS}
GROUPS = ("overall", "technical", "rationality")

PRESETS: dict[str, tuple[str, ...]] = {
    "overall": ("overall",),
    "perspectives": ("overall", "technical", "rationality"),
    "agin": DIMENSION_KEYS,
}
PRESET_LABELS = {
    "overall": "Overall naturalness only (1 dimension)",
    "perspectives": "Overall, technical and rationality (3 dimensions)",
    "agin": "AGIN: the 3 above plus 10 sub-dimensions (13 dimensions)",
}
DEFAULT_PRESET = "agin"


@dataclass(frozen=True)
class Scale:
    key: str
    label: str
    minimum: float
    maximum: float
    step: float
    integer: bool
    anchors: tuple[str, ...]

    def contains(self, value: float) -> bool:
        if not (self.minimum <= value <= self.maximum):
            return False
        return not self.integer or float(value).is_integer()

    def anchor_positions(self) -> list[tuple[float, str]]:
        """Each anchor label with its value, evenly spread over the scale."""
        span = self.maximum - self.minimum
        last = len(self.anchors) - 1
        return [(self.minimum + span * i / last, label) for i, label in enumerate(self.anchors)]


ANCHORS = (
    gettext_noop("Bad"),
    gettext_noop("Poor"),
    gettext_noop("Fair"),
    gettext_noop("Good"),
    gettext_noop("Excellent"),
)
SCALES: dict[str, Scale] = {
    "continuous": Scale("continuous", "Continuous 0-100 slider", 0, 100, 1, False, ANCHORS),
    "acr5": Scale("acr5", "ACR 5-point (1-5)", 1, 5, 1, True, ANCHORS),
}
DEFAULT_SCALE = "continuous"


class ProtocolError(ValueError):
    """Scores that do not fit the study's protocol; ``errors`` maps field -> message."""

    def __init__(self, errors: dict[str, str]):
        self.errors = errors
        super().__init__("; ".join(f"{k}: {v}" for k, v in errors.items()))


def dimensions_for(preset: str) -> list[Dimension]:
    try:
        return [BY_KEY[key] for key in PRESETS[preset]]
    except KeyError:
        raise ValueError(
            f"unknown protocol preset {preset!r}; use one of {sorted(PRESETS)}"
        ) from None


def grouped_dimensions(preset: str) -> list[tuple[str, list[Dimension]]]:
    """The preset's dimensions as (group, dimensions) in display order, empty groups left out."""
    dims = dimensions_for(preset)
    return [
        (g, [d for d in dims if d.group == g]) for g in GROUPS if any(d.group == g for d in dims)
    ]


def get_scale(key: str) -> Scale:
    try:
        return SCALES[key]
    except KeyError:
        raise ValueError(f"unknown scale {key!r}; use one of {sorted(SCALES)}") from None


def validate_scores(preset: str, scale_key: str, scores: object) -> dict[str, float]:
    """Check a submission's scores against a preset and scale; return clean floats.

    Every dimension of the preset must be present, numeric (bools and strings
    refused: JSON ``"50"`` is a client bug, not a score), finite and inside the
    scale; unknown keys are refused. All problems are reported at once.
    """
    if not isinstance(scores, Mapping):
        raise ProtocolError({"scores": "must be an object mapping dimension keys to numbers"})
    expected = PRESETS.get(preset)
    if expected is None:
        raise ProtocolError({"protocol": f"unknown preset {preset!r}"})
    scale = get_scale(scale_key)
    errors: dict[str, str] = {}
    clean: dict[str, float] = {}
    for key in scores:
        if key not in expected:
            errors[str(key)] = f"unknown dimension for this study (expected: {', '.join(expected)})"
    for key in expected:
        if key not in scores:
            errors[key] = "missing: every dimension must be rated"
            continue
        value = scores[key]
        if isinstance(value, bool) or not isinstance(value, int | float):
            errors[key] = f"must be a number, got {type(value).__name__}"
            continue
        number = float(value)
        if not math.isfinite(number):
            errors[key] = "must be a finite number"
        elif not scale.contains(number):
            kind = "an integer " if scale.integer else ""
            errors[key] = f"must be {kind}between {scale.minimum:g} and {scale.maximum:g}"
        else:
            clean[key] = number
    if errors:
        raise ProtocolError(errors)
    return clean


def as_dict() -> dict:
    """The protocol as JSON-ready data (served to the browser and the API)."""
    return {
        "dimensions": [
            {"key": d.key, "label": d.label, "definition": d.definition, "group": d.group}
            for d in DIMENSIONS
        ],
        "presets": {k: list(v) for k, v in PRESETS.items()},
        "scales": {
            k: {
                "min": s.minimum,
                "max": s.maximum,
                "step": s.step,
                "integer": s.integer,
                "anchors": list(s.anchors),
            }
            for k, s in SCALES.items()
        },
    }
