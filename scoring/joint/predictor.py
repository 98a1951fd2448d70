"""Batched JOINT inference: images (paths or PIL) in, technical / rationality / naturalness out.

Preprocessing runs in torch ``DataLoader`` workers so an accelerator is not
starved, and the partition's random shuffle is seeded per image from its
pixels (:func:`~scoring.joint.preprocess.content_key`), so results do not
depend on batch size, order or worker count. Workers load small chunks (a
divisor of the batch size) that the main process regroups into model batches:
a DataLoader hands whole batches to workers, so model-sized batches would keep
most workers idle.

Two placements of the heavy preprocessing:

- ``preprocess_on_device=False`` (the default on CPU with the eager LFM):
  workers do everything (LFM in torch on the worker's CPU, PIL resizes), the
  main process only runs the network.
- ``preprocess_on_device=True`` (the default on CUDA, and on CPU with
  ``lfm_backend="compile"``): workers decode images, cut the partition and
  resize it (PIL); the main process runs LFM batched on the device and
  Pillow's bilinear resize re-implemented bit-exactly in torch
  (:func:`~scoring.joint.preprocess.pil_resize_bilinear`). LFM is far too slow
  on CPU workers to feed a GPU (measured: 3% of the bare forward on an H200).
  On CPU the compiled LFM belongs in the main process too: workers are new
  processes on every ``predict`` call and would each build or reload its
  kernels, while the main process keeps them. On 2 cores both placements
  measured near 70% of the bare forward at batch 32 (the total CPU work is the
  bound there; docs/benchmarks.md, "Predictor").

One model batch stays in flight: its forward and the copy of its outputs to
pinned host memory are queued, the next batch is cut and queued, and only then
are the first batch's outputs read back. On a GPU the host's part of the
preprocessing (regrouping chunks, artifact-aware cuts, queuing uploads and
LFM) then runs while the forward does; on the CPU the forward has run by the
time it returns, so nothing changes there.

When the forward itself runs on the CPU with a thread per core, workers wait
while it runs and prepare the next batch between forwards (sharing the cores
slowed the forward more than taking turns costs; see ``_worker_gate``).

An artifact model (PAL4VST TorchScript) runs in the main process on the
device; workers then hand over the 224 x 224 image and the artifact model's
input, and the partition is cut after the masks are known.
:attr:`Predictor.last_timing` tells where the last ``predict`` spent its time.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from .lfm import lfm_tensor
from .model import JointModel
from .partition import (
    NO_ARTIFACT_MAP,
    SIZE,
    ArtifactModel,
    cv_resize_bilinear,
    partition_patches,
)
from .preprocess import (
    LfmOrder,
    content_key,
    final_crop_uint8,
    final_transform,
    load_rgb,
    rationality_input,
    resize_crop_tensor,
    to_normalized_tensor,
)

__all__ = [
    "PRECOMPUTED",
    "ImageError",
    "JointResult",
    "PredictTiming",
    "Predictor",
    "image_name",
    "open_image",
]

PRECOMPUTED = "precomputed"
ImageInput = str | os.PathLike[str] | Image.Image


@dataclass(frozen=True)
class JointResult:
    """One image's scores. ``artifact_map``: "none", "precomputed" or the artifact model's
    "<file>@sha256:<digest>"."""

    image: str
    technical: float | None
    rationality: float | None
    naturalness: float | None
    artifact_map: str = NO_ARTIFACT_MAP

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class PredictTiming:
    """Where the last ``predict`` spent its time (seconds, wall clock, main process).

    ``wait_s``: waiting for the DataLoader (with workers: time the network was
    starved; without: all of the per-image preprocessing); ``prepare_s``:
    main-process preprocessing (on-device LFM/resize, artifact masks);
    ``forward_s``: the network. On CUDA these are host times: ``prepare_s`` is
    the time to queue the device work, and the GPU's share of it lands in
    ``forward_s``, which counts the wait for each batch's outputs.
    """

    images: int = 0
    workers: int = 0
    on_device: bool = False
    wait_s: float = 0.0
    prepare_s: float = 0.0
    forward_s: float = 0.0
    total_s: float = 0.0

    @property
    def images_per_s(self) -> float:
        return self.images / self.total_s if self.total_s > 0 else float("nan")


class ImageError(ValueError):
    """An input that cannot be read as an image."""


def image_name(image: ImageInput, index: int) -> str:
    """A result's ``image`` field: the path as given, or a PIL image's filename."""
    if isinstance(image, Image.Image):
        return str(getattr(image, "filename", "") or f"<image {index}>")
    return os.fspath(image)


def open_image(image: ImageInput, index: int = 0) -> Image.Image:
    """:func:`load_rgb`, raising :class:`ImageError` (with the name) on unreadable input."""
    try:
        return load_rgb(image)
    except (OSError, ValueError) as exc:  # PIL.UnidentifiedImageError is an OSError
        raise ImageError(f"{image_name(image, index)}: cannot read image ({exc})") from exc


def _chw(arr: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(np.asarray(arr).transpose(2, 0, 1)))


class _JointDataset(Dataset):
    """Per-image CPU work, run in DataLoader workers (see the module docstring)."""

    def __init__(
        self,
        images: Sequence[ImageInput],
        technical: Sequence[ImageInput | None],
        *,
        on_device: bool,
        artifact: ArtifactModel | None,
        lfm_order: LfmOrder,
        lfm_backend: str,
        seed: int,
        gate: Any = None,
    ) -> None:
        self.images = images
        self.technical = technical
        self.gate = gate  # a multiprocessing Event: items start only while it is set
        self.on_device = on_device
        self.artifact = artifact
        self.lfm_order = lfm_order
        self.lfm_backend = lfm_backend
        self.seed = seed

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return self.item(i, self.images[i], self.technical[i])

    def item(self, i: int, image: ImageInput, tech: ImageInput | None) -> dict[str, Any]:
        if self.gate is not None:
            self.gate.wait()
        rgb = open_image(image, i)
        item: dict[str, Any] = {"index": i}
        if self.on_device:
            item["rgb"] = _chw(np.asarray(rgb))  # full resolution, uint8
        else:
            item["x_r"] = rationality_input(
                rgb, lfm_order=self.lfm_order, lfm_backend=self.lfm_backend
            )
        if tech is not None:
            part = open_image(tech, i)
            if self.on_device:
                item["t_uint8"] = _chw(final_crop_uint8(part))
            else:
                item["x_t"] = final_transform(part)
            return item
        rng_key = [self.seed, content_key(rgb)]
        resized = cv_resize_bilinear(np.asarray(rgb), (SIZE, SIZE))
        if self.artifact is not None:  # masks come from the main process
            item["resized"] = resized
            item["rng_key"] = rng_key
            item["pal"] = self.artifact.prepare(rgb)
            return item
        part = partition_patches(resized, None, np.random.default_rng(rng_key)).image
        if self.on_device:
            item["t_uint8"] = _chw(final_crop_uint8(Image.fromarray(part)))
        else:
            item["x_t"] = final_transform(Image.fromarray(part))
        return item


class _PoolDataset(_JointDataset):
    """The dataset of a pool that outlives ``predict`` calls: its workers are forked
    once with the preprocessing settings, and each call's images travel with the
    indices, ``(position, image, technical image)``, which the main process hands
    out (a DataLoader's sampler runs there)."""

    def __init__(self, **settings: Any) -> None:
        super().__init__([], [], **settings)

    def __getitem__(self, key: Any) -> dict[str, Any]:
        i, image, tech = key
        return self.item(i, image, tech)


class _CallChunks:
    """The batch sampler of a pool: the chunks of the current ``predict`` call."""

    def __init__(self) -> None:
        self.chunks: list[list[tuple[int, ImageInput, ImageInput | None]]] = []

    def __iter__(self):
        return iter(self.chunks)

    def __len__(self) -> int:
        return len(self.chunks)


def _die_with_parent(_worker_id: int) -> None:
    """Ask Linux to kill this worker when the process that started it dies.

    DataLoader workers also watch their parent, but only every 5 s; a killed
    Celery pool process would leave its preprocessing workers running that long
    (and holding memory and cores). Best effort: no-op where prctl is missing.
    """
    try:
        import ctypes
        import signal

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG
        if os.getppid() == 1:  # the parent died before the call: nobody will signal
            os._exit(1)
    except (OSError, AttributeError):
        pass


class _Pool:
    """A DataLoader with persistent workers, fed one ``predict`` call at a time."""

    def __init__(self, key: tuple, dataset: _PoolDataset, **loader_args: Any) -> None:
        self.key = key
        self.dataset = dataset
        self.sampler = _CallChunks()
        self.loader = DataLoader(
            dataset,
            batch_sampler=self.sampler,
            persistent_workers=True,
            worker_init_fn=_die_with_parent,
            **loader_args,
        )

    def run(self, images, technical, chunk: int):
        n = len(images)
        self.sampler.chunks = [
            [(i, images[i], technical[i]) for i in range(s, min(s + chunk, n))]
            for s in range(0, n, chunk)
        ]
        return iter(self.loader)  # the first call starts the workers, later ones reuse them

    def pids(self) -> list[int]:
        it = getattr(self.loader, "_iterator", None)
        return [w.pid for w in getattr(it, "_workers", [])]

    def close(self) -> None:
        it = getattr(self.loader, "_iterator", None)
        if it is not None:
            it._shutdown_workers()  # joins them (terminates what does not exit)
            self.loader._iterator = None
        self.sampler.chunks = []


def _collate(items: list[dict[str, Any]]) -> dict[str, list[Any]]:
    """Keep lists (full-resolution images differ in size); stack later where shapes agree."""
    out: dict[str, list[Any]] = defaultdict(list)
    for it in items:
        for k, v in it.items():
            out[k].append(v)
    return dict(out)


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _auto_workers(n_images: int) -> int:
    cores = _cores()
    if n_images < 4 or cores < 2:
        return 0  # starting workers costs more than it saves
    return max(1, min(cores, 16, n_images // 2))


@dataclass
class _Outputs:
    """One batch's (T, R) on the host, ready once ``event`` (a CUDA event, or None on
    the CPU) has completed."""

    technical: torch.Tensor
    rationality: torch.Tensor
    event: Any

    def wait(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self.event is not None:
            self.event.synchronize()
        return self.technical, self.rationality


class Predictor:
    """JOINT inference on a batch of images.

    Parameters: ``model`` (a :class:`JointModel`, e.g. from ``load_checkpoint``);
    ``device`` (default CUDA when available, else CPU); ``batch_size``;
    ``num_workers`` (None: automatic, 0 with fewer than 4 images); ``autocast``
    (off by default for reproducibility; True uses bfloat16); ``seed`` of the
    partition shuffle (combined with each image's content hash);
    ``artifact_model`` (a path to PAL4VST ``end2end.pt`` or an
    :class:`ArtifactModel`; None: no artifact map, every patch may move);
    ``lfm_order`` ("before_resize" as the authors' inference script, or
    "after_resize"); ``lfm_backend`` ("eager" or "compile");
    ``preprocess_on_device`` (None: True on CUDA, and on CPU with the compiled
    LFM; False on CPU with the eager one); ``tf32``
    (False: cuDNN runs without TF32 and deterministically, for scores that
    match the CPU's; True is faster on recent GPUs); ``persistent_workers``
    (keep the preprocessing workers between ``predict`` calls instead of
    starting and stopping them in each; :meth:`close` stops them, as does the
    end of the process, and they die with it when it is killed).
    """

    def __init__(
        self,
        model: JointModel,
        device: str | torch.device | None = None,
        batch_size: int = 8,
        num_workers: int | None = None,
        autocast: bool = False,
        seed: int = 0,
        artifact_model: str | os.PathLike[str] | ArtifactModel | None = None,
        *,
        lfm_order: LfmOrder = "before_resize",
        lfm_backend: str = "eager",
        preprocess_on_device: bool | None = None,
        tf32: bool = False,
        persistent_workers: bool = False,
    ) -> None:
        if lfm_order not in ("before_resize", "after_resize"):
            raise ValueError(f"lfm_order must be 'before_resize' or 'after_resize': {lfm_order!r}")
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        self.device = self._resolve(device)
        self.model = model.to(self.device).eval()
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.autocast = autocast
        self.seed = seed
        self.lfm_order = lfm_order
        self.lfm_backend = lfm_backend
        self.preprocess_on_device = preprocess_on_device
        self.tf32 = tf32
        self.persistent_workers = persistent_workers
        self._pool: _Pool | None = None
        self.last_timing: PredictTiming | None = None
        if artifact_model is not None and not isinstance(artifact_model, ArtifactModel):
            artifact_model = ArtifactModel(Path(artifact_model), device=self.device)
        self.artifact_model = artifact_model

    def _worker_gate(self, workers: int) -> Any:
        """An Event that holds the workers back while the forward runs, or None.

        Only when the forward runs on the CPU with a thread for every core: the
        workers would then take cores from it, and sharing them cost more than
        taking turns. On 2 cores at batch 32 the forward ran 25-40% slower beside
        busy workers; held back, the pipeline reached 78% of the bare forward
        against 73% (medians of an interleaved A/B, docs/benchmarks.md,
        "Predictor"). With cores to spare, or a GPU doing the forward, workers
        run throughout.
        """
        if workers <= 0 or self.device.type != "cpu" or torch.get_num_threads() < _cores():
            return None
        gate = torch.multiprocessing.get_context().Event()  # the DataLoader's default context
        gate.set()
        return gate

    def _preprocess_on_device(self) -> bool:
        """Where LFM and the final resizes run (see the module docstring)."""
        if self.preprocess_on_device is not None:
            return self.preprocess_on_device
        return self.device.type == "cuda" or self.lfm_backend == "compile"

    @staticmethod
    def _resolve(device: str | torch.device | None) -> torch.device:
        if device is None:
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        dev = torch.device(device)
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise RuntimeError("CUDA was requested but is not available")
        return dev

    # -- forward ----------------------------------------------------------

    def _autocast(self):
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=bool(self.autocast))

    @contextlib.contextmanager
    def _cuda_numerics(self):
        """Unless ``tf32=True``: cuDNN without TF32 and deterministic, restored afterwards.

        cuDNN convolutions use TF32 by default, which moves scores by ~1e-3
        against the CPU; reproducible is the default here.
        """
        if self.device.type != "cuda" or self.tf32:
            yield
            return
        cudnn = torch.backends.cudnn
        saved = (cudnn.allow_tf32, cudnn.deterministic, cudnn.benchmark)
        cudnn.allow_tf32, cudnn.deterministic, cudnn.benchmark = False, True, False
        try:
            yield
        finally:
            cudnn.allow_tf32, cudnn.deterministic, cudnn.benchmark = saved

    @torch.inference_mode()
    def predict_tensors(
        self,
        x_technical: torch.Tensor,
        x_rationality: torch.Tensor,
        *,
        batch_size: int | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Network only, on prepared B x 3 x 224 x 224 inputs.

        Returns (T, R, N) as 1-d float32 CPU tensors.
        """
        t, r = self._launch(x_technical, x_rationality, batch_size or self.batch_size).wait()
        return t, r, self.model.naturalness(t, r)

    @torch.inference_mode()
    def _launch(self, x_technical: torch.Tensor, x_rationality: torch.Tensor, bs: int) -> _Outputs:
        """Queue the forward and the copy of its outputs to the host; :meth:`_Outputs.wait`
        gives them.

        On CUDA nothing here waits for the GPU: the outputs are copied into pinned
        host memory behind the forward on the same stream and an event marks the
        copy, so ``predict`` cuts and uploads the next batch while this one runs
        (a ``.cpu()`` here would idle the GPU for all of that host work). On the
        CPU the forward has run when this returns.
        """
        ts, rs = [], []
        for s in range(0, x_technical.shape[0], bs):
            xt = x_technical[s : s + bs].to(self.device, non_blocking=True)
            xr = x_rationality[s : s + bs].to(self.device, non_blocking=True)
            with self._cuda_numerics(), self._autocast():
                t, r = self.model(xt, xr)
            ts.append(t.float().reshape(-1))
            rs.append(r.float().reshape(-1))
        if not ts:
            return _Outputs(torch.zeros(0), torch.zeros(0), None)
        t, r = torch.cat(ts), torch.cat(rs)
        if self.device.type != "cuda":
            return _Outputs(t.cpu(), r.cpu(), None)
        t_host = torch.empty(t.shape, dtype=t.dtype, pin_memory=True)
        r_host = torch.empty(r.shape, dtype=r.dtype, pin_memory=True)
        t_host.copy_(t, non_blocking=True)
        r_host.copy_(r, non_blocking=True)
        done = torch.cuda.Event()
        done.record()
        return _Outputs(t_host, r_host, done)

    # -- main-process preprocessing -----------------------------------------

    def _rationality_on_device(self, rgbs: list[torch.Tensor]) -> torch.Tensor:
        """LFM (batched by size) + exact PIL resize/crop + normalise, all on the device."""
        out: list[torch.Tensor | None] = [None] * len(rgbs)
        groups: dict[tuple[int, ...], list[int]] = defaultdict(list)
        for i, x in enumerate(rgbs):
            groups[tuple(x.shape)].append(i)
        for idx in groups.values():
            # copy each (pinned) image on its own and stack on the device: a CPU-side
            # stack would first copy the whole batch through pageable memory
            batch = torch.stack([rgbs[i].to(self.device, non_blocking=True) for i in idx])
            if self.lfm_order == "before_resize":
                y = resize_crop_tensor(lfm_tensor(batch, backend=self.lfm_backend))
            else:
                y = lfm_tensor(resize_crop_tensor(batch).contiguous(), backend=self.lfm_backend)
            for k, i in enumerate(idx):
                out[i] = y[k]
        return to_normalized_tensor(torch.stack(out))  # type: ignore[arg-type]

    def _technical_on_device(self, crops: list[torch.Tensor]) -> torch.Tensor:
        """Normalise the 224 x 224 uint8 crops on the device (the workers resized them:
        PIL is cheap at this size, and per-image GPU resizes cost more in launches)."""
        on_dev = [c.to(self.device, non_blocking=True) for c in crops]
        return to_normalized_tensor(torch.stack(on_dev))

    def _prepare(self, batch: dict[str, list[Any]], on_device: bool) -> tuple[torch.Tensor, ...]:
        n = len(batch["index"])
        # rationality
        if on_device:
            x_r = self._rationality_on_device(batch["rgb"])
        else:
            x_r = torch.stack(batch["x_r"])
        # technical: items carry either a ready input or the artifact-model hand-over
        cut: dict[int, np.ndarray] = {}
        if "pal" in batch and self.artifact_model is not None:
            pos = [i for i in range(n) if batch["_has_pal"][i]]
            masks = self.artifact_model.masks(torch.stack(batch["pal"]))
            for p, resized, mask, key in zip(
                pos, batch["resized"], masks, batch["rng_key"], strict=True
            ):
                cut[p] = partition_patches(resized, mask, np.random.default_rng(key)).image
        ready = iter(batch.get("t_uint8" if on_device else "x_t", []))
        techs: list[torch.Tensor] = []
        for i in range(n):
            if i in cut:
                part = Image.fromarray(cut[i])
                techs.append(_chw(final_crop_uint8(part)) if on_device else final_transform(part))
            else:
                techs.append(next(ready))
        x_t = self._technical_on_device(techs) if on_device else torch.stack(techs)
        return x_t, x_r

    # -- public API ---------------------------------------------------------

    def predict(
        self,
        images: Sequence[ImageInput],
        technical_images: Sequence[ImageInput | None] | None = None,
        *,
        batch_size: int | None = None,
        device: str | torch.device | None = None,
    ) -> list[JointResult]:
        """Scores for ``images`` (paths or PIL images), in input order.

        ``technical_images`` (same length, entries may be None) gives
        precomputed partition images, used instead of cutting one.
        ``device`` moves the model there for this and later calls.
        """
        images = list(images)
        if technical_images is None:
            technical = [None] * len(images)
        else:
            technical = list(technical_images)
            if len(technical) != len(images):
                raise ValueError("technical_images must have one entry per image")
        if device is not None:
            self.device = self._resolve(device)
            self.model.to(self.device)
            if self.artifact_model is not None:
                self.artifact_model.device = self.device
                self.artifact_model.module.to(self.device)
        if not images:
            return []
        bs = batch_size or self.batch_size
        on_device = self._preprocess_on_device()
        if self.num_workers is not None:
            workers = self.num_workers
        elif self.persistent_workers:
            # sized for the batches, not this call: the pool serves the calls to come
            workers = _auto_workers(max(len(images), bs))
        else:
            workers = _auto_workers(len(images))
        # A DataLoader hands whole batches to workers: with model-sized batches only
        # len(images) / batch_size workers would be busy. Workers load small chunks
        # (a divisor of the batch size) and the main process regroups them.
        chunk = _loader_chunk(bs, workers)
        prefetch = max(2, bs // chunk // max(workers, 1) + 1) if workers > 0 else None
        settings: dict[str, Any] = dict(
            on_device=on_device,
            artifact=self.artifact_model,
            lfm_order=self.lfm_order,
            lfm_backend=self.lfm_backend,
            seed=self.seed,
        )
        loader_args: dict[str, Any] = dict(
            num_workers=workers,
            collate_fn=_collate_marking_pal,
            pin_memory=self.device.type == "cuda",
            prefetch_factor=prefetch,
        )
        start = time.perf_counter()  # worker start-up counts: it is part of the call
        if self.persistent_workers and workers > 0:
            gate_wanted = self._worker_gate(workers) is not None
            key = (workers, prefetch, on_device, self.device.type, gate_wanted, *settings.values())
            if self._pool is None or self._pool.key != key:
                self.close()
                gate = self._worker_gate(workers)
                self._pool = _Pool(key, _PoolDataset(gate=gate, **settings), **loader_args)
            gate = self._pool.dataset.gate
            chunks = self._pool.run(images, technical, chunk)
        else:
            gate = self._worker_gate(workers)
            dataset = _JointDataset(images, technical, gate=gate, **settings)
            loader = DataLoader(dataset, batch_size=chunk, shuffle=False, **loader_args)
            chunks = iter(loader)
        label = self.artifact_model.label if self.artifact_model is not None else NO_ARTIFACT_MAP
        results: list[JointResult] = []
        timing = PredictTiming(images=len(images), workers=workers, on_device=on_device)
        done = False
        # The first forward runs on the first chunk alone: the model would otherwise sit
        # idle until the workers had filled a whole batch (on 2 CPU cores, 12% of a
        # 64-image run at batch 32). Results do not depend on the batching (within 1e-4).
        want = chunk if workers > 0 else bs
        # One batch stays in flight: its results are read back after the next batch
        # has been cut and queued, so on a GPU the host's share of preprocessing
        # overlaps the forward (on the CPU the forward has already run).
        in_flight: tuple[list[int], _Outputs] | None = None
        while not done:
            t0 = time.perf_counter()
            pending: list[dict[str, list[Any]]] = []
            while sum(len(c["index"]) for c in pending) < want:
                nxt = next(chunks, None)
                if nxt is None:
                    done = True
                    break
                pending.append(nxt)
            t1 = time.perf_counter()
            timing.wait_s += t1 - t0
            if not pending:
                break
            want = bs
            batch = _merge(pending)
            x_t, x_r = self._prepare(batch, on_device)
            t2 = time.perf_counter()
            if gate is not None:
                gate.clear()  # workers finish the item in hand and wait
            try:
                outputs = self._launch(x_t, x_r, bs)
            finally:
                if gate is not None:
                    gate.set()
            t3 = time.perf_counter()
            timing.prepare_s += t2 - t1
            timing.forward_s += t3 - t2
            if in_flight is not None:
                results.extend(self._collect(*in_flight, images, technical, label))
                timing.forward_s += time.perf_counter() - t3
            in_flight = (batch["index"], outputs)
        if in_flight is not None:
            t4 = time.perf_counter()
            results.extend(self._collect(*in_flight, images, technical, label))
            timing.forward_s += time.perf_counter() - t4
        timing.total_s = time.perf_counter() - start
        self.last_timing = timing
        return results

    def _collect(
        self,
        index: list[int],
        outputs: _Outputs,
        images: Sequence[ImageInput],
        technical: Sequence[ImageInput | None],
        label: str,
    ) -> list[JointResult]:
        """Wait for one batch's outputs and turn them into results, in batch order."""
        t, r = outputs.wait()
        nat = self.model.naturalness(t, r)
        return [
            JointResult(
                image=image_name(images[i], i),
                technical=float(t[k]),
                rationality=float(r[k]),
                naturalness=float(nat[k]),
                artifact_map=PRECOMPUTED if technical[i] is not None else label,
            )
            for k, i in enumerate(index)
        ]

    def pool_pids(self) -> list[int]:
        """The process ids of the preprocessing pool's workers (empty when none runs)."""
        return self._pool.pids() if self._pool is not None else []

    def close(self) -> None:
        """Stop the preprocessing pool's workers (a later ``predict`` starts new ones)."""
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.close()

    def __enter__(self) -> Predictor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _loader_chunk(batch_size: int, workers: int) -> int:
    """Items per worker task: the largest divisor of ``batch_size`` that is at most
    ceil(batch_size / workers) and 8, so every worker has work and IPC stays cheap."""
    if workers <= 0:
        return batch_size
    cap = max(1, min(8, -(-batch_size // workers)))
    return max(d for d in range(1, cap + 1) if batch_size % d == 0)


def _merge(chunks: list[dict[str, list[Any]]]) -> dict[str, list[Any]]:
    """Concatenate collated chunks key by key (each key's items stay in input order)."""
    if len(chunks) == 1:
        return chunks[0]
    out: dict[str, list[Any]] = defaultdict(list)
    for c in chunks:
        for k, v in c.items():
            out[k].extend(v)
    return dict(out)


def _collate_marking_pal(items: list[dict[str, Any]]) -> dict[str, list[Any]]:
    """:func:`_collate`, plus a per-item flag telling which items await an artifact mask."""
    batch = _collate(items)
    batch["_has_pal"] = ["pal" in it for it in items]
    return batch
