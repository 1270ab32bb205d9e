"""Procedural labelled 3D primitives (box, sphere, cylinder, cone, torus, ...) with colour,
scale, pose and noise, plus a paired rendered RGB image and caption per sample: a tiny
stand-in for ModelNet + rendered views, for tests and demos. Same seed, same files.

Layout written by ``generate_primitives(out_dir, ...)``::

    out_dir/classes.txt                one class name per line (label = line index)
    out_dir/{split}.npz                points (n, N, 3) float32, normals (n, N, 3), colors (n, 3),
                                       labels (n,), views (n, 2) (azimuth, elevation of the image)
    out_dir/{split}.jsonl              {"image", "caption", "label", "shape", "color", "index"}
    out_dir/images/{split}_{i:05d}.png RGB render of sample i seen from ``views[i]``

``{split}.jsonl`` is the core's image-caption format, so ``vlx.data.image_text`` reads it.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

SHAPES = ("box", "sphere", "cylinder", "cone", "torus", "tetrahedron", "octahedron", "arrow")
COLORS = {
    "red": (0.85, 0.15, 0.12), "green": (0.15, 0.7, 0.2), "blue": (0.15, 0.3, 0.9),
    "yellow": (0.92, 0.85, 0.15), "purple": (0.6, 0.2, 0.75), "orange": (0.95, 0.55, 0.1),
}
# Half the captions leave the colour out: with colour in every caption a small image-text model
# learns colour (trivial) and barely shape, and its text embeddings of "a red box", "a green
# box", ... share no "box" direction, so prompted zero-shot by shape fails (measured: 100%
# colour but 42% shape caption retrieval, 27% shape zero-shot on held-out renders).
CAPTION_TEMPLATES = ("a {color} {shape}", "a 3d model of a {color} {shape}", "a {shape}", "a 3d model of a {shape}")


@dataclass
class PrimitiveSample:
    points: np.ndarray  # (N, 3) float32
    normals: np.ndarray  # (N, 3) float32
    shape: str
    color: str


def _mesh(shape: str, rng: np.random.Generator):
    """An open3d triangle mesh of ``shape`` with random proportions kept inside the range
    where the classes stay distinguishable (a cylinder is never a disc or a needle)."""
    import open3d as o3d

    G = o3d.geometry.TriangleMesh
    u = rng.uniform
    if shape == "box":
        m = G.create_box(u(0.6, 1.4), u(0.6, 1.4), u(0.6, 1.4))
    elif shape == "sphere":
        m = G.create_sphere(radius=u(0.5, 0.8), resolution=20)
    elif shape == "cylinder":
        m = G.create_cylinder(radius=u(0.3, 0.5), height=u(1.2, 1.8), resolution=32)
    elif shape == "cone":
        m = G.create_cone(radius=u(0.4, 0.6), height=u(1.0, 1.6), resolution=32)
    elif shape == "torus":
        m = G.create_torus(torus_radius=u(0.6, 0.8), tube_radius=u(0.15, 0.25), radial_resolution=30, tubular_resolution=20)
    elif shape == "tetrahedron":
        m = G.create_tetrahedron(radius=u(0.7, 1.0))
    elif shape == "octahedron":
        m = G.create_octahedron(radius=u(0.7, 1.0))
    elif shape == "arrow":
        m = G.create_arrow(cylinder_radius=u(0.08, 0.14), cone_radius=u(0.22, 0.3), cylinder_height=u(0.9, 1.2), cone_height=u(0.4, 0.6))
    else:
        raise ValueError(f"unknown primitive {shape!r}; known: {SHAPES}")
    return m


def _sample_surface(mesh, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Area-weighted uniform samples on the mesh surface with their face normals. Done here
    rather than with open3d's sample_points_uniformly so the seed is ours, not a global one."""
    V = np.asarray(mesh.vertices)
    F = np.asarray(mesh.triangles)
    a, b, c = V[F[:, 0]], V[F[:, 1]], V[F[:, 2]]
    cross = np.cross(b - a, c - a)
    area = np.linalg.norm(cross, axis=1)
    face = rng.choice(len(F), size=n, p=area / area.sum())
    r1, r2 = rng.random(n), rng.random(n)
    s = np.sqrt(r1)
    pts = (1 - s)[:, None] * a[face] + (s * (1 - r2))[:, None] * b[face] + (s * r2)[:, None] * c[face]
    normals = cross[face] / np.maximum(area[face], 1e-12)[:, None]
    return pts, normals


def _rotation(yaw: float, tilt_x: float, tilt_y: float) -> np.ndarray:
    cz, sz = math.cos(yaw), math.sin(yaw)
    cx, sx = math.cos(tilt_x), math.sin(tilt_x)
    cy, sy = math.cos(tilt_y), math.sin(tilt_y)
    Rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    Rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    Ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    return Rz @ Rx @ Ry


def make_primitive(shape: str, color: str, n_points: int, rng: np.random.Generator, noise: float = 0.01, max_tilt_deg: float = 30.0) -> PrimitiveSample:
    """One primitive: random proportions, random yaw and a tilt up to ``max_tilt_deg``,
    centred, scaled by U(0.7, 1.0) into the unit sphere, Gaussian noise of std ``noise``."""
    mesh = _mesh(shape, rng)
    pts, normals = _sample_surface(mesh, n_points, rng)
    t = math.radians(max_tilt_deg)
    R = _rotation(rng.uniform(0, 2 * math.pi), rng.uniform(-t, t), rng.uniform(-t, t))
    pts = (pts - pts.mean(0)) @ R.T
    normals = normals @ R.T
    pts = pts / np.linalg.norm(pts, axis=1).max() * rng.uniform(0.7, 1.0)
    pts = pts + rng.normal(0, noise, pts.shape)
    return PrimitiveSample(pts.astype(np.float32), normals.astype(np.float32), shape, color)


def render_rgb(points: np.ndarray, normals: np.ndarray, color: tuple[float, float, float], view: tuple[float, float], size: int,
               background: float = 0.0) -> np.ndarray:
    """Orthographic point-splat render with Lambert shading: (size, size, 3) uint8. Uses the
    same cameras as ``pointcloud.projection`` so pixel (row, col) of the image and of a depth
    view from ``view`` see the same surface points."""
    from pointcloud.projection import project_points, view_matrices, visible_points

    pts = torch.from_numpy(points).unsqueeze(0)
    mats = view_matrices([view])
    pix, depth = project_points(pts, mats, size)
    vis = visible_points(pix, depth, size, tol=0.03)[0, 0]
    cam_normals = torch.from_numpy(normals) @ mats[0].T
    # Light from the upper front-left of the camera; |n.l| because mesh normals are unsigned here.
    light = torch.tensor([-0.4, 0.5, -0.75])
    shade = 0.35 + 0.65 * (cam_normals @ (light / light.norm())).abs()
    rgb = shade[:, None] * torch.tensor(color)[None]
    img = torch.full((size * size, 3), background)
    count = torch.zeros(size * size)
    p = pix[0, 0][vis]
    acc = torch.zeros(size * size, 3).index_add_(0, p, rgb[vis])
    count.index_add_(0, p, torch.ones(len(p)))
    hit = count > 0
    img[hit] = acc[hit] / count[hit, None]
    return (img.view(size, size, 3).clamp(0, 1) * 255).round().to(torch.uint8).numpy()


def generate_primitives(out_dir: str | Path, n_train_per_class: int = 100, n_test_per_class: int = 30, n_points: int = 1024,
                        image_size: int = 64, seed: int = 0, noise: float = 0.01, shapes: tuple[str, ...] = SHAPES,
                        render_points: int = 4000, progress: bool = True) -> Path:
    """Write the primitives dataset (see the module docstring) and return ``out_dir``.
    Each image is rendered from a denser sample of the same surface, seen from a random
    azimuth and an elevation in [0, 30] degrees, recorded in ``views``."""
    from PIL import Image
    from tqdm import tqdm

    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "classes.txt").write_text("\n".join(shapes) + "\n")
    color_names = list(COLORS)
    for split, per_class, split_seed in (("train", n_train_per_class, seed), ("test", n_test_per_class, seed + 1_000_003)):
        rng = np.random.default_rng(split_seed)
        n = per_class * len(shapes)
        labels = np.repeat(np.arange(len(shapes)), per_class)
        rng.shuffle(labels)
        P = np.zeros((n, n_points, 3), np.float32)
        Nm = np.zeros((n, n_points, 3), np.float32)
        C = np.zeros((n, 3), np.float32)
        views = np.zeros((n, 2), np.float32)
        lines = []
        for i in tqdm(range(n), desc=f"primitives {split}", disable=not progress):
            shape = shapes[labels[i]]
            color = color_names[rng.integers(len(color_names))]
            dense = make_primitive(shape, color, n_points + render_points, rng, noise)
            P[i], Nm[i] = dense.points[:n_points], dense.normals[:n_points]
            C[i] = COLORS[color]
            views[i] = (rng.uniform(0, 360), rng.uniform(0, 30))
            img = render_rgb(dense.points, dense.normals, COLORS[color], tuple(views[i]), image_size)
            name = f"images/{split}_{i:05d}.png"
            Image.fromarray(img).save(out / name)
            caption = CAPTION_TEMPLATES[rng.integers(len(CAPTION_TEMPLATES))].format(color=color, shape=shape)
            lines.append(json.dumps({"image": name, "caption": caption, "label": int(labels[i]), "shape": shape, "color": color, "index": i}))
        np.savez(out / f"{split}.npz", points=P, normals=Nm, colors=C, labels=labels.astype(np.int64), views=views)
        (out / f"{split}.jsonl").write_text("\n".join(lines) + "\n")
    return out
