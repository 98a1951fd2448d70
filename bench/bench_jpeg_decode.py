"""JPEG decoding for JOINT: Pillow (what the preprocessing workers use) against
torchvision's ``decode_jpeg`` on a device (nvJPEG on CUDA). Not a test.

The question before GPU decoding may go into the predictor: are the pixels the same?
The partition's shuffle is seeded from the decoded pixels
(``scoring.joint.preprocess.content_key``), and every network input is cut from them, so
a decoder that differs by one grey level gives other scores for the same file than a
CPU worker does. Reported per chroma subsampling: images decoded bit-identically,
equal content keys, the largest difference and the share of values that differ; then
the speed of each decoder (best of 3): Pillow one image at a time, torchvision on the
device with the whole list at once.

    .venv/bin/python bench/bench_jpeg_decode.py --device cpu --images 16
    python3 bench/bench_jpeg_decode.py --device cuda --images 128 --json out.json

Images: JPEGs encoded here (quality 90) from the AGIN samples in tests/data, at
512 and 1024 px, 4:2:0 and 4:4:4. Needs torch, torchvision, numpy and Pillow only.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torchvision.io import decode_jpeg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from scoring.joint.preprocess import content_key, load_rgb  # noqa: E402

SAMPLES = ROOT / "tests" / "data" / "agin_samples"
SUBSAMPLING = {"4:2:0": 2, "4:4:4": 0}  # Pillow's `subsampling` values


def make_jpegs(n: int, subsampling: str) -> list[bytes]:
    bases = [load_rgb(SAMPLES / "CoCosNet_23.png"), load_rgb(SAMPLES / "Dreaml_coco_17.png")]
    out = []
    for i in range(n):
        im = bases[i % 2]
        if i // 2 % 2:
            im = im.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        size = 512 if i % 4 < 2 else 1024
        im = im.resize((size, size * 3 // 4), Image.Resampling.BICUBIC)
        buffer = io.BytesIO()
        im.save(buffer, "JPEG", quality=90, subsampling=SUBSAMPLING[subsampling])
        out.append(buffer.getvalue())
    return out


def pil_decode(data: bytes) -> Image.Image:
    with Image.open(io.BytesIO(data)) as im:
        im.load()  # Image.open only reads the header
        return load_rgb(im).copy()


def device_decode(datas: list[bytes], device: torch.device) -> list[torch.Tensor]:
    tensors = [torch.frombuffer(bytearray(d), dtype=torch.uint8) for d in datas]
    return decode_jpeg(tensors, device=device)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def best_of(fn, repeat: int = 3) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def compare(datas: list[bytes], device: torch.device) -> dict:
    reference = [pil_decode(d) for d in datas]
    decoded = device_decode(datas, device)
    identical = keys = 0
    max_diff = 0
    differing = total = 0
    for ref, dec in zip(reference, decoded, strict=True):
        a = np.asarray(ref)
        b = dec.permute(1, 2, 0).cpu().numpy()
        if a.shape != b.shape:
            raise SystemExit(f"shapes differ: {a.shape} against {b.shape}")
        diff = np.abs(a.astype(np.int16) - b.astype(np.int16))
        identical += int(not diff.any())
        keys += int(content_key(ref) == content_key(Image.fromarray(b)))
        max_diff = max(max_diff, int(diff.max()))
        differing += int((diff > 0).sum())
        total += diff.size
    pil_s = best_of(lambda: [pil_decode(d) for d in datas])

    def on_device():
        device_decode(datas, device)
        sync(device)

    on_device()  # warm: the first call loads the decoder
    device_s = best_of(on_device)
    return {
        "images": len(datas),
        "identical": identical,
        "content_keys_equal": keys,
        "max_abs_diff": max_diff,
        "share_of_values_differing": differing / total,
        "pil_img_per_s": len(datas) / pil_s,
        "device_img_per_s": len(datas) / device_s,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    device = torch.device(args.device)
    results = {}
    print(f"torch {torch.__version__}, device {device}, {args.images} JPEGs per subsampling")
    for name in SUBSAMPLING:
        res = compare(make_jpegs(args.images, name), device)
        results[name] = res
        print(
            f"{name}: identical {res['identical']}/{res['images']}, content keys equal "
            f"{res['content_keys_equal']}/{res['images']}, max |diff| {res['max_abs_diff']}, "
            f"values differing {res['share_of_values_differing']:.4%}; Pillow "
            f"{res['pil_img_per_s']:.1f} img/s, decode_jpeg on {device} "
            f"{res['device_img_per_s']:.1f} img/s"
        )
    if args.json:
        args.json.write_text(json.dumps({"device": str(device), "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
