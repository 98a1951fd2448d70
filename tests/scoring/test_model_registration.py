"""A model file is checked to load at registration (service, admin form), on the CPU,
within MAX_MODEL_BYTES, without running code from the file."""

from __future__ import annotations

import pathlib

import pytest
import torch
from torch import nn

from scoring.model_scoring.services import ScoringError, model_version_register
from scoring.models import ModelVersion

pytestmark = [
    pytest.mark.django_db,
    # torch 2.x calls torch.jit deprecated; TorchScript is still the registered format.
    pytest.mark.filterwarnings("ignore:`torch.jit.*deprecated:FutureWarning"),
]


class TwoHeads(nn.Module):
    def forward(self, xt: torch.Tensor, xr: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return xt.mean(dim=(1, 2, 3)), xr.mean(dim=(1, 2, 3))


@pytest.fixture
def scripted(tmp_path):
    path = tmp_path / "joint.pt"
    torch.jit.save(torch.jit.script(TwoHeads()), str(path))
    return path


class Payload:
    """Unpickling this would create a file: the proof that a loader ran foreign code."""

    def __init__(self, marker: pathlib.Path):
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (self.marker,))


def test_a_torchscript_model_registers(scripted):
    version = model_version_register(name="ts", kind="torchscript", checkpoint_path=str(scripted))
    assert version.checkpoint_path == str(scripted.resolve())
    assert len(version.checkpoint_sha256) == 64


@pytest.mark.parametrize(
    "content",
    [
        b"hello, I am a text file\n",
        b"",
        b"PK\x03\x04 not really a zip",
    ],
)
def test_a_file_that_is_not_torchscript_is_refused_on_its_field(tmp_path, content):
    path = tmp_path / "model.pt"
    path.write_bytes(content)
    with pytest.raises(ScoringError, match="not a TorchScript model") as refused:
        model_version_register(name="ts", kind="torchscript", checkpoint_path=str(path))
    assert refused.value.field == "checkpoint_path"
    assert not ModelVersion.objects.exists()


def test_a_plain_state_dict_is_not_torchscript(tmp_path):
    path = tmp_path / "weights.pth"
    torch.save({"w": torch.zeros(3)}, path)
    with pytest.raises(ScoringError, match="not a TorchScript model"):
        model_version_register(name="ts", kind="torchscript", checkpoint_path=str(path))
    assert not ModelVersion.objects.exists()


@pytest.mark.parametrize("kind", ["torchscript", "joint"])
def test_a_pickle_that_runs_code_is_refused_without_running_it(tmp_path, kind):
    marker = tmp_path / "ran"
    path = tmp_path / "evil.pt"
    torch.save({"state_dict": Payload(marker)}, path)
    with pytest.raises(ScoringError) as refused:
        model_version_register(name="evil", kind=kind, checkpoint_path=str(path))
    assert refused.value.field == "checkpoint_path"
    assert not marker.exists()
    assert not ModelVersion.objects.exists()


def test_a_file_over_max_model_bytes_is_refused_before_loading(scripted, settings, monkeypatch):
    settings.MAX_MODEL_BYTES = scripted.stat().st_size - 1

    def never(*args, **kwargs):
        raise AssertionError("an oversized file was loaded")

    monkeypatch.setattr(torch.jit, "load", never)
    with pytest.raises(ScoringError, match="MAX_MODEL_BYTES") as refused:
        model_version_register(name="ts", kind="torchscript", checkpoint_path=str(scripted))
    assert refused.value.field == "checkpoint_path"
    assert not ModelVersion.objects.exists()


def test_loading_maps_to_the_cpu(scripted, monkeypatch):
    calls = []
    real = torch.jit.load

    def spy(*args, **kwargs):
        calls.append(kwargs.get("map_location"))
        return real(*args, **kwargs)

    monkeypatch.setattr(torch.jit, "load", spy)
    model_version_register(name="ts", kind="torchscript", checkpoint_path=str(scripted))
    assert calls == ["cpu"]


# --- The admin's add form -------------------------------------------------------------


def _add(client, **fields):
    data = {
        "name": "ts",
        "kind": "torchscript",
        "description": "",
        "checkpoint_path": "",
        "baseline": "",
        "fusion_w_t": "0.145",
        "fusion_w_r": "0.769",
        "options": "{}",
        **fields,
    }
    return client.post("/admin/scoring/modelversion/add/", data)


def test_admin_shows_an_unloadable_file_on_its_field(client, admin_user, tmp_path):
    client.force_login(admin_user)
    text = tmp_path / "notes.txt"
    text.write_text("just words")
    response = _add(client, checkpoint_path=str(text))
    assert response.status_code == 200  # the form again, not a redirect
    errors = response.context["adminform"].form.errors
    assert "not a TorchScript model" in errors["checkpoint_path"][0]
    assert not ModelVersion.objects.exists()
    missing = _add(client, checkpoint_path=str(tmp_path / "absent.pt"))
    assert "not found" in missing.context["adminform"].form.errors["checkpoint_path"][0]


def test_admin_registers_a_loadable_model(client, admin_user, scripted):
    client.force_login(admin_user)
    response = _add(client, checkpoint_path=str(scripted))
    assert response.status_code == 302, response.context["adminform"].form.errors
    version = ModelVersion.objects.get(name="ts")
    assert version.created_by == admin_user and len(version.checkpoint_sha256) == 64
    again = _add(client, checkpoint_path=str(scripted))  # the same name twice
    assert "name" in again.context["adminform"].form.errors
    assert ModelVersion.objects.count() == 1


def test_api_answers_an_unloadable_file_as_a_400_on_its_field(client, admin_user, tmp_path):
    client.force_login(admin_user)
    text = tmp_path / "notes.txt"
    text.write_text("just words")
    response = client.post(
        "/api/v1/model-versions/",
        {"name": "ts", "kind": "torchscript", "checkpoint_path": str(text)},
        content_type="application/json",
    )
    assert response.status_code == 400, response.content
    body = response.json()
    assert body["error"] and "not a TorchScript model" in body["fields"]["checkpoint_path"]
    assert not ModelVersion.objects.exists()
