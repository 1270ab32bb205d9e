"""scripts/gpu_check.sh cannot run here (no CUDA); its --dry-run list is what is tested."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ENV = dict(os.environ, VLX_PYTHON=sys.executable)


def dry_run(*args: str) -> list[str]:
    r = subprocess.run(
        ["bash", "scripts/gpu_check.sh", "--dry-run", *args],
        cwd=ROOT,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    return r.stdout.splitlines()


def test_dry_run_covers_every_tiny_config_bf16_and_ddp():
    lines = dry_run("--gpus", "2", "--pytorch3d")
    tiny = sorted(p.relative_to(ROOT) for p in (ROOT / "configs").rglob("*_tiny.yaml"))
    assert len(tiny) >= 15
    for cfg in tiny:
        tag = f"{cfg.parent.name}/{cfg.stem}"
        bf16 = [x for x in lines if x.startswith(f"bf16 {tag}: ")]
        ddp = [x for x in lines if x.startswith(f"ddp2 {tag}: ")]
        assert len(bf16) == 1 and len(ddp) == 1, tag
        assert f" -m vlx.cli train {cfg} " in bf16[0] and "train.precision=bf16" in bf16[0]
        assert "train.max_steps=3" in bf16[0] and "train.device=cuda" in bf16[0]
        assert "torch.distributed.run --nproc_per_node 2 -m vlx.cli train" in ddp[0]
    names = [x.split(":")[0] for x in lines]
    for row in ("EGL Meta-World frame", "pytorch3d vs torch (knn, fps)", "bench dual encoder (cuda)"):
        assert row in names
    assert not any("skip" in x for x in lines)


def test_dry_run_on_one_gpu_skips_ddp_and_missing_pytorch3d():
    lines = dry_run("--gpus", "1")
    assert all(": skip (1 GPU(s); DDP needs 2)" in x for x in lines if x.startswith("ddp2 "))
    assert "pytorch3d vs torch (knn, fps): skip (pytorch3d not installed)" in lines


def test_refuses_to_run_without_cuda():
    r = subprocess.run(["bash", "scripts/gpu_check.sh"], cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "no CUDA device here" in r.stderr
