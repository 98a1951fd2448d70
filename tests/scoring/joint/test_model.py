"""The network's state dict matches the authors' checkpoint; loading fails loudly otherwise."""

from __future__ import annotations

import copy
import json

import pytest
import torch

from scoring.joint.model import (
    DEFAULT_FUSION,
    CheckpointError,
    FusionWeights,
    build_model,
    check_state_dict,
    fusion_path,
    load_checkpoint,
    save_checkpoint,
)

from .conftest import KEYS_JSON


def test_state_dict_keys_and_shapes_equal_the_spec():
    spec = json.loads(KEYS_JSON.read_text())
    ours = [[k, list(v.shape)] for k, v in build_model(init=False).state_dict().items()]
    assert len(ours) == spec["num_keys"] == 511
    assert ours == spec["keys"]  # same keys, same shapes, same order


def test_forward_shapes_and_naturalness(random_model):
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        t, r = random_model(x, x)
    assert t.shape == r.shape == (2, 1)
    n = random_model.naturalness(t, r)
    assert torch.allclose(n, 0.145 * t + 0.769 * r)


def test_round_trip_strict(random_model, checkpoint_file):
    path = checkpoint_file
    loaded = load_checkpoint(path)
    assert not loaded.training
    assert loaded.fusion == DEFAULT_FUSION
    sd_a, sd_b = random_model.state_dict(), loaded.state_dict()
    assert sd_a.keys() == sd_b.keys()
    assert all(torch.equal(sd_a[k], sd_b[k]) for k in sd_a)
    # the strict load path of torch itself agrees
    fresh = build_model(init=False)
    fresh.load_state_dict(torch.load(path, weights_only=True), strict=True, assign=True)


def test_wrapped_and_dataparallel_checkpoints_load(random_model, tmp_path):
    sd = random_model.state_dict()
    heads = {k: v for k, v in sd.items() if k.startswith("quality_")}
    for i, obj in enumerate(
        [{"state_dict": sd}, {"model": {f"module.{k}": v for k, v in heads.items()}}]
    ):
        path = tmp_path / f"wrapped{i}.pth"
        torch.save(obj, path)
        if i == 0:
            loaded = load_checkpoint(path)
            assert torch.equal(loaded.quality_R[1].bias, random_model.quality_R[1].bias)
        else:  # the prefix was stripped: only the backbone keys are reported missing
            with pytest.raises(CheckpointError) as err:
                load_checkpoint(path)
            assert err.value.unexpected == [] and len(err.value.missing) == 503


def test_partial_checkpoint_lists_missing_keys(random_model, tmp_path):
    sd = random_model.state_dict()
    heads_only = {k: v for k, v in sd.items() if k.startswith("quality_")}  # a small file
    path = tmp_path / "partial.pth"
    torch.save(heads_only, path)
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(path)
    assert sorted(err.value.missing) == sorted(k for k in sd if not k.startswith("quality_"))
    assert err.value.unexpected == [] and err.value.mismatched == []
    msg = str(err.value)
    assert "503 missing keys" in msg and "technical_feature_extraction.features.0.0.weight" in msg
    assert "\n" not in msg  # one line, fit for a CLI


def test_wrong_checkpoint_lists_unexpected_and_mismatched(random_model, tmp_path):
    from torchvision.models import resnet18

    path = tmp_path / "resnet18.pth"
    torch.save(resnet18(weights=None).state_dict(), path)
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(path)
    e = err.value
    assert len(e.missing) == 511 and "conv1.weight" in e.unexpected
    assert "511 missing keys" in str(e) and "unexpected keys (conv1.weight" in str(e)

    bad = dict(random_model.state_dict())
    bad["quality_T.0.weight"] = torch.zeros(64, 768)
    bad["extra.weight"] = torch.zeros(1)
    with pytest.raises(CheckpointError) as err:
        check_state_dict(bad)
    assert err.value.mismatched == [("quality_T.0.weight", (64, 768), (128, 768))]
    assert err.value.unexpected == ["extra.weight"] and err.value.missing == []
    assert "[64, 768] vs model [128, 768]" in str(err.value)


@pytest.mark.parametrize(
    "content", [b"", b"not a checkpoint at all", b"\x89PNG\r\n\x1a\n" + bytes(100)]
)
def test_non_checkpoint_file_is_a_clear_error(tmp_path, content):
    path = tmp_path / "junk.pth"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match="not a PyTorch checkpoint"):
        load_checkpoint(path)


def test_non_state_dict_objects_and_missing_file(tmp_path):
    path = tmp_path / "list.pth"
    torch.save([1, 2, 3], path)
    with pytest.raises(CheckpointError, match="not a state_dict"):
        load_checkpoint(path)
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        load_checkpoint(tmp_path / "absent.pth")


def test_fusion_json_next_to_checkpoint(checkpoint_link):
    path = checkpoint_link
    fusion_path(path).write_text(json.dumps({"w_t": 0.4, "w_r": 0.5}))
    assert fusion_path(path).name == "joint.pth.fusion.json"
    assert load_checkpoint(path).fusion == FusionWeights(0.4, 0.5)
    # an explicit argument wins
    assert load_checkpoint(path, fusion=FusionWeights(1.0, 0.0)).fusion == FusionWeights(1.0, 0.0)
    fusion_path(path).write_text("{broken")
    with pytest.raises(CheckpointError, match="fusion"):
        load_checkpoint(path)


def test_save_checkpoint_writes_fusion_only_when_not_default(random_model, tmp_path):
    path = tmp_path / "m.pth"
    save_checkpoint(random_model, path)
    assert not fusion_path(path).exists()
    tuned = copy.copy(random_model)  # shares the weights, own fusion attribute
    tuned.fusion = FusionWeights(0.3, 0.6)
    save_checkpoint(tuned, path)
    assert json.loads(fusion_path(path).read_text()) == {"w_t": 0.3, "w_r": 0.6}
    assert load_checkpoint(path).fusion == FusionWeights(0.3, 0.6)
    assert random_model.fusion == DEFAULT_FUSION
    save_checkpoint(random_model, path)  # back to the defaults: the stale file goes
    assert not fusion_path(path).exists()
