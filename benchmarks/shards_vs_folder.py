"""Does training from `vlx data shards` output match training from the JSONL folder? The
clip_shapes_tiny recipe on one generated shapes world, once from the folder and once from its
WebDataset shards, for each of several seeds (the seed sets model init and data order; the
data are the same). Prints per-run held-out loss and t2i R@5, each side's mean and seed-to-seed
standard deviation, and the shards-minus-folder gap in units of its standard error.

    .venv/bin/python benchmarks/shards_vs_folder.py [--seeds 0,1,2,3,4] [--out DIR]

The two sides differ only in data order (a sampler permutation vs shard order + a shuffle
buffer), so a sound shard path gives a gap within seed noise. Single torch thread, CPU.
tests/vlx/test_webdataset.py runs the same comparison over three seeds.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

N_TRAIN, N_TEST, EPOCHS, BATCH, PER_SHARD, BUFFER = 800, 100, 6, 64, 200, 400


def make_data(root: Path) -> Path:
    """Generate the shapes world under ``root/world`` and convert its train split to shards
    under ``root/shards`` (unless already there); returns ``root``."""
    from vlx.data.shapes import generate_shapes_world
    from vlx.data.shard_writer import write_shards

    if not (root / "world" / "train.jsonl").is_file():
        generate_shapes_world(root / "world", N_TRAIN, N_TEST, 32, 0, progress=False)
    if not (root / "shards").is_dir():
        write_shards(root / "world" / "train.jsonl", root / "shards", PER_SHARD)
    return root


def train_one(root: Path, side: str, seed: int) -> dict:
    """One clip_shapes_tiny run from ``side`` ("folder" or "shards") -> its eval dict."""
    from vlx.config import load_yaml_config
    from vlx.recipes.clip_shapes import ClipShapesConfig, build_clip_shapes
    from vlx.train import Trainer

    extra = [f"data.shards={root / 'shards'}", f"data.shuffle_buffer={BUFFER}"] if side == "shards" else []
    sets = [f"data.root={root / 'world'}", f"data.n_train={N_TRAIN}", f"data.n_test={N_TEST}",
            f"train.epochs={EPOCHS}", f"train.output_dir={root / f'{side}_{seed}'}", "train.progress=false",
            "train.tensorboard=false", "train.num_threads=1", "train.device=cpu", f"train.batch_size={BATCH}",
            f"train.seed={seed}", *extra]  # fmt: skip
    cfg = load_yaml_config(ClipShapesConfig, str(ROOT / "configs" / "vlx" / "clip_shapes_tiny.yaml"), sets)
    return Trainer(cfg.train, build_clip_shapes(cfg)).fit()


def gap(folder: list[float], shards: list[float]) -> dict[str, float]:
    """mean(shards) - mean(folder) and its standard error from both sides' seed-to-seed
    spread (Welch: sqrt(var_f / n_f + var_s / n_s), sample variances)."""
    se = math.sqrt(statistics.variance(folder) / len(folder) + statistics.variance(shards) / len(shards))
    return {"gap": statistics.mean(shards) - statistics.mean(folder), "se": se}


def compare(root: Path, seeds: list[int]) -> dict[str, dict[str, list[float]]]:
    """{"folder" | "shards": {"test_loss": [...], "t2i_R@5": [...], "chance_R@1": [...]}}, one
    entry per seed, in order."""
    make_data(root)
    res: dict[str, dict[str, list[float]]] = {}
    for seed in seeds:
        for side in ("folder", "shards"):
            r = train_one(root, side, seed)
            for k in ("test_loss", "t2i_R@5", "chance_R@1"):
                res.setdefault(side, {}).setdefault(k, []).append(float(r[k]))
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", default="0,1,2,3,4")
    ap.add_argument("--out", default=None, help="work directory (default: a temporary one)")
    args = ap.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        res = compare(Path(args.out or tmp), seeds)
    print(f"clip_shapes_tiny, {N_TRAIN} train / {N_TEST} test, {EPOCHS} epochs, batch {BATCH}; "
          f"shards of {PER_SHARD}, buffer {BUFFER}")  # fmt: skip
    print("| seed | folder loss | shards loss | folder t2i R@5 | shards t2i R@5 |")
    print("|---|---:|---:|---:|---:|")
    for i, s in enumerate(seeds):
        f, h = res["folder"], res["shards"]
        cells = [
            f"{f['test_loss'][i]:.3f}",
            f"{h['test_loss'][i]:.3f}",
            f"{f['t2i_R@5'][i]:.1f}",
            f"{h['t2i_R@5'][i]:.1f}",
        ]
        print(f"| {s} | " + " | ".join(cells) + " |")
    for k in ("test_loss", "t2i_R@5"):
        f, h = res["folder"][k], res["shards"][k]
        g = gap(f, h)
        print(f"{k}: folder {statistics.mean(f):.3f} (sd {statistics.stdev(f):.3f}), shards {statistics.mean(h):.3f} "
              f"(sd {statistics.stdev(h):.3f}); gap {g['gap']:+.3f} = {g['gap'] / g['se']:+.2f} SE")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
