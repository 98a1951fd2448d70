from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from annotation.models import Study
from scoring.analyses.services import AnalysisError, analysis_create, analysis_run
from scoring.management.commands.score_study import BROKER_DOWN_EXIT
from scoring.numerics import mos
from studyweb.jobs import BrokerUnavailable


class Command(BaseCommand):
    help = "Compute MOS with outlier screening for a study and store the results."

    def add_arguments(self, parser):
        parser.add_argument("study", help="the study's slug")
        parser.add_argument("--method", choices=list(mos.REGISTRY), default="bt500")
        parser.add_argument("--reject-on", choices=["overall", "per_dimension"], default="overall")
        parser.add_argument("--ci", choices=["normal", "t"], default="normal")
        parser.add_argument(
            "--include-excluded",
            action="store_true",
            help="keep raters excluded by quality control (gold failures)",
        )
        parser.add_argument(
            "--queue", action="store_true", help="run on a Celery worker instead of here"
        )

    def handle(self, *args, study, method, reject_on, ci, include_excluded, queue, **options):
        try:
            study_obj = Study.objects.get(slug=study)
        except Study.DoesNotExist:
            raise CommandError(f"no study with slug {study!r}") from None
        opts = {"ci": ci}
        if include_excluded:
            opts["include_excluded"] = True
        try:
            analysis = analysis_create(
                study=study_obj, method=method, reject_on=reject_on, options=opts, enqueue=queue
            )
        except BrokerUnavailable as exc:
            raise CommandError(str(exc), returncode=BROKER_DOWN_EXIT) from None
        except AnalysisError as exc:
            raise CommandError(str(exc)) from None
        if queue:
            analysis.refresh_from_db()
            self.stdout.write(f"analysis {analysis.pk} {analysis.status}")
            return
        analysis = analysis_run(analysis_id=analysis.pk)
        if analysis.status != analysis.Status.DONE:
            raise CommandError(f"analysis {analysis.pk} failed: {analysis.error}")
        rejected = analysis.rater_results.filter(rejected=True).select_related("rater")
        self.stdout.write(
            f"analysis {analysis.pk}: {analysis.n_stimuli} stimuli, {analysis.n_raters} raters, "
            f"{analysis.n_ratings} ratings, {rejected.count()} rater(s) rejected"
        )
        for result in rejected:
            self.stdout.write(f"  rejected {result.rater}: {result.reason}")
        rel = analysis.reliability
        if rel.get("measure"):
            self.stdout.write(f"reliability: {rel['measure']} = {rel['value']:.3f}")
