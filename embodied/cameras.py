"""Cameras of a MuJoCo benchmark env: the model and data behind a ``TaskEnv``, camera names,
and ``CameraRig``, which renders RGB, depth and segmentation from named cameras (used by
demo collection, the exports and the learned policy's image observations)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from vlx.data.errors import DataError


def sim_handles(env: Any) -> tuple[Any, Any]:
    """The ``(mujoco.MjModel, mujoco.MjData)`` of a ``TaskEnv`` (Meta-World keeps them on the
    raw env, gymnasium-robotics on ``unwrapped``)."""
    inner = getattr(env, "env", env)
    for cand in (inner, getattr(inner, "unwrapped", None)):
        if cand is not None and hasattr(cand, "model") and hasattr(cand, "data"):
            return cand.model, cand.data
    raise TypeError(f"{type(env).__name__}: no MuJoCo model/data found (expected env.env.model and env.env.data)")


def camera_names(model: Any) -> list[str]:
    return [model.camera(i).name for i in range(model.ncam)]


def check_cameras(model: Any, cameras: Sequence[str], where: str) -> None:
    """DataError naming the first camera that the scene does not have, and the known ones."""
    known = camera_names(model)
    for c in cameras:
        if c not in known:
            raise DataError(f"{where}: camera {c!r} does not exist; known cameras: {', '.join(known)}")


class CameraRig:
    """Renders RGB, depth (metres along the optical axis) and segmentation from named cameras
    with ``mujoco.Renderer`` (one per camera and mode, each owning its GL context).
    ``shadows=False`` turns shadows and reflections off: about 6x cheaper with software
    OpenGL (Meta-World's 4096-pixel shadow maps dominate a small frame's cost)."""

    def __init__(
        self, model: Any, cameras: Sequence[str], width: int, height: int, where: str = "scene", shadows: bool = True
    ):
        from embodied.envs.base import ensure_gl

        ensure_gl()
        import mujoco

        check_cameras(model, cameras, where)
        self.model, self.cameras, self.width, self.height = model, list(cameras), int(width), int(height)
        self.shadows = bool(shadows)
        off = model.vis.global_
        if width > off.offwidth or height > off.offheight:
            raise DataError(
                f"{where}: {width}x{height} exceeds the scene's offscreen buffer {off.offwidth}x{off.offheight}"
            )
        self._mujoco = mujoco
        self._renderers: dict[str, Any] = {}

    def _renderer(self, mode: str) -> Any:
        if mode not in self._renderers:
            r = self._mujoco.Renderer(self.model, self.height, self.width)
            if mode == "depth":
                r.enable_depth_rendering()
            elif mode == "seg":
                r.enable_segmentation_rendering()
            self._renderers[mode] = r
        return self._renderers[mode]

    def render(self, data: Any, camera: str, mode: str = "rgb") -> np.ndarray:
        """rgb: (H, W, 3) uint8; depth: (H, W) float32 metres (0: nothing hit); seg: (H, W, 2) int32 (id, type)."""
        r = self._renderer(mode)
        r.update_scene(data, camera=camera)
        if not self.shadows:
            flags = r.scene.flags
            flags[self._mujoco.mjtRndFlag.mjRND_SHADOW] = flags[self._mujoco.mjtRndFlag.mjRND_REFLECTION] = False
        img = r.render().copy()
        if mode == "depth":  # rays that hit nothing read the far clipping plane: no reading
            far = self.model.vis.map.zfar * self.model.stat.extent
            img[img >= 0.999 * far] = 0.0
        return img

    def close(self) -> None:
        for r in self._renderers.values():
            r.close()
        self._renderers.clear()


def depth_to_mm(depth_m: np.ndarray) -> np.ndarray:
    """Metres -> uint16 millimetres (ScanNet's depth encoding; 0 = no reading)."""
    mm = np.round(np.nan_to_num(depth_m, nan=0.0, posinf=0.0) * 1000.0)
    return np.clip(mm, 0, 65535).astype(np.uint16)


__all__ = ["CameraRig", "camera_names", "check_cameras", "depth_to_mm", "sim_handles"]
