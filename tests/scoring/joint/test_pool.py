"""The preprocessing pool that outlives ``predict`` calls (``persistent_workers``)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from scoring.joint.predictor import ImageError, Predictor

from .test_predictor import _close, _images

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    return _images(tmp_path_factory.mktemp("pool-images"))


@pytest.fixture(scope="module")
def baseline(random_model, images):
    return Predictor(random_model, device="cpu", num_workers=0).predict(images, batch_size=4)


def _alive(pid: int) -> bool:
    """Running (a zombie left for a non-reaping init counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _gone_within(pids: list[int], seconds: float) -> list[int]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and any(_alive(p) for p in pids):
        time.sleep(0.05)
    return [p for p in pids if _alive(p)]


def test_one_pool_serves_every_call_with_the_same_results(random_model, images, baseline):
    with Predictor(random_model, device="cpu", num_workers=2, persistent_workers=True) as p:
        assert p.pool_pids() == []
        first = p.predict(images, batch_size=2)
        pids = p.pool_pids()
        assert len(pids) == 2 and all(_alive(x) for x in pids)
        second = p.predict(images[::-1], batch_size=2)[::-1]
        third = p.predict(images[1:2], batch_size=2)  # a call smaller than a chunk
        assert p.pool_pids() == pids  # the same workers, not new ones per call
        _close(first, baseline)
        _close(second, baseline)
        _close(third, baseline[1:2])
        p.preprocess_on_device = True  # other settings: a new pool replaces the old one
        _close(p.predict(images, batch_size=2), baseline)
        assert p.pool_pids() != pids and _gone_within(pids, 10) == []
        latest = p.pool_pids()
    assert _gone_within(latest, 10) == []  # closed with the predictor


def test_a_failed_call_leaves_the_pool_usable(random_model, images, baseline, tmp_path):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image")
    with Predictor(random_model, device="cpu", num_workers=2, persistent_workers=True) as p:
        p.predict(images[:2], batch_size=2)
        pids = p.pool_pids()
        with pytest.raises(ImageError, match="broken.png"):
            p.predict([images[0], str(broken), *images[1:]], batch_size=2)
        _close(p.predict(images, batch_size=2), baseline)
        assert p.pool_pids() == pids


_KILLED = textwrap.dedent(
    """
    import sys, time
    import numpy as np, torch
    from PIL import Image
    from scoring.joint.predictor import Predictor

    class Tiny(torch.nn.Module):  # the pool is under test, not the network
        def forward(self, xt, xr):
            return xt.mean((1, 2, 3)), xr.mean((1, 2, 3))
        def naturalness(self, t, r):
            return t + r

    images = [Image.fromarray(np.full((64, 64, 3), v, np.uint8)) for v in (10, 200, 90, 30)]
    p = Predictor(Tiny(), device="cpu", num_workers=2, persistent_workers=True)
    p.predict(images, batch_size=2)
    print(*p.pool_pids(), flush=True)
    time.sleep(600)
    """
)


def test_pool_workers_die_with_a_killed_process():
    """SIGKILL leaves no orphans: the workers ask Linux to kill them with their parent
    (their own check of the parent runs only every 5 s)."""
    proc = subprocess.Popen(
        [sys.executable, "-c", _KILLED], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    try:
        line = proc.stdout.readline() if proc.stdout else ""
        pids = [int(x) for x in line.split()]
        assert len(pids) == 2 and all(_alive(x) for x in pids), line
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        assert _gone_within(pids, 2) == []
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
