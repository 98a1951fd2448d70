from __future__ import annotations

import sys
import time

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from annotation.models import Study
from scoring.model_scoring.services import ScoringError, scoring_job_start
from scoring.models import ModelVersion, ScoringJob
from studyweb.jobs import BrokerUnavailable

# EX_TEMPFAIL: the job is saved and will be sent once the broker is back.
BROKER_DOWN_EXIT = 75


class Command(BaseCommand):
    help = "Score a study's images with a model version on the Celery `gpu` queue."

    def add_arguments(self, parser):
        parser.add_argument("study", help="the study's slug")
        parser.add_argument("--model-version", required=True, dest="version")
        parser.add_argument("--wait", action="store_true", help="show progress until done")
        parser.add_argument("--force", action="store_true", help="recompute existing predictions")
        parser.add_argument("--batch-size", type=int, default=16)
        parser.add_argument("--timeout", type=float, default=0, help="seconds to wait (0: none)")

    def handle(self, *args, study, version, wait, force, batch_size, timeout, **options):
        try:
            study_obj = Study.objects.get(slug=study)
        except Study.DoesNotExist:
            raise CommandError(f"no study with slug {study!r}") from None
        try:
            model_version = ModelVersion.objects.get(name=version)
        except ModelVersion.DoesNotExist:
            raise CommandError(f"no model version named {version!r}") from None
        try:
            job, created = scoring_job_start(
                model_version=model_version, study=study_obj, force=force, batch_size=batch_size
            )
        except BrokerUnavailable as exc:
            raise CommandError(str(exc), returncode=BROKER_DOWN_EXIT) from None
        except ScoringError as exc:
            raise CommandError(str(exc)) from None
        verb = "started" if created else f"already {job.status}"
        self.stdout.write(f"job {job.pk} {verb}: {job.total} images, {job.model_version}")
        if not wait:
            return
        started = time.monotonic()
        with tqdm(
            total=job.total, initial=job.done, unit="img", file=sys.stderr, desc=f"job {job.pk}"
        ) as bar:
            while True:
                job.refresh_from_db()
                bar.update(job.done - bar.n)
                if job.status not in ScoringJob.ACTIVE:
                    break
                if timeout and time.monotonic() - started > timeout:
                    raise CommandError(f"job {job.pk} still {job.status} after {timeout:g} s")
                time.sleep(0.5)
        if job.status != ScoringJob.Status.DONE:
            raise CommandError(f"job {job.pk} {job.status}: {job.error}")
        self.stdout.write(f"job {job.pk} done: {job.done} predictions")
