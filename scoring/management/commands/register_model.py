from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from scoring.model_scoring.services import ScoringError, model_version_register


class Command(BaseCommand):
    help = "Register a model version: a JOINT checkpoint, a TorchScript file or a baseline."

    def add_arguments(self, parser):
        parser.add_argument("name", help="a short unique name, e.g. joint-2024")
        parser.add_argument("--kind", choices=["joint", "baseline", "torchscript"], required=True)
        parser.add_argument("--checkpoint", default="", help="path readable by the GPU workers")
        parser.add_argument("--baseline", default="", help="for --kind baseline: e.g. sharpness")
        parser.add_argument("--w-t", type=float, help="fusion weight of T (default 0.145)")
        parser.add_argument("--w-r", type=float, help="fusion weight of R (default 0.769)")
        parser.add_argument("--artifact-model", default="", help="PAL4VST end2end.pt for JOINT")
        parser.add_argument("--lfm-order", choices=["before_resize", "after_resize"])
        parser.add_argument(
            "--lfm-backend",
            choices=["eager", "compile"],
            help="compile: torch.compile'd LFM (faster on a GPU, slower on a small CPU)",
        )

    def handle(
        self,
        *args,
        name,
        kind,
        checkpoint,
        baseline,
        w_t,
        w_r,
        artifact_model,
        lfm_order,
        lfm_backend=None,
        **options,
    ):
        opts = {}
        if artifact_model:
            opts["artifact_model"] = artifact_model
        if lfm_order:
            opts["lfm_order"] = lfm_order
        if lfm_backend:
            opts["lfm_backend"] = lfm_backend
        try:
            version = model_version_register(
                name=name,
                kind=kind,
                checkpoint_path=checkpoint,
                baseline=baseline,
                fusion_w_t=w_t,
                fusion_w_r=w_r,
                options=opts,
            )
        except ScoringError as exc:
            raise CommandError(str(exc)) from None
        digest = (
            f", sha256 {version.checkpoint_sha256[:16]}..." if version.checkpoint_sha256 else ""
        )
        self.stdout.write(f"registered {version.name} ({version.get_kind_display()}{digest})")
