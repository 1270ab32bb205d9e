"""Point-cloud ops on batched ``(B, N, 3)`` tensors: farthest point sampling, kNN, ball query,
grouping, normalisation and augmentations (PointNet++ / DGCNN conventions).

Each search op is one function that dispatches to the fastest backend present for the
input's device (``backend="auto"``) and accepts ``backend=`` to force one:

==========  =========================================  ======================================
op          CPU (auto order)                           CUDA (auto order)
==========  =========================================  ======================================
FPS         open3d (legacy C++ FPS), torch             pytorch3d, torch
kNN         open3d NNS, scipy cKDTree, torch           pytorch3d, torch
==========  =========================================  ======================================

The vectorised ``torch`` backend runs everywhere and is the fallback. pytorch3d is used only
after a probe on the device passes (``pytorch3d_problem``: a CPU-only build imports fine and
fails at its first CUDA op); ``backend_parity_check`` compares the backends on a device. All backends return
the same answer (tests compare each with a naive loop). Results keep the input's device;
distances returned by ``knn`` come from the backend, and are recomputed in torch from the
indices when an input requires grad, so they carry gradients whatever backend found the
neighbours. Inputs are validated once, at the public function (``check=False`` skips it for
callers that already did).

Public API (used by pointcloud.encoders and scene_graph):
``validate_points``, ``farthest_point_sample``, ``knn``, ``ball_query``, ``group_points``,
``gather_points``, ``normalize_points``, ``random_rotation``, ``random_scale``, ``jitter``,
``random_point_dropout``, ``available_backends``, ``pytorch3d_problem``, ``backend_parity_check``.
"""

from __future__ import annotations

import importlib.util
import math
import warnings
from typing import Literal

import numpy as np
import torch

from vlx.data.errors import DataError

Backend = Literal["auto", "torch", "open3d", "scipy", "pytorch3d"]

_HAS = {
    name: importlib.util.find_spec(mod) is not None
    for name, mod in (("open3d", "open3d"), ("scipy", "scipy"), ("pytorch3d", "pytorch3d"))
}
_HAS["torch"] = True

# Fastest-first, from benchmarks/bench_pointcloud_ops.py on the project's CPU machines:
# open3d's FPS is the legacy geometry.PointCloud one (the tensor-API one is ~100x slower);
# for kNN on 16 x 8192, k=16, open3d's NNS beat scipy's cKDTree (workers=-1) in every quiet
# run: 0.32-0.33 s vs 0.37 s CPU with 1 torch thread, 0.18 s vs 0.21 s wall on 2 cores.
_AUTO = {
    ("fps", "cpu"): ("open3d", "torch"),
    ("fps", "cuda"): ("pytorch3d", "torch"),
    ("knn", "cpu"): ("open3d", "scipy", "torch"),
    ("knn", "cuda"): ("pytorch3d", "torch"),
}
_SUPPORTED = {"fps": {"torch", "open3d", "pytorch3d"}, "knn": {"torch", "open3d", "scipy", "pytorch3d"}}


_PROBED: dict[str, str | None] = {}  # device -> None (works) or why pytorch3d does not


def pytorch3d_problem(device: str | torch.device) -> str | None:
    """None when pytorch3d imports and runs its FPS and kNN on ``device``, else why not (one
    line). Cached per device: a CPU-only build, or one compiled for another CUDA, imports
    fine and fails only at the first op, so ``find_spec`` alone is not enough."""
    key = str(torch.device(device))
    if key not in _PROBED:
        if not _HAS["pytorch3d"]:
            _PROBED[key] = "pytorch3d is not installed"
        else:
            try:
                from pytorch3d.ops import knn_points, sample_farthest_points

                x = torch.rand(1, 8, 3, device=device)
                idx = sample_farthest_points(x, K=2, random_start_point=False)[1]
                res = knn_points(x, x, K=2, return_sorted=True)
                if idx.shape != (1, 2) or not bool((res.idx[0, :, 0] == torch.arange(8, device=device)).all()):
                    raise RuntimeError("wrong results on a tiny cloud")
                _PROBED[key] = None
            except Exception as e:  # any failure means: use the torch fallback
                _PROBED[key] = (
                    f"pytorch3d fails on {key}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
                )
                warnings.warn(f"{_PROBED[key]}; using the torch backend", stacklevel=3)
    return _PROBED[key]


def _usable(backend: str, device: torch.device) -> bool:
    if backend == "pytorch3d":
        return pytorch3d_problem(device) is None
    return _HAS[backend]


def available_backends(op: Literal["fps", "knn"], device: str | torch.device = "cpu") -> list[str]:
    """Backends that run ``op`` for tensors on ``device`` here (CPU-only libraries still run
    on CUDA tensors through a host copy, but are not chosen by auto; pytorch3d is listed
    only when its probe on ``device`` passes, see ``pytorch3d_problem``)."""
    dev = torch.device(device)
    order = _AUTO.get((op, dev.type), ("torch",))
    rest = sorted(_SUPPORTED[op] - set(order))
    return [b for b in (*order, *rest) if _usable(b, dev)]


def _pick(op: str, backend: str, device: torch.device) -> str:
    if backend != "auto":
        if backend not in _SUPPORTED[op]:
            raise ValueError(f"{op}: unknown backend {backend!r}; known: {sorted(_SUPPORTED[op])}")
        if not _HAS[backend]:
            raise ImportError(f"{op}: backend {backend!r} is not installed")
        return backend
    for b in _AUTO.get((op, device.type), ("torch",)):
        if _usable(b, device):
            return b
    return "torch"


def validate_points(
    points: torch.Tensor, name: str = "points", dims: int | None = 3, lazy: bool | None = None
) -> torch.Tensor:
    """Raise a one-line DataError unless ``points`` is a non-empty, finite ``(B, N, dims)``
    tensor; returns it unchanged. ``name`` says where the points came from (a file, a key).

    The finiteness test reads a device value back. ``lazy`` (default: True off the CPU)
    queues it as an asynchronous device assertion instead, so a render does not wait for the
    accelerator; a non-finite cloud then fails at the next synchronisation, without the
    batch/point location."""
    if not isinstance(points, torch.Tensor):
        raise DataError(f"{name}: expected a torch.Tensor of shape (B, N, {dims or 'D'}), got {type(points).__name__}")
    if points.dim() != 3 or (dims is not None and points.shape[-1] != dims):
        raise DataError(f"{name}: expected shape (B, N, {dims or 'D'}), got {tuple(points.shape)}")
    if points.shape[0] == 0 or points.shape[1] == 0:
        raise DataError(f"{name}: empty point cloud, shape {tuple(points.shape)}")
    if not points.is_floating_point():
        raise DataError(f"{name}: expected floating-point coordinates, got {points.dtype}")
    # One reduction first: a finite sum means every coordinate is finite (NaN and inf propagate);
    # only a non-finite sum (or an overflow) pays for the elementwise check that locates it.
    if lazy if lazy is not None else points.device.type != "cpu":
        torch._assert_async(torch.isfinite(points.detach()).all(), f"{name}: non-finite coordinate (NaN/inf)")
        return points
    if bool(torch.isfinite(points.detach().sum())):
        return points
    bad = ~torch.isfinite(points)
    if bool(bad.any()):
        b, n = (int(v) for v in bad.any(-1).nonzero()[0])
        raise DataError(f"{name}: non-finite coordinate (NaN/inf) at batch {b}, point {n}")
    return points


# ----------------------------------------------------------------------------- FPS


def farthest_point_sample(
    points: torch.Tensor, n_samples: int, backend: Backend = "auto", check: bool = True
) -> torch.Tensor:
    """Farthest point sampling starting from point 0 of every cloud.

    points: (B, N, 3). Returns LongTensor (B, M) with M = n_samples of distinct point indices,
    sorted ascending (open3d's C++ FPS gives the set, not the pick order, so every backend
    returns the set in one canonical order). ``n_samples >= N`` returns all indices.
    """
    if check:
        validate_points(points)
    B, N, _ = points.shape
    if n_samples < 1:
        raise ValueError(f"farthest_point_sample: n_samples must be >= 1, got {n_samples}")
    if n_samples >= N:
        return torch.arange(N, device=points.device).expand(B, N).clone()
    which = _pick("fps", backend, points.device)
    if which == "open3d":
        return _fps_open3d(points, n_samples)  # already ascending (see there)
    elif which == "pytorch3d":
        from pytorch3d.ops import sample_farthest_points

        idx = sample_farthest_points(points.float(), K=n_samples, random_start_point=False)[1]
    else:
        idx = _fps_torch(points, n_samples)
    return idx.sort(dim=1).values


@torch.no_grad()
def _fps_torch(points: torch.Tensor, m: int) -> torch.Tensor:
    """Batched FPS: one step per sample over all B clouds at once, four kernels a step (gather
    the new centres, their exact distances to every point, running min, argmax) and no host
    sync: the picks stay on the device until the final concatenation. ``cdist`` without the
    matmul form gives the same distances as the naive ``(p - c)^2`` sum (the matmul form's
    cancellation would flip near-ties)."""
    B, N, _ = points.shape
    pts = points.float()
    dist = torch.full((B, 1, N), float("inf"), device=points.device)
    far = torch.zeros(B, 1, 1, dtype=torch.long, device=points.device)
    picks = []
    for _ in range(m):
        picks.append(far)
        c = pts.gather(1, far.expand(B, 1, 3))  # (B, 1, 3)
        torch.minimum(dist, torch.cdist(c, pts, compute_mode="donot_use_mm_for_euclid_dist"), out=dist)
        far = dist.argmax(2).view(B, 1, 1)
    return torch.cat(picks, 1).view(B, m)


def _fps_loop(points: torch.Tensor, m: int) -> torch.Tensor:
    """The previous torch FPS (eight kernels a step), kept as the benchmark's baseline."""
    B, N, _ = points.shape
    pts = points.float()
    dist = torch.full((B, N), float("inf"), device=points.device)
    idx = torch.empty(B, m, dtype=torch.long, device=points.device)
    far = torch.zeros(B, dtype=torch.long, device=points.device)
    rows = torch.arange(B, device=points.device)
    for i in range(m):
        idx[:, i] = far
        d = (pts - pts[rows, far].unsqueeze(1)).square().sum(-1)
        dist = torch.minimum(dist, d)
        far = dist.argmax(-1)
    return idx


def _fps_open3d(points: torch.Tensor, m: int) -> torch.Tensor:
    import open3d as o3d

    # Legacy FPS returns the selected points, not indices; the colour channel carries each
    # point's index through the selection (float64 holds integers exactly). Its selection is
    # copied out with SelectByIndex, which walks the cloud in index order, so the carried
    # indices come back ascending: no sort needed (the naive-reference test checks this).
    arr = points.detach().to("cpu", torch.float64).numpy()  # the one copy: open3d wants float64
    N = arr.shape[1]
    carrier = np.zeros((N, 3))
    carrier[:, 0] = np.arange(N)
    colors = o3d.utility.Vector3dVector(carrier)
    out = np.empty((arr.shape[0], m), dtype=np.int64)
    for b, cloud in enumerate(arr):
        pc = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(cloud))
        pc.colors = colors
        sel = pc.farthest_point_down_sample(m)
        out[b] = np.asarray(sel.colors)[:, 0]
    return torch.from_numpy(out).to(points.device)


# ----------------------------------------------------------------------------- kNN


def knn(
    query: torch.Tensor,
    points: torch.Tensor,
    k: int,
    backend: Backend = "auto",
    check: bool = True,
    return_dists: bool = True,
) -> tuple[torch.Tensor | None, torch.Tensor]:
    """k nearest neighbours of every query point among ``points`` (any feature dim D).

    query: (B, M, D), points: (B, N, D), k <= N. Returns ``(dists (B, M, k), idx (B, M, k))``,
    Euclidean distances ascending; a query that is also a point finds itself first.
    ``dists`` is differentiable w.r.t. both inputs. ``return_dists=False`` returns
    ``(None, idx)`` and skips the (B, M, k, D) neighbour gather that exact distances need.
    """
    if check:
        validate_points(query, "knn query", dims=None)
        validate_points(points, "knn points", dims=None)
    if query.shape[0] != points.shape[0] or query.shape[2] != points.shape[2]:
        raise DataError(
            f"knn: query {tuple(query.shape)} and points {tuple(points.shape)} must share batch and feature dims"
        )
    N = points.shape[1]
    if not 1 <= k <= N:
        raise ValueError(f"knn: k must be in [1, N={N}], got {k}")
    which = _pick("knn", backend, query.device)
    if which == "scipy":
        dists, idx = _knn_scipy(query, points, k)
    elif which == "open3d":
        dists, idx = _knn_open3d(query, points, k)
    elif which == "pytorch3d":
        from pytorch3d.ops import knn_points

        res = knn_points(query.float(), points.float(), K=k, return_sorted=True)
        dists, idx = res.dists.clamp_min(0).sqrt().to(query.dtype), res.idx
    else:
        dists, idx = None, _knn_torch(query, points, k)
    if not return_dists:
        return None, idx
    # Distances are recomputed in torch from the indices only when they must carry gradients,
    # or when the backend has none exact enough (cdist's matmul form loses ~1e-3 near 0).
    if dists is None or (torch.is_grad_enabled() and (query.requires_grad or points.requires_grad)):
        dists = _knn_distances(query, points, idx)
    return dists, idx


def _knn_distances(query: torch.Tensor, points: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """(B, M, k) Euclidean distances of the neighbours ``idx``; differentiable."""
    nbrs = gather_points(points, idx)  # (B, M, k, D)
    sq = (nbrs - query.unsqueeze(2)).square().sum(-1)
    # sqrt's gradient is infinite at 0 (a point finding itself); give it 0 there instead.
    return torch.where(sq > 0, sq.clamp_min(1e-20).sqrt(), torch.zeros_like(sq))


@torch.no_grad()
def _knn_torch(query: torch.Tensor, points: torch.Tensor, k: int, chunk: int = 2048) -> torch.Tensor:
    # Chunk the queries so the (B, chunk, N) distance block stays a few hundred MB at most.
    out = []
    for s in range(0, query.shape[1], chunk):
        d = torch.cdist(query[:, s : s + chunk].float(), points.float())
        out.append(d.topk(k, dim=-1, largest=False, sorted=True).indices)
    return torch.cat(out, dim=1)


def _host_float32(t: torch.Tensor) -> np.ndarray:
    """A C-contiguous float32 numpy view of ``t`` (no copy when it already is one on the CPU)."""
    return np.ascontiguousarray(t.detach().to("cpu", torch.float32).numpy())


def _knn_per_cloud(query: torch.Tensor, points: torch.Tensor, k: int, search) -> tuple[torch.Tensor, torch.Tensor]:
    """Run ``search(points_b (N, 3), query_b (M, 3), k) -> (dist (M, k), idx (M, k))`` on host
    float32 copies of each cloud of the batch; -> dists and LongTensor indices on query's device."""
    q, p = _host_float32(query), _host_float32(points)
    B, M = q.shape[:2]
    idx = np.empty((B, M, k), dtype=np.int64)
    dist = np.empty((B, M, k), dtype=np.float32)
    for b in range(B):
        dist[b], idx[b] = search(p[b], q[b], k)
    return torch.from_numpy(dist).to(query.device, query.dtype), torch.from_numpy(idx).to(query.device)


def _knn_scipy(query: torch.Tensor, points: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    from scipy.spatial import cKDTree

    def search(p: np.ndarray, q: np.ndarray, k: int):
        d, i = cKDTree(p).query(q, k=k, workers=-1)
        return d.reshape(len(q), k), i.reshape(len(q), k)  # k=1 comes back squeezed

    return _knn_per_cloud(query, points, k, search)


def _knn_open3d(query: torch.Tensor, points: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    import open3d.core as o3c

    def search(p: np.ndarray, q: np.ndarray, k: int):
        nns = o3c.nns.NearestNeighborSearch(o3c.Tensor.from_numpy(p))
        nns.knn_index()
        i, d = nns.knn_search(o3c.Tensor.from_numpy(q), k)
        return np.sqrt(d.numpy()), i.numpy()  # open3d gives squared distances

    return _knn_per_cloud(query, points, k, search)


def ball_query(
    query: torch.Tensor, points: torch.Tensor, radius: float, k: int, backend: Backend = "auto", check: bool = True
) -> torch.Tensor:
    """Up to k neighbours within ``radius`` of each query (PointNet++ grouping).

    query: (B, M, 3), points: (B, N, 3). Returns LongTensor (B, M, k): the k nearest points
    within the radius, nearest first; slots beyond the points found repeat the nearest one
    (PointNet++ pads with the first hit). A query with nothing in range gets its nearest point.
    """
    if radius <= 0:
        raise ValueError(f"ball_query: radius must be > 0, got {radius}")
    k = min(k, points.shape[1])
    dists, idx = knn(query, points, k, backend=backend, check=check)
    inside = dists <= radius
    inside[..., 0] = True
    return torch.where(inside, idx, idx[..., :1].expand_as(idx))


def gather_points(features: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """Pick rows of ``features`` (B, N, C) by ``idx`` (B, *S) -> (B, *S, C). Differentiable."""
    B, N, C = features.shape
    flat = idx.reshape(B, -1)
    out = features.gather(1, flat.unsqueeze(-1).expand(-1, -1, C))
    return out.reshape(*idx.shape, C)


def group_points(
    points: torch.Tensor, centers: torch.Tensor, idx: torch.Tensor, features: torch.Tensor | None = None
) -> torch.Tensor:
    """Local neighbourhoods relative to their centre (PointNet++ set abstraction input).

    points (B, N, 3), centers (B, M, 3), idx (B, M, K), features (B, N, C) or None.
    Returns (B, M, K, 3 + C): neighbour offsets from the centre, then their features.
    """
    grouped = gather_points(points, idx) - centers.unsqueeze(2)
    if features is not None:
        grouped = torch.cat([grouped, gather_points(features, idx)], dim=-1)
    return grouped


# ----------------------------------------------------------------------------- normalise / augment


def normalize_points(points: torch.Tensor) -> torch.Tensor:
    """Centre each cloud at its centroid and scale it into the unit sphere. (B, N, 3) -> same."""
    centered = points - points.mean(dim=1, keepdim=True)
    scale = centered.norm(dim=-1).amax(dim=1, keepdim=True).clamp_min(1e-9)
    return centered / scale.unsqueeze(-1)


def rotation_matrices(angles: torch.Tensor, axis: Literal["x", "y", "z"]) -> torch.Tensor:
    """Rotations about one axis. angles (B,) radians -> (B, 3, 3)."""
    c, s = angles.cos(), angles.sin()
    o, z = torch.ones_like(c), torch.zeros_like(c)
    rows = {
        "x": [[o, z, z], [z, c, -s], [z, s, c]],
        "y": [[c, z, s], [z, o, z], [-s, z, c]],
        "z": [[c, -s, z], [s, c, z], [z, z, o]],
    }[axis]
    return torch.stack([torch.stack(r, -1) for r in rows], -2)


def _draw(fn, shape: tuple[int, ...], generator: torch.Generator | None, like: torch.Tensor) -> torch.Tensor:
    """``fn(shape)`` (torch.rand / torch.randn) drawn on ``like``'s device in float32, or on
    the generator's device then moved there when a generator of another device is given."""
    dev = generator.device if generator is not None else like.device
    return fn(shape, generator=generator, device=dev, dtype=torch.float32).to(like.device)


def random_rotation(
    points: torch.Tensor, mode: Literal["z", "so3"] = "z", generator: torch.Generator | None = None
) -> torch.Tensor:
    """Rotate each cloud about the up (z) axis, or by a uniform random rotation (``so3``:
    QR of a Gaussian matrix with the sign fixed, Mezzadri 2007). (B, N, 3) -> same."""
    B = points.shape[0]
    if mode == "z":
        ang = _draw(torch.rand, (B,), generator, points) * (2 * math.pi)
        R = rotation_matrices(ang, "z")
    elif mode == "so3":
        q, r = torch.linalg.qr(_draw(torch.randn, (B, 3, 3), generator, points))
        q = q * torch.sign(torch.diagonal(r, dim1=-2, dim2=-1)).unsqueeze(-2)
        det = torch.linalg.det(q)
        q[:, :, 0] *= det.sign().unsqueeze(-1)
        R = q
    else:
        raise ValueError(f"random_rotation: mode must be 'z' or 'so3', got {mode!r}")
    return points @ R.to(points).transpose(1, 2)


def random_scale(
    points: torch.Tensor,
    low: float = 0.8,
    high: float = 1.25,
    anisotropic: bool = True,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Scale each cloud by factors drawn from U(low, high), per axis if ``anisotropic``."""
    B = points.shape[0]
    s = _draw(torch.rand, (B, 1, 3 if anisotropic else 1), generator, points) * (high - low) + low
    return points * s.to(points)


def jitter(
    points: torch.Tensor, sigma: float = 0.01, clip: float = 0.05, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Add clipped Gaussian noise per coordinate (PointNet's jitter)."""
    noise = (_draw(torch.randn, tuple(points.shape), generator, points) * sigma).clamp(-clip, clip)
    return points + noise.to(points)


def random_point_dropout(
    points: torch.Tensor, max_ratio: float = 0.875, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Drop a random fraction (up to ``max_ratio``) of each cloud's points by replacing them
    with the cloud's first point, so N stays fixed (PointNet++'s dropout augmentation)."""
    B, N, _ = points.shape
    ratio = _draw(torch.rand, (B, 1), generator, points) * max_ratio
    drop = _draw(torch.rand, (B, N), generator, points) <= ratio
    return torch.where(drop.unsqueeze(-1), points[:, :1].expand_as(points), points)


def backend_parity_check(
    device: str | torch.device | None = None, batch: int = 4, n_points: int = 2048, samples: int = 256, k: int = 16
) -> dict:
    """Every FPS / kNN backend usable on ``device`` (default: cuda when available) against the
    torch backend on one random batch, for scripts/gpu_check: ``{"device", "pytorch3d": None
    or why it is not used, "fps": {backend: same index sets}, "knn": {backend: {"idx_agree":
    fraction of equal neighbour indices, "max_dist_err": largest distance difference}}}``."""
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    g = torch.Generator().manual_seed(0)
    pts = normalize_points(torch.rand(batch, n_points, 3, generator=g) * 2 - 1).to(dev)
    out: dict = {"device": str(dev), "pytorch3d": pytorch3d_problem(dev), "fps": {}, "knn": {}}
    ref_fps = farthest_point_sample(pts, samples, backend="torch")
    for b in available_backends("fps", dev):
        out["fps"][b] = bool(torch.equal(farthest_point_sample(pts, samples, backend=b).to(dev), ref_fps))
    ref_d, ref_i = knn(pts, pts, k, backend="torch")
    for b in available_backends("knn", dev):
        d, i = knn(pts, pts, k, backend=b)
        out["knn"][b] = {
            "idx_agree": float((i.to(dev) == ref_i).float().mean()),
            "max_dist_err": float((d.to(dev) - ref_d).abs().max()),
        }
    return out
