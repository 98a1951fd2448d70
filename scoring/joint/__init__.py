"""JOINT (the AGIN authors' naturalness model) in pure PyTorch; no Django imports here.

See ``docs/JOINT_SPEC.md`` in the shared docs for the algorithm. Modules:
``model`` (network, checkpoint loading), ``lfm`` (Ambrosio-Tortorelli
smoothing), ``partition`` (artifact-aware patch shuffle), ``preprocess``
(the two network inputs), ``predictor`` (batched inference), ``baselines``
(weight-free scorers with the predictor's interface).
"""

from __future__ import annotations

from .baselines import BASELINES, BaselineScorer
from .lfm import lfm_tensor
from .model import (
    DEFAULT_FUSION,
    CheckpointError,
    FusionWeights,
    JointModel,
    build_model,
    load_checkpoint,
    save_checkpoint,
)
from .partition import ArtifactModel, ArtifactModelError
from .predictor import ImageError, JointResult, Predictor

__all__ = [
    "BASELINES",
    "DEFAULT_FUSION",
    "ArtifactModel",
    "ArtifactModelError",
    "BaselineScorer",
    "CheckpointError",
    "FusionWeights",
    "ImageError",
    "JointModel",
    "JointResult",
    "Predictor",
    "build_model",
    "lfm_tensor",
    "load_checkpoint",
    "save_checkpoint",
]
