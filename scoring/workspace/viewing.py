"""The viewing conditions of a study's raters, summed up for the study page (reads only).

What the rater's page reported (annotation.viewing): per session the browser window,
screen, device-pixel ratio, browser family and touch; per rating the size the image
was shown at. Pilot raters' sessions and ratings are left out, as from every figure
of the data.
"""

from __future__ import annotations

import statistics
from collections import Counter
from typing import Any

from django.db.models import Q

from annotation.models import BROWSER_CHOICES, Rater, Rating, Session, Study

#: A session counts as reporting when any of these is set.
_REPORTED = (
    Q(viewport_width__isnull=False)
    | Q(screen_width__isnull=False)
    | Q(device_pixel_ratio__isnull=False)
    | ~Q(browser="")
    | Q(touch__isnull=False)
)


def _median(values: list) -> int | None:
    return round(statistics.median(values)) if values else None


def _size(widths: list, heights: list) -> dict[str, int] | None:
    """Median width and height (each over the values reported), or None."""
    if not widths or not heights:
        return None
    return {"width": _median(widths), "height": _median(heights)}


def _column(rows: list[tuple], i: int) -> list:
    return [row[i] for row in rows if row[i] is not None]


def viewing_summary(study: Study) -> dict[str, Any]:
    """Sessions reporting, median window and screen, device-pixel ratios and browser
    families with their counts, the share on touch screens, and the median size the
    images were shown at (CSS and device pixels). ``reported`` 0: none reported yet."""
    sessions = Session.objects.filter(rater__study=study).exclude(rater__source=Rater.Source.PILOT)
    total = sessions.count()
    rows = list(
        sessions.filter(_REPORTED).values_list(
            "viewport_width",
            "viewport_height",
            "screen_width",
            "screen_height",
            "device_pixel_ratio",
            "browser",
            "touch",
        )
    )
    ratios = Counter(f"{row[4]:g}" for row in rows if row[4] is not None)
    labels = dict(BROWSER_CHOICES)
    browsers = Counter(labels.get(row[5], row[5]) for row in rows if row[5])
    touch = [row[6] for row in rows if row[6] is not None]
    shown = list(
        Rating.objects.filter(stimulus__study=study, is_pilot=False)
        .filter(Q(shown_css_width__isnull=False) | Q(shown_device_width__isnull=False))
        .values_list(
            "shown_css_width", "shown_css_height", "shown_device_width", "shown_device_height"
        )
    )
    return {
        "sessions": total,
        "reported": len(rows),
        "viewport": _size(_column(rows, 0), _column(rows, 1)),
        "screen": _size(_column(rows, 2), _column(rows, 3)),
        # Most common first; equal counts in the order of the values.
        "pixel_ratios": [
            {"value": value, "count": n}
            for value, n in sorted(ratios.items(), key=lambda item: (-item[1], float(item[0])))
        ],
        "touch": {
            "reported": len(touch),
            "touch": sum(touch),
            "percent": round(100 * sum(touch) / len(touch)) if touch else None,
        },
        "browsers": [
            {"name": name, "count": n}
            for name, n in sorted(browsers.items(), key=lambda item: (-item[1], item[0]))
        ],
        "ratings_shown": len(shown),
        "shown_css": _size(_column(shown, 0), _column(shown, 1)),
        "shown_device": _size(_column(shown, 2), _column(shown, 3)),
    }
