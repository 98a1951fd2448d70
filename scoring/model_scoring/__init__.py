"""Model scoring: model versions, scoring jobs, the GPU workers' batch step (where
JOINT runs), the per-worker model cache, and model-vs-human agreement per study."""
