"""``manage.py predict_naturalness``: JSON shape, table, and one-line errors with exit code 2."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from django.core.management import call_command
from django.core.management.base import CommandError

from .conftest import AGIN

REPO = Path(__file__).resolve().parents[3]
IMG = str(AGIN / "CoCosNet_23.png")
PART = str(AGIN / "CoCosNet_23_partitioned.png")


def _run(*args: str, **options) -> str:
    out = io.StringIO()
    call_command("predict_naturalness", *args, stdout=out, **options)
    return out.getvalue()


def _error(*args: str, **options) -> CommandError:
    with pytest.raises(CommandError) as err:
        _run(*args, **options)
    assert err.value.returncode == 2
    assert "\n" not in str(err.value)
    return err.value


def test_json_shape(checkpoint_file):
    rows = json.loads(
        _run(IMG, PART, checkpoint=str(checkpoint_file), json=True, device="cpu", batch_size=2)
    )
    assert [r["image"] for r in rows] == [IMG, PART]
    for r in rows:
        assert set(r) == {"image", "technical", "rationality", "naturalness", "artifact_map"}
        assert all(isinstance(r[k], float) for k in ("technical", "rationality", "naturalness"))
        assert r["artifact_map"] == "none"


def test_table_and_technical_image(checkpoint_file):
    text = _run(IMG, checkpoint=str(checkpoint_file), technical_image=PART)
    header, rule, row = text.strip().splitlines()
    assert header.split() == ["image", "technical", "rationality", "naturalness", "artifact_map"]
    assert set(rule.replace(" ", "")) == {"-"}
    assert row.startswith(IMG) and row.endswith("precomputed")


def test_errors_exit_code_2(checkpoint_file, tmp_path):
    ckpt = str(checkpoint_file)
    assert "image not found" in str(_error(str(tmp_path / "absent.png"), checkpoint=ckpt))
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    assert "not a readable image" in str(_error(str(text), checkpoint=ckpt))
    assert "not found" in str(_error(IMG, checkpoint=str(tmp_path / "absent.pth")))
    assert "not a PyTorch checkpoint" in str(_error(IMG, checkpoint=str(text)))
    wrong = tmp_path / "heads_only.pth"
    torch.save({"quality_T.0.bias": torch.zeros(128), "fc.weight": torch.zeros(2, 2)}, wrong)
    msg = str(_error(IMG, checkpoint=str(wrong)))
    assert "missing keys" in msg and "unexpected keys (fc.weight)" in msg
    msg = str(_error(IMG, PART, checkpoint=ckpt, technical_image=PART))
    assert "exactly one IMAGE" in msg
    if not torch.cuda.is_available():
        assert "CUDA is not available" in str(_error(IMG, checkpoint=ckpt, device="cuda"))


def test_command_line_error_is_one_line_on_stderr(tmp_path):
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "studyweb.test_settings"}
    proc = subprocess.run(
        [sys.executable, "manage.py", "predict_naturalness", "missing.png", "--checkpoint", "x"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr.strip().splitlines() == ["CommandError: image not found: missing.png"]
