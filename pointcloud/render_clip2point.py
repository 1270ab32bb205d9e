"""CLIP2Point's depth images as its renderer draws them (Huang et al. 2023, ICCV;
tyhuang0428/CLIP2Point ``render/render.py``: ``Renderer.render_points`` and ``norm``).

What that renderer does, and this module does the same on the CPU or any torch device:

* Camera: pytorch3d's ``look_at_view_transform(dist, elev, azim)`` and an orthographic camera
  (NDC [-1, 1] spans the image, no margin); the cloud is scaled by 1/dist first, so a point's
  depth from the camera is ``z = dist + forward . p / dist`` (in [0, 2] for dist = 1, the
  zero-shot Selector's distance).
* ``PointsRasterizer`` with radius 0.02 (NDC units: 2.24 px at 224) and one point per pixel:
  a pixel takes the z of the nearest point whose disc covers the pixel's centre
  (``dx^2 + dy^2 < r^2`` strictly, pixel centres at ``-1 + (2 i + 1) / S``, NDC +X to the
  image's left, +Y up); points with z < 0 are skipped (pytorch3d's point kernels test
  ``z < 0``: the camera's znear=0.01 does not clip points, since the rasteriser overwrites
  the projected z with the view-space z); empty pixels hold -1.
* ``norm``, per image: ``max`` over the z-buffer (background -1 included), background set to
  1, ``min`` over the image with that background, foreground ``(z - min) / max * 200 / 255``,
  background 1. So near = dark on a white background. It then repeats the grey to 3 channels
  and applies OpenAI CLIP's mean/std (``vlx.data.transforms.IMAGE_MEAN`` / ``IMAGE_STD``):
  that last step is left to the caller (zero-shot normalises with the checkpoint's own
  mean/std, which for OpenAI CLIP are these), so ``clip2point_depth`` returns the grey image
  in [0, 1].

Written in torch because pytorch3d has no distribution for the CPU machines vlx runs on
(its rasteriser is a compiled extension); only the part above is needed. The camera
matrices come from ``projection.view_matrices`` (CLIP2Point's view sets ``clip2point_6`` /
``clip2point_10`` are pytorch3d's look-at cameras there).

``depth_images(points, views, size, render=...)`` picks between this renderer
(``"clip2point"``) and vlx's own depth maps (``"vlx_depth"``: ``projection.depth_maps``, one
pixel per point, near = bright on black, 10% margin).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from pointcloud import projection
from pointcloud.ops import validate_points
from vlx.config import ConfigError

# Renderer choices for CLIP2Point's paths: CLIP2Point's own images, or vlx's depth maps.
RENDERS = ("clip2point", "vlx_depth")

# (clouds x views x points x window pixels) handled at once: bounds the rasteriser's memory.
_CHUNK_ENTRIES = 1 << 22


def check_render(render: str, what: str = "render") -> str:
    if render not in RENDERS:
        raise ConfigError(f"{what}: expected one of {list(RENDERS)}, got {render!r}")
    return render


def pixel_centres(image_size: int, device=None, dtype=torch.float32, pad: int = 0) -> torch.Tensor:
    """(S + 2 pad,) NDC centres of the image's columns along vlx's image-right axis, left to
    right (``pad`` more on each side); row i's centre along image-up is ``-centres[i]``.
    pytorch3d's ``PixToNonSquareNdc(i, S, S) = -1 + (2 i + 1) / S`` for its index i, which runs
    right to left (NDC +X is the left edge); column j is its index ``S - 1 - j``, negated to
    point right. Evaluated in float32 as pytorch3d does."""
    i = torch.arange(image_size - 1 + pad, -1 - pad, -1, device=device, dtype=torch.float32)
    return (-(-1.0 + (2.0 * i + 1.0) / image_size)).to(dtype)


def rasterize_points(
    points: torch.Tensor, mats: torch.Tensor, image_size: int, radius: float = 0.02, dist=1.0
) -> torch.Tensor:
    """CLIP2Point's point rasterisation: z-buffer (B, V, S, S) of the nearest covering point's
    depth from the camera, -1 where no disc covers the pixel centre.

    points (B, N, 3) as given (CLIP2Point centres and scales them into the unit sphere
    beforehand); mats (V, 3, 3) or (B, V, 3, 3) world -> (image right, image up, forward)
    rows, as ``projection.view_matrices`` builds them; ``dist`` the camera distance, a float
    or a tensor broadcastable to (B, V) (CLIP2Point's pre-training jitters it per render).

    Each point tests the pixel centres of the (2k+1)^2 window around its nearest centre with
    the exact distance test: a covered centre lies within radius + 0.5 px of that nearest
    centre along each axis, so k = floor(radius in pixels + 0.5 + 1e-3) (the 1e-3 px covers
    float rounding of the window centre). Every window entry is scattered
    (``amin``; misses carry +inf) into images padded by k on each side, so no entry needs a
    bounds test or a boolean selection (a masked select was ~60% of the time), and the
    padding is cropped. A window centre outside the image is clamped to its edge: the
    window then still holds every in-image centre the disc covers."""
    B, N, _ = points.shape
    S = image_size
    pts = points.to(projection.geometry_dtype(points.dtype))
    m = mats.to(pts)
    V = m.shape[-3]
    cam = torch.einsum("bnj,vij->bvni", pts, m) if m.dim() == 3 else torch.einsum("bnj,bvij->bvni", pts, m)
    d = torch.as_tensor(dist, dtype=pts.dtype, device=pts.device)
    d = d.expand(B, V) if d.dim() == 0 else torch.broadcast_to(d, (B, V))
    x, y = cam[..., 0] / d[..., None], cam[..., 1] / d[..., None]  # NDC, +x right, +y up
    z = d[..., None] + cam[..., 2] / d[..., None]  # (B, V, N) depth from the camera
    inf = torch.tensor(float("inf"), dtype=pts.dtype, device=pts.device)
    z = torch.where(z >= 0, z, inf)  # pytorch3d skips points behind the camera
    half = 0.5 * S
    k = math.floor(radius * half + 0.5 + 1e-3)
    Pd = S + 2 * k  # padded image side
    centres = pixel_centres(S, pts.device, pts.dtype, pad=k)  # column j's x at centres[j + k]
    off = torch.arange(-k, k + 1, device=pts.device)
    window = (off.view(-1, 1) * Pd + off).view(-1)  # flat offsets of the (2k+1)^2 window
    zbuf = torch.full((B * V * Pd * Pd,), float("inf"), dtype=pts.dtype, device=pts.device)
    step = max(1, _CHUNK_ENTRIES // (V * N * (2 * k + 1) ** 2))
    r2 = radius * radius
    for s in range(0, B, step):
        xs, ys, zs = x[s : s + step], y[s : s + step], z[s : s + step]
        b = xs.shape[0]
        col = ((xs + 1) * half - 0.5).round().clamp(0, S - 1).long()  # (b, V, N) window centre
        row = ((1 - ys) * half - 0.5).round().clamp(0, S - 1).long()
        dx2 = (xs[..., None] - centres[col[..., None] + off + k]) ** 2  # (b, V, N, 2k+1)
        dy2 = (ys[..., None] + centres[row[..., None] + off + k]) ** 2
        d2 = (dy2[..., :, None] + dx2[..., None, :]).flatten(-2)  # (b, V, N, (2k+1)^2)
        zz = torch.where(d2 < r2, zs[..., None], inf)
        img = torch.arange(s, s + b, device=pts.device).view(b, 1) * V + torch.arange(V, device=pts.device)
        base = img.view(b, V, 1) * (Pd * Pd) + (row + k) * Pd + (col + k)
        flat = base[..., None] + window
        zbuf.scatter_reduce_(0, flat.reshape(-1), zz.reshape(-1), reduce="amin", include_self=True)
    zbuf = zbuf.view(B, V, Pd, Pd)[:, :, k : k + S, k : k + S]
    return torch.where(torch.isinf(zbuf), torch.full_like(zbuf, -1.0), zbuf)


def clip2point_norm(zbuf: torch.Tensor) -> torch.Tensor:
    """CLIP2Point's ``norm`` before its CLIP normalisation: zbuf (..., H, W) with -1 (or any
    value <= 0) as background -> grey image, foreground ``(z - min) / max * 200 / 255`` with
    ``max`` over the whole z-buffer and ``min`` over the image whose background is set to 1,
    background 1."""
    fg = zbuf > 0
    zmax = zbuf.flatten(-2).amax(-1)[..., None, None]
    zmin = torch.where(fg, zbuf, torch.ones_like(zbuf)).flatten(-2).amin(-1)[..., None, None]
    img = (zbuf - zmin) / zmax * (200.0 / 255.0)
    return torch.where(fg, img, torch.ones_like(img))


def clip2point_depth(
    points: torch.Tensor,
    views: str | Sequence[tuple[float, float]] | torch.Tensor = "clip2point_6",
    image_size: int = 224,
    radius: float = 0.02,
    dist=1.0,
    jitter_degrees: float = 0.0,
    generator: torch.Generator | None = None,
    normalize: bool = True,
) -> torch.Tensor:
    """CLIP2Point's depth images: points (B, N, 3) -> (B, V, S, S) grey in [0, 1] (near dark,
    background 1), before CLIP's mean/std. ``views`` as ``projection.view_matrices`` takes
    them (or matrices (V|B,V, 3, 3)); ``normalize`` centres each cloud and scales it into the
    unit sphere (CLIP2Point's ``pc_normalize``); ``jitter_degrees`` > 0 perturbs each sample's
    cameras (``projection.jitter_views``, vlx's pre-training augmentation)."""
    validate_points(points)
    with torch.autocast(points.device.type, enabled=False):
        pts, mats = projection.clouds_and_cameras(
            points, views, normalize, jitter_degrees, generator, "clip2point_depth"
        )
        return clip2point_norm(rasterize_points(pts, mats, image_size, radius, dist))


def depth_images(
    points: torch.Tensor,
    views: str | Sequence[tuple[float, float]] | torch.Tensor,
    image_size: int,
    render: str = "clip2point",
    jitter_degrees: float = 0.0,
) -> torch.Tensor:
    """(B, N, 3) -> (B, V, S, S) in [0, 1] from the named renderer: ``"clip2point"``
    (``clip2point_depth``: CLIP2Point's discs, near dark on white) or ``"vlx_depth"``
    (``projection.depth_maps``: one pixel per point, near bright on black, 10% margin)."""
    if check_render(render) == "clip2point":
        return clip2point_depth(points, views, image_size, jitter_degrees=jitter_degrees)
    return projection.depth_maps(points, views, image_size, jitter_degrees=jitter_degrees)
