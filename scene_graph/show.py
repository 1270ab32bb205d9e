"""``vlx scene-graph show SCENE --out FILE``: a scene graph to look at.

Writes ``FILE`` (``.ply``): an open3d line set with each object's box (12 edges, one colour
per class) and one line per relation edge between box centres (one colour per relation),
and ``FILE`` with ``.png``: a top-down matplotlib view of the same (object points, boxes,
labels, relation arrows from target to anchor, a legend of the relations drawn).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from scene_graph.builder import GraphConfig, SceneObjects, build_scene_graph
from scene_graph.relations import RELATIONS, RelationConfig
from vlx.data.errors import DataError

# box edges as pairs of corner indices; corner k has bits (x, y, z) = (k & 1, k >> 1 & 1, k >> 2 & 1)
_EDGES = [(a, b) for a in range(8) for b in range(8) if a < b and bin(a ^ b).count("1") == 1]


def load_any(scene: str | Path) -> SceneObjects:
    """A ScanNet-layout scene folder (``scans/<scene>``) or a built ``<scene>.npz``."""
    p = Path(scene)
    if p.suffix == ".npz":
        from scene_graph.data.scannet_build import load_built_scene

        return load_built_scene(p.parent, p.stem)
    if p.is_dir():
        from scene_graph.data.scannet import load_scannet_scene

        return load_scannet_scene(p.parent, p.name)
    raise DataError(f"{p}: expected a ScanNet-layout scene folder or a built <scene>.npz")


def _colours(n: int, cmap: str = "tab20") -> np.ndarray:
    import matplotlib

    return np.asarray(matplotlib.colormaps[cmap](np.arange(n) % 20))[:, :3]


def show_scene(
    scene: str | Path, out: str | Path, relations: str = "sr3d", max_points: int = 20000
) -> tuple[Path, Path]:
    """Write the PLY line set and the PNG of one scene's graph; returns both paths."""
    import open3d as o3d

    objs = load_any(scene)
    g = build_scene_graph(objs, GraphConfig(edges="all", relations=RelationConfig(set=relations)))
    out = Path(out).with_suffix(".ply")
    out.parent.mkdir(parents=True, exist_ok=True)
    boxes = g.box[:, :6].double().numpy()
    classes = sorted(set(objs.labels))
    cls_col = _colours(len(classes))
    rel_col = _colours(len(RELATIONS), "tab20b")
    corners = np.array([[(k & 1), (k >> 1) & 1, (k >> 2) & 1] for k in range(8)], dtype=np.float64) - 0.5
    verts = [b[:3] + corners * b[3:6] for b in boxes]
    pts, lines, cols = np.concatenate(verts), [], []
    for k, lab in enumerate(objs.labels):
        for a, b in _EDGES:
            lines.append((8 * k + a, 8 * k + b))
            cols.append(cls_col[classes.index(lab)])
    centres = boxes[:, :3]
    base = len(pts)
    pts = np.concatenate([pts, centres])
    e, r = g.edge_rel.nonzero(as_tuple=True)
    for a, b in zip(e.tolist(), r.tolist()):
        lines.append((base + int(g.edge_index[0, a]), base + int(g.edge_index[1, a])))
        cols.append(rel_col[b])
    ls = o3d.geometry.LineSet(
        o3d.utility.Vector3dVector(pts), o3d.utility.Vector2iVector(np.array(lines, dtype=np.int32))
    )
    ls.colors = o3d.utility.Vector3dVector(np.array(cols))
    if not o3d.io.write_line_set(str(out), ls):
        raise DataError(f"{out}: open3d could not write the line set")
    png = out.with_suffix(".png")
    _top_down(objs, g, png, classes, cls_col, rel_col, max_points)
    return out, png


def _top_down(objs, g, png: Path, classes, cls_col, rel_col, max_points: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    fig, ax = plt.subplots(figsize=(8, 8))
    if objs.points is not None:
        p = torch.cat([q if q.shape[1] == 6 else torch.cat([q, torch.zeros(len(q), 3)], 1) for q in objs.points])
        p = p[torch.randperm(len(p), generator=torch.Generator().manual_seed(0))[:max_points]].numpy()
        ax.scatter(p[:, 0], p[:, 1], s=1, c=np.clip(p[:, 3:6], 0, 1), alpha=0.5)
    for k, lab in enumerate(objs.labels):
        c, s = g.box[k, :3].numpy(), g.box[k, 3:6].numpy()
        col = cls_col[classes.index(lab)]
        ax.add_patch(Rectangle((c[0] - s[0] / 2, c[1] - s[1] / 2), s[0], s[1], fill=False, ec=col, lw=1.5))
        ax.text(c[0], c[1], f"{lab} {objs.object_ids[k]}", fontsize=7, ha="center", color=col)
    e, r = g.edge_rel.nonzero(as_tuple=True)
    drawn = set()
    for a, b in zip(e.tolist(), r.tolist()):
        t, j = int(g.edge_index[0, a]), int(g.edge_index[1, a])
        ct, cj = g.box[t, :2].numpy(), g.box[j, :2].numpy()
        ax.annotate("", xy=cj, xytext=ct, arrowprops=dict(arrowstyle="->", color=rel_col[b], lw=0.8, alpha=0.8))
        drawn.add(b)
    for b in sorted(drawn):
        ax.plot([], [], color=rel_col[b], label=RELATIONS[b])
    if drawn:
        ax.legend(loc="upper right", fontsize=7, title="target -> anchor")
    ax.set_aspect("equal")
    ax.autoscale()
    ax.set_title(f"{objs.scene_id}: {len(objs)} objects, {len(e)} relations")
    fig.savefig(png, dpi=120, bbox_inches="tight")
    plt.close(fig)
