"""Run logs a person can read afterwards: JSONL lines, TensorBoard scalars, a curve PNG."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any


class RunLogger:
    """Appends one JSON object per line to ``metrics.jsonl`` (flushed each write, so a
    killed run keeps its log) and mirrors scalars to TensorBoard when available."""

    def __init__(self, out_dir: Path, tensorboard: bool = True, enabled: bool = True):
        self.enabled = enabled
        self.path = Path(out_dir) / "metrics.jsonl"
        self.tb = None
        if not enabled:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(str(Path(out_dir) / "tb"))
            except ImportError as e:  # tensorboard is a declared dependency; keep training anyway
                warnings.warn(f"TensorBoard logging off: {e}", stacklevel=2)

    def log(self, record: dict[str, Any], step: int, prefix: str = "train") -> None:
        if not self.enabled:
            return
        with self.path.open("a") as f:
            f.write(json.dumps(record, default=float) + "\n")
        if self.tb is not None:
            for k, v in record.items():
                if isinstance(v, (int, float)) and k not in ("step", "epoch"):
                    self.tb.add_scalar(f"{prefix}/{k}", v, step)
            self.tb.flush()

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    out = []
    for line in Path(path).read_text().splitlines():
        line = line.strip()
        if line:
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # a line cut by a kill; the rest of the log is still good
    return out


def plot_training_curves(jsonl: str | Path, png: str | Path, keys: tuple[str, ...] = ("loss",)) -> Path | None:
    """Plot ``keys`` against step from a metrics.jsonl (later records of a step win, so a
    resumed run plots one curve)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in read_jsonl(jsonl) if "step" in r and "eval" not in r]
    if not rows:
        return None
    by_step: dict[int, dict] = {}
    for r in rows:
        by_step[int(r["step"])] = r
    steps = sorted(by_step)
    present = [k for k in keys if any(k in by_step[s] for s in steps)]
    if not present:
        return None
    fig, axes = plt.subplots(1, len(present), figsize=(5 * len(present), 3.5), squeeze=False)
    for ax, k in zip(axes[0], present):
        xs = [s for s in steps if k in by_step[s]]
        ax.plot(xs, [by_step[s][k] for s in xs])
        ax.set_xlabel("step")
        ax.set_ylabel(k)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    png = Path(png)
    fig.savefig(png, dpi=100)
    plt.close(fig)
    return png
