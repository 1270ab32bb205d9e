"""``vlx pointcloud render`` (a point cloud and its depth views as PNG files) and
``vlx pointcloud demo`` (every tiny recipe on the primitives, one eval report)."""

from __future__ import annotations

import argparse
import json
import shlex
import time
from pathlib import Path

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs" / "pointcloud"


def add_pointcloud_parser(subparsers) -> None:
    p = subparsers.add_parser("pointcloud", help="point clouds: render depth views, run the 3D demo")
    sub = p.add_subparsers(dest="pc_command", required=True)
    r = sub.add_parser("render", help="render a point cloud and its depth views to PNG")
    r.add_argument("input", help=".ply/.pcd/.xyz file, a .h5 (ModelNet40/ScanObjectNN) or primitives .npz")
    r.add_argument("--index", type=int, default=0, help="which cloud of an .h5/.npz")
    r.add_argument("--out", default="renders", help="output directory")
    r.add_argument("--views", default="clip2point_10", help="clip2point_* (y up) or vlx_*/ring_8 (z up)")
    r.add_argument("--size", type=int, default=224)
    r.add_argument(
        "--render",
        default="clip2point",
        choices=["clip2point", "vlx_depth"],
        help="depth images: CLIP2Point's renderer (near dark on white) or vlx's depth_maps (near bright on black)",
    )
    r.add_argument("--realistic", action="store_true", help="also PointCLIP V2 realistic projections")
    r.set_defaults(func=run_render)
    d = sub.add_parser("demo", help="tiny recipes on procedural primitives -> eval report")
    d.add_argument("--out", default="runs/pointcloud_demo")
    d.add_argument("--fast", action="store_true", help="smallest sizes (smoke test)")
    d.add_argument("--skip", action="append", default=[], help="stage to skip (classify, text4point)")
    d.add_argument(
        "--threads",
        type=int,
        default=0,
        help="torch threads (0: the cores not already busy, from the load average; at least 1)",
    )
    d.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="STAGE:KEY=VALUE",
        help="config override for one stage, e.g. classify:train.epochs=5 (repeatable)",
    )
    d.set_defaults(func=run_demo)
    z = sub.add_parser("zeroshot", help="zero-shot classification of ModelNet40 / ScanObjectNN h5 -> eval.json")
    z.add_argument(
        "--model",
        required=True,
        help="image-text teacher: a local HF CLIP/SigLIP directory, a vlx preset or a pc_image_text run directory",
    )
    z.add_argument("--data", required=True, help="modelnet40_ply_hdf5_2048 folder, ScanObjectNN folder or .h5 file")
    z.add_argument("--method", default="pointclip_v2", choices=["pointclip_v2", "clip2point"])
    z.add_argument(
        "--render",
        default="",
        choices=["", "clip2point", "vlx_depth"],
        help="clip2point method's depth images: clip2point (CLIP2Point's renderer: discs, near dark on white; "
        "default) or vlx_depth (vlx's depth_maps: one pixel per point, near bright on black); "
        "default for a clip2point run directory: the images it was pre-trained on",
    )
    z.add_argument(
        "--depth-weights",
        default="",
        help="CLIP2Point's released depth-encoder checkpoint (.pth), loaded into --model's CLIP image tower",
    )
    z.add_argument("--split", default="test", choices=["train", "test"])
    z.add_argument("--variant", default="main_split", help="ScanObjectNN folder: main_split or main_split_nobg")
    z.add_argument(
        "--views",
        default="clip2point_6",
        help="view set: clip2point_6/clip2point_10 (CLIP2Point's cameras, y up), vlx_6/vlx_10/ring_8 (z up)",
    )
    z.add_argument("--view-weights", default="", help="comma-separated weight per view (default: equal)")
    z.add_argument("--image-size", type=int, default=0, help="0: the teacher's image size")
    z.add_argument("--prompts", default="", help="template set in zeroshot_prompts.json (default: the method's)")
    z.add_argument("--limit", type=int, default=0, help="first N clouds only (0: all)")
    z.add_argument(
        "--points",
        type=int,
        default=-1,
        help="FPS every cloud to N points (0: all; -1: CLIP2Point's choice, 1024 for clip2point on ScanObjectNN)",
    )
    z.add_argument("--out", default="runs/pointcloud_zeroshot")
    z.set_defaults(func=run_zeroshot_cmd)
    h = sub.add_parser(
        "primitives-h5",
        help="generate procedural primitives and write them in the modelnet40_ply_hdf5_2048 layout (y up)",
    )
    h.add_argument("--out", required=True, help="folder for shape_names.txt, test_files.txt, ply_data_test0.h5")
    h.add_argument("--seed", type=int, default=1, help="generator seed (the recipes' primitives use 0)")
    h.add_argument("--per-class", type=int, default=30, help="test clouds per class")
    h.add_argument("--points", type=int, default=2048, help="points per cloud (ModelNet40's h5: 2048)")
    h.set_defaults(func=run_primitives_h5)


def run_primitives_h5(args: argparse.Namespace) -> int:
    """Fresh primitives (their own seed) as a ModelNet40-format test split: the clouds are
    rotated from the primitives' z up to ModelNet40's y up, so CLIP2Point's y-up views see
    them the way its renders see ModelNet40."""
    import numpy as np

    from pointcloud.data.benchmarks import Z_UP_TO_Y_UP, write_modelnet40_h5
    from pointcloud.data.primitives import generate_primitives
    from pointcloud.data.readers import read_class_names

    out = Path(args.out)
    src = generate_primitives(out / "primitives", 0, args.per_class, args.points, seed=args.seed)
    with np.load(src / "test.npz") as z:
        pts, labels = z["points"] @ Z_UP_TO_Y_UP.T, z["labels"]
    write_modelnet40_h5(out, pts, labels, read_class_names(src / "classes.txt"))
    print(f"wrote {len(labels)} clouds ({args.per_class} per class, seed {args.seed}, y up) to {out}")
    return 0


def run_zeroshot_cmd(args: argparse.Namespace) -> int:
    from pointcloud.zeroshot import run_zeroshot
    from vlx.config import ConfigError

    try:
        weights = [float(w) for w in args.view_weights.split(",")] if args.view_weights else None
    except ValueError:
        raise ConfigError(f"--view-weights: expected comma-separated numbers, got {args.view_weights!r}") from None
    rep = run_zeroshot(
        args.model, args.data, args.out, args.method, args.split, args.variant, args.views,
        args.image_size or None, args.prompts or None, weights, args.limit, args.points,
        args.render or None, args.depth_weights or None,
    )  # fmt: skip
    print(json.dumps({k: rep[k] for k in ("benchmark", "method", "top1", "mean_class_acc", "n")}))
    print(f"wrote {Path(args.out) / 'eval.json'}")
    return 0


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
    from pointcloud.render_clip2point import depth_images

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

    save_grid(depth_images(pts, args.views, args.size, args.render)[0], f"{stem}_depth.png")
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


def demo_threads(requested: int = 0) -> int:
    """Torch threads for the demo: ``requested`` if > 0, else the cores not already busy.

    Why not simply all cores: on a shared machine an OpenMP team larger than the idle cores
    spins at every barrier while its threads wait to be scheduled; measured here under a load
    average of ~9 on 2 cores, a tiny point-transformer step took 4.0 s with 2 threads and
    0.12 s with 1."""
    import os

    if requested > 0:
        return requested
    cores = os.cpu_count() or 1
    try:
        busy = os.getloadavg()[0]
    except OSError:
        busy = 0.0
    return max(1, min(cores, int(cores - busy + 0.5)))


class DemoStopped(Exception):
    """SIGTERM/SIGINT reached the demo: stop every remaining stage, not only the current one."""


def run_demo(args: argparse.Namespace) -> int:
    """Train and evaluate, in order: pc_classify, pc_image_text (the stand-in CLIP),
    clip2point (zero-shot + Dual-Path Adapter few-shot), text4point; write report.json/.md.

    A SIGTERM or SIGINT stops the whole demo: inside a stage's training the core Trainer
    finishes the step and checkpoints (its own handler), and the demo then runs no further
    stage; between stages (data generation, set-up) it stops at once. The report keeps the
    stages that finished and names the one that was stopped; the exit code is 128 + signal."""
    import signal

    from vlx.config import ConfigError, to_dict
    from vlx.train.recipe import load_recipe_config
    from vlx.train.trainer import Trainer

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    threads = demo_threads(args.threads)
    from vlx.runtime import set_threads

    set_threads(threads)
    data_root = str(out / "primitives")
    common = [f"data.root={data_root}", "train.progress=true"]
    if args.fast:
        common += ["data.n_train_per_class=12", "data.n_test_per_class=4", "train.epochs=1", "train.max_steps=3"]
    stages = [
        ("classify", "classify_tiny.yaml", []),
        ("image_text", "image_text_tiny.yaml", []),
        ("clip2point", "clip2point_tiny.yaml", [f"teacher.ckpt={out / 'image_text'}"]),
        ("text4point", "text4point_tiny.yaml", [f"teacher.ckpt={out / 'image_text'}"]),
    ]
    names = [n for n, _, _ in stages]
    for item in args.set:
        stage, _, override = item.partition(":")
        if stage not in names or "=" not in override:
            raise ConfigError(f"--set {item!r}: expected STAGE:KEY=VALUE with STAGE one of {names}")
        next(extra for n, _, extra in stages if n == stage).append(override)
    if args.fast:
        stages[2][2].insert(0, "few_shot.shots=2")
        stages[2][2].insert(0, "few_shot.adapter_steps=20")

    stopped: dict = {}

    def on_signal(signum, frame):
        stopped["signal"] = signum
        raise DemoStopped(signal.Signals(signum).name)

    old = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    report: dict = {"_meta": {"torch_threads": threads, "fast": bool(args.fast), "overrides": args.set}}
    t_all = time.time()
    try:
        for name, cfg_file, extra in stages:
            if name in args.skip:
                continue
            t = time.time()
            try:
                recipe, cfg = load_recipe_config(
                    str(CONFIG_DIR / cfg_file), common + extra + [f"train.output_dir={out / name}", "train.resume=none"]
                )
                trainer = Trainer(cfg.train, recipe.build(cfg), config_dict=to_dict(cfg))
                result = trainer.fit()
            except DemoStopped:
                report[name] = {"stopped": True, "seconds": round(time.time() - t, 1)}
                break
            # The Trainer handles a signal during training itself (finish the step, checkpoint,
            # return without evaluating); its flag is the only trace of that signal.
            trainer_stop = getattr(trainer, "_stop", None)
            if trainer_stop is not None and trainer_stop.is_set():
                stopped.setdefault("signal", signal.SIGTERM)
            report[name] = {
                **(result or {}),
                "seconds": round(time.time() - t, 1),
                "config": str(CONFIG_DIR / cfg_file),
            }
            if stopped:
                report[name]["stopped"] = True
            (out / "report.json").write_text(json.dumps(report, indent=2, default=str))
            if stopped:
                break
    finally:
        for sig, h in old.items():
            signal.signal(sig, h)
    report["_meta"]["seconds"] = round(time.time() - t_all, 1)
    (out / "report.json").write_text(json.dumps(report, indent=2, default=str))
    write_report_md(report, out / "report.md", args)
    print((out / "report.md").read_text())
    print(f"wrote {out / 'report.json'} and {out / 'report.md'}")
    if stopped:
        sig = int(stopped["signal"])
        print(f"[vlx] demo stopped by {signal.Signals(sig).name}; no further stage was run")
        return 128 + sig
    return 0


def write_report_md(report: dict, path: Path, args: argparse.Namespace | None = None) -> None:
    meta = report.get("_meta", {})
    lines = ["# pointcloud demo: tiny recipes on procedural primitives (CPU)", ""]
    if args is not None:
        cmd = "vlx pointcloud demo --out " + str(args.out) + (" --fast" if args.fast else "")
        cmd += "".join(f" --skip {s}" for s in args.skip) + "".join(f" --set {shlex.quote(s)}" for s in args.set)
        if args.threads:
            cmd += f" --threads {args.threads}"
        lines += [f"Command: `{cmd}`", ""]
    lines += [
        f"torch threads: {meta.get('torch_threads')}; total {meta.get('seconds')} s",
        "",
        "| stage | metric | value |",
        "|---|---|---|",
    ]
    for stage, res in report.items():
        if stage.startswith("_"):
            continue
        for k, v in res.items():
            if isinstance(v, bool) or k == "config":
                if k == "stopped":
                    lines.append(f"| {stage} | stopped | yes |")
                continue
            if isinstance(v, float):
                lines.append(f"| {stage} | {k} | {v:.2f} |")
            elif isinstance(v, (int, str)):
                lines.append(f"| {stage} | {k} | {v} |")
    path.write_text("\n".join(lines) + "\n")
