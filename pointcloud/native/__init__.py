"""Compiled CPU kernels for pointcloud's hot paths, built on first use.

``depth_splat`` is ``projection.depth_maps``' no-grad CPU kernel fused into one loop per image
(``depth_splat.cpp`` says why it is written by hand). It is compiled with torch's own JIT
extension builder (``torch.utils.cpp_extension.load``: g++ and ninja, ~20 s once) into torch's
extension cache (``$TORCH_EXTENSIONS_DIR``, default ``~/.cache/torch_extensions``) and loaded
from there afterwards. It registers a torch operator (``torch.ops.vlx_pointcloud``), so no
Python headers are needed. Where it cannot be built (no compiler, no ninja, a read-only cache)
one warning says why and ``depth_maps`` keeps its torch kernel; ``VLX_NATIVE=0`` in the
environment (read at the first use) turns the compiled kernels off.
"""

from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path

import torch

_SOURCE = Path(__file__).with_name("depth_splat.cpp")
_NAME = "vlx_pointcloud_depth_splat"
_STATE: dict[str, str | None] = {}  # "problem": None (loaded) or why not


def problem() -> str | None:
    """None when the compiled kernels are loaded (building them on the first call), else why
    not, in one line (also warned once)."""
    if "problem" not in _STATE:
        _STATE["problem"] = _load()
        if _STATE["problem"] is not None:
            warnings.warn(f"pointcloud: {_STATE['problem']}; using the torch kernel", stacklevel=3)
    return _STATE["problem"]


def _load() -> str | None:
    if os.environ.get("VLX_NATIVE", "1").strip().lower() in ("0", "false", "no", "off"):
        return "compiled kernels turned off (VLX_NATIVE=0)"
    if hasattr(torch.ops, "vlx_pointcloud") and hasattr(torch.ops.vlx_pointcloud, "depth_splat"):
        return None  # registered already (e.g. by an earlier import under another module name)
    try:
        from torch.utils.cpp_extension import get_default_build_root, load

        root = Path(os.environ.get("TORCH_EXTENSIONS_DIR") or get_default_build_root())
        if not any(root.glob(f"**/{_NAME}*/*.so")):
            print(f"[vlx] pointcloud: compiling the fused CPU depth kernel once (~20 s) into {root}", file=sys.stderr)
        load(
            name=_NAME,
            sources=[str(_SOURCE)],
            extra_cflags=["-O3", "-ffp-contract=off"],  # rounding as torch's eager ops: no contracted FMAs
            is_python_module=False,
            verbose=False,
        )
        torch.ops.vlx_pointcloud.depth_splat  # noqa: B018 - raises if the operator did not register
    except Exception as e:  # any failure: the torch kernel is used instead
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        return f"the fused CPU depth kernel did not build or load ({type(e).__name__}: {first})"
    return None


def depth_splat(pts_cm: torch.Tensor, A: torch.Tensor, S: int, near: float, far: float) -> torch.Tensor:
    """pts_cm (B, 3, N) and A (1|B, 3, V, 4), contiguous CPU float32/64 of one dtype: the images
    (B, V, S*S) of ``projection._depth_maps`` (background 0). Call ``problem()`` first."""
    return torch.ops.vlx_pointcloud.depth_splat(pts_cm, A, S, near, far - near)  # far - near in double, as torch
