"""``manage.py predict_naturalness``: JOINT scores for image files, without a database.

Example::

    python manage.py predict_naturalness a.png b.jpg --checkpoint JOINT_2024.pth --json

Prints technical, rationality and naturalness per image as a table, or with
``--json`` a JSON list of objects with keys ``image``, ``technical``,
``rationality``, ``naturalness`` and ``artifact_map`` ("none" without
``--artifact-model``, "precomputed" with ``--technical-image``, else the
artifact model's "<file>@sha256:<digest>"). Errors (missing file, non-image,
wrong checkpoint, CUDA requested but unavailable, bad arguments) are one line on
stderr and exit code 2. The numerics live in :mod:`scoring.joint`; this file
only connects them to the command line.
"""

from __future__ import annotations

import json
import os
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser


def _fail(message: str) -> CommandError:
    return CommandError(" ".join(message.split()), returncode=2)


def _one_line(exc: BaseException) -> str:
    """A worker's re-raised exception carries a traceback: keep its final line."""
    text = str(exc).strip()
    if "Original Traceback" in text:
        text = text.splitlines()[-1].split(": ", 1)[-1]
    return text.splitlines()[0] if text else type(exc).__name__


class Command(BaseCommand):
    help = (
        "Predict JOINT technical, rationality and naturalness scores for images "
        "(a table, or JSON with --json). Needs no database."
    )
    # A file-in/stdout-out tool: no system checks, no migration checks, no database.
    requires_system_checks: list[str] = []
    requires_migrations_checks = False

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("images", nargs="+", metavar="IMAGE", help="image files")
        parser.add_argument(
            "--checkpoint", required=True, help="JOINT state_dict (e.g. JOINT_2024.pth)"
        )
        parser.add_argument(
            "--technical-image",
            help="precomputed partition image for the technical branch (one IMAGE only)",
        )
        parser.add_argument(
            "--artifact-model",
            help="PAL4VST TorchScript file (end2end.pt); without it no patch is protected",
        )
        parser.add_argument(
            "--device", choices=["cpu", "cuda"], help="default: cuda when available, else cpu"
        )
        parser.add_argument("--batch-size", type=int, default=8, help="images per batch")
        parser.add_argument("--json", action="store_true", help="print a JSON list")
        parser.add_argument("--seed", type=int, default=0, help="seed of the patch shuffle")
        parser.add_argument(
            "--lfm-backend",
            choices=["eager", "compile"],
            default="eager",
            help="LFM implementation: eager (default) or compile (torch.compile: faster on "
            "a GPU, slower on a small CPU; each build takes seconds)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        images: list[str] = options["images"]
        technical = options.get("technical_image")
        if technical is not None and len(images) != 1:
            raise _fail("--technical-image applies to exactly one IMAGE")
        if options["batch_size"] < 1:
            raise _fail("--batch-size must be at least 1")
        for path in [*images, *([technical] if technical else [])]:
            self._check_image(path)
        for flag in ("checkpoint", "artifact_model"):
            path = options.get(flag)
            if path is not None and not os.path.isfile(path):
                raise _fail(f"--{flag.replace('_', '-')}: file not found: {path}")

        # torch is imported only now: argument errors above stay fast
        import torch

        from scoring.joint.model import CheckpointError, load_checkpoint
        from scoring.joint.partition import ArtifactModelError
        from scoring.joint.predictor import ImageError, Predictor

        device = options.get("device")
        if device == "cuda" and not torch.cuda.is_available():
            raise _fail("--device cuda: CUDA is not available on this machine")
        try:
            model = load_checkpoint(options["checkpoint"])
        except CheckpointError as exc:
            raise _fail(str(exc)) from exc
        try:
            predictor = Predictor(
                model,
                device=device,
                batch_size=options["batch_size"],
                seed=options["seed"],
                artifact_model=options.get("artifact_model"),
                lfm_backend=options["lfm_backend"],
            )
            results = predictor.predict(images, technical_images=[technical] if technical else None)
        except (ImageError, ArtifactModelError) as exc:
            raise _fail(_one_line(exc)) from exc

        rows = [r.to_dict() for r in results]
        if options["json"]:
            self.stdout.write(json.dumps(rows, indent=2))
        else:
            self.stdout.write(self._table(rows))

    @staticmethod
    def _check_image(path: str) -> None:
        from PIL import Image, UnidentifiedImageError

        if not os.path.isfile(path):
            raise _fail(f"image not found: {path}")
        try:
            with Image.open(path) as im:
                im.verify()
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
            raise _fail(f"{path}: not a readable image ({_one_line(exc)})") from exc

    @staticmethod
    def _table(rows: list[dict[str, Any]]) -> str:
        header = ["image", "technical", "rationality", "naturalness", "artifact_map"]
        body = [
            [
                str(r["image"]),
                f"{r['technical']:.4f}",
                f"{r['rationality']:.4f}",
                f"{r['naturalness']:.4f}",
                str(r["artifact_map"]),
            ]
            for r in rows
        ]
        widths = [max(len(h), *(len(b[i]) for b in body)) for i, h in enumerate(header)]
        lines = []
        for k, row in enumerate([header, *body]):
            cells = [
                c.ljust(w) if i in (0, 4) else c.rjust(w)
                for i, (c, w) in enumerate(zip(row, widths, strict=True))
            ]
            lines.append("  ".join(cells).rstrip())
            if k == 0:
                lines.append("  ".join("-" * w for w in widths))
        return "\n".join(lines)
