"""``manage.py train_joint``: fine-tune JOINT on MOS data (JOINT_SPEC.md, "Training facts").

Examples::

    python manage.py train_joint --mos-csv agin.csv --images agin/ \\
        --backbone-weights ~/torchvision-weights --epochs 20 --out joint_ft.pth
    python manage.py train_joint --study my-study --init JOINT_2024.pth --out joint_ft.pth

Data: ``--mos-csv`` (AGIN convention: ``filename, MOS_nat, MOS_tech, MOS_rat``,
read by :func:`scoring.exports.published_datasets.parse_agin_csv`) with a folder of images, or
``--study``: the latest finished analysis of that study (overall, technical
and rationality MOS per stimulus, joined to the stimulus' image file; with
``MEDIA_STORAGE=s3`` the images are downloaded first, sha256 verified, into
``--cache-dir``/stimuli when given, else a temporary folder removed at the end). Both
become the same list of (image path, MOS_nat, MOS_tech, MOS_rat); images
without one of the three MOS are skipped and counted.

Writes ``--out`` (the best epoch's state_dict in the authors' key format),
``<out>.fusion.json`` (w_t, w_r fitted on the training split) and
``<out>.training.json`` (history, split, seed, options). The loop itself is
:func:`scoring.joint.training.fine_tune`; this file only gathers the data and
turns every failure into one line on stderr with exit code 2.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

DIMENSIONS = ("overall", "technical", "rationality")


def _fail(message: str) -> CommandError:
    return CommandError(" ".join(message.split()), returncode=2)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class Command(BaseCommand):
    help = (
        "Fine-tune JOINT (T on MOS_tech, R on MOS_rat, fusion for MOS_nat) on an AGIN-style "
        "CSV and image folder (--mos-csv/--images) or a study's latest finished analysis "
        "(--study). Saves the best epoch by held-out SRCC of N."
    )
    # The --mos-csv path needs no database; --study queries it itself.
    requires_system_checks: list[str] = []
    requires_migrations_checks = False

    def add_arguments(self, parser: CommandParser) -> None:
        source = parser.add_mutually_exclusive_group(required=True)
        source.add_argument("--study", metavar="SLUG", help="train on this study's latest MOS")
        source.add_argument(
            "--mos-csv", metavar="FILE", help="AGIN-style CSV: filename, MOS_nat, MOS_tech, MOS_rat"
        )
        parser.add_argument("--images", metavar="DIR", help="folder of the CSV's images")
        parser.add_argument("--out", required=True, metavar="FILE", help="checkpoint to write")
        start = parser.add_mutually_exclusive_group()
        start.add_argument("--init", metavar="CHECKPOINT", help="JOINT checkpoint to start from")
        start.add_argument(
            "--backbone-weights",
            metavar="DIR",
            help="local folder with torchvision ImageNet files swin_t-*.pth and/or "
            "resnet50-*.pth (never downloaded)",
        )
        parser.add_argument("--epochs", type=int, default=10)
        parser.add_argument("--batch-size", type=int, default=8)
        parser.add_argument("--lr", type=float, default=1e-5, help="AdamW peak learning rate")
        parser.add_argument("--weight-decay", type=float, default=0.01, help="AdamW weight decay")
        parser.add_argument("--seed", type=int, default=0, help="split, init, shuffle, crops")
        parser.add_argument(
            "--device", choices=["cpu", "cuda"], help="default: cuda when available, else cpu"
        )
        parser.add_argument(
            "--max-images", type=int, metavar="N", help="use only the first N usable images"
        )
        parser.add_argument(
            "--artifact-model",
            metavar="FILE",
            help="PAL4VST TorchScript (end2end.pt) for the partition; without it no patch "
            "is protected",
        )
        parser.add_argument(
            "--lfm-order",
            choices=["before_resize", "after_resize"],
            default="before_resize",
            help="LFM on the full image (as inference) or after Resize (cheaper)",
        )
        parser.add_argument(
            "--cache-dir", metavar="DIR", help="keep the prepared inputs here for later runs"
        )
        parser.add_argument(
            "--resize",
            type=int,
            default=384,
            help="Resize (shorter side) before the crop; the spec's 384 (smaller: tests only)",
        )
        parser.add_argument(
            "--crop",
            type=int,
            default=224,
            help="network input size; the spec's 224 (the predictor always uses 224)",
        )
        parser.add_argument("--no-progress", action="store_true", help="no tqdm bars")

    # -- data -----------------------------------------------------------------

    def _from_csv(self, csv_path: str, images: str | None) -> tuple[list, list[str], dict]:
        from annotation.importing import MetadataError
        from scoring.exports.published_datasets import parse_agin_csv

        if images is None:
            raise _fail("--mos-csv needs --images DIR (the folder holding its files)")
        if not os.path.isfile(csv_path):
            raise _fail(f"--mos-csv: file not found: {csv_path}")
        if not os.path.isdir(images):
            raise _fail(f"--images: folder not found: {images}")
        try:
            dims, rows = parse_agin_csv(Path(csv_path).read_bytes())
        except MetadataError as exc:
            raise _fail(f"{csv_path}: {exc}") from exc
        lacking = [
            col
            for col, d in (("MOS_tech", "technical"), ("MOS_rat", "rationality"))
            if d not in dims
        ]
        if lacking:
            raise _fail(
                f"{csv_path}: no {' or '.join(lacking)} column: JOINT trains T and R on them"
            )
        records = [
            (
                os.path.join(images, row.filename),
                row.filename,
                {d: v["mos"] for d, v in row.values.items()},
            )
            for row in rows
        ]
        return (
            records,
            [f"{csv_path} ({len(rows)} rows)"],
            {"kind": "mos-csv", "csv": csv_path, "images": images},
        )

    def _from_study(self, slug: str, download_dir: Path) -> tuple[list, list[str], dict]:
        from annotation.models import Study
        from scoring.model_scoring.agreement_report import AgreementUnavailable, reference_analysis
        from scoring.models import StimulusResult

        study = Study.objects.filter(slug=slug).first()
        if study is None:
            raise _fail(f"--study: no study with slug {slug!r}")
        try:
            analysis = reference_analysis(study)
        except AgreementUnavailable as exc:
            raise _fail(f"study {slug}: {exc}") from exc
        per_stimulus: dict[int, tuple[Any, dict[str, float]]] = {}
        results = (
            StimulusResult.objects.filter(analysis=analysis, dimension__in=DIMENSIONS)
            .select_related("stimulus")
            .order_by("stimulus_id", "dimension")
        )
        for res in results:
            stim, values = per_stimulus.setdefault(res.stimulus_id, (res.stimulus, {}))
            if res.mos is not None:
                values[res.dimension] = res.mos
        stimuli = [stim for stim, _ in per_stimulus.values()]
        paths = self._image_files(stimuli, download_dir)
        records = [
            (paths[stim.pk], stim.original_name, values) for stim, values in per_stimulus.values()
        ]
        source = {
            "kind": "study",
            "study": slug,
            "analysis": analysis.pk,
            "method": analysis.method,
            "finished_at": analysis.finished_at.isoformat() if analysis.finished_at else None,
        }
        note = f"study {slug}, analysis {analysis.pk} ({analysis.method})"
        return records, [note], source

    @staticmethod
    def _image_files(stimuli: list, download_dir: Path) -> dict[int, str]:
        """Local paths of the stimuli's images: the files themselves on a local or
        shared MEDIA_ROOT; from an object store (MEDIA_STORAGE=s3), copies downloaded
        into ``download_dir`` under their sha256 (verified; kept there for later runs
        when it is ``--cache-dir``), several at a time."""
        from concurrent.futures import ThreadPoolExecutor

        from studyweb import storage

        if not stimuli or storage.is_local(stimuli[0].image.storage):
            return {stim.pk: stim.image.path for stim in stimuli}

        def fetch(stim) -> str:
            copy = storage.cached_copy(
                stim.image.name, stim.sha256, cache_dir=download_dir, storage=stim.image.storage
            )
            return str(copy)

        try:
            with ThreadPoolExecutor(8, thread_name_prefix="stimulus-fetch") as pool:
                return dict(zip([s.pk for s in stimuli], pool.map(fetch, stimuli), strict=True))
        except storage.StoreUnavailable as exc:
            raise _fail(f"cannot read the study's images: {exc}") from exc

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

    # -- main -------------------------------------------------------------------

    def handle(self, *args: Any, **options: Any) -> None:
        for flag, low in (("epochs", 1), ("batch_size", 2), ("max_images", 4)):
            value = options.get(flag)
            if value is not None and value < low:
                raise _fail(f"--{flag.replace('_', '-')} must be at least {low}")
        if options["lr"] <= 0:
            raise _fail("--lr must be positive")
        if options.get("images") and not options.get("mos_csv"):
            raise _fail("--images goes with --mos-csv")
        out = Path(options["out"])
        if out.is_dir():
            raise _fail(f"--out is a folder, not a file: {out}")
        if not out.parent.is_dir():
            raise _fail(f"--out: folder not found: {out.parent}")
        for flag in ("init", "artifact_model"):
            path = options.get(flag)
            if path is not None and not os.path.isfile(path):
                raise _fail(f"--{flag.replace('_', '-')}: file not found: {path}")
        weights_dir = options.get("backbone_weights")
        if weights_dir is not None and not os.path.isdir(weights_dir):
            raise _fail(f"--backbone-weights: folder not found: {weights_dir}")

        with contextlib.ExitStack() as stack:
            if options.get("cache_dir"):
                download_dir = Path(options["cache_dir"]) / "stimuli"
            else:  # images from an object store, for this run only
                download_dir = Path(stack.enter_context(tempfile.TemporaryDirectory()))
            self._train(options, out, weights_dir, download_dir)

    def _train(
        self, options: dict[str, Any], out: Path, weights_dir: str | None, download_dir: Path
    ) -> None:
        if options.get("mos_csv"):
            records, notes, source = self._from_csv(options["mos_csv"], options.get("images"))
        else:
            records, notes, source = self._from_study(options["study"], download_dir)

        samples: list[tuple[str, float, float, float]] = []
        names: list[str] = []
        skipped = {"no MOS_nat": 0, "no MOS_tech": 0, "no MOS_rat": 0}
        for path, name, values in records:
            missing = [k for k, d in zip(skipped, DIMENSIONS, strict=True) if values.get(d) is None]
            if missing:
                skipped[missing[0]] += 1  # counted once, under its first missing MOS
                continue
            samples.append((path, values["overall"], values["technical"], values["rationality"]))
            names.append(name)
        n_skipped = sum(skipped.values())
        if n_skipped:
            detail = ", ".join(f"{v} {k}" for k, v in skipped.items() if v)
            self.stdout.write(f"skipped {n_skipped} images without all three MOS ({detail})")
        if options.get("max_images") is not None:
            samples, names = samples[: options["max_images"]], names[: options["max_images"]]
        if len(samples) < 4:
            raise _fail(
                f"{len(samples)} usable images (with MOS_nat, MOS_tech and MOS_rat): "
                "at least 4 are needed for a 70/30 split"
            )
        for path, *_ in samples:
            self._check_image(path)

        # torch is imported only now: argument and data errors above stay fast
        import torch

        from scoring.joint.model import CheckpointError, build_model, load_checkpoint
        from scoring.joint.partition import ArtifactModel, ArtifactModelError
        from scoring.joint.training import (
            TrainConfig,
            TrainingError,
            fine_tune,
            load_backbone_weights,
        )

        device = options.get("device") or ("cuda" if torch.cuda.is_available() else "cpu")
        if device == "cuda" and not torch.cuda.is_available():
            raise _fail("--device cuda: CUDA is not available on this machine")
        config = TrainConfig(
            epochs=options["epochs"],
            batch_size=options["batch_size"],
            lr=options["lr"],
            weight_decay=options["weight_decay"],
            seed=options["seed"],
            device=device,
            resize=options["resize"],
            crop=options["crop"],
            lfm_order=options["lfm_order"],
        )
        try:
            config.validate()
        except TrainingError as exc:
            raise _fail(str(exc)) from exc

        start: dict[str, Any]
        if options.get("init"):
            try:
                model = load_checkpoint(options["init"])
            except CheckpointError as exc:
                raise _fail(f"--init: {exc}") from exc
            start = {"kind": "init", "checkpoint": options["init"]}
        else:
            model = build_model(seed=options["seed"])
            if weights_dir is not None:
                try:
                    loaded = load_backbone_weights(model, weights_dir)
                except TrainingError as exc:
                    raise _fail(f"--backbone-weights: {exc}") from exc
                start = {"kind": "imagenet", "files": loaded}
                random_branches = {"technical", "rationality"} - set(loaded)
                if random_branches:
                    self.stderr.write(
                        f"warning: no weights for the {' and '.join(sorted(random_branches))} "
                        "backbone: it starts from random weights"
                    )
            else:
                start = {"kind": "random", "seed": options["seed"]}
                self.stderr.write(
                    "warning: neither --init nor --backbone-weights: starting from random "
                    "weights; results will be poor"
                )

        artifact = None
        if options.get("artifact_model"):
            try:
                artifact = ArtifactModel(options["artifact_model"], device=device)
            except ArtifactModelError as exc:
                raise _fail(str(exc)) from exc

        for note in notes:
            self.stdout.write(f"data: {note}")
        self.stdout.write(
            f"training on {len(samples)} images, device {device}, start: {start['kind']}"
        )
        extra = {
            "source": source,
            "start": start,
            "skipped": skipped,
            "max_images": options.get("max_images"),
            "cache_dir": options.get("cache_dir"),
        }
        try:
            result = fine_tune(
                model,
                samples,
                config,
                out,
                names=names,
                artifact_model=artifact,
                cache_dir=options.get("cache_dir"),
                extra=extra,
                log=self.stdout.write,
                progress=not options["no_progress"],
                progress_file=sys.stderr,
            )
        except (TrainingError, ArtifactModelError) as exc:
            raise _fail(_one_line(exc)) from exc

        f = result.fusion
        self.stdout.write(
            f"best epoch {result.best_epoch}: saved {result.checkpoint}; fusion "
            f"w_t={f.w_t:.6g} w_r={f.w_r:.6g} (intercept {f.intercept:.6g}) in "
            f"{result.fusion_file}; history in {result.log_file}"
        )
