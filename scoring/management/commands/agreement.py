"""``manage.py agreement``: model-vs-human agreement (METHODS.md section 8).

From two CSV files, without a database::

    python manage.py agreement --predictions pred.csv --mos mos.csv \\
        [--pred-column naturalness] [--mos-column MOS_nat] [--n-boot 1000] [--seed 0] [--json]

Both files are joined on their first column (image name). ``--json`` prints
one JSON object with ``n, srcc, krcc, plcc, rmse, logistic_params, fit,
plcc_on, rmse_on, ci95, n_boot, seed, n_dropped, notes`` (from
:meth:`scoring.numerics.agreement.AgreementResult.as_dict`, None for undefined values),
plus ``columns`` and ``unmatched``; without it a readable table.

From the database (not implemented yet)::

    python manage.py agreement <study-slug> --model-version NAME [--analysis ID] [--json]

The numerics live in :mod:`scoring.numerics.agreement`; this file only connects them to
the command line.
"""

from __future__ import annotations

import json
import math
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from scoring.numerics.agreement import (
    METRICS,
    AgreementResult,
    ScoresFileError,
    agreement,
    read_predictions_and_mos,
)


def _fmt(value: float | None, digits: int = 4) -> str:
    if value is None or not math.isfinite(value):
        return "n/a"
    return f"{value:.{digits}f}"


class Command(BaseCommand):
    help = (
        "Agreement of model predictions with MOS: SRCC, KRCC, PLCC and RMSE after a "
        "4-parameter logistic fit, with bootstrap 95% intervals. CSV mode "
        "(--predictions, --mos) needs no database."
    )
    # The CSV mode is file-in/text-out: no system checks (they import and check
    # every app, and some touch the database configuration).
    requires_system_checks: list[str] = []
    requires_migrations_checks = False

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("slug", nargs="?", help="study slug (database mode)")
        parser.add_argument("--model-version", help="model version name (database mode)")
        parser.add_argument("--analysis", type=int, help="analysis id (database mode)")
        parser.add_argument("--predictions", help="predictions CSV, image name in column 1")
        parser.add_argument("--mos", help="MOS CSV, image name in column 1")
        parser.add_argument(
            "--pred-column",
            default="naturalness",
            help="prediction column (default: naturalness)",
        )
        parser.add_argument("--mos-column", default="MOS_nat", help="MOS column (default: MOS_nat)")
        parser.add_argument(
            "--n-boot",
            type=int,
            default=1000,
            help="bootstrap resamples of the stimuli (default 1000; 0: no intervals)",
        )
        parser.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
        parser.add_argument("--json", action="store_true", help="print one JSON object")

    def handle(self, *args: Any, **options: Any) -> None:
        csv_mode = options["predictions"] is not None or options["mos"] is not None
        db_mode = any(options[k] is not None for k in ("slug", "model_version", "analysis"))
        if csv_mode and db_mode:
            raise CommandError(
                "give either --predictions and --mos (CSV mode) or a study slug with "
                "--model-version (database mode), not both"
            )
        if db_mode:
            self._database_mode(options)
            return
        if not csv_mode:
            raise CommandError(
                "nothing to compare: give --predictions P.csv --mos M.csv "
                "(or a study slug with --model-version)"
            )
        if options["predictions"] is None or options["mos"] is None:
            raise CommandError("CSV mode needs both --predictions and --mos")
        if options["n_boot"] < 0:
            raise CommandError(f"--n-boot must be 0 or more, got {options['n_boot']}")

        try:
            joined = read_predictions_and_mos(
                options["predictions"],
                options["mos"],
                pred_column=options["pred_column"],
                mos_column=options["mos_column"],
            )
        except ScoresFileError as exc:
            raise CommandError(str(exc)) from exc
        result = agreement(joined.pred, joined.mos, n_boot=options["n_boot"], seed=options["seed"])
        payload = {
            **result.as_dict(),
            "columns": {"prediction": joined.pred_column, "mos": joined.mos_column},
            "unmatched": joined.unmatched,
        }
        if options["json"]:
            # allow_nan=False: as_dict() has None for undefined values, so this
            # never fails, and the output is strict JSON.
            self.stdout.write(json.dumps(payload, allow_nan=False))
        else:
            self.stdout.write(self._table(result, payload, options))

    def _database_mode(self, options: dict[str, Any]) -> None:
        """Predictions of a model version against a study's analysis (the latest by default)."""
        from annotation.models import Study
        from scoring.model_scoring.agreement_report import (
            PAIRS,
            AgreementUnavailable,
            agreement_frame,
            reference_analysis,
        )
        from scoring.models import ModelVersion

        if not options["slug"] or not options["model_version"]:
            raise CommandError("database mode needs a study slug and --model-version NAME")
        study = Study.objects.filter(slug=options["slug"]).first()
        if study is None:
            raise CommandError(f"no study with slug {options['slug']!r}")
        version = ModelVersion.objects.filter(name=options["model_version"]).first()
        if version is None:
            raise CommandError(f"no model version named {options['model_version']!r}")
        try:
            analysis = reference_analysis(study, options["analysis"])
            frame = agreement_frame(study, version, analysis)
        except AgreementUnavailable as exc:
            raise CommandError(str(exc)) from None
        pairs = []
        for pred, mos in PAIRS.items():
            pc = pred if pred in frame and pred != mos else f"{pred}_pred"
            mc = mos if mos in frame and pred != mos else f"{mos}_mos"
            if pc not in frame or mc not in frame or frame[pc].isna().all():
                continue
            result = agreement(
                frame[pc].to_numpy(float),
                frame[mc].to_numpy(float),
                n_boot=options["n_boot"],
                seed=options["seed"],
            )
            pairs.append({"prediction": pred, "mos": mos, **result.as_dict()})
        if not pairs:
            raise CommandError("no prediction/MOS pair to compare")
        head = {k: v for k, v in pairs[0].items() if k not in ("prediction", "mos")}
        payload = {
            "study": study.slug,
            "model_version": version.name,
            "analysis": analysis.pk,
            **head,
            "pairs": pairs,
        }
        if options["json"]:
            self.stdout.write(json.dumps(payload, allow_nan=False))
            return
        self.stdout.write(f"{version.name} on {study.slug} (MOS from analysis {analysis.pk})")
        for pair in pairs:
            ci = pair["ci95"]
            self.stdout.write(
                f"  {pair['prediction']:>12} vs {pair['mos']:<12} n={pair['n']:<5} "
                f"SRCC {_fmt(pair['srcc'])} {ci.get('srcc')}  PLCC {_fmt(pair['plcc'])} "
                f"{ci.get('plcc')}  RMSE {_fmt(pair['rmse'])}  fit {pair['fit']}"
            )

    @staticmethod
    def _table(result: AgreementResult, payload: dict[str, Any], options: dict[str, Any]) -> str:
        lines = [
            f"{options['pred_column']} ({options['predictions']}) vs "
            f"{options['mos_column']} ({options['mos']}): n = {result.n}",
            "",
            f"{'metric':<7} {'value':>8}   95% interval",
        ]
        labels = {
            "srcc": "SRCC",
            "krcc": "KRCC",
            "plcc": "PLCC" if result.plcc_on == "logistic" else "PLCC*",
            "rmse": "RMSE" if result.rmse_on == "logistic" else "RMSE*",
        }
        for m in METRICS:
            interval = result.ci95.get(m)
            ci = f"[{_fmt(interval[0])}, {_fmt(interval[1])}]" if interval else "n/a"
            lines.append(f"{labels[m]:<7} {_fmt(getattr(result, m)):>8}   {ci}")
        lines.append("")
        if result.logistic_params is not None:
            b = ", ".join(f"b{i} = {v:.4g}" for i, v in enumerate(result.logistic_params, start=1))
            lines.append(f"logistic fit: ok ({b})")
        else:
            lines.append(f"logistic fit: {result.fit}")
            lines.append("* PLCC on raw predictions, RMSE after a linear fit")
        if result.n_boot and any(result.ci95.values()):
            lines.append(
                f"intervals: percentile bootstrap, {result.n_boot} resamples, seed {result.seed}"
            )
        unmatched = payload["unmatched"]
        lines.append(
            f"unmatched: {unmatched['predictions_only']} image(s) only in the predictions, "
            f"{unmatched['mos_only']} only in the MOS file"
        )
        lines.extend(f"note: {note}" for note in result.notes)
        return "\n".join(lines)
