"""Pure numerics: MOS and screening, reliability, agreement statistics, ratings files.

NumPy, pandas and SciPy only: no Django, no Celery (an import-linter contract
checks it), so the same code runs in a web request, a worker, a command and a
notebook.
"""
