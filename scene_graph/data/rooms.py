"""Procedural 3D rooms for grounding and QA that need relations.

Each room holds coloured primitives (box, sphere, cylinder, cone) on a floor, some stacked
on boxes, with several objects of the same shape (the distractors ScanRefer calls
"multiple"). Rooms are written in ScanNet's layout; referring expressions as ScanRefer json
("the cylinder left of the red box"), the same as an Sr3D-style csv, and questions as ScanQA
json ("what color is the cone behind the blue sphere?"). Every expression is generated from
the relations of :mod:`scene_graph.builder`, and is only kept when it singles out its target
among the objects of the target's shape. Same seed, same files.
"""
from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from scene_graph.builder import GraphConfig, SceneObjects, boxes_from_points, build_scene_graph
from scene_graph.data.scannet import write_scannet_scene
from scene_graph.relations import REL_INDEX, RelationConfig

SHAPES = ("box", "sphere", "cylinder", "cone")
COLORS = {"red": (0.85, 0.1, 0.1), "green": (0.1, 0.75, 0.15), "blue": (0.1, 0.2, 0.9), "yellow": (0.9, 0.85, 0.1)}
PHRASES = {
    "left": "left of", "right": "right of", "front": "in front of", "behind": "behind",
    "on": "on top of", "supports": "under", "closest": "closest to", "farthest": "farthest from",
}
TEMPLATES = ("the {t} {p} the {a}", "find the {t} that is {p} the {a}", "it is the {t} {p} the {a}")


@dataclass
class RoomConfig:
    n_train: int = 300
    n_val: int = 60
    min_objects: int = 6
    max_objects: int = 10
    points_per_object: int = 128
    stack_prob: float = 0.25      # chance that a small object sits on a box
    room_size: float = 4.0        # metres, square
    expressions_per_scene: int = 4
    questions_per_scene: int = 3
    unique_fraction: float = 0.2  # share of expressions whose target shape is unique in the room
    seed: int = 0
    # "pointcloud": surfaces from pointcloud's primitive generator (make_primitive, no tilt),
    # fitted to each object's box; "builtin": the small sampler below.
    primitives: str = "builtin"
    # The relation set the expressions are generated from (scene_graph.relations): "viewer"
    # (vlx's own) or "sr3d" (referit3d's rules; the rooms' objects have no front, so no
    # left/right/front/behind).
    relations: str = "viewer"

    def __post_init__(self) -> None:
        if self.relations not in ("viewer", "sr3d"):
            raise ValueError(f"rooms.relations must be 'viewer' or 'sr3d', got {self.relations!r}")
        if self.primitives not in ("builtin", "pointcloud"):
            raise ValueError(f"rooms.primitives must be 'builtin' or 'pointcloud', got {self.primitives!r}")


def _sample_surface(shape: str, n: int, rng: np.random.Generator) -> np.ndarray:
    """``(n, 3)`` points on a primitive inscribed in the unit cube [-0.5, 0.5]^3 (z up).

    Kept private and small: pointcloud's generator makes whole labelled objects with images,
    and a room only needs bare surfaces.
    """
    if shape == "box":
        p = rng.uniform(-0.5, 0.5, (n, 3))
        axis = rng.integers(0, 3, n)
        p[np.arange(n), axis] = rng.choice([-0.5, 0.5], n)
        return p
    if shape == "sphere":
        v = rng.normal(size=(n, 3))
        return 0.5 * v / np.linalg.norm(v, axis=1, keepdims=True)
    theta = rng.uniform(0, 2 * math.pi, n)
    z = rng.uniform(-0.5, 0.5, n)
    if shape == "cylinder":
        r = np.full(n, 0.5)
        cap = rng.random(n) < 0.3
        r[cap] = 0.5 * np.sqrt(rng.random(cap.sum()))
        z[cap] = rng.choice([-0.5, 0.5], cap.sum())
    elif shape == "cone":
        r = 0.5 * (0.5 - z)
        base = rng.random(n) < 0.25
        r[base] = 0.5 * np.sqrt(rng.random(base.sum()))
        z[base] = -0.5
    else:
        raise ValueError(f"unknown shape {shape!r}")
    return np.stack([r * np.cos(theta), r * np.sin(theta), z], axis=1)


def _surface(shape: str, color: str, n: int, rng: np.random.Generator, source: str) -> np.ndarray:
    """``(n, 3)`` surface points of a primitive fitted to the unit cube [-0.5, 0.5]^3."""
    if source == "builtin":
        return _sample_surface(shape, n, rng)
    from pointcloud.data.primitives import make_primitive

    p = make_primitive(shape, color, n, rng, noise=0.0, max_tilt_deg=0.0).points.astype(np.float64)
    lo, hi = p.min(0), p.max(0)
    return (p - (lo + hi) / 2) / np.maximum(hi - lo, 1e-6)


def _make_room(cfg: RoomConfig, rng: np.random.Generator):
    """Objects of one room: list of (shape, colour, centre (3,), size (3,))."""
    n = int(rng.integers(cfg.min_objects, cfg.max_objects + 1))
    # Few shapes per room so that same-shape distractors are common.
    shapes_here = rng.choice(SHAPES, size=int(rng.integers(2, 4)), replace=False)
    cells = 4
    cell = cfg.room_size / cells
    free = list(rng.permutation(cells * cells))
    objs = []
    while len(objs) < n and free:
        c = int(free.pop())
        shape = str(rng.choice(shapes_here))
        color = str(rng.choice(list(COLORS)))
        s = rng.uniform(0.35, 0.6, 3) if shape == "box" else np.full(3, rng.uniform(0.3, 0.55))
        if shape in ("cylinder", "cone"):
            s[2] = rng.uniform(0.4, 0.8)
        xy = (np.array([c % cells, c // cells]) + 0.5) * cell + rng.uniform(-0.15, 0.15, 2) * cell
        objs.append([shape, color, np.array([xy[0], xy[1], s[2] / 2]), s])
        if shape == "box" and len(objs) < n and rng.random() < cfg.stack_prob:
            top = str(rng.choice([x for x in SHAPES if x != "box"] or ["sphere"]))
            ts = np.full(3, min(s[0], s[1]) * 0.7)
            objs.append([top, str(rng.choice(list(COLORS))), np.array([xy[0], xy[1], s[2] + ts[2] / 2]), ts])
    return objs


def _describe(o: dict) -> str:
    return f"{o['color']} {o['shape']}"


def _expressions(objs: list[dict], graph, rng: np.random.Generator, cfg: RoomConfig):
    """(target index, text, relation, anchor index, unique?) tuples that pick their target out."""
    n = len(objs)
    shapes = [o["shape"] for o in objs]
    descr = [_describe(o) for o in objs]
    rel = torch.zeros(n, n, graph.edge_rel.shape[1], dtype=torch.bool)
    rel[graph.edge_index[0], graph.edge_index[1]] = graph.edge_rel
    out = []
    for t in rng.permutation(n):
        same = [k for k in range(n) if shapes[k] == shapes[t]]
        unique = len(same) == 1
        options = []
        for name, phrase in PHRASES.items():
            r = REL_INDEX[name]
            for a in range(n):
                if a == t or not rel[t, a, r] or descr.count(descr[a]) != 1 or shapes[a] == shapes[t]:
                    continue
                if any(rel[k, a, r] for k in same if k != t):
                    continue  # the relation must single the target out among its shape
                options.append((name, phrase, a))
        if not options:
            continue
        name, phrase, a = options[int(rng.integers(len(options)))]
        text = TEMPLATES[int(rng.integers(len(TEMPLATES)))].format(t=shapes[t], p=phrase, a=descr[a])
        out.append((int(t), text, name, a, unique))
    # Mostly "multiple" targets: they are what needs the relations.
    multiple = [e for e in out if not e[4]]
    uniq = [e for e in out if e[4]]
    n_u = min(len(uniq), max(0, round(cfg.expressions_per_scene * cfg.unique_fraction)))
    return (multiple[: cfg.expressions_per_scene - n_u] + uniq[:n_u])[: cfg.expressions_per_scene]


def generate_rooms(out_dir: str | Path, cfg: RoomConfig | None = None, graph_cfg: GraphConfig | None = None) -> Path:
    """Write ``scans/``, ``scanrefer_{train,val}.json``, ``sr3d_{train,val}.csv``,
    ``scanqa_{train,val}.json`` and ``meta.json`` under ``out_dir``; returns it."""
    cfg = cfg or RoomConfig()
    graph_cfg = graph_cfg or GraphConfig(edges="all", between=False, relations=RelationConfig(set=cfg.relations))
    out = Path(out_dir)
    rng = np.random.default_rng(cfg.seed)
    refer: dict[str, list] = {"train": [], "val": []}
    qa: dict[str, list] = {"train": [], "val": []}
    sr3d: dict[str, list] = {"train": [], "val": []}
    total = cfg.n_train + cfg.n_val
    for k in tqdm(range(total), desc="rooms", leave=False):
        split = "train" if k < cfg.n_train else "val"
        scene_id = f"scene{k:04d}_00"
        raw = _make_room(cfg, rng)
        xyz, rgb, inst, points = [], [], [], []
        for oid, (shape, color, centre, size) in enumerate(raw):
            p = _surface(shape, color, cfg.points_per_object, rng, cfg.primitives) * size + centre
            p += rng.normal(0, 0.005, p.shape)
            c = np.clip(np.array(COLORS[color]) + rng.normal(0, 0.04, (len(p), 3)), 0, 1)
            xyz.append(p), rgb.append(c), inst.append(np.full(len(p), oid))
            points.append(torch.from_numpy(np.concatenate([p, c], 1)).float())
        labels = {oid: o[0] for oid, o in enumerate(raw)}
        write_scannet_scene(out / "scans", scene_id, np.concatenate(xyz), np.concatenate(rgb), np.concatenate(inst), labels)
        objs = [{"shape": o[0], "color": o[1]} for o in raw]
        scene = SceneObjects(scene_id, list(range(len(raw))), [o[0] for o in raw], boxes_from_points(points))
        graph = build_scene_graph(scene, graph_cfg)
        for a_id, (t, text, rel_name, a, unique) in enumerate(_expressions(objs, graph, rng, cfg)):
            refer[split].append({"scene_id": scene_id, "object_id": str(t), "object_name": objs[t]["shape"],
                                 "ann_id": str(a_id), "description": text, "token": text.split(),
                                 "relation": rel_name, "anchor_id": str(a), "unique": unique})
            same = [j for j in range(len(objs)) if objs[j]["shape"] == objs[t]["shape"]]
            stim = "-".join([scene_id, objs[t]["shape"], str(len(same)), str(t)] + [str(j) for j in same if j != t])
            sr3d[split].append({"assignmentid": f"{scene_id}_{a_id}", "scan_id": scene_id, "target_id": t,
                                "utterance": text, "stimulus_id": stim, "instance_type": objs[t]["shape"],
                                "reference_type": rel_name, "anchor_ids": f"[{a}]"})
        for q_id, (t, text, rel_name, a, unique) in enumerate(_expressions(objs, graph, rng, RoomConfig(
                expressions_per_scene=cfg.questions_per_scene, unique_fraction=0.0))):
            rest = text.split(f"the {objs[t]['shape']} ", 1)[-1]
            question = f"what color is the {objs[t]['shape']} {rest}?"
            qa[split].append({"scene_id": scene_id, "question_id": f"{split}-{scene_id}-{q_id}",
                              "question": question, "answers": [objs[t]["color"]],
                              "object_ids": [t], "object_names": [objs[t]["shape"]]})
    for split in ("train", "val"):
        (out / f"scanrefer_{split}.json").write_text(json.dumps(refer[split], indent=0))
        (out / f"scanqa_{split}.json").write_text(json.dumps(qa[split], indent=0))
        with (out / f"sr3d_{split}.csv").open("w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(sr3d[split][0]) if sr3d[split] else ["scan_id", "target_id", "utterance"])
            w.writeheader()
            w.writerows(sr3d[split])
    (out / "meta.json").write_text(json.dumps({"config": cfg.__dict__, "shapes": SHAPES, "colors": list(COLORS)}))
    return out


def rooms_ready(out_dir: str | Path, cfg: RoomConfig) -> bool:
    """Whether ``out_dir`` already holds rooms generated with exactly this config."""
    meta = Path(out_dir) / "meta.json"
    return meta.is_file() and json.loads(meta.read_text()).get("config") == cfg.__dict__
