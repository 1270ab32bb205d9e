"""Every backend of every search op against a naive loop; augmentations keep their invariants."""

import math

import numpy as np
import pytest
import torch

from pointcloud import ops
from vlx.data.errors import DataError


def naive_fps(p: np.ndarray, m: int) -> list[int]:
    dist = np.full(len(p), np.inf)
    cur, sel = 0, [0]
    for _ in range(m - 1):
        dist = np.minimum(dist, ((p - p[cur]) ** 2).sum(1))
        cur = int(dist.argmax())
        sel.append(cur)
    return sorted(sel)


def naive_knn(q: np.ndarray, p: np.ndarray, k: int):
    d = np.sqrt(((q[:, None] - p[None]) ** 2).sum(-1))
    i = np.argsort(d, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(d, i, 1), i


@pytest.fixture
def clouds():
    g = torch.Generator().manual_seed(0)
    return torch.rand(3, 300, 3, generator=g)


@pytest.mark.parametrize("backend", ops.available_backends("fps"))
def test_fps_matches_naive(clouds, backend):
    idx = ops.farthest_point_sample(clouds, 40, backend=backend)
    assert idx.shape == (3, 40)
    for b in range(3):
        assert idx[b].tolist() == naive_fps(clouds[b].numpy().astype(np.float64), 40)


def test_fps_auto_and_all_points(clouds):
    assert ops.farthest_point_sample(clouds, 500).shape == (3, 300)
    assert torch.equal(ops.farthest_point_sample(clouds, 17), ops.farthest_point_sample(clouds, 17, backend="torch"))


@pytest.mark.parametrize("backend", ops.available_backends("knn"))
@pytest.mark.parametrize("dim", [3, 7])
def test_knn_matches_naive(clouds, backend, dim):
    g = torch.Generator().manual_seed(1)
    pts = torch.rand(2, 200, dim, generator=g)
    q = torch.rand(2, 50, dim, generator=g)
    d, i = ops.knn(q, pts, 8, backend=backend)
    for b in range(2):
        rd, ri = naive_knn(q[b].numpy(), pts[b].numpy(), 8)
        np.testing.assert_array_equal(i[b].numpy(), ri)
        np.testing.assert_allclose(d[b].numpy(), rd, atol=1e-5)


def test_knn_self_first_and_grad(clouds):
    p = clouds.clone().requires_grad_(True)
    d, i = ops.knn(p, p, 4)
    assert torch.equal(i[..., 0], torch.arange(300).expand(3, 300))
    d[..., 1:].sum().backward()
    assert p.grad is not None and p.grad.abs().sum() > 0


@pytest.mark.parametrize("backend", ops.available_backends("knn"))
def test_ball_query_matches_naive(clouds, backend):
    centers = clouds[:, :20]
    idx = ops.ball_query(centers, clouds, radius=0.15, k=10, backend=backend)
    for b in range(3):
        rd, ri = naive_knn(centers[b].numpy(), clouds[b].numpy(), 10)
        expect = np.where(rd <= 0.15, ri, ri[:, :1])
        np.testing.assert_array_equal(idx[b].numpy(), expect)


def test_group_points_offsets(clouds):
    centers = ops.gather_points(clouds, torch.tensor([[0, 5]] * 3))
    idx = torch.tensor([[[0, 1], [5, 6]]] * 3)
    feats = torch.arange(300.0).view(1, 300, 1).expand(3, -1, -1)
    g = ops.group_points(clouds, centers, idx, feats)
    assert g.shape == (3, 2, 2, 4)
    assert torch.allclose(g[:, 0, 1, :3], clouds[:, 1] - clouds[:, 0])
    assert g[0, 1, 1, 3].item() == 6.0


def test_normalize_and_augment(clouds):
    n = ops.normalize_points(clouds * 5 + 3)
    assert torch.allclose(n.mean(1), torch.zeros(3, 3), atol=1e-5)
    assert torch.allclose(n.norm(dim=-1).amax(1), torch.ones(3))
    g = torch.Generator().manual_seed(0)
    for mode in ("z", "so3"):
        r = ops.random_rotation(n, mode, generator=g)
        assert torch.allclose(r.norm(dim=-1), n.norm(dim=-1), atol=1e-5)  # rotations keep norms
        gram = r @ r.transpose(1, 2)
        assert torch.allclose(gram, n @ n.transpose(1, 2), atol=1e-4)
    zr = ops.random_rotation(n, "z", generator=g)
    assert torch.allclose(zr[..., 2], n[..., 2])
    s = ops.random_scale(n, 2.0, 2.0, generator=g)
    assert torch.allclose(s, 2 * n)
    j = ops.jitter(n, sigma=1.0, clip=0.05, generator=g)
    assert (j - n).abs().max() <= 0.05 + 1e-6 and (j - n).abs().max() > 0.04
    dr = ops.random_point_dropout(n, 0.5, generator=g)
    changed = (dr != n).any(-1)
    assert torch.all(dr[changed] == n[:, :1].expand_as(n)[changed])
    assert 0 < changed.float().mean() < 0.5


def test_rotation_matrices_are_rotations():
    R = ops.rotation_matrices(torch.tensor([0.3, math.pi / 2]), "x")
    assert torch.allclose(R @ R.transpose(1, 2), torch.eye(3).expand(2, 3, 3), atol=1e-6)
    assert torch.allclose(torch.linalg.det(R), torch.ones(2))


@pytest.mark.parametrize(
    "bad,msg",
    [
        (torch.zeros(2, 0, 3), "empty point cloud"),
        (torch.zeros(2, 5, 2), "expected shape"),
        (torch.zeros(5, 3), "expected shape"),
        (torch.tensor([[[0.0, 0, 0], [float("nan"), 0, 0]]]), "batch 0, point 1"),
        (torch.tensor([[[0.0, 0, 0], [0, float("inf"), 0]]]), "non-finite"),
    ],
)
def test_bad_input_is_clear(bad, msg):
    with pytest.raises(DataError, match=msg):
        ops.farthest_point_sample(bad, 2)
    if bad.shape[-1] == 3:  # knn takes any feature dim, so (B, N, 2) is valid there
        with pytest.raises(DataError, match=msg):
            ops.knn(bad, bad, 1)


def test_unknown_backend():
    with pytest.raises(ValueError, match="unknown backend"):
        ops.knn(torch.rand(1, 4, 3), torch.rand(1, 4, 3), 2, backend="faiss")


def test_batched_fps_equals_the_step_loop_and_naive():
    """The four-kernel batched FPS picks the same points as the previous loop and the naive
    float64 reference, on clouds big enough for near-ties."""
    pts = torch.rand(2, 2048, 3, generator=torch.Generator().manual_seed(5))
    new, old = ops._fps_torch(pts, 256), ops._fps_loop(pts, 256)
    assert torch.equal(new, old)  # same pick order
    assert new[0].sort().values.tolist() == naive_fps(pts[0].numpy().astype(np.float64), 256)


def test_knn_without_distances(clouds):
    d, i = ops.knn(clouds, clouds, 5, backend="torch", return_dists=False)
    assert d is None and torch.equal(i, ops.knn(clouds, clouds, 5, backend="torch")[1])


def _fake_pytorch3d(monkeypatch, works: bool):
    """A stand-in pytorch3d: ``works`` answers like the real ops (through the torch backend),
    else fails the way a CPU-only build does on a CUDA tensor."""
    import sys
    import types
    from collections import namedtuple

    calls = []

    def fps(x, K, random_start_point=False):
        calls.append("fps")
        if not works:
            raise RuntimeError("Not compiled with GPU support")
        return None, ops._fps_torch(x, K)

    def knn_points(q, p, K, return_sorted=True):
        d, i = ops.knn(q, p, K, backend="torch")
        return namedtuple("KNN", "dists idx")(d.square(), i)

    mod, sub = types.ModuleType("pytorch3d"), types.ModuleType("pytorch3d.ops")
    sub.sample_farthest_points, sub.knn_points = fps, knn_points
    mod.ops = sub
    monkeypatch.setitem(sys.modules, "pytorch3d", mod)
    monkeypatch.setitem(sys.modules, "pytorch3d.ops", sub)
    monkeypatch.setitem(ops._HAS, "pytorch3d", True)
    monkeypatch.setattr(ops, "_PROBED", {})
    return calls


def test_pytorch3d_is_probed_not_just_found(monkeypatch, clouds):
    # installed but broken (a CPU-only build): the probe fails once, auto falls back to torch
    calls = _fake_pytorch3d(monkeypatch, works=False)
    with pytest.warns(UserWarning, match="pytorch3d fails on cpu: RuntimeError: Not compiled"):
        assert "pytorch3d" not in ops.available_backends("fps", "cpu")
    assert ops.available_backends("knn", "cpu") == ["open3d", "scipy", "torch"]
    assert calls == ["fps"]  # cached: one probe per device
    # a CUDA tensor's auto choice is never a pytorch3d that fails its probe (here: no CUDA at all)
    with pytest.warns(UserWarning, match="pytorch3d fails on cuda"):
        assert ops._pick("fps", "auto", torch.device("cuda")) == "torch"
    assert ops._pick("knn", "auto", torch.device("cuda")) == "torch"


def test_pytorch3d_that_works_is_used_and_matches_torch(monkeypatch, clouds):
    _fake_pytorch3d(monkeypatch, works=True)
    assert ops.pytorch3d_problem("cpu") is None and "pytorch3d" in ops.available_backends("fps", "cpu")
    report = ops.backend_parity_check("cpu", batch=2, n_points=256, samples=32, k=4)
    assert report["pytorch3d"] is None and report["fps"]["pytorch3d"] is True
    assert report["knn"]["pytorch3d"]["idx_agree"] == 1.0 and report["knn"]["pytorch3d"]["max_dist_err"] < 1e-5


def test_backend_parity_check_here():
    report = ops.backend_parity_check("cpu", batch=2, n_points=512, samples=64, k=8)
    # pytorch3d (no wheel for this platform) is compared only where its probe passes
    assert (report["pytorch3d"] is None) == ("pytorch3d" in report["fps"])
    if not ops._HAS["pytorch3d"]:
        assert report["pytorch3d"] == "pytorch3d is not installed"
    assert set(report["fps"]) == set(ops.available_backends("fps")) and all(report["fps"].values())
    for b, r in report["knn"].items():
        assert r["idx_agree"] > 0.999 and r["max_dist_err"] < 1e-5, b


def test_augmentations_follow_the_points_device():
    pts = torch.zeros(2, 5, 3, device="meta")
    for out in (
        ops.random_rotation(pts),
        ops.random_rotation(pts, "so3"),
        ops.random_scale(pts),
        ops.jitter(pts),
        ops.random_point_dropout(pts),
    ):
        assert out.device.type == "meta" and out.shape == pts.shape
