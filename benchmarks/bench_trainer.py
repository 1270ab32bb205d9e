"""Trainer steps/s on the tiny dual encoder (clip_shapes_tiny), the trainer before issue 18's
changes against the trainer now, measured side by side in one run.

    .venv/bin/python benchmarks/bench_trainer.py [--rounds 5] [--steps 48] [--workers 0,2]

"before" is the trainer module as of commit f5ae735 (``git show f5ae735:vlx/train/trainer.py``),
loaded into a temporary module at run time and run on today's checkpoint/sampler helpers;
"after" is ``vlx.train.trainer``. Both train the same model on the same data with the same
config, evaluation off, one checkpoint at the end; a row's time is the whole ``fit`` (setup
included, identical for both), over ``--steps`` optimizer steps spanning several epochs so a
per-epoch loader (before) and one persistent loader (after) both show. Rounds alternate which
trainer goes first; the table gives medians, min-max spread and the after/before ratio. On a
CUDA machine the GPU rows (bf16 autocast, larger batch) run too.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

OLD_COMMIT = "f5ae735"


def old_trainer_class():
    src = subprocess.run(
        ["git", "-C", str(ROOT), "show", f"{OLD_COMMIT}:vlx/train/trainer.py"], capture_output=True, text=True
    )
    if src.returncode != 0:
        raise SystemExit(f"cannot read the old trainer from git ({src.stderr.strip()}); run inside the vlx checkout")
    path = Path(tempfile.mkdtemp()) / "trainer_before.py"
    path.write_text(src.stdout)
    spec = importlib.util.spec_from_file_location("vlx_trainer_before", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.Trainer


def make_run(data: Path, out: Path, steps: int, batch: int, workers: int, device: str, precision: str):
    try:  # where the structure work moves it
        from vlx.train.recipe import load_recipe_config
    except ImportError:
        from vlx.cli import load_recipe_config

    overrides = [
        f"data.root={data}",
        "data.n_train=256",
        "data.n_test=16",
        "data.render_size=32",
        f"train.output_dir={out}",
        f"train.max_steps={steps}",
        "train.epochs=100",
        f"train.batch_size={batch}",
        f"train.num_workers={workers}",
        "train.log_every=8",
        "train.progress=false",
        "train.tensorboard=false",
        "train.resume=none",
        f"train.device={device}",
        f"train.precision={precision}",
    ]
    recipe, cfg = load_recipe_config(str(ROOT / "configs/vlx/clip_shapes_tiny.yaml"), overrides)
    task = recipe.build(cfg)
    task.evaluate = None
    return cfg.train, task


def time_fit(trainer_cls, data, out, steps, batch, workers, device, precision) -> float:
    cfg, task = make_run(data, out, steps, batch, workers, device, precision)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    t = time.perf_counter()
    trainer_cls(cfg, task).fit()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return steps / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=48)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--workers", default="0,2")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (1 is fastest for tiny models here)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from vlx.train.trainer import Trainer as After

    before, rows = old_trainer_class(), []
    configs = [("cpu", "fp32", w, args.batch) for w in map(int, args.workers.split(","))]
    if torch.cuda.is_available():
        configs += [("cuda", "bf16", w, args.batch * 8) for w in (0, 4)]
    work = Path(tempfile.mkdtemp(prefix="bench_trainer_"))
    data = work / "shapes"
    make_run(data, work / "warm", 1, args.batch, 0, "cpu", "fp32")  # generate the data once
    for device, precision, workers, batch in configs:
        times: dict[str, list[float]] = {"before": [], "after": []}
        for r in range(args.rounds + 1):  # round 0 warms caches and is dropped
            order = [("before", before), ("after", After)]
            if r % 2:
                order.reverse()
            for name, cls in order:
                sps = time_fit(cls, data, work / f"{name}_{r}", args.steps, batch, workers, device, precision)
                if r:
                    times[name].append(sps)
        b, a = statistics.median(times["before"]), statistics.median(times["after"])
        rows.append(
            {
                "device": device,
                "precision": precision,
                "workers": workers,
                "batch": batch,
                "before_steps_per_s": round(b, 2),
                "before_spread": [round(min(times["before"]), 2), round(max(times["before"]), 2)],
                "after_steps_per_s": round(a, 2),
                "after_spread": [round(min(times["after"]), 2), round(max(times["after"]), 2)],
                "after_over_before": round(a / b, 3),
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    print(
        "\n| device | precision | workers | batch | before steps/s (min-max) | after steps/s (min-max) | after/before |"
    )
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['device']} | {r['precision']} | {r['workers']} | {r['batch']} | {r['before_steps_per_s']} "
            f"({r['before_spread'][0]}-{r['before_spread'][1]}) | {r['after_steps_per_s']} "
            f"({r['after_spread'][0]}-{r['after_spread'][1]}) | {r['after_over_before']} |"
        )


if __name__ == "__main__":
    main()
