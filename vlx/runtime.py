"""Process-wide settings, decided in one place, once, at start-up (never at import time).

``setup()`` is called by the ``vlx`` CLI before a command runs; library entry points that
need one setting call its function (``configure_rendering()`` before MuJoCo is imported,
``world_info()`` for rank and world size). The rules:

- Rendering (MuJoCo's ``MUJOCO_GL``): an explicit ``MUJOCO_GL`` wins; otherwise EGL when a GPU
  device and libEGL exist *and* a probe subprocess renders a frame with it, else OSMesa.
  With EGL, ``MUJOCO_EGL_DEVICE_ID`` is the local rank's GPU. The decision is cached in the
  environment, so child processes (vector envs, workers) inherit it.
- Hugging Face: hub offline unless the user set ``HF_HUB_OFFLINE`` (local paths only; a hub
  name never triggers a download attempt), HF's own progress bars and info logs off unless
  ``VLX_HF_PROGRESS=1`` (they interleave with vlx's bars).
- Rank / world size: ``world_info()`` reads torchrun's environment; a ``WORLD_SIZE`` > 1 without
  a launcher's ``MASTER_ADDR``/``RANK`` is a leftover and raises ``RuntimeSetupError`` (one
  line) instead of waiting for ranks that will never come.
- Threads: ``set_threads(n)``.
"""

from __future__ import annotations

import ctypes.util
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

RENDER_PROBE_TIMEOUT_S = 60.0


class RuntimeSetupError(RuntimeError):
    """The process environment is inconsistent (one line, says what to change)."""


# ----------------------------------------------------------------------------- rank / world size


@dataclass(frozen=True)
class WorldInfo:
    rank: int
    local_rank: int
    world_size: int

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _env_int(env: dict[str, str], key: str, default: int) -> int:
    raw = env.get(key)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise RuntimeSetupError(f"environment variable {key}={raw!r}: expected an integer") from None


def world_info(env: dict[str, str] | None = None) -> WorldInfo:
    """(rank, local_rank, world_size) from torchrun's environment (RANK, LOCAL_RANK,
    WORLD_SIZE); (0, 0, 1) for a plain process. A WORLD_SIZE > 1 that no launcher set (no
    MASTER_ADDR or no RANK) raises ``RuntimeSetupError``."""
    env = os.environ if env is None else env
    world = _env_int(env, "WORLD_SIZE", 1)
    if world > 1 and not (env.get("MASTER_ADDR") and "RANK" in env):
        raise RuntimeSetupError(
            f"WORLD_SIZE={world} is set but no process group was launched (no MASTER_ADDR/RANK from torchrun): "
            f"unset WORLD_SIZE for a single process, or launch with torchrun --nproc_per_node {world}"
        )
    rank = _env_int(env, "RANK", 0)
    local = _env_int(env, "LOCAL_RANK", rank)
    if world < 1 or not 0 <= rank < world:
        raise RuntimeSetupError(f"RANK={rank} is outside WORLD_SIZE={world}")
    return WorldInfo(rank=rank, local_rank=local, world_size=world)


# ----------------------------------------------------------------------------- rendering

# A one-geom scene rendered offscreen: what "the backend works" means here.
_PROBE = """
import mujoco
xml = '<mujoco><worldbody><light pos="0 0 2"/><geom type="sphere" size=".1"/></worldbody></mujoco>'
m = mujoco.MjModel.from_xml_string(xml)
d = mujoco.MjData(m)
r = mujoco.Renderer(m, 16, 16)
mujoco.mj_forward(m, d)
r.update_scene(d)
img = r.render()
assert img.shape == (16, 16, 3), img.shape
print("ok", int(img.sum()))
"""


def probe_renderer(backend: str, timeout: float = RENDER_PROBE_TIMEOUT_S, device_id: str | None = None) -> str | None:
    """Render one frame with MuJoCo's ``backend`` ("egl" | "osmesa") in a subprocess (a broken
    GL stack can crash or hang, so never in this process). None when it works, else why not."""
    env = dict(os.environ, MUJOCO_GL=backend, PYOPENGL_PLATFORM=backend)
    if device_id is not None:
        env["MUJOCO_EGL_DEVICE_ID"] = device_id
    try:
        r = subprocess.run([sys.executable, "-c", _PROBE], env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return f"timed out after {timeout:.0f} s"
    if r.returncode == 0 and r.stdout.startswith("ok"):
        return None
    lines = (r.stderr or r.stdout).strip().splitlines()
    return lines[-1] if lines else f"exit code {r.returncode}"


def gpu_device_nodes() -> bool:
    dev = Path("/dev")
    return any(dev.glob("nvidia[0-9]*")) or any(dev.glob("dri/renderD*"))


def egl_device_id(local_rank: int, env: dict[str, str] | None = None) -> str:
    """The EGL device for ``local_rank``: its entry of CUDA_VISIBLE_DEVICES when that lists
    integers, else the local rank itself."""
    env = os.environ if env is None else env
    visible = [v.strip() for v in env.get("CUDA_VISIBLE_DEVICES", "").split(",") if v.strip()]
    if visible and all(v.isdigit() for v in visible) and local_rank < len(visible):
        return visible[local_rank]
    return str(local_rank)


_RENDERING_SET_HERE = False  # whether MUJOCO_GL was set by configure_rendering in this process


def user_mujoco_gl() -> str | None:
    """MUJOCO_GL as the user set it (None when unset or when vlx chose it)."""
    return None if _RENDERING_SET_HERE else (os.environ.get("MUJOCO_GL") or None)


def configure_rendering(probe: bool = True, prober=probe_renderer) -> str | None:
    """Set ``MUJOCO_GL`` (and ``PYOPENGL_PLATFORM``, ``MUJOCO_EGL_DEVICE_ID``) for this process
    and its children; returns the backend. An explicit ``MUJOCO_GL`` wins. ``probe=False``
    decides only what needs no probe (no GPU device or no libEGL -> OSMesa) and returns None
    when a probe would be needed. Call before MuJoCo is imported (it reads MUJOCO_GL once)."""
    explicit = os.environ.get("MUJOCO_GL")
    if explicit:
        if explicit in ("egl", "osmesa"):
            os.environ.setdefault("PYOPENGL_PLATFORM", explicit)
        return explicit
    backend = "osmesa"
    device_id = None
    if gpu_device_nodes() and ctypes.util.find_library("EGL"):
        if not probe:
            return None
        device_id = egl_device_id(world_info().local_rank)
        if prober("egl", device_id=device_id) is None:
            backend = "egl"
    global _RENDERING_SET_HERE
    _RENDERING_SET_HERE = True
    os.environ["MUJOCO_GL"] = backend
    os.environ["PYOPENGL_PLATFORM"] = backend
    if backend == "egl":
        os.environ.setdefault("MUJOCO_EGL_DEVICE_ID", device_id)
    return backend


# ----------------------------------------------------------------------------- Hugging Face, threads


def configure_huggingface() -> None:
    """Hub offline unless set; HF's progress bars and info logs off unless VLX_HF_PROGRESS=1.
    Environment variables, so nothing of HF is imported here (they read them at import)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", os.environ["HF_HUB_OFFLINE"])
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if os.environ.get("VLX_HF_PROGRESS", "0") != "1":
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
        tf = sys.modules.get("transformers")
        if tf is not None:  # already imported: tell it directly
            tf.utils.logging.disable_progress_bar()
            tf.utils.logging.set_verbosity_error()


def set_threads(n: int | None) -> None:
    """Torch intra-op CPU threads for this process (None: leave torch's default)."""
    if n is not None:
        import torch

        torch.set_num_threads(int(n))


def setup() -> WorldInfo:
    """Everything a command needs decided before it starts; cheap (no probe subprocess:
    rendering is settled here only when no GPU could do EGL, else by the first renderer)."""
    configure_huggingface()
    configure_rendering(probe=False)
    return world_info()
