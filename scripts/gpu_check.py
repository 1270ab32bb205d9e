"""What only a CUDA machine can check, in one command and one table.

Rows: every tiny config under ``configs/`` trained for a few steps under bf16 autocast
(``vlx train CONFIG --set train.max_steps=3 --set train.precision=bf16``); the same under DDP
with 2 processes when 2 GPUs exist; one Meta-World frame rendered with EGL; the pytorch3d
point-cloud backend against the torch one when pytorch3d is installed; the benchmarks' GPU
rows. Every row runs in its own process with a timeout; the table says ok / FAIL / skip.

    python scripts/gpu_check.py             # run (needs CUDA)
    python scripts/gpu_check.py --dry-run   # list the commands it would run
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

EGL_FRAME = """
import os
os.environ["MUJOCO_GL"] = os.environ["PYOPENGL_PLATFORM"] = "egl"
import gymnasium as gym, metaworld  # noqa: F401
env = gym.make("Meta-World/MT1", env_name="reach-v3", seed=0, render_mode="rgb_array", camera_name="corner")
env.reset(seed=0)
frame = env.render()
assert frame.shape[-1] == 3 and frame.std() > 1.0, (frame.shape, frame.std())
print("frame", frame.shape, "std", round(float(frame.std()), 1))
"""

PYTORCH3D_VS_TORCH = """
import torch
from pointcloud import ops
torch.manual_seed(0)
p = torch.rand(4, 4096, 3, device="cuda")
d3, i3 = ops.knn(p[:, :512], p, 16, backend="pytorch3d")
dt, it = ops.knn(p[:, :512], p, 16, backend="torch")
assert torch.allclose(d3, dt, atol=1e-4), (d3 - dt).abs().max()
f3 = ops.farthest_point_sample(p, 256, backend="pytorch3d")
ft = ops.farthest_point_sample(p, 256, backend="torch")
assert torch.equal(f3, ft), "pytorch3d and torch FPS picked different points"
print("knn max |diff|", float((d3 - dt).abs().max()), "fps identical")
"""


@dataclass
class Row:
    name: str
    cmd: list[str]
    env: dict[str, str] = field(default_factory=dict)
    timeout: int = 600
    skip: str = ""  # why it does not run here


def tiny_configs(root: Path = ROOT) -> list[Path]:
    return sorted((root / "configs").rglob("*_tiny.yaml"))


def train_cmd(config: Path, out: Path, ddp: bool, root: Path = ROOT) -> list[str]:
    launch = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2"] if ddp else [sys.executable]
    sets = {
        "train.max_steps": "3",
        "train.precision": "bf16",
        "train.device": "auto" if ddp else "cuda",
        "train.resume": "none",
        "train.progress": "false",
        "train.output_dir": str(out),
    }
    cmd = launch + ["-m", "vlx.cli", "train", str(config.relative_to(root))]
    for k, v in sets.items():
        cmd += ["--set", f"{k}={v}"]
    return cmd


def plan(n_gpus: int, have_pytorch3d: bool, out: Path, root: Path = ROOT) -> list[Row]:
    rows = []
    for cfg in tiny_configs(root):
        tag = f"{cfg.parent.name}/{cfg.stem}"
        rows.append(Row(f"bf16 {tag}", train_cmd(cfg, out / "bf16" / tag, ddp=False, root=root)))
    for cfg in tiny_configs(root):
        tag = f"{cfg.parent.name}/{cfg.stem}"
        rows.append(
            Row(
                f"ddp2 {tag}",
                train_cmd(cfg, out / "ddp2" / tag, ddp=True, root=root),
                skip="" if n_gpus >= 2 else f"{n_gpus} GPU(s); DDP needs 2",
            )
        )
    rows.append(Row("EGL Meta-World frame", [sys.executable, "-c", EGL_FRAME], timeout=300))
    rows.append(
        Row(
            "pytorch3d vs torch (knn, fps)",
            [sys.executable, "-c", PYTORCH3D_VS_TORCH],
            timeout=300,
            skip="" if have_pytorch3d else "pytorch3d not installed",
        )
    )
    rows.append(
        Row(
            "bench dual encoder (cuda)",
            [sys.executable, "benchmarks/bench_dual_encoder.py", "--device", "cuda", "--out", str(out / "bench_dual")],
        )
    )
    rows.append(Row("bench video ToMe (cuda)", [sys.executable, "benchmarks/bench_video_tome.py", "--device", "cuda"]))
    return rows


def run_row(row: Row, root: Path = ROOT) -> tuple[str, float, str]:
    if row.skip:
        return "skip", 0.0, row.skip
    env = dict(os.environ, PYTHONPATH=str(root) + os.pathsep + os.environ.get("PYTHONPATH", ""), **row.env)
    t = time.perf_counter()
    try:
        r = subprocess.run(row.cmd, cwd=root, env=env, capture_output=True, text=True, timeout=row.timeout)
    except subprocess.TimeoutExpired:
        return "FAIL", time.perf_counter() - t, f"timed out after {row.timeout} s"
    lines = [x for x in ((r.stdout or "") + (r.stderr or "")).splitlines() if x.strip()]
    last = lines[-1].strip()[:100] if lines else ""
    if r.returncode != 0:
        err = [x for x in (r.stderr or "").splitlines() if x.strip()]
        last = (err[-1].strip() if err else last)[:100]
    return ("ok" if r.returncode == 0 else "FAIL"), time.perf_counter() - t, last


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dry-run", action="store_true", help="list the commands, run nothing")
    ap.add_argument("--gpus", type=int, default=None, help="pretend this many GPUs (default: torch's count)")
    ap.add_argument("--pytorch3d", action="store_true", default=None, help="pretend pytorch3d is installed")
    ap.add_argument("--out", default="runs/gpu_check", help="where the runs write")
    ap.add_argument("--only", default=None, help="run only rows whose name contains this text")
    args = ap.parse_args(argv)
    if args.gpus is None:
        import torch

        args.gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if args.pytorch3d is None:
        import importlib.util

        args.pytorch3d = importlib.util.find_spec("pytorch3d") is not None
    rows = plan(args.gpus, args.pytorch3d, Path(args.out))
    if args.only:
        rows = [r for r in rows if args.only in r.name]
    if args.dry_run:
        for r in rows:
            what = (
                f"skip ({r.skip})" if r.skip else shlex.join(r.cmd) if "-c" not in r.cmd else f"{r.cmd[0]} -c <script>"
            )
            print(f"{r.name}: {what}")
        return 0
    if args.gpus < 1:
        print("gpu_check: no CUDA device here (use --dry-run to list what it would run)", file=sys.stderr)
        return 2
    results = []
    for r in rows:
        status, sec, last = run_row(r)
        results.append((r.name, status, sec, last))
        print(f"[{status}] {r.name} ({sec:.0f} s) {last}", flush=True)
    w = max(len(n) for n, *_ in results)
    print(f"\n{'check':<{w}}  status  seconds  last line")
    for n, status, sec, last in results:
        print(f"{n:<{w}}  {status:<6}  {sec:7.0f}  {last}")
    failed = sum(s == "FAIL" for _, s, _, _ in results)
    print(f"\n{len(results) - failed} of {len(results)} ok or skipped, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
