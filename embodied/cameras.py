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


def free_cameras(env: Any) -> dict[str, dict[str, Any]]:
    """The env's free (unnamed) viewpoints by name, each an ``MjvCamera`` setting (distance,
    azimuth, elevation, lookat); ``{}`` when it has none. Franka Kitchen's only named cameras
    (``left_cap``, ``right_cap``) look at a counter top, so its env also offers ``default``,
    the view of its own ``render()`` (gymnasium's default camera config)."""
    get = getattr(env, "free_cameras", None)
    return dict(get()) if callable(get) else {}


def check_cameras(model: Any, cameras: Sequence[str], where: str, free: Sequence[str] = ()) -> None:
    """DataError naming the first camera that the scene does not have, and the known ones
    (the model's named cameras, then the env's free viewpoints ``free``)."""
    named = camera_names(model)
    known = named + [f for f in free if f not in named]
    for c in cameras:
        if c not in known:
            raise DataError(f"{where}: camera {c!r} does not exist; known cameras: {', '.join(known)}")


class CameraRig:
    """Renders RGB, depth (metres along the optical axis) and segmentation from named cameras
    with ``mujoco.Renderer`` (one per camera and mode, each owning its GL context).
    ``shadows=False`` turns shadows and reflections off: about 6x cheaper with software
    OpenGL (Meta-World's 4096-pixel shadow maps dominate a small frame's cost).
    ``free``: the env's free viewpoints by name (``free_cameras(env)``), usable as cameras;
    a model camera of the same name wins."""

    def __init__(
        self,
        model: Any,
        cameras: Sequence[str],
        width: int,
        height: int,
        where: str = "scene",
        shadows: bool = True,
        free: dict[str, dict[str, Any]] | None = None,
    ):
        from embodied.envs.base import ensure_gl

        ensure_gl()
        import mujoco

        free = {k: v for k, v in (free or {}).items() if k not in camera_names(model)}
        check_cameras(model, cameras, where, free=list(free))
        self._free: dict[str, Any] = {}
        for name in cameras:
            if name in free:
                cam = mujoco.MjvCamera()
                cam.type = mujoco.mjtCamera.mjCAMERA_FREE
                cam.fixedcamid = -1
                for k, v in free[name].items():
                    if isinstance(v, np.ndarray | list | tuple):
                        getattr(cam, k)[:] = v
                    else:
                        setattr(cam, k, v)
                self._free[name] = cam
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
        r.update_scene(data, camera=self._free.get(camera, camera))
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


def env_rig(
    env: Any, cameras: Sequence[str], width: int, height: int, where: str = "scene", shadows: bool = True
) -> CameraRig:
    """A ``CameraRig`` on a ``TaskEnv``'s scene that also knows the env's free viewpoints."""
    return CameraRig(sim_handles(env)[0], cameras, width, height, where=where, shadows=shadows, free=free_cameras(env))


__all__ = ["CameraRig", "camera_names", "check_cameras", "depth_to_mm", "env_rig", "free_cameras", "sim_handles"]
