"""Depth projections against a per-point loop; view sets; PointCLIP V2 grid ops against F.* ops."""

import pytest
import torch
import torch.nn.functional as F

from pointcloud import ops
from pointcloud import projection as P
from vlx.data.errors import DataError


@pytest.fixture
def cloud():
    return ops.normalize_points(torch.rand(2, 400, 3, generator=torch.Generator().manual_seed(0)) * 2 - 1)


def naive_depth(p, views, S):
    pix, d = P.project_points(p, P.view_matrices(views), S)
    B, V, N = pix.shape
    ref = torch.zeros(B, V, S * S)
    for b in range(B):
        for v in range(V):
            lo, hi = d[b, v].min(), d[b, v].max()
            for n in range(N):
                br = 1 + (0.2 - 1) * (d[b, v, n] - lo) / (hi - lo)
                ref[b, v, pix[b, v, n]] = max(ref[b, v, pix[b, v, n]], br)
    return ref.view(B, V, S, S)


@pytest.mark.parametrize("views", ["clip2point_6", "clip2point_10"])
def test_depth_maps_match_loop(cloud, views):
    img = P.depth_maps(cloud, views, 16, normalize=False)
    assert img.shape == (2, P.view_matrices(views).shape[0], 16, 16)
    torch.testing.assert_close(img, naive_depth(cloud, views, 16), atol=1e-5, rtol=0)


def test_zbuffer_is_min_depth(cloud):
    pix, d = P.project_points(cloud, P.view_matrices("clip2point_6"), 8)
    zb = P.zbuffer(pix, d, 8).flatten(2)
    for v in range(6):
        for p in range(64):
            hit = d[0, v][pix[0, v] == p]
            expect = hit.min() if len(hit) else torch.tensor(float("inf"))
            assert zb[0, v, p] == expect
    vis = P.visible_points(pix, d, 8, tol=0.0)
    assert vis.any(-1).all() and not vis.all()


def test_views_see_different_sides():
    # A point at +x is the nearest in the right view (azimuth 90), the farthest seen from the left.
    pts = torch.tensor([[[1.0, 0, 0], [-1.0, 0, 0], [0, 0.5, 0.5]]])
    _, d = P.project_points(pts, P.view_matrices([(0, 0), (90, 0), (270, 0), (0, 90)]), 8)
    assert d[0, 1, 0] < d[0, 1, 1] and d[0, 2, 0] > d[0, 2, 1]
    assert torch.isclose(d[0, 0, 0], d[0, 0, 1])  # the front view cannot tell +x from -x by depth
    assert d[0, 3, 2] < d[0, 3, 0]  # top view: the raised point is nearer


def test_jitter_changes_views_but_keeps_content(cloud):
    g = torch.Generator().manual_seed(0)
    a = P.depth_maps(cloud, "clip2point_10", 32, jitter_degrees=10, generator=g)
    b = P.depth_maps(cloud, "clip2point_10", 32)
    assert not torch.equal(a, b)
    assert abs((a > 0).float().mean() - (b > 0).float().mean()) < 0.05


def test_chunked_rendering_equals_one_shot(cloud):
    big = P.depth_maps(cloud.repeat(3, 1, 1), "clip2point_6", 16)
    assert torch.equal(big[:2], big[2:4])


def test_densify_smooth_match_torch_ops():
    g = torch.rand(2, 4, 10, 12).mul(3).floor().div(3)
    pooled = P.densify_and_smooth(g, pool=3, sigma=0)
    torch.testing.assert_close(pooled, F.max_pool3d(g.unsqueeze(1), 3, 1, 1).squeeze(1))
    k = torch.tensor(P._gaussian_kernel(1.0))
    k3 = k.view(-1, 1, 1) * k.view(1, -1, 1) * k.view(1, 1, -1)
    ref = F.conv3d(g.unsqueeze(1), k3.view(1, 1, 5, 5, 5), padding=2).squeeze(1)
    torch.testing.assert_close(P.densify_and_smooth(g, pool=1, sigma=1.0), ref, atol=1e-5, rtol=1e-5)


def test_realistic_projection(cloud):
    img = P.realistic_projection(cloud, "clip2point_6", 32, depth_bins=4)
    assert img.shape == (2, 6, 32, 32)
    assert torch.allclose(img.flatten(2).amax(-1), torch.ones(2, 6))
    sparse = P.depth_maps(cloud, "clip2point_6", 32) > 0
    assert (img > 0.05).float().mean() > sparse.float().mean()  # densified: more pixels covered


def test_bad_clouds(cloud):
    with pytest.raises(DataError, match="non-finite"):
        P.depth_maps(torch.tensor([[[0.0, float("nan"), 0]]]))
    with pytest.raises(DataError, match="empty"):
        P.realistic_projection(torch.zeros(1, 0, 3))
    with pytest.raises(ValueError, match="unit sphere"):
        P.depth_maps(cloud * 3, normalize=False)
    with pytest.raises(KeyError, match="unknown view set"):
        P.view_matrices("clip2point_7")


def test_depth_maps_per_sample_cameras_match_loop(cloud):
    mats = P.jitter_views(P.view_matrices("clip2point_6"), 2, 10.0, torch.Generator().manual_seed(0))  # (2, 6, 3, 3)
    img = P.depth_maps(cloud, mats, 16, normalize=False)
    for b in range(2):
        torch.testing.assert_close(
            img[b], P.depth_maps(cloud[b : b + 1], mats[b], 16, normalize=False)[0], atol=1e-6, rtol=0
        )


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_depth_maps_integer_zbuffer_equals_float_amax(cloud, dtype):
    # The no-grad path reduces float bits as integers; the grad path is a float scatter_reduce.
    pts = cloud.to(dtype)
    fast = P.depth_maps(pts, "clip2point_6", 24, far=0.0)  # far=0: the farthest point ~0, ties with background
    slow_in = pts.clone().requires_grad_(True)
    slow = P.depth_maps(slow_in, "clip2point_6", 24, far=0.0)
    assert fast.dtype == dtype and torch.equal(fast, slow.detach())
    slow.sum().backward()
    assert slow_in.grad is not None and torch.isfinite(slow_in.grad).all()


def test_jitter_views_draws_on_the_matrices_device():
    # "meta" stands in for an accelerator: a CPU draw multiplied with these would raise.
    mats = P.view_matrices("clip2point_6").to("meta")
    out = P.jitter_views(mats, 3, 10.0)
    assert out.device.type == "meta" and out.shape == (3, 6, 3, 3)
    per_sample = P.jitter_views(out, 3, 10.0)  # (B, V, 3, 3) in: each sample jittered again
    assert per_sample.device.type == "meta" and per_sample.shape == (3, 6, 3, 3)
    # a CPU generator still works for matrices elsewhere (drawn there, then moved)
    assert P.jitter_views(mats, 2, 10.0, torch.Generator().manual_seed(0)).device.type == "meta"


@pytest.mark.parametrize("in_dtype", [torch.float32, torch.bfloat16])
def test_projections_under_bf16_autocast_equal_float32(in_dtype):
    """Under the trainer's bf16 autocast, the geometry still runs in float32: pixel indices
    (row offsets up to B*V*S = 1280, beyond bf16's 256 exact integers), depth images and the
    realistic projection equal the float32 results of the same input values."""
    pts = ops.normalize_points(torch.rand(4, 300, 3, generator=torch.Generator().manual_seed(1)) * 2 - 1)
    pts = pts.to(in_dtype)
    ref_in = pts.float()
    mats = P.view_matrices("clip2point_10")
    ref = {
        "depth": P.depth_maps(ref_in, "clip2point_10", 32),
        "pix": P.project_points(ref_in, mats, 32),
        "real": P.realistic_projection(ref_in, "clip2point_6", 16, chunk=2),
    }
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = {
            "depth": P.depth_maps(pts, "clip2point_10", 32),
            "pix": P.project_points(pts, mats, 32),
            "real": P.realistic_projection(pts, "clip2point_6", 16, chunk=2),
        }
    assert got["depth"].dtype == torch.float32 and torch.equal(got["depth"], ref["depth"])
    assert torch.equal(got["pix"][0], ref["pix"][0]) and torch.equal(got["pix"][1], ref["pix"][1])
    torch.testing.assert_close(got["real"], ref["real"], atol=1e-6, rtol=0)


def test_lazy_finite_check_asserts_without_locating():
    bad = torch.zeros(1, 4, 3)
    bad[0, 2, 1] = float("inf")
    with pytest.raises(RuntimeError, match="non-finite"):
        ops.validate_points(bad, lazy=True)
    assert ops.validate_points(torch.zeros(1, 4, 3), lazy=True).shape == (1, 4, 3)


def test_depth_maps_equal_project_points_reference_on_a_large_batch():
    # 16 clouds x 10 views at 224 px: pixel indices are taken per image, so no point changes
    # pixel with the batch size (stacked-image row offsets in float32 moved ~700 pixels here).
    pts = ops.normalize_points(torch.randn(16, 2048, 3, generator=torch.Generator().manual_seed(3)))
    mats = P.view_matrices("clip2point_10")
    img = P.depth_maps(pts, mats, 224, normalize=False)
    pix, d = P.project_points(pts, mats, 224)
    lo, hi = d.amin(-1, keepdim=True), d.amax(-1, keepdim=True)
    bright = 1 + (0.2 - 1) * (d - lo) / (hi - lo)
    ref = torch.zeros(16, 10, 224 * 224).scatter_reduce_(2, pix, bright, reduce="amax", include_self=True)
    assert torch.equal(img.flatten(2) > 0, ref > 0)
    torch.testing.assert_close(img.flatten(2), ref, atol=1e-6, rtol=0)
