from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from annotation.models import Study
from scoring.exports.formats import FORMATS, ExportError, export_stream
from scoring.models import Analysis


class Command(BaseCommand):
    help = "Export a study's MOS dataset or raw ratings (streamed; memory stays flat)."

    def add_arguments(self, parser):
        parser.add_argument("study", help="the study's slug")
        parser.add_argument("--format", choices=list(FORMATS), required=True, dest="fmt")
        parser.add_argument("--out", type=Path, required=True, help="file to write ('-' = stdout)")
        parser.add_argument(
            "--analysis", type=int, help="analysis id (default: the latest finished one)"
        )

    def handle(self, *args, study, fmt, out: Path, analysis, **options):
        try:
            study_obj = Study.objects.get(slug=study)
        except Study.DoesNotExist:
            raise CommandError(f"no study with slug {study!r}") from None
        analysis_obj = None
        if analysis is not None:
            analysis_obj = Analysis.objects.filter(pk=analysis).first()
            if analysis_obj is None:
                raise CommandError(f"no analysis with id {analysis}")
        try:
            exporter, chunks = export_stream(study_obj, fmt, analysis=analysis_obj)
            if str(out) == "-":
                for chunk in chunks:
                    sys.stdout.buffer.write(chunk)
                sys.stdout.flush()
                return
            out = out.expanduser()
            if not out.parent.is_dir():
                raise CommandError(f"folder {out.parent} does not exist")
            # Write beside the target and rename: a failed export leaves no half file.
            fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".part")
            size = 0
            try:
                with os.fdopen(fd, "wb") as handle:
                    for chunk in chunks:
                        handle.write(chunk)
                        size += len(chunk)
                os.replace(tmp, out)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        except ExportError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(f"wrote {out} ({exporter.label}, {size:,} bytes)")
