"""``vlx pointcloud render`` (a point cloud and its depth views as PNG files) and
``vlx pointcloud demo`` (every tiny recipe on the primitives, one eval report)."""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from vlx.cli import register_command

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs" / "pointcloud"


@register_command("pointcloud")
def add_pointcloud_parser(subparsers) -> None:
    p = subparsers.add_parser("pointcloud", help="point clouds: render depth views, run the 3D demo")
    sub = p.add_subparsers(dest="pc_command", required=True)
    r = sub.add_parser("render", help="render a point cloud and its depth views to PNG")
    r.add_argument("input", help=".ply/.pcd/.xyz file, a .h5 (ModelNet40/ScanObjectNN) or primitives .npz")
    r.add_argument("--index", type=int, default=0, help="which cloud of an .h5/.npz")
    r.add_argument("--out", default="renders", help="output directory")
    r.add_argument("--views", default="clip2point_10")
    r.add_argument("--size", type=int, default=224)
    r.add_argument("--realistic", action="store_true", help="also PointCLIP V2 realistic projections")
    r.set_defaults(func=run_render)
    d = sub.add_parser("demo", help="tiny recipes on procedural primitives -> eval report")
    d.add_argument("--out", default="runs/pointcloud_demo")
    d.add_argument("--fast", action="store_true", help="smallest sizes (smoke test)")
    d.add_argument("--skip", action="append", default=[], help="stage to skip (classify, text4point)")
    d.set_defaults(func=run_demo)


def load_any_cloud(path: str, index: int = 0):
    """(N, 3) float32 numpy points from a point file, an h5 dataset or a primitives npz."""
    import numpy as np

    from pointcloud.data.readers import check_cloud, read_h5_clouds, read_point_file
    from vlx.data.errors import DataError

    p = Path(path)
    if p.suffix in (".h5", ".hdf5"):
        data, _ = read_h5_clouds(p)
    elif p.suffix == ".npz":
        with np.load(p) as z:
            if "points" not in z:
                raise DataError(f"{p}: no 'points' array")
            data = z["points"]
    else:
        return read_point_file(p)[0]
    if not 0 <= index < len(data):
        raise DataError(f"{p}: --index {index} out of range (file holds {len(data)} clouds)")
    return check_cloud(np.asarray(data[index], dtype=np.float32), f"{p}[{index}]")


def run_render(args: argparse.Namespace) -> int:
    import numpy as np
    import torch
    from PIL import Image

    from pointcloud import projection

    pts = torch.from_numpy(load_any_cloud(args.input, args.index)).unsqueeze(0)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = f"{Path(args.input).stem}_{args.index}"
    written = []

    def save_grid(imgs: torch.Tensor, name: str) -> None:  # (V, S, S) in [0, 1]
        grid = torch.cat(list(imgs), dim=1)
        f = out / name
        Image.fromarray((grid.clamp(0, 1) * 255).round().to(torch.uint8).numpy()).save(f)
        written.append(str(f))

    save_grid(projection.depth_maps(pts, args.views, args.size)[0], f"{stem}_depth.png")
    if args.realistic:
        save_grid(projection.realistic_projection(pts, args.views, args.size)[0], f"{stem}_realistic.png")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    p = pts[0].numpy()
    fig = plt.figure(figsize=(4, 4))
    ax = fig.add_subplot(projection="3d")
    ax.scatter(p[:, 0], p[:, 1], p[:, 2], s=1, c=p[:, 2], cmap="viridis")
    ax.set_box_aspect((np.ptp(p[:, 0]) or 1, np.ptp(p[:, 1]) or 1, np.ptp(p[:, 2]) or 1))
    f = out / f"{stem}_points.png"
    fig.savefig(f, dpi=100, bbox_inches="tight")
    plt.close(fig)
    written.append(str(f))
    print("\n".join(written))
    return 0


def run_demo(args: argparse.Namespace) -> int:
    """Train and evaluate, in order: pc_classify, pc_image_text (the stand-in CLIP),
    clip2point (zero-shot + Dual-Path Adapter few-shot), text4point; write report.json/.md."""
    from vlx.cli import load_recipe_config
    from vlx.config import to_dict
    from vlx.train.trainer import Trainer

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data_root = str(out / "primitives")
    common = [f"data.root={data_root}", "train.progress=true"]
    if args.fast:
        common += ["data.n_train_per_class=12", "data.n_test_per_class=4", "train.epochs=1", "train.max_steps=3"]
    stages = [("classify", "classify_tiny.yaml", []), ("image_text", "image_text_tiny.yaml", []),
              ("clip2point", "clip2point_tiny.yaml", [f"teacher.ckpt={out / 'image_text'}"]),
              ("text4point", "text4point_tiny.yaml", [f"teacher.ckpt={out / 'image_text'}"])]
    if args.fast:
        stages[2][2].append("few_shot.shots=2")
    report: dict = {}
    for name, cfg_file, extra in stages:
        if name in args.skip:
            continue
        t = time.time()
        recipe, cfg = load_recipe_config(str(CONFIG_DIR / cfg_file), common + extra + [f"train.output_dir={out / name}", "train.resume=none"])
        result = Trainer(cfg.train, recipe.build(cfg), config_dict=to_dict(cfg)).fit()
        report[name] = {**(result or {}), "seconds": round(time.time() - t, 1), "config": str(CONFIG_DIR / cfg_file)}
        (out / "report.json").write_text(json.dumps(report, indent=2, default=str))
    lines = ["# pointcloud demo: tiny recipes on procedural primitives (CPU)", "", "| stage | metric | value |", "|---|---|---|"]
    for stage, res in report.items():
        for k, v in res.items():
            if isinstance(v, (int, float)) and k != "seconds":
                lines.append(f"| {stage} | {k} | {v:.2f} |" if isinstance(v, float) else f"| {stage} | {k} | {v} |")
    (out / "report.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"wrote {out / 'report.json'} and {out / 'report.md'}")
    return 0
