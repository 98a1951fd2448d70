"""The demo study: drawn scenes with controlled degradations and simulated raters.

Everything is generated locally and seeded (no downloads). Each degradation and
its strength is recorded in the stimulus metadata together with the "true"
score of every dimension, so analyses of the demo have a known ground truth.
"""

from __future__ import annotations

import io
import math
import random
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter

from annotation import protocol

SIZE = (384, 288)
GENERATORS = ("painter-a", "painter-b", "painter-c")

# Which dimensions each degradation hurts (the first is hurt most).
TECHNICAL_DEGRADATIONS = {
    "blur": ("blur", "detail"),
    "noise": ("artifacts", "detail"),
    "luminance": ("luminance", "contrast"),
    "contrast": ("contrast", "luminance"),
    "blocks": ("artifacts", "detail"),
}
RATIONALITY_DEGRADATIONS = {
    "colors": ("color", "context"),
    "duplicate": ("existence", "layout"),
    "floating": ("layout", "context"),
    "broken": ("existence", "sensory_clarity"),
    "misplaced": ("context", "sensory_clarity"),
}


@dataclass
class DemoImage:
    name: str
    png: bytes
    metadata: dict
    truth: dict[str, float]
    role: str = "test"
    expected: tuple[float, float] | None = None


@dataclass
class Scene:
    seed: int
    sky_top: tuple[int, int, int]
    sky_bottom: tuple[int, int, int]
    ground: tuple[int, int, int]
    horizon: int
    sun: tuple[int, int, int]
    house_x: int
    tree_xs: tuple[int, ...]
    house_color: tuple[int, int, int]
    roof_color: tuple[int, int, int]


def make_scene(seed: int) -> Scene:
    rng = random.Random(seed)
    w, h = SIZE
    return Scene(
        seed=seed,
        sky_top=(rng.randint(40, 90), rng.randint(110, 160), rng.randint(200, 245)),
        sky_bottom=(rng.randint(170, 220), rng.randint(200, 230), rng.randint(230, 255)),
        ground=(rng.randint(60, 110), rng.randint(130, 170), rng.randint(50, 80)),
        horizon=rng.randint(int(h * 0.55), int(h * 0.68)),
        sun=(rng.randint(int(w * 0.55), int(w * 0.9)), rng.randint(25, 70), rng.randint(18, 28)),
        house_x=rng.randint(int(w * 0.1), int(w * 0.45)),
        tree_xs=tuple(sorted(rng.sample(range(int(w * 0.55), int(w * 0.95)), 2))),
        house_color=(rng.randint(170, 230), rng.randint(120, 180), rng.randint(90, 140)),
        roof_color=(rng.randint(120, 170), rng.randint(40, 70), rng.randint(30, 60)),
    )


def _sky(draw: ImageDraw.ImageDraw, scene: Scene, top, bottom) -> None:
    w, _ = SIZE
    for y in range(scene.horizon):
        t = y / max(1, scene.horizon - 1)
        color = tuple(int(a + (b - a) * t) for a, b in zip(top, bottom, strict=True))
        draw.line([(0, y), (w, y)], fill=color)


def _house(draw, x, base, color, roof, *, upside_down=False) -> None:
    bw, bh = 90, 62
    draw.rectangle([x, base - bh, x + bw, base], fill=color, outline=(60, 40, 30))
    if upside_down:
        draw.polygon([(x - 8, base), (x + bw + 8, base), (x + bw // 2, base + 40)], fill=roof)
    else:
        draw.polygon(
            [(x - 8, base - bh), (x + bw + 8, base - bh), (x + bw // 2, base - bh - 40)], fill=roof
        )
    draw.rectangle([x + 38, base - 34, x + 54, base], fill=(90, 60, 40))
    draw.rectangle(
        [x + 10, base - 50, x + 28, base - 34], fill=(200, 230, 250), outline=(60, 40, 30)
    )
    draw.rectangle(
        [x + 62, base - 50, x + 80, base - 34], fill=(200, 230, 250), outline=(60, 40, 30)
    )


def _tree(draw, x, base, crown=(40, 120, 45), trunk=(100, 70, 40), *, inverted=False) -> None:
    if inverted:
        draw.rectangle([x - 5, base - 70, x + 5, base - 10], fill=trunk)
        draw.ellipse([x - 26, base - 30, x + 26, base + 18], fill=crown)
    else:
        draw.rectangle([x - 5, base - 40, x + 5, base], fill=trunk)
        draw.ellipse([x - 26, base - 92, x + 26, base - 34], fill=crown)


def render(scene: Scene, rationality: str | None = None, strength: float = 0.0) -> Image.Image:
    """Draw the scene, with a rationality degradation of the given strength."""
    w, h = SIZE
    img = Image.new("RGB", SIZE)
    draw = ImageDraw.Draw(img)
    sky_top, sky_bottom, ground = scene.sky_top, scene.sky_bottom, scene.ground
    crown = (40, 120, 45)
    if rationality == "colors":
        # Implausible colours: a green-magenta sky and a blue meadow, more with strength.
        mix = min(1.0, 0.4 + strength)
        sky_top = _blend(sky_top, (60, 200, 60), mix)
        sky_bottom = _blend(sky_bottom, (230, 80, 200), mix)
        ground = _blend(ground, (40, 60, 200), mix)
        crown = _blend(crown, (220, 40, 40), mix)
    _sky(draw, scene, sky_top, sky_bottom)
    draw.rectangle([0, scene.horizon, w, h], fill=ground)
    sx, sy, sr = scene.sun
    draw.ellipse([sx - sr, sy - sr, sx + sr, sy + sr], fill=(255, 220, 90))
    if rationality == "duplicate":
        # Two or three suns, a second house overlapping the first.
        for k in range(1 + int(strength > 0.6)):
            ox = sx - 90 * (k + 1)
            draw.ellipse(
                [ox - sr, sy - sr + 10 * k, ox + sr, sy + sr + 10 * k], fill=(255, 220, 90)
            )
    base = scene.horizon + 40
    lift = int(strength * 110) if rationality == "floating" else 0
    _house(
        draw,
        scene.house_x,
        base - lift,
        scene.house_color,
        scene.roof_color,
        upside_down=rationality == "broken",
    )
    if rationality == "duplicate":
        _house(draw, scene.house_x + 40, base - 12, scene.house_color, scene.roof_color)
    for i, tx in enumerate(scene.tree_xs):
        inverted = rationality == "broken" and (i == 0 or strength > 0.6)
        _tree(draw, tx, base + 10 - (lift if i == 0 else 0), crown, inverted=inverted)
    if rationality == "misplaced":
        # A boat on the meadow and a fish in the sky: objects out of their context.
        bx = scene.house_x + 110
        draw.polygon(
            [(bx, base), (bx + 70, base), (bx + 58, base + 16), (bx + 12, base + 16)],
            fill=(140, 90, 50),
        )
        draw.line([(bx + 35, base), (bx + 35, base - 50)], fill=(80, 60, 40), width=3)
        draw.polygon(
            [(bx + 36, base - 48), (bx + 36, base - 8), (bx + 64, base - 10)], fill=(245, 245, 245)
        )
        if strength > 0.5:
            fx, fy = scene.sun[0] - 150, scene.sun[1] + 30
            draw.ellipse([fx, fy, fx + 50, fy + 20], fill=(250, 140, 40))
            draw.polygon(
                [(fx + 48, fy + 10), (fx + 66, fy), (fx + 66, fy + 20)], fill=(250, 140, 40)
            )
    return img


def _blend(a, b, t):
    return tuple(int(x + (y - x) * t) for x, y in zip(a, b, strict=True))


def degrade_technical(img: Image.Image, kind: str, strength: float, seed: int) -> Image.Image:
    """Blur, noise, luminance and contrast shifts, or JPEG block artifacts."""
    if kind == "blur":
        return img.filter(ImageFilter.GaussianBlur(radius=0.5 + 5.5 * strength))
    if kind == "noise":
        rng = np.random.default_rng(seed)
        arr = np.asarray(img, dtype=np.float32)
        arr = arr + rng.normal(0, 6 + 44 * strength, arr.shape)
        return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
    if kind == "luminance":
        # Darker for odd seeds, washed out for even ones.
        factor = 1 - 0.75 * strength if seed % 2 else 1 + 1.1 * strength
        return ImageEnhance.Brightness(img).enhance(factor)
    if kind == "contrast":
        return ImageEnhance.Contrast(img).enhance(max(0.08, 1 - 0.9 * strength))
    if kind == "blocks":
        buffer = io.BytesIO()
        img.save(buffer, "JPEG", quality=max(1, int(30 - 29 * strength)))
        return Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")
    raise ValueError(f"unknown technical degradation {kind!r}")


def truth_for(perspective: str | None, kind: str | None, strength: float, base: float) -> dict:
    """The demo's ground truth: the score an ideal unbiased rater gives each dimension."""
    truth = {d: base for d in protocol.DIMENSION_KEYS}
    if perspective is None:
        return {k: round(v, 1) for k, v in truth.items()}
    hurt = (TECHNICAL_DEGRADATIONS if perspective == "technical" else RATIONALITY_DEGRADATIONS)[
        kind
    ]
    truth[hurt[0]] -= 70 * strength
    truth[hurt[1]] -= 35 * strength
    truth[perspective] -= 55 * strength
    other = "rationality" if perspective == "technical" else "technical"
    truth[other] -= 5 * strength
    truth["overall"] -= 48 * strength
    return {k: round(min(100.0, max(0.0, v)), 1) for k, v in truth.items()}


def _png(img: Image.Image) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, "PNG", optimize=False)
    return buffer.getvalue()


def demo_images(n_scenes: int = 10, seed: int = 2024) -> list[DemoImage]:
    """About 60 test images (each scene clean plus 5 degradations), 4 training, 4 gold."""
    rng = random.Random(seed)
    images: list[DemoImage] = []
    tech_kinds, rat_kinds = list(TECHNICAL_DEGRADATIONS), list(RATIONALITY_DEGRADATIONS)
    for i in range(n_scenes):
        scene = make_scene(seed * 100 + i)
        generator = GENERATORS[i % len(GENERATORS)]
        base = rng.uniform(80, 92)
        variants: list[tuple[str | None, str | None, float]] = [(None, None, 0.0)]
        for kind in rng.sample(tech_kinds, 3):
            variants.append(("technical", kind, round(rng.uniform(0.2, 1.0), 2)))
        for kind in rng.sample(rat_kinds, 2):
            variants.append(("rationality", kind, round(rng.uniform(0.2, 1.0), 2)))
        for perspective, kind, strength in variants:
            images.append(_make(scene, i, generator, perspective, kind, strength, base))
    # Training spans the range (anchoring); gold items are unambiguous.
    extra = make_scene(seed * 100 + 99)
    for name, perspective, kind, strength, role in (
        ("training-clean", None, None, 0.0, "training"),
        ("training-blur", "technical", "blur", 0.9, "training"),
        ("training-colors", "rationality", "colors", 0.8, "training"),
        ("training-noise", "technical", "noise", 0.5, "training"),
        ("gold-clean", None, None, 0.0, "gold"),
        ("gold-blocks", "technical", "blocks", 1.0, "gold"),
        ("gold-broken", "rationality", "broken", 1.0, "gold"),
        ("gold-dark", "technical", "luminance", 1.0, "gold"),
    ):
        scene = extra if role == "training" else make_scene(seed * 100 + 50 + len(images))
        item = _make(scene, 99, "painter-a", perspective, kind, strength, 88.0)
        item.name = f"{name}.png"
        item.role = role
        center = item.truth["overall"]
        half = 20 if role == "training" else 30
        item.expected = (max(0.0, round(center - half)), min(100.0, round(center + half)))
        images.append(item)
    return images


def _make(scene, index, generator, perspective, kind, strength, base) -> DemoImage:
    img = render(scene, kind if perspective == "rationality" else None, strength)
    if perspective == "technical":
        img = degrade_technical(img, kind, strength, scene.seed)
    label = f"{kind}-{int(round(strength * 100)):03d}" if kind else "clean"
    truth = truth_for(perspective, kind, strength, base)
    return DemoImage(
        name=f"scene{index:02d}-{label}.png",
        png=_png(img),
        metadata={
            "scene": index,
            "perspective": perspective or "none",
            "degradation": kind or "none",
            "strength": strength,
            "truth": truth,
        },
        truth=truth,
    )


@dataclass(frozen=True)
class SimulatedRater:
    """A rater with a known bias and noise; careless ones answer at random."""

    bias: float
    noise: float
    careless: bool

    def scores(self, truth: dict[str, float], keys, rng: random.Random, scale) -> dict[str, float]:
        """Scores on ``scale`` for truths on the same scale; bias and noise are in
        0-100 units and shrink with the scale's range. Values snap to whole steps,
        as the slider does."""
        unit = (scale.maximum - scale.minimum) / 100
        out = {}
        for key in keys:
            if self.careless:
                value = rng.uniform(scale.minimum, scale.maximum)
            else:
                value = truth[key] + (self.bias + rng.gauss(0, self.noise)) * unit
            out[key] = float(round(min(scale.maximum, max(scale.minimum, value))))
        return out


def simulated_raters(n: int, seed: int = 7, careless_share: float = 0.12) -> list[SimulatedRater]:
    rng = random.Random(seed)
    n_careless = max(1, math.floor(n * careless_share)) if n >= 5 else 0
    raters = [
        SimulatedRater(
            bias=round(rng.gauss(0, 8), 2),
            noise=round(rng.uniform(5, 12), 2),
            careless=i < n_careless,
        )
        for i in range(n)
    ]
    rng.shuffle(raters)
    return raters


def scale_truth(truth: dict[str, float], scale) -> dict[str, float]:
    """Map 0-100 truths onto another scale (e.g. ACR 1-5)."""
    span = scale.maximum - scale.minimum
    return {k: scale.minimum + span * v / 100 for k, v in truth.items()}
