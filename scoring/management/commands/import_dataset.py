from __future__ import annotations

from pathlib import Path

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from annotation.importing import ImportAborted
from scoring.exports.published_datasets import FORMATS, dataset_import


class Command(BaseCommand):
    help = (
        "Import a published MOS dataset (AGIN CSV convention or AGIQA-3K data.csv) with its "
        "images as a closed study, to evaluate models against it."
    )

    def add_arguments(self, parser):
        parser.add_argument("slug", help="slug of the study to create")
        parser.add_argument("--format", choices=FORMATS, required=True, dest="fmt")
        parser.add_argument("--csv", type=Path, required=True, help="the dataset's CSV")
        parser.add_argument("--images", type=Path, required=True, help="folder of its images")
        parser.add_argument("--owner", required=True, help="username of the owning researcher")
        parser.add_argument("--title", default="")

    def handle(self, *args, slug, fmt, csv, images, owner, title, **options):
        user = get_user_model().objects.filter(username=owner).first()
        if user is None:
            raise CommandError(f"no user named {owner!r}")
        try:
            report = dataset_import(
                slug=slug, fmt=fmt, csv_path=csv, images=images, owner=user, title=title
            )
        except ImportAborted as exc:
            raise CommandError(f"nothing imported: {exc}") from None
        for problem in report.problems:
            self.stdout.write(self.style.WARNING(f"skipped  {problem}"))
        self.stdout.write(
            f"study {report.study.slug}: {report.imported} images with published MOS "
            f"(analysis {report.analysis.pk}), {len(report.problems)} skipped"
        )
