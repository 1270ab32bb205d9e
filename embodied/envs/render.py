"""One offscreen renderer per env, made once at the requested size and reused for every
frame (``mujoco.Renderer``), looking through the same camera as the benchmark's own renderer.

``shadows=False`` turns off shadows and reflections: with software OpenGL (OSMesa, the
headless CPU default) the Franka Kitchen scene's four shadow-casting lights cost most of each
frame (about 2 s of 2.4 s for a 128x128 frame on this machine, against 0.13 s without
shadows and reflections); rollout videos default to it, and ``video_shadows`` restores them.
"""

from __future__ import annotations

from typing import Any

import numpy as np


class FrameRenderer:
    """(H, W, 3) uint8 frames of ``data`` from ``camera`` (a named model camera) or, when it
    is None, from a free camera set by ``free_camera`` (MjvCamera fields: distance, azimuth,
    elevation, lookat; gymnasium's ``default_camera_config``)."""

    def __init__(
        self,
        model: Any,
        data: Any,
        width: int,
        height: int,
        camera: str | None = None,
        free_camera: dict[str, Any] | None = None,
        shadows: bool = True,
    ):
        from embodied.envs.base import ensure_gl

        ensure_gl()
        import mujoco

        off = model.vis.global_
        if width > off.offwidth or height > off.offheight:
            raise ValueError(f"{width}x{height} exceeds the scene's offscreen buffer {off.offwidth}x{off.offheight}")
        self._mujoco = mujoco
        self.data = data
        self.renderer = mujoco.Renderer(model, int(height), int(width))
        self.camera: Any = camera
        if camera is None:
            cam = mujoco.MjvCamera()
            cam.type = mujoco.mjtCamera.mjCAMERA_FREE
            cam.fixedcamid = -1
            cam.lookat[:] = np.median(data.geom_xpos, axis=0)
            cam.distance = model.stat.extent
            for k, v in (free_camera or {}).items():
                if isinstance(v, np.ndarray) or isinstance(v, (list, tuple)):
                    getattr(cam, k)[:] = v
                else:
                    setattr(cam, k, v)
            self.camera = cam
        self.shadows = shadows

    def render(self) -> np.ndarray:
        r = self.renderer
        r.update_scene(self.data, camera=self.camera)
        if not self.shadows:
            r.scene.flags[self._mujoco.mjtRndFlag.mjRND_SHADOW] = 0
            r.scene.flags[self._mujoco.mjtRndFlag.mjRND_REFLECTION] = 0
        return r.render().copy()

    def close(self) -> None:
        self.renderer.close()


__all__ = ["FrameRenderer"]
