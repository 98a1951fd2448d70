"""Fine-tuning JOINT (JOINT_SPEC.md, "Training facts"): losses, split, steps, outputs, command.

Everything trains at 64 x 64 crops of 72-pixel inputs (``resize``/``crop`` are
exposed for this) on 8 generated images, so the whole file stays well under a
minute on two CPU cores.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from django.core.management import call_command
from django.core.management.base import CommandError
from PIL import Image
from scipy import stats

from scoring.joint.model import JointModel, build_model, fusion_path, load_checkpoint
from scoring.joint.preprocess import content_seed, rationality_input, technical_input
from scoring.joint.training import (
    TrainingError,
    compute_loss,
    hard_rank,
    load_backbone_weights,
    make_batch,
    plcc_loss,
    predict_prepared,
    prepare_image,
    prepare_inputs,
    rank_loss,
    soft_rank,
    split_indices,
    train_batches,
    train_step,
    training_log_path,
)

RESIZE, CROP = 72, 64
REPO = Path(__file__).resolve().parents[3]


# ---------------------------------------------------------------------------
# fixtures: 8 generated images with synthetic MOS
# ---------------------------------------------------------------------------


def _image(i: int) -> np.ndarray:
    """64 x 64 RGB: brightness and noise grow with i, so the MOS below are learnable."""
    rng = np.random.default_rng(i)
    base = np.linspace(30 + 20 * i, 90 + 20 * i, 64)[None, :, None]
    noise = rng.normal(0, 4 + 6 * i, (64, 64, 3))
    return np.clip(base + noise, 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, list[tuple]]:
    """(csv, image folder, samples): AGIN-style CSV with MOS_nat, MOS_tech, MOS_rat."""
    root = tmp_path_factory.mktemp("agin")
    images = root / "images"
    images.mkdir()
    lines = ["filename,MOS_nat,MOS_tech,MOS_rat"]
    samples = []
    for i in range(8):
        name = f"img{i}.png"
        Image.fromarray(_image(i)).save(images / name)
        nat, tech, rat = 1 + 0.5 * i, 4.5 - 0.4 * i, 1 + 0.3 * ((i * 3) % 8)
        lines.append(f"{name},{nat},{tech},{rat}")
        samples.append((str(images / name), nat, tech, rat))
    csv = root / "mos.csv"
    csv.write_text("\n".join(lines) + "\n")
    return csv, images, samples


@pytest.fixture(scope="module")
def prepared(dataset):
    return prepare_inputs([s[0] for s in dataset[2]], resize=RESIZE, progress=False)


@pytest.fixture(scope="module")
def fresh_model() -> JointModel:
    """A model this module may change (the conftest's session model must stay untouched)."""
    return build_model(seed=1)


# ---------------------------------------------------------------------------
# losses
# ---------------------------------------------------------------------------


def test_soft_ranks_tend_to_hard_ranks():
    x = torch.tensor([0.3, -1.2, 2.5, 0.31, 0.3, 7.0], dtype=torch.float64)
    hard = hard_rank(x)
    assert hard.tolist() == stats.rankdata(x.numpy()).tolist()  # average ranks, 1-based
    errors = [float((soft_rank(x, tau) - hard).abs().max()) for tau in (1.0, 0.1, 0.01, 1e-4)]
    assert errors == sorted(errors, reverse=True)
    assert errors[-1] < 1e-6  # the tie (0.3, 0.3) is exact: sigmoid(0) = 0.5 each way


def test_soft_ranks_and_rank_loss_are_differentiable():
    x = torch.tensor([0.2, -0.4, 1.1, 0.5], dtype=torch.float64, requires_grad=True)
    target = torch.tensor([3.0, 1.0, 4.0, 2.0], dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda v: soft_rank(v, 0.5), (x,))
    assert torch.autograd.gradcheck(lambda v: rank_loss(v, target, 0.5), (x,))
    assert torch.autograd.gradcheck(lambda v: plcc_loss(v, target), (x,))


def test_plcc_loss_extremes():
    x = torch.tensor([1.0, 2.0, 4.0, 8.0])
    assert float(plcc_loss(x, 3 * x + 2)) == pytest.approx(0.0, abs=1e-6)
    assert float(plcc_loss(x, -x)) == pytest.approx(1.0, abs=1e-6)
    # a constant target has no correlation: 1/2, not NaN
    assert float(plcc_loss(x, torch.ones(4))) == pytest.approx(0.5)


def test_rank_loss_extremes_and_scale_free():
    x = torch.tensor([0.1, 0.5, 0.2, 0.9, 0.4])
    monotone = x**3 * 100  # same order, different shape and scale
    assert float(rank_loss(x, monotone, 1e-3)) == pytest.approx(0.0, abs=1e-4)
    assert float(rank_loss(x, -monotone, 1e-3)) == pytest.approx(1.0, abs=1e-4)
    assert float(rank_loss(1000 * x + 5, monotone)) == pytest.approx(float(rank_loss(x, monotone)))


# ---------------------------------------------------------------------------
# split and batches
# ---------------------------------------------------------------------------


def test_split_is_seeded_disjoint_and_70_30():
    train, test = split_indices(10, seed=3)
    assert (train, test) == split_indices(10, seed=3)
    assert (train, test) != split_indices(10, seed=4)
    assert len(train) == 7 and len(test) == 3
    assert not set(train) & set(test) and sorted(train + test) == list(range(10))
    assert [len(p) for p in split_indices(4, seed=0)] == [2, 2]  # the minimum still correlates


def test_train_batches_never_leave_a_single_image():
    sizes = [len(b) for b in train_batches(9, 4, torch.Generator().manual_seed(0))]
    assert sizes == [4, 5]
    batches = train_batches(8, 4, torch.Generator().manual_seed(0))
    assert sorted(i for b in batches for i in b) == list(range(8))


# ---------------------------------------------------------------------------
# inputs
# ---------------------------------------------------------------------------


def test_center_crop_of_prepared_inputs_is_the_predictors_input(dataset):
    """At the spec's 384 / 224, held-out images see exactly the inference transform."""
    path = dataset[2][3][0]
    item = prepare_image(path, resize=384, seed=0)
    assert tuple(item.rationality.shape) == (3, 384, 384)
    xt, xr = make_batch([item], [0], crop=224)
    rgb = Image.open(path).convert("RGB")
    assert torch.equal(xr[0], rationality_input(rgb))
    assert torch.equal(xt[0], technical_input(rgb, rng=content_seed(rgb, 0)))


def test_cache_dir_reuses_prepared_inputs(dataset, prepared, tmp_path):
    paths = [s[0] for s in dataset[2][:2]]
    first = prepare_inputs(paths, resize=RESIZE, cache_dir=tmp_path, progress=False)
    assert len(list(tmp_path.glob("*.pt"))) == 2
    again = prepare_inputs(paths, resize=RESIZE, cache_dir=tmp_path, progress=False)
    for a, b, c in zip(first, again, prepared[:2], strict=True):
        assert torch.equal(a.technical, b.technical) and torch.equal(a.rationality, c.rationality)
    # another setting is another entry, never a stale one
    prepare_inputs(paths[:1], resize=RESIZE, seed=1, cache_dir=tmp_path, progress=False)
    assert len(list(tmp_path.glob("*.pt"))) == 3


def test_random_crops_are_seeded(prepared):
    a = make_batch(prepared, [0, 1], crop=CROP, generator=torch.Generator().manual_seed(5))
    b = make_batch(prepared, [0, 1], crop=CROP, generator=torch.Generator().manual_seed(5))
    assert all(torch.equal(u, v) for u, v in zip(a, b, strict=True))
    assert a[0].shape == (2, 3, CROP, CROP)


def test_unreadable_image_is_a_training_error(tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_text("not an image")
    with pytest.raises(TrainingError, match="cannot read image"):
        prepare_image(bad)


# ---------------------------------------------------------------------------
# initial weights and steps
# ---------------------------------------------------------------------------


def test_backbone_weights_from_a_local_folder(fresh_model, random_model, tmp_path):
    """torchvision-named files load into both backbones; swin_t's 1000-class head is dropped."""
    swin = dict(random_model.technical_feature_extraction.state_dict())
    swin["head.weight"], swin["head.bias"] = torch.zeros(1000, 768), torch.zeros(1000)
    torch.save(swin, tmp_path / "swin_t-704ceda3.pth")
    torch.save(
        random_model.rationality_feature_extraction.state_dict(), tmp_path / "resnet50-0676ba61.pth"
    )
    loaded = load_backbone_weights(fresh_model, tmp_path)
    assert set(loaded) == {"technical", "rationality"}
    key = "features.0.0.weight"
    assert torch.equal(
        fresh_model.technical_feature_extraction.state_dict()[key],
        random_model.technical_feature_extraction.state_dict()[key],
    )
    assert torch.equal(
        fresh_model.rationality_feature_extraction.fc.weight,
        random_model.rationality_feature_extraction.fc.weight,
    )
    torch.save({"x": torch.zeros(1)}, tmp_path / "swin_t-other.pth")
    with pytest.raises(TrainingError, match="several swin_t"):
        load_backbone_weights(fresh_model, tmp_path)
    with pytest.raises(TrainingError, match="no swin_t"):
        load_backbone_weights(fresh_model, tmp_path / "..")


def test_two_steps_reduce_the_training_loss(fresh_model, prepared, dataset):
    model = fresh_model.train()
    idx = [0, 2, 5, 7]
    y_tech = torch.tensor([dataset[2][i][2] for i in idx], dtype=torch.float32)
    y_rat = torch.tensor([dataset[2][i][3] for i in idx], dtype=torch.float32)
    xt, xr = make_batch(prepared, idx, crop=CROP, generator=torch.Generator().manual_seed(0))

    def loss() -> float:
        # train mode (batch-norm on batch statistics); a fixed seed fixes swin_t's
        # stochastic depth, so before and after see the same sub-network
        with torch.no_grad(), torch.random.fork_rng():
            torch.manual_seed(123)
            t, r = model(xt, xr)
            return float(compute_loss(t, r, y_tech, y_rat)[0])

    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    before = loss()
    for _ in range(2):
        parts = train_step(model, optimizer, xt, xr, y_tech, y_rat)
        assert set(parts) == {"loss", "plcc_t", "rank_t", "plcc_r", "rank_r"}
    assert loss() < before


# ---------------------------------------------------------------------------
# the command, end to end (no database)
# ---------------------------------------------------------------------------


def _run(**options) -> str:
    out = io.StringIO()
    call_command("train_joint", stdout=out, stderr=io.StringIO(), **options)
    return out.getvalue()


def _error(**options) -> str:
    with pytest.raises(CommandError) as err:
        _run(**options)
    assert err.value.returncode == 2
    assert "\n" not in str(err.value)
    return str(err.value)


@pytest.fixture(scope="module")
def trained(dataset, tmp_path_factory) -> tuple[Path, str]:
    csv, images, _ = dataset
    out = tmp_path_factory.mktemp("run") / "joint_ft.pth"
    text = _run(
        mos_csv=str(csv),
        images=str(images),
        out=str(out),
        epochs=1,
        max_images=8,
        batch_size=4,
        resize=RESIZE,
        crop=CROP,
        device="cpu",
        no_progress=True,
    )
    return out, text


def test_command_trains_and_writes_three_files(trained):
    out, text = trained
    assert "epoch 0: held-out" in text and "epoch 1: held-out" in text
    assert "best epoch 1" in text
    log = json.loads(training_log_path(out).read_text())
    assert [h["epoch"] for h in log["history"]] == [0, 1]
    assert log["seed"] == 0 and log["best_epoch"] == 1
    assert log["options"]["epochs"] == 1 and log["source"]["kind"] == "mos-csv"
    train, test = split_indices(8, seed=0)
    assert log["split"]["train"] == [f"img{i}.png" for i in train]
    assert log["split"]["test"] == [f"img{i}.png" for i in test]
    held = log["history"][1]["held_out"]
    assert set(held) == {"technical", "rationality", "naturalness"}
    assert held["naturalness"]["n"] == 3 and held["naturalness"]["plcc_on"] == "raw"
    assert set(log["history"][1]["train_loss"]) >= {"loss", "plcc_t", "rank_r"}


def test_checkpoint_loads_strictly_and_fusion_is_the_lstsq_fit(trained, dataset, prepared):
    out, _ = trained
    model = load_checkpoint(out)  # strict=True inside, authors' key format
    fusion = json.loads(fusion_path(out).read_text())
    assert (model.fusion.w_t, model.fusion.w_r) == (fusion["w_t"], fusion["w_r"])
    train, _ = split_indices(8, seed=0)
    t, r = predict_prepared(model, prepared, train, crop=CROP)
    log = json.loads(training_log_path(out).read_text())
    saved = log["best_predictions"]["train"]
    np.testing.assert_allclose(t, [p["technical"] for p in saved], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(r, [p["rationality"] for p in saved], rtol=1e-5, atol=1e-6)
    nat = np.array([dataset[2][i][1] for i in train])
    coef, *_ = np.linalg.lstsq(np.column_stack([t, r, np.ones_like(t)]), nat, rcond=None)
    np.testing.assert_allclose(
        [fusion["w_t"], fusion["w_r"], fusion["intercept"]], coef, rtol=1e-4, atol=1e-6
    )


def test_command_refuses_bad_input(dataset, tmp_path):
    csv, images, _ = dataset
    base = {"images": str(images), "out": str(tmp_path / "m.pth")}
    bad = tmp_path / "bad.csv"
    bad.write_text("filename,MOS_nat,MOS_tech,MOS_rat\nimg0.png,1,2,3\nimg1.png,2,abc,3\n")
    msg = _error(mos_csv=str(bad), **base)
    assert "line 3" in msg and "MOS_tech" in msg and "not a number" in msg

    no_tech = tmp_path / "no_tech.csv"
    no_tech.write_text("filename,MOS_nat,MOS_rat\nimg0.png,1,3\n")
    assert "no MOS_tech column" in _error(mos_csv=str(no_tech), **base)

    few = tmp_path / "few.csv"
    few.write_text(
        "filename,MOS_nat,MOS_tech,MOS_rat\n"
        + "".join(f"img{i}.png,1,2,{'' if i > 2 else 3}\n" for i in range(6))
    )
    assert "3 usable images" in _error(mos_csv=str(few), **base)

    missing = tmp_path / "missing.csv"
    rows = "".join(f"img{i}.png,1,2,3\n" for i in range(4))
    missing.write_text("filename,MOS_nat,MOS_tech,MOS_rat\n" + rows + "absent.png,1,2,3\n")
    assert "image not found" in _error(mos_csv=str(missing), **base)

    (tmp_path / "imgs").mkdir()
    for i in range(4):
        (tmp_path / "imgs" / f"img{i}.png").write_text("text, not pixels")
    msg = _error(mos_csv=str(csv), images=str(tmp_path / "imgs"), out=base["out"], max_images=4)
    assert "not a readable image" in msg or "image not found" in msg

    assert "needs --images" in _error(mos_csv=str(csv), out=base["out"])
    wrong = tmp_path / "heads_only.pth"
    torch.save({"quality_T.0.bias": torch.zeros(128)}, wrong)
    msg = _error(mos_csv=str(csv), init=str(wrong), **base)
    assert msg.startswith("--init:") and "missing keys" in msg
    assert "not a PyTorch checkpoint" in _error(mos_csv=str(csv), init=str(bad), **base)
    if not torch.cuda.is_available():
        assert "CUDA is not available" in _error(mos_csv=str(csv), device="cuda", **base)


def test_malformed_csv_on_the_command_line_exits_2_with_line_and_column(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("filename,MOS_nat,MOS_tech,MOS_rat\nimg0.png,1,2,3\nimg1.png,2,3,x\n")
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "studyweb.test_settings"}
    args = ["--mos-csv", str(bad), "--images", str(tmp_path), "--out", str(tmp_path / "m.pth")]
    proc = subprocess.run(
        [sys.executable, "manage.py", "train_joint", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"CommandError: {bad}: metadata CSV line 3, column 'MOS_rat': 'x' is not a number"
    ]


# ---------------------------------------------------------------------------
# --study: the latest finished analysis, joined to the stimulus files
# ---------------------------------------------------------------------------


@pytest.mark.django_db
def test_study_source_reads_the_latest_finished_analysis(tmp_path):
    from django.utils import timezone

    from scoring.management.commands.train_joint import Command
    from scoring.models import Analysis, StimulusResult
    from tests.factories import StimulusFactory, StudyFactory

    study = StudyFactory(slug="train-me")
    assert "no finished MOS analysis" in _error(study="train-me", out="/tmp/x.pth")
    stimuli = [StimulusFactory(study=study) for _ in range(3)]
    analysis = Analysis.objects.create(
        study=study, method="mean", status=Analysis.Status.DONE, finished_at=timezone.now()
    )
    for k, stim in enumerate(stimuli):
        dims = ("overall", "technical", "rationality")[: 3 if k < 2 else 2]  # last lacks R
        for j, dim in enumerate(dims):
            StimulusResult.objects.create(
                analysis=analysis, stimulus=stim, dimension=dim, mos=k + j / 10, n=3
            )
    records, _, source = Command()._from_study("train-me", tmp_path)
    assert source["analysis"] == analysis.pk and source["kind"] == "study"
    by_name = {name: (path, values) for path, name, values in records}
    first = by_name[stimuli[0].original_name]
    assert Path(first[0]).is_file()
    assert first[1] == {"overall": 0.0, "technical": 0.1, "rationality": 0.2}
    assert "rationality" not in by_name[stimuli[2].original_name][1]
    # 2 usable images (the third lacks R): refused before any training
    msg = _error(study="train-me", out="/tmp/x.pth")
    assert "2 usable images" in msg
    assert "no study with slug" in _error(study="nope", out="/tmp/x.pth")
