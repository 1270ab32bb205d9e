"""The compiled CPU depth kernel (pointcloud.native) against depth_maps' torch kernel: equal
images (same arithmetic and rounding), the fallback, and its errors."""

import pytest
import torch

from pointcloud import native, ops
from pointcloud import projection as P


@pytest.fixture(scope="module")
def built():
    assert native.problem() is None, native.problem()  # g++ and ninja come with scripts/setup.sh


def _cloud(B, N, seed, dtype=torch.float32):
    return ops.normalize_points(torch.randn(B, N, 3, generator=torch.Generator().manual_seed(seed), dtype=dtype))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("views", ["clip2point_10", "clip2point_6"])
def test_native_equals_torch_kernel(built, dtype, views):
    pts = _cloud(3, 1500, 0, dtype)  # 1500: not a multiple of the kernel's 512-point chunks
    for normalize in (False, True):
        fast = P.depth_maps(pts, views, 64, normalize=normalize, backend="native")
        ref = P.depth_maps(pts, views, 64, normalize=normalize, backend="torch")
        assert fast.dtype == dtype and fast.shape == ref.shape
        assert torch.equal(fast, ref)
        assert (fast > 0).sum() > 1000  # something was drawn


def test_native_equals_torch_on_per_sample_cameras_and_near_far(built):
    pts = _cloud(4, 700, 1)
    mats = P.jitter_views(P.view_matrices("clip2point_10"), 4, 15.0, torch.Generator().manual_seed(2))
    kw = dict(near=0.9, far=0.1, margin=0.8, normalize=False)
    fast = P.depth_maps(pts, mats, 48, backend="native", **kw)
    assert torch.equal(fast, P.depth_maps(pts, mats, 48, backend="torch", **kw))
    # the background is 0 and the drawn pixels lie in [far, near]: nearest 0.9, farthest 0.1 in each image
    drawn = fast[fast > 0]
    assert drawn.min() >= 0.1 - 1e-6 and drawn.max() <= 0.9 + 1e-6
    assert torch.allclose(fast.flatten(2).amax(-1), torch.full((4, 10), 0.9))


def test_native_equals_the_reference_loop_at_batch_scale(built):
    # 16 clouds x 10 views at 224 px, as pre-training runs it: the same pixels as project_points.
    pts = _cloud(16, 2048, 3)
    mats = P.view_matrices("clip2point_10")
    img = P.depth_maps(pts, mats, 224, normalize=False, backend="native").flatten(2)
    pix, d = P.project_points(pts, mats, 224)
    lo, hi = d.amin(-1, keepdim=True), d.amax(-1, keepdim=True)
    ref = torch.zeros(16, 10, 224 * 224).scatter_reduce_(
        2, pix, 1 + (0.2 - 1) * (d - lo) / (hi - lo), reduce="amax", include_self=True
    )
    assert torch.equal(img > 0, ref > 0)
    torch.testing.assert_close(img, ref, atol=1e-6, rtol=0)


def test_auto_uses_native_only_without_autograd(built, monkeypatch):
    pts = _cloud(2, 300, 4)
    calls = []
    real = native.depth_splat
    monkeypatch.setattr(native, "depth_splat", lambda *a: calls.append(1) or real(*a))
    P.depth_maps(pts, "clip2point_6", 32)
    assert calls == [1]
    g = pts.clone().requires_grad_(True)
    out = P.depth_maps(g, "clip2point_6", 32)  # autograd: the torch kernel
    assert calls == [1] and out.requires_grad
    P.depth_maps(pts.half(), "clip2point_6", 32)  # geometry in float32: still native
    assert calls == [1, 1]


def test_native_refuses_points_outside_the_image(built):
    pts = _cloud(1, 50, 5)
    A = torch.zeros(1, 3, 6, 4)
    A[:, :2, :, 3] = 40.0  # every point of the 6 views at pixel (40, 40) of a 32-px image
    with pytest.raises(RuntimeError, match="300 projected points fell outside their image"):
        native.depth_splat(pts.transpose(1, 2).contiguous(), A, 32, 1.0, 0.2)
    with pytest.raises(ValueError, match="backend must be 'auto', 'native' or 'torch'"):
        P.depth_maps(pts, "clip2point_6", 32, backend="cpp")
    with pytest.raises(ValueError, match="backend 'native' takes CPU float32/float64 points without autograd"):
        P.depth_maps(pts.clone().requires_grad_(True), "clip2point_6", 32, backend="native")


def test_turned_off_by_environment(monkeypatch):
    monkeypatch.setenv("VLX_NATIVE", "0")
    assert native._load() == "compiled kernels turned off (VLX_NATIVE=0)"
    monkeypatch.setattr(native, "_STATE", {})
    with pytest.warns(UserWarning, match="turned off .* using the torch kernel"):
        assert native.problem() is not None
    pts = _cloud(2, 200, 6)
    with pytest.raises(RuntimeError, match="backend 'native': compiled kernels turned off"):
        P.depth_maps(pts, "clip2point_6", 16, backend="native")
    # auto falls back to the torch kernel, same images
    assert torch.equal(P.depth_maps(pts, "clip2point_6", 16), P.depth_maps(pts, "clip2point_6", 16, backend="torch"))
