"""The core's quickstart: generate shapes world, train the tiny dual encoder on the CPU,
evaluate held-out retrieval and the relation-swap test, and write a report a person can
open (report.json, report.md, retrieval_curve.png)."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

# The embedded default; configs/vlx/clip_shapes_tiny.yaml holds the same values (tested).
QUICKSTART = {
    "recipe": "clip_shapes",
    "model": {
        "image": {"name": "vit", "preset": "tiny"},
        "text": {"name": "transformer", "preset": "tiny", "kwargs": {"pool": "eot", "causal": True}},
        "embed_dim": 64,
    },
    "data": {"n_train": 4000, "n_test": 200, "image_size": 32, "render_size": 64},
    "objective": {"loss": "clip", "hard_negative_weight": 1.0},
    "train": {"epochs": 12, "batch_size": 128, "lr": 2e-3, "warmup_steps": 30, "weight_decay": 0.05, "log_every": 10},
}


def quickstart_config(out: Path, fast: bool = False, seed: int = 0, cache: Path | None = None):
    """The quickstart's config: the run under ``out/run``, the generated shapes world under
    ``cache`` (default ``out/data``) in a folder named by its size and seed, so that a shared
    cache never mixes two datasets."""
    from vlx.config import from_dict
    from vlx.recipes.clip_shapes import ClipShapesConfig

    data = json.loads(json.dumps(QUICKSTART))
    if fast:  # a smoke-test size: seconds, not minutes
        data["data"].update(n_train=512, n_test=64)
        data["train"].update(epochs=6, batch_size=64, warmup_steps=5)
    d = data["data"]
    name = f"shapes_world_n{d['n_train']}_t{d['n_test']}_r{d['render_size']}_s{seed}"
    d["root"] = str(out / "data") if cache is None else str(Path(cache) / name)
    d["data_seed"] = seed
    data["train"]["output_dir"] = str(out / "run")
    data["train"]["seed"] = seed
    return from_dict(ClipShapesConfig, data, where="<quickstart>")


def plot_recall_curves(result: dict[str, Any], png: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    n = result["n_test"]
    for key, label in (("t2i_recall_curve", "text -> image"), ("i2t_recall_curve", "image -> text")):
        ys = result[key]
        ax.plot(range(1, len(ys) + 1), ys, label=label)
    ks = range(1, len(result["t2i_recall_curve"]) + 1)
    ax.plot(ks, [100.0 * min(1.0, k * result["chance_R@1"] / 100.0) for k in ks], "k--", lw=1, label="chance")
    ax.set_xlabel("K")
    ax.set_ylabel("Recall@K (%)")
    ax.set_title(f"Shapes world held-out retrieval (N={n})")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    plt.close(fig)
    return png


def run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from vlx.config import to_dict
    from vlx.recipes.clip_shapes import build_clip_shapes
    from vlx.train import Trainer

    out = Path(args.out or "runs/quickstart/image-text")
    cache = getattr(args, "cache", None)
    cfg = quickstart_config(
        out, fast=getattr(args, "fast", False), seed=getattr(args, "seed", 0), cache=Path(cache) if cache else None
    )
    # A fresh run each time: the quickstart is a demo, not a resumable experiment.
    cfg.train.resume = "none"
    t0 = time.perf_counter()
    task = build_clip_shapes(cfg)
    result = Trainer(cfg.train, task, config_dict=to_dict(cfg)).fit()
    elapsed = time.perf_counter() - t0

    chance = result["chance_R@1"]
    checks = {
        "t2i_R@1 >= 3x chance": result["t2i_R@1"] >= 3 * chance,
        "i2t_R@1 >= 3x chance": result["i2t_R@1"] >= 3 * chance,
    }
    report = {
        "task": "shapes-world image-text retrieval (held-out)",
        "seconds": round(elapsed, 1),
        "metrics": result,
        "checks": checks,
        "config": to_dict(cfg),
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(report, indent=2))
    plot_recall_curves(result, out / "retrieval_curve.png")

    rows = [
        (
            "text -> image R@1 / R@5 / R@10",
            f"{result['t2i_R@1']:.1f} / {result['t2i_R@5']:.1f} / {result['t2i_R@10']:.1f}",
            f"{chance:.2f}",
        ),
        (
            "image -> text R@1 / R@5 / R@10",
            f"{result['i2t_R@1']:.1f} / {result['i2t_R@5']:.1f} / {result['i2t_R@10']:.1f}",
            f"{chance:.2f}",
        ),
        ("median rank t2i / i2t", f"{result['t2i_MdR']:.0f} / {result['i2t_MdR']:.0f}", f"{result['n_test'] / 2:.0f}"),
        ("relation-swap accuracy", f"{result.get('relation_swap_acc', float('nan')):.1f}", "50.0"),
    ]
    table = Table(
        title=f"vlx quickstart: tiny CLIP on shapes world ({result['n_test']} held-out pairs, {elapsed:.0f} s)"
    )
    table.add_column("metric (%)")
    table.add_column("model", justify="right")
    table.add_column("chance", justify="right")
    for r in rows:
        table.add_row(*r)
    md = ["| metric (%) | model | chance |", "|---|---:|---:|"] + [f"| {a} | {b} | {c} |" for a, b, c in rows]
    (out / "report.md").write_text(table.title + "\n\n" + "\n".join(md) + "\n")
    console = Console()
    console.print(table)
    for name, ok in checks.items():
        console.print(f"{'PASS' if ok else 'FAIL'}  {name}")
    console.print(f"report: {out / 'report.json'}, {out / 'report.md'}, plot: {out / 'retrieval_curve.png'}")
    console.print(f"data: {cfg.data.root}")
    return 0 if all(checks.values()) else 1
