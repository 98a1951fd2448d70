"""MOS datasets out and in: the export format registry, export jobs, downloads,
and the import of published datasets (AGIN CSV, AGIQA-3K)."""
