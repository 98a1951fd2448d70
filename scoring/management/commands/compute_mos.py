"""``manage.py compute_mos``: MOS from a ratings CSV, without a database.

Example::

    python manage.py compute_mos --ratings ratings.csv --method p910 --out mos.csv \
        --raters-out raters.csv --ci t

The CSV has columns ``rater,stimulus,score`` and optionally ``dimension`` and
``repetition``; the output has ``stimulus,mos,std,ci_low,ci_high,n`` (with
``dimension`` first when the input has it). Parsing lives in
:mod:`scoring.numerics.ratings_csv` and the numerics in :mod:`scoring.numerics.mos`; this file only
connects them to the command line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
from django.core.management.base import BaseCommand, CommandError, CommandParser

from scoring.numerics.mos import METHODS, compute, compute_dimensions
from scoring.numerics.ratings_csv import RatingsFileError, read_ratings_csv

OUTPUT_COLUMNS = ["stimulus", "mos", "std", "ci_low", "ci_high", "n"]


class Command(BaseCommand):
    help = (
        "Compute MOS (mean, zscore, bt500, p913, p910, correlation) from a ratings CSV "
        "with columns rater,stimulus,score[,dimension][,repetition]. Needs no database."
    )
    # A pure file-in/file-out tool: no system checks (they would import and check
    # every app, and the checks of some apps touch the database configuration).
    requires_system_checks: list[str] = []
    requires_migrations_checks = False

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--ratings", required=True, help="input CSV (header on line 1)")
        parser.add_argument("--method", required=True, choices=list(METHODS))
        parser.add_argument("--out", required=True, help="per-stimulus output CSV")
        parser.add_argument("--raters-out", help="per-rater output CSV (verdicts, P, Q, bias...)")
        parser.add_argument(
            "--ci",
            choices=["normal", "t"],
            default="normal",
            help="95%% interval: normal 1.95996*se (default) or Student t",
        )
        parser.add_argument(
            "--reject-on",
            choices=["overall", "per_dimension"],
            default="overall",
            help="with a dimension column: decide rejection on 'overall' (default) "
            "or separately per dimension",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            frame = read_ratings_csv(options["ratings"])
        except RatingsFileError as exc:
            raise CommandError(str(exc)) from exc
        method = options["method"]
        try:
            if "dimension" in frame.columns:
                res = compute_dimensions(
                    frame, method, reject_on=options["reject_on"], ci=options["ci"]
                )
                stimuli = res.stimuli[["dimension", *OUTPUT_COLUMNS]]
                raters = res.raters
                n_rejected = int(res.verdicts["rejected"].sum())
            else:
                res1 = compute(frame, method, ci=options["ci"])
                stimuli = res1.stimuli[OUTPUT_COLUMNS]
                raters = res1.raters
                n_rejected = int(raters["rejected"].sum())
        except ValueError as exc:
            raise CommandError(f"{options['ratings']}: {exc}") from exc

        self._write(stimuli, options["out"])
        if options.get("raters_out"):
            self._write(raters, options["raters_out"])
        self.stdout.write(
            f"{method}: {len(stimuli)} rows written to {options['out']} "
            f"({n_rejected} rater(s) rejected or excluded)"
        )

    @staticmethod
    def _write(frame: pd.DataFrame, path: str) -> None:
        try:
            frame.to_csv(Path(path), index=False)
        except OSError as exc:
            raise CommandError(f"cannot write {path}: {exc}") from exc
