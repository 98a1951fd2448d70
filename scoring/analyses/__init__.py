"""MOS analyses of a study: where an analysis is queued, computed and stored."""
