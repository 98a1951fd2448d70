"""Reads for the scoring side: ratings as the long frame the numerics take."""

from __future__ import annotations

import numpy as np
import pandas as pd

from annotation import protocol
from annotation.models import Rater, Rating, Stimulus, Study


def ratings_frame(
    study: Study,
    *,
    include_excluded: bool = False,
    dimensions: list[str] | None = None,
) -> pd.DataFrame:
    """Test-item ratings of a study as a long frame: rater, stimulus, dimension,
    score, repetition (ids as integers). Gold and training items are not test data;
    raters excluded by quality control are left out unless asked for."""
    keys = dimensions or list(protocol.PRESETS[study.protocol])
    # Pilot ratings (researchers' previews) are never data.
    qs = Rating.objects.filter(
        stimulus__study=study, stimulus__role=Stimulus.Role.TEST, is_pilot=False
    )
    if not include_excluded:
        qs = qs.exclude(rater__status=Rater.Status.EXCLUDED)
    rows = list(qs.order_by("id").values_list("rater_id", "stimulus_id", "repetition", *keys))
    if not rows:
        return pd.DataFrame(
            {"rater": [], "stimulus": [], "dimension": [], "score": [], "repetition": []}
        )
    arr = np.array(rows, dtype=object)
    n = len(rows)
    frames = []
    for i, key in enumerate(keys):
        scores = arr[:, 3 + i].astype(float)
        keep = ~np.isnan(scores)
        frames.append(
            pd.DataFrame(
                {
                    "rater": arr[keep, 0].astype(np.int64),
                    "stimulus": arr[keep, 1].astype(np.int64),
                    "dimension": np.repeat(key, int(keep.sum())) if n else [],
                    "score": scores[keep],
                    "repetition": arr[keep, 2].astype(np.int64),
                }
            )
        )
    return pd.concat(frames, ignore_index=True)
