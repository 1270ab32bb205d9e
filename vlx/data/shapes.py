"""Shapes world: procedural 2D scenes of coloured shapes with captions that name objects,
attributes and a spatial relation, plus a hard negative that swaps the relation's
arguments (Structure-CLIP, Huang et al. 2024). Same seed, same files."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from tqdm.auto import tqdm

COLORS = {
    "red": (220, 40, 40),
    "green": (40, 180, 60),
    "blue": (50, 80, 230),
    "yellow": (235, 215, 40),
    "purple": (150, 60, 190),
    "white": (240, 240, 240),
}
SHAPES = ("circle", "square", "triangle")
RELATIONS = ("left of", "right of", "above", "below")


@dataclass(frozen=True)
class ShapeObject:
    color: str
    shape: str

    def phrase(self) -> str:
        return f"a {self.color} {self.shape}"


def _draw(draw: ImageDraw.ImageDraw, obj: ShapeObject, cx: float, cy: float, r: float) -> None:
    fill = COLORS[obj.color]
    if obj.shape == "circle":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fill)
    elif obj.shape == "square":
        draw.rectangle([cx - r, cy - r, cx + r, cy + r], fill=fill)
    elif obj.shape == "triangle":
        draw.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=fill)
    else:
        raise ValueError(f"unknown shape {obj.shape!r}")


def sample_scene(rng: np.random.Generator, size: int) -> dict:
    """Two distinct objects placed so that ``a REL b`` holds clearly."""
    names = [(c, s) for c in COLORS for s in SHAPES]
    i, j = rng.choice(len(names), size=2, replace=False)
    a, b = ShapeObject(*names[i]), ShapeObject(*names[j])
    rel = RELATIONS[rng.integers(len(RELATIONS))]
    r = size * rng.uniform(0.11, 0.16)
    lo, hi = r + 1, size - r - 1
    # a on the "first" side of the axis, b on the other, with a clear gap
    first = rng.uniform(lo, size / 2 - r * 0.3)
    second = rng.uniform(size / 2 + r * 0.3, hi)
    other_a, other_b = rng.uniform(lo, hi, size=2)
    if rel == "left of":
        pa, pb = (first, other_a), (second, other_b)
    elif rel == "right of":
        pa, pb = (second, other_a), (first, other_b)
    elif rel == "above":
        pa, pb = (other_a, first), (other_b, second)
    else:  # below
        pa, pb = (other_a, second), (other_b, first)
    return {"a": a, "b": b, "relation": rel, "pos_a": pa, "pos_b": pb, "radius": r}


def render_scene(scene: dict, size: int, background: tuple[int, int, int] = (30, 30, 30)) -> Image.Image:
    img = Image.new("RGB", (size, size), background)
    draw = ImageDraw.Draw(img)
    _draw(draw, scene["a"], *scene["pos_a"], scene["radius"])
    _draw(draw, scene["b"], *scene["pos_b"], scene["radius"])
    return img


def caption(scene: dict) -> str:
    return f"{scene['a'].phrase()} {scene['relation']} {scene['b'].phrase()}"


def swapped_caption(scene: dict) -> str:
    """The relation-swap hard negative: same words, arguments in the other order."""
    return f"{scene['b'].phrase()} {scene['relation']} {scene['a'].phrase()}"


def generate_shapes_world(out_dir: str | Path, n_train: int = 4000, n_test: int = 200, image_size: int = 64, seed: int = 0, progress: bool = True) -> Path:
    """Write ``images/*.png``, ``train.jsonl`` and ``test.jsonl`` (one record per image:
    image, caption, negative, objects, relation) under ``out_dir``; returns ``out_dir``."""
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for split, n in (("train", n_train), ("test", n_test)):
        records = []
        for k in tqdm(range(n), desc=f"shapes world {split}", disable=not progress, leave=False):
            scene = sample_scene(rng, image_size)
            name = f"images/{split}_{k:05d}.png"
            render_scene(scene, image_size).save(out / name, optimize=False)
            records.append(
                {
                    "image": name,
                    "caption": caption(scene),
                    "negative": swapped_caption(scene),
                    "objects": [scene["a"].phrase(), scene["b"].phrase()],
                    "relation": scene["relation"],
                }
            )
        tmp = out / f".{split}.jsonl.tmp"
        tmp.write_text("".join(json.dumps(r) + "\n" for r in records))
        tmp.replace(out / f"{split}.jsonl")
    (out / "meta.json").write_text(json.dumps({"n_train": n_train, "n_test": n_test, "image_size": image_size, "seed": seed}))
    return out
