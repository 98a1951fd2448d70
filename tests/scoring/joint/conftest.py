"""Shared fixtures for the JOINT tests: real images and one random-weight model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from scoring.joint.model import JointModel, build_model

DATA = Path(__file__).resolve().parents[2] / "data"
AGIN = DATA / "agin_samples"
KEYS_JSON = DATA / "joint_state_dict_keys.json"


@pytest.fixture(scope="session")
def random_model() -> JointModel:
    """swin_t + resnet50 with torchvision's init under seed 0 (built once: ~1.5 s)."""
    return build_model(seed=0).eval()


@pytest.fixture(scope="session")
def checkpoint_file(random_model: JointModel, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The random model saved once as a plain state_dict (the authors' format, ~200 MB)."""
    path = tmp_path_factory.mktemp("ckpt") / "joint_random.pth"
    torch.save(random_model.state_dict(), path)
    return path


@pytest.fixture
def checkpoint_link(checkpoint_file: Path, tmp_path: Path) -> Path:
    """A per-test name for the shared checkpoint (a symlink: its fusion JSON is per test)."""
    link = tmp_path / "joint.pth"
    link.symlink_to(checkpoint_file)
    return link


@pytest.fixture(scope="session")
def cocosnet_rgb() -> np.ndarray:
    return np.asarray(Image.open(AGIN / "CoCosNet_23.png").convert("RGB"))


@pytest.fixture(scope="session")
def dreaml_rgb() -> np.ndarray:
    # RGBA on disk: convert as the authors do
    return np.asarray(Image.open(AGIN / "Dreaml_coco_17.png").convert("RGB"))
