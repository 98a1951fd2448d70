"""Predictor on CPU with random (seeded) weights: finite, deterministic, batch-size free."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
import torch
from PIL import Image

import scoring.joint.predictor as P
from scoring.joint.partition import ArtifactModel
from scoring.joint.predictor import ImageError, JointResult, Predictor

from .conftest import AGIN

TOL = 1e-4


def _images(folder) -> list:
    """One real image as a file (CoCosNet_23 at 320 x 320, to keep LFM cheap) and three
    small synthetic PIL images of differing sizes."""
    rng = np.random.default_rng(0)
    path = folder / "CoCosNet_23_320.png"
    Image.open(AGIN / "CoCosNet_23.png").convert("RGB").resize((320, 320)).save(path)
    out: list = [str(path)]
    for h, w in ((240, 300), (260, 230), (224, 224)):
        base = rng.integers(0, 256, (h // 8, w // 8, 3), dtype=np.uint8)
        out.append(Image.fromarray(base).resize((w, h), Image.Resampling.BILINEAR))
    return out


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    return _images(tmp_path_factory.mktemp("images"))


@pytest.fixture(scope="module")
def baseline(random_model, images) -> list[JointResult]:
    return Predictor(random_model, device="cpu", num_workers=0).predict(images, batch_size=4)


def _close(a: list[JointResult], b: list[JointResult], tol: float = TOL) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        for field in ("technical", "rationality", "naturalness"):
            assert abs(getattr(x, field) - getattr(y, field)) <= tol, (x, y)


def test_results_are_finite_and_labelled(baseline, images):
    assert len(baseline) == 4
    assert baseline[0].image.endswith("CoCosNet_23_320.png")
    assert baseline[1].image == "<image 1>"
    for r in baseline:
        assert all(math.isfinite(v) for v in (r.technical, r.rationality, r.naturalness))
        assert r.naturalness == pytest.approx(0.145 * r.technical + 0.769 * r.rationality, abs=1e-6)
        assert r.artifact_map == "none"
        fields = {"image", "technical", "rationality", "naturalness", "artifact_map"}
        assert set(r.to_dict()) == fields
    assert len({round(r.technical, 6) for r in baseline}) == 4  # inputs matter


def test_deterministic_and_batch_size_free(random_model, images, baseline):
    p = Predictor(random_model, device="cpu", num_workers=0, batch_size=1)
    again = p.predict(images)
    _close(again, baseline)
    timing = p.last_timing
    assert timing is not None and timing.images == 4 and timing.workers == 0
    assert 0 < timing.forward_s <= timing.total_s and timing.images_per_s > 0
    assert [r.image for r in again] == [r.image for r in baseline]


def test_workers_on_device_path_and_order_agree(random_model, images, baseline):
    # workers, LFM + exact PIL resize in the main process, another batch size and the
    # reverse order: the shuffle is seeded by each image's pixels, so nothing moves
    p = Predictor(random_model, device="cpu", num_workers=2, preprocess_on_device=True)
    _close(p.predict(images[::-1], batch_size=3)[::-1], baseline)


def test_seed_changes_only_the_technical_input(random_model, images, baseline):
    other = Predictor(random_model, device="cpu", num_workers=0, seed=1).predict(images[:1])
    assert other[0].rationality == pytest.approx(baseline[0].rationality, abs=TOL)
    assert abs(other[0].technical - baseline[0].technical) > 1e-6


def test_precomputed_technical_image(random_model, images, baseline):
    p = Predictor(random_model, device="cpu", num_workers=0)
    part = AGIN / "CoCosNet_23_partitioned.png"
    res = p.predict(images[:2], technical_images=[part, None])
    assert [r.artifact_map for r in res] == ["precomputed", "none"]
    assert res[0].rationality == pytest.approx(baseline[0].rationality, abs=TOL)
    _close(res[1:], baseline[1:2])
    with pytest.raises(ValueError, match="one entry per image"):
        p.predict(images[:2], technical_images=[part])


class _CornerPal(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.zeros(1, 1, 224, 224)
        out[:, :, :100, :100] = 1.0
        return out


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated")
def test_artifact_model_is_used_and_recorded(random_model, images, baseline, tmp_path):
    path = tmp_path / "end2end.pt"
    torch.jit.script(_CornerPal()).save(str(path))
    p = Predictor(random_model, device="cpu", num_workers=0, artifact_model=path)
    res = p.predict(images[:1])
    label = ArtifactModel(path).label
    assert all(r.artifact_map == label for r in res) and label.startswith("end2end.pt@sha256:")
    assert res[0].rationality == pytest.approx(baseline[0].rationality, abs=TOL)
    assert abs(res[0].technical - baseline[0].technical) > 1e-6  # 16 patches pinned
    # mixed with a precomputed partition, and on the on-device path
    p2 = Predictor(random_model, device="cpu", num_workers=0, artifact_model=path)
    p2.preprocess_on_device = True
    mixed = p2.predict(images[:2], technical_images=[None, AGIN / "CoCosNet_23_partitioned.png"])
    assert [r.artifact_map for r in mixed] == [label, "precomputed"]
    _close(mixed[:1], res[:1])


def test_predict_tensors_and_errors(random_model, tmp_path):
    p = Predictor(random_model, device="cpu", num_workers=0, batch_size=2)
    x = torch.zeros(3, 3, 224, 224)
    t, r, n = p.predict_tensors(x, x)
    assert t.shape == r.shape == n.shape == (3,)
    assert p.predict([]) == []
    bad = tmp_path / "not_an_image.png"
    bad.write_text("hello")
    with pytest.raises(ImageError, match="not_an_image.png"):
        p.predict([bad])
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="CUDA"):
            Predictor(random_model, device="cuda")


def test_autocast_runs(random_model, images, baseline):
    res = Predictor(random_model, device="cpu", num_workers=0, autocast=True).predict(images[3:])
    assert math.isfinite(res[0].naturalness)
    assert res[0].naturalness == pytest.approx(baseline[3].naturalness, abs=0.2)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu(random_model, images, baseline):
    from scoring.joint.lfm import lfm_tensor
    from scoring.joint.preprocess import load_rgb, rationality_uint8, resize_crop_tensor

    try:
        p = Predictor(random_model, device="cuda", num_workers=2)
        # the network alone, on identical inputs (TF32 off by default)
        x = torch.randn(4, 3, 224, 224, generator=torch.Generator().manual_seed(1))
        gpu = p.predict_tensors(x, x.flip(0))
        cpu = Predictor(random_model, device="cpu").predict_tensors(x, x.flip(0))
        p.model.to("cuda")
        for a, b in zip(gpu, cpu, strict=True):
            assert torch.allclose(a, b, atol=2e-3)
        res = p.predict(images, batch_size=4)  # LFM and resizes on the GPU
        for x_gpu, x_cpu in zip(res, baseline, strict=True):
            assert abs(x_gpu.technical - x_cpu.technical) <= 2e-3
            # the LFM input may move by 1 grey level (a channel's brightest pixel lands
            # on 254 or 255 by the last bit), which random weights amplify
            assert abs(x_gpu.rationality - x_cpu.rationality) <= 0.1
        for im in images:
            rgb = load_rgb(im)
            t = torch.from_numpy(np.asarray(rgb).transpose(2, 0, 1).copy())[None].cuda()
            on_gpu = resize_crop_tensor(lfm_tensor(t))[0].permute(1, 2, 0).cpu().numpy()
            diff = np.abs(on_gpu.astype(int) - rationality_uint8(rgb))
            assert diff.max() <= 1
    finally:
        random_model.to("cpu")


def test_compiled_lfm_runs_in_the_main_process_by_default_on_cpu(random_model):
    """Workers are new processes on every predict call: the compiled LFM would be
    rebuilt in each, so on CPU it runs where its kernels stay (the main process)."""
    eager = Predictor(random_model, device="cpu")
    compiled = Predictor(random_model, device="cpu", lfm_backend="compile")
    assert eager._preprocess_on_device() is False
    assert compiled._preprocess_on_device() is True
    compiled.preprocess_on_device = False  # an explicit choice wins
    assert compiled._preprocess_on_device() is False


def _item_starts_during_forwards(model, images, tmp_path, monkeypatch, *, gated: bool):
    """Runs ``predict`` with 2 workers and a forward slowed to 0.3 s; returns the
    results and how many worker items started while a forward was running (item
    starts are logged by the workers, forward intervals by the main process, on
    the machine-wide monotonic clock)."""
    log = tmp_path / f"starts-{gated}.txt"
    opened = P.open_image

    def logged_open(image, index=0):
        with open(log, "a") as fh:  # runs in a worker, right after the gate
            fh.write(f"{time.monotonic()}\n")
        return opened(image, index)

    monkeypatch.setattr(P, "open_image", logged_open)
    monkeypatch.setattr(P, "_cores", torch.get_num_threads)  # the forward covers every core
    if not gated:
        monkeypatch.setattr(Predictor, "_worker_gate", lambda self, workers: None)
    p = Predictor(model, device="cpu", num_workers=2)
    forward = p._launch
    spans = []

    def slow_forward(*args, **kwargs):
        t0 = time.monotonic()
        time.sleep(0.3)
        out = forward(*args, **kwargs)
        spans.append((t0, time.monotonic()))
        return out

    monkeypatch.setattr(p, "_launch", slow_forward)
    results = p.predict(images * 3, batch_size=4)
    starts = [float(x) for x in log.read_text().split()]
    inside = sum(1 for t in starts for a, b in spans if a + 0.02 < t < b)
    return results, inside


def test_workers_wait_while_a_cpu_forward_takes_every_core(
    random_model, images, baseline, tmp_path, monkeypatch
):
    """When the forward has a thread per core, workers hold back while it runs (sharing
    2 cores measured slower than taking turns) and resume after it: no item starts
    inside a forward, results unchanged. Without the gate items do start inside."""
    results, inside = _item_starts_during_forwards(
        random_model, images, tmp_path, monkeypatch, gated=True
    )
    assert inside == 0
    _close(results[:4], baseline)
    _close(results[8:], baseline)
    _, inside_ungated = _item_starts_during_forwards(
        random_model, images, tmp_path, monkeypatch, gated=False
    )
    assert inside_ungated > 0


def test_no_gate_without_workers_or_with_spare_cores(random_model, monkeypatch):
    p = Predictor(random_model, device="cpu")
    monkeypatch.setattr(P, "_cores", torch.get_num_threads)
    assert p._worker_gate(2) is not None
    assert p._worker_gate(0) is None  # no workers
    monkeypatch.setattr(P, "_cores", lambda: torch.get_num_threads() + 4)
    assert p._worker_gate(2) is None  # cores to spare: workers run beside the forward


def test_next_batch_is_queued_before_this_one_is_read_back(random_model, images, baseline):
    """One batch stays in flight: batch k's outputs are read back only after batch k+1
    has been cut and its forward queued (on a GPU the host's preprocessing then
    overlaps the forward). Results keep the input order and the values."""
    p = Predictor(random_model, device="cpu", num_workers=0, batch_size=2)
    events: list[str] = []
    launch, collect = p._launch, p._collect

    def logged_launch(x_t, x_r, bs):
        events.append(f"launch {x_t.shape[0]}")
        return launch(x_t, x_r, bs)

    def logged_collect(index, *args):
        events.append(f"collect {index}")
        return collect(index, *args)

    p._launch, p._collect = logged_launch, logged_collect  # type: ignore[method-assign]
    results = p.predict(images + images[:1])
    assert events == [
        "launch 2",
        "launch 2",
        "collect [0, 1]",
        "launch 1",
        "collect [2, 3]",
        "collect [4]",
    ]
    _close(results[:4], baseline)
    _close(results[4:], baseline[:1])


def test_outputs_wait_for_their_event():
    calls = []

    class Event:
        def synchronize(self):
            calls.append("sync")

    t, r = torch.ones(2), torch.zeros(2)
    assert P._Outputs(t, r, None).wait() == (t, r) and calls == []
    assert P._Outputs(t, r, Event()).wait() == (t, r) and calls == ["sync"]
