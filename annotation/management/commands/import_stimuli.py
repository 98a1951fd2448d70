from __future__ import annotations

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from annotation.importing import ImportAborted, stimuli_import
from annotation.models import Stimulus, Study
from studyweb.storage import StoreUnavailable


class Command(BaseCommand):
    help = (
        "Import images (PNG/JPEG/WebP) from a folder or a zip into a study, with an optional "
        "metadata CSV (filename, generator, task, prompt, role, expected_low, expected_high, ...)."
    )

    def add_arguments(self, parser):
        parser.add_argument("study", help="the study's slug")
        parser.add_argument("source", type=Path, help="a folder or a .zip of images")
        parser.add_argument("--metadata", type=Path, help="metadata CSV, keyed by 'filename'")
        parser.add_argument(
            "--role",
            choices=[r.value for r in Stimulus.Role],
            default=Stimulus.Role.TEST,
            help="role of the imported images unless the CSV's 'role' column says otherwise",
        )
        parser.add_argument(
            "--strict", action="store_true", help="exit with status 1 if any file was rejected"
        )

    def handle(self, *args, study: str, source: Path, metadata, role, strict, **options):
        try:
            study_obj = Study.objects.get(slug=study)
        except Study.DoesNotExist:
            raise CommandError(f"no study with slug {study!r}") from None
        try:
            report = stimuli_import(
                study=study_obj, source=source, metadata_csv=metadata, role=role
            )
        except ImportAborted as exc:
            raise CommandError(f"nothing imported: {exc}") from None
        except StoreUnavailable as exc:
            # The files before it are imported whole; a second run skips them.
            raise CommandError(f"import stopped: {exc}") from None
        style = {"imported": self.style.SUCCESS, "skipped": self.style.WARNING}
        for outcome in report.outcomes:
            paint = style.get(outcome.status, self.style.ERROR)
            self.stdout.write(paint(f"{outcome.status:<9}") + f" {outcome.name}: {outcome.reason}")
        for warning in report.warnings:
            self.stdout.write(self.style.WARNING(f"warning   {warning}"))
        self.stdout.write(report.summary())
        if strict and report.rejected:
            raise CommandError(f"{report.rejected} file(s) rejected")
