"""The scoring app's models, each defined in the room that uses it (Django finds
them here)."""

from scoring.analyses.models import METHOD_CHOICES, Analysis, RaterResult, StimulusResult
from scoring.exports.models import ExportJob
from scoring.model_scoring.models import ModelVersion, Prediction, ScoringJob

__all__ = [
    "METHOD_CHOICES",
    "Analysis",
    "ExportJob",
    "ModelVersion",
    "Prediction",
    "RaterResult",
    "ScoringJob",
    "StimulusResult",
]
