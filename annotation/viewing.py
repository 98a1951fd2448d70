"""Viewing conditions: what the rater's page reports with each rating, and the study's
rules on them.

The page sends, with every rating, the size the image was shown at (``display``, kept
on the Rating) and the browser window, screen, device-pixel ratio, zoom, browser
family and touch (``viewing``, kept on the Session, written only when it changes).
Every field is optional: scripted clients send none. Bad values are refused at the
boundary (``BadConditions``, a 400 naming the field); values that break the study's
options (a window smaller than its minimum, a touch screen it refuses) are refused
by ``conditions_check`` (a 409 naming the condition). No Django request here: the
service ``rating_submit`` calls these.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from annotation.models import BROWSER_CHOICES, SHOWN_BOUNDS, VIEWING_BOUNDS, Session, Study

#: ``display`` key -> Rating field.
DISPLAY_FIELDS = {
    "css_width": "shown_css_width",
    "css_height": "shown_css_height",
    "device_width": "shown_device_width",
    "device_height": "shown_device_height",
}
#: ``viewing`` numbers: whole numbers (sizes) and ratios.
VIEWING_INTEGERS = ("viewport_width", "viewport_height", "screen_width", "screen_height")
VIEWING_RATIOS = ("device_pixel_ratio", "zoom")
VIEWING_KEYS = (*VIEWING_INTEGERS, *VIEWING_RATIOS, "browser", "touch")
BROWSERS = [key for key, _ in BROWSER_CHOICES]


class BadConditions(ValueError):
    """A ``display`` or ``viewing`` value the submit refuses; ``field`` is its path."""

    def __init__(self, field: str, message: str):
        self.field, self.message = field, message
        super().__init__(message)


class ConditionsRefused(Exception):
    """Viewing conditions the study does not accept; ``condition`` names which."""

    def __init__(self, condition: str, message: str):
        self.condition, self.message = condition, message
        super().__init__(message)


@dataclass(frozen=True)
class Conditions:
    """The reported values, by model field; only those reported (not null)."""

    shown: dict[str, int] = field(default_factory=dict)  # Rating fields
    session: dict[str, object] = field(default_factory=dict)  # Session fields


def _whole(path: str, value, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadConditions(path, f"{path} must be a whole number of pixels or null")
    if not low <= value <= high:
        raise BadConditions(path, f"{path} must be between {low} and {high:,}")
    return value


def _ratio(path: str, value, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise BadConditions(path, f"{path} must be a finite number or null")
    if not low <= value <= high:
        raise BadConditions(path, f"{path} must be between {low:g} and {high:g}")
    return float(value)


def _object(name: str, value, keys) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise BadConditions(name, f"{name} must be an object ({', '.join(keys)}) or null")
    unknown = [k for k in value if k not in keys]
    if unknown:
        raise BadConditions(
            f"{name}.{unknown[0]}",
            f"{name} has no field {unknown[0]!r} (known: {', '.join(keys)})",
        )
    return value


def conditions_clean(display, viewing) -> Conditions:
    """The submit's ``display`` and ``viewing`` objects, checked; null or absent
    fields are not reported. Raises ``BadConditions`` naming the first bad field."""
    shown: dict[str, int] = {}
    for key, value in _object("display", display, DISPLAY_FIELDS).items():
        if value is not None:
            name = DISPLAY_FIELDS[key]
            shown[name] = _whole(f"display.{key}", value, *SHOWN_BOUNDS[name])
    session: dict[str, object] = {}
    for key, value in _object("viewing", viewing, VIEWING_KEYS).items():
        path = f"viewing.{key}"
        if value is None:
            continue
        if key in VIEWING_INTEGERS:
            session[key] = _whole(path, value, *VIEWING_BOUNDS[key])
        elif key in VIEWING_RATIOS:
            session[key] = _ratio(path, value, *VIEWING_BOUNDS[key])
        elif key == "browser":
            family = value.strip().lower() if isinstance(value, str) else None
            if family not in BROWSERS:
                raise BadConditions(path, f"{path} must be one of {', '.join(BROWSERS)}")
            session[key] = family
        elif not isinstance(value, bool):  # touch
            raise BadConditions(path, f"{path} must be true, false or null")
        else:
            session[key] = value
    return Conditions(shown=shown, session=session)


def conditions_check(study: Study, conditions: Conditions) -> None:
    """Refuse reported conditions the study's options rule out. Only what was reported
    is checked: a scripted client that reports nothing is not refused."""
    seen = conditions.session
    width, height = seen.get("viewport_width"), seen.get("viewport_height")
    if study.min_viewport_width and width is not None and width < study.min_viewport_width:
        raise ConditionsRefused(
            "viewport_width",
            f"this study needs a browser window at least {study.min_viewport_width} pixels "
            f"wide (yours is {width}): please enlarge the window or use a larger screen",
        )
    if study.min_viewport_height and height is not None and height < study.min_viewport_height:
        raise ConditionsRefused(
            "viewport_height",
            f"this study needs a browser window at least {study.min_viewport_height} pixels "
            f"high (yours is {height}): please enlarge the window or use a larger screen",
        )
    if study.refuse_touch and seen.get("touch") is True:
        raise ConditionsRefused(
            "touch",
            "this study cannot be done on a phone or touch device: please use a computer "
            "with a mouse",
        )


def session_changes(session: Session, conditions: Conditions) -> dict[str, object]:
    """The reported session fields that differ from what the session holds (empty:
    nothing to write, so an unchanged report costs no statement)."""
    return {k: v for k, v in conditions.session.items() if getattr(session, k) != v}
