"""CLIP2Point's renderer (render/render.py: pytorch3d PointsRasterizer + ``norm``) against
values worked out by hand from its definition.

Conventions used below (pytorch3d, square image of S pixels): column j's centre lies at
x = -1 + (2j + 1)/S along the image's right, row i's at y = 1 - (2i + 1)/S (row 0 at the top);
a point covers a centre when dx^2 + dy^2 < radius^2 (NDC units, strict); its value is its
depth from the camera z = dist + forward . p / dist. For S = 8 the centres are
-0.875, -0.625, -0.375, -0.125, 0.125, 0.375, 0.625, 0.875 (columns left to right; rows top
to bottom the same values negated). View 0 of ``clip2point_6`` is the front camera at
(0, 0, 1): right = +x, up = +y, forward = -z, so z = 1 - p_z.
"""

import pytest
import torch

from pointcloud import projection as P
from pointcloud import render_clip2point as R
from tests.pointcloud.test_view_sets import CLIP2POINT_6, CLIP2POINT_10, MARKERS
from vlx.config import ConfigError

FRONT = P.view_matrices("clip2point_6")[:1]  # (1, 3, 3)


def pixels(img: torch.Tensor, value: float) -> set[tuple[int, int]]:
    return {tuple(rc) for rc in (img == value).nonzero().tolist()}


def test_pixel_centres_are_pytorch3d_ndc():
    assert R.pixel_centres(8).tolist() == [-0.875, -0.625, -0.375, -0.125, 0.125, 0.375, 0.625, 0.875]


def test_one_point_covers_the_pixels_worked_out_by_hand():
    # p = (0.2, 0.3, 0.5), radius 0.25: dx to columns 4/5/3 = 0.075/0.175/0.325, dy to rows
    # 2/3/1 = 0.075/0.175/0.325; d^2 < 0.0625 for (2,4) 0.01125, (2,5) and (3,4) 0.03625,
    # (3,5) 0.06125; every other centre is >= 0.11125 away. z = 1 - 0.5 = 0.5.
    z = R.rasterize_points(torch.tensor([[[0.2, 0.3, 0.5]]]), FRONT, 8, radius=0.25)[0, 0]
    covered = {(2, 4), (2, 5), (3, 4), (3, 5)}
    assert pixels(z, 0.5) == covered and pixels(z, -1.0) == {(i, j) for i in range(8) for j in range(8)} - covered
    # one point: min = max = 0.5, so it is 0 (black) and the background 1 (white)
    img = R.clip2point_norm(z)
    assert pixels(img, 0.0) == covered and (img[z < 0] == 1.0).all()


def test_the_radius_test_is_strict():
    # a point on column 4 / row 2's centre (0.125, 0.375): its 4 neighbours sit exactly 0.25 away
    z = R.rasterize_points(torch.tensor([[[0.125, 0.375, 0.0]]]), FRONT, 8, radius=0.25)[0, 0]
    assert pixels(z, 1.0) == {(2, 4)}


def test_radius_002_covers_21_pixels_at_224():
    # 0.02 NDC = 2.24 px at 224; a point on a pixel centre covers the centres at integer offsets
    # (a, b) with a^2 + b^2 < 2.24^2 = 5.02: 1 + 4 (norm 1) + 4 (norm 2) + 4 (norm 4) + 8 (norm 5) = 21
    p = torch.tensor([[[1 / 224, 1 / 224, 0.0]]])  # column 112, row 111's centre
    z = R.rasterize_points(p, FRONT, 224)[0, 0]
    hit = pixels(z, 1.0)
    assert len(hit) == 21
    assert hit == {(111 + a, 112 + b) for a in range(-2, 3) for b in range(-2, 3) if a * a + b * b <= 5}


def test_nearer_disc_wins_where_discs_overlap():
    # radius 0.3 (1.2 px): p1 (0.125, 0.375), z 0.5, covers a plus around (2,4); p2 (0.375, 0.375),
    # z 1.0, a plus around (2,5). Shared: (2,4), (2,5) -> p1's z. norm: max 1.0, min 0.5, so
    # p1's pixels (0.5-0.5)/1 * 200/255 = 0 and p2's own (1.0-0.5)/1 * 200/255 = 100/255.
    pts = torch.tensor([[[0.125, 0.375, 0.5], [0.375, 0.375, 0.0]]])
    z = R.rasterize_points(pts, FRONT, 8, radius=0.3)[0, 0]
    p1 = {(2, 4), (2, 3), (2, 5), (1, 4), (3, 4)}
    assert pixels(z, 0.5) == p1 and pixels(z, 1.0) == {(2, 6), (1, 5), (3, 5)}
    img = R.clip2point_norm(z)
    assert pixels(img, 0.0) == p1
    torch.testing.assert_close(img[[2, 1, 3], [6, 5, 5]], torch.full((3,), 100 / 255))
    # the same cloud in the other order: same image (the z-buffer does not care)
    torch.testing.assert_close(R.rasterize_points(pts.flip(1), FRONT, 8, radius=0.3)[0, 0], z)


def test_norm_on_three_points_by_hand():
    # one pixel each (radius 0.1 = 0.4 px, points on centres): A top-left z 0.2, B (3,4) z 1.0,
    # C bottom-right z 1.6. max 1.6, min 0.2 -> A 0, B 0.8/1.6*200/255 = 100/255, C 1.4/1.6*200/255 = 175/255
    pts = torch.tensor([[[-0.875, 0.875, 0.8], [0.125, 0.125, 0.0], [0.875, -0.875, -0.6]]])
    img = R.clip2point_depth(pts, FRONT, 8, radius=0.1, normalize=False)[0, 0]
    want = torch.ones(8, 8)
    want[0, 0], want[3, 4], want[7, 7] = 0.0, 100 / 255, 175 / 255
    torch.testing.assert_close(img, want)


def test_norm_min_includes_the_white_background():
    # CLIP2Point sets the background to 1 before taking the min, so when every point is farther
    # than 1 the min is 1: z 1.5 -> (1.5-1)/1.5*200/255, z 1.25 -> (0.25/1.5)*200/255
    zbuf = torch.full((1, 4, 4), -1.0)
    zbuf[0, 1, 1], zbuf[0, 2, 2] = 1.5, 1.25
    img = R.clip2point_norm(zbuf)[0]
    torch.testing.assert_close(img[[1, 2], [1, 2]], torch.tensor([1 / 3, 1 / 6]) * 200 / 255)
    assert (img[zbuf[0] < 0] == 1).all()
    assert (R.clip2point_norm(torch.full((2, 3, 3), -1.0)) == 1).all()  # nothing drawn: white


def test_points_behind_the_camera_are_dropped_znear_does_not_clip():
    # pytorch3d's point kernels skip z < 0 only (the camera's znear=0.01 is not applied to points)
    behind = R.rasterize_points(torch.tensor([[[0.125, 0.125, 1.2]]]), FRONT, 8, radius=0.1)  # z = -0.2
    assert (behind == -1).all()
    near = R.rasterize_points(torch.tensor([[[0.125, 0.125, 0.995]]]), FRONT, 8, radius=0.1)  # z = 0.005
    assert pixels(near[0, 0], near[0, 0].max().item()) == {(3, 4)}
    torch.testing.assert_close(near[0, 0, 3, 4], torch.tensor(0.005))


def test_camera_distance_scales_the_cloud():
    # dist 2: points scaled by 1/2 and the camera twice as far: (0.4, 0.6, 1.0) -> NDC (0.2, 0.3),
    # z = 2 - 1.0/2 = 1.5, the four pixels of the one-point case
    z = R.rasterize_points(torch.tensor([[[0.4, 0.6, 1.0]]]), FRONT, 8, radius=0.25, dist=2.0)[0, 0]
    assert pixels(z, 1.5) == {(2, 4), (2, 5), (3, 4), (3, 5)}


@pytest.mark.parametrize("name,table", [("clip2point_10", CLIP2POINT_10), ("clip2point_6", CLIP2POINT_6)])
def test_markers_land_where_the_view_set_tests_put_them(name, table):
    # test_view_sets' markers (+x, +y, +z at 0.5) at 21 px: each lies within 0.48 px of the centre
    # of its table pixel and >= 0.625 px from any other, so a 0.55 px disc lights exactly that one
    S = 21
    img = R.clip2point_depth(MARKERS, name, S, radius=0.55 / 10.5, normalize=False)[0]  # (V, S, S)
    for v, (rc, cam) in enumerate(table):
        lit = {tuple(p) for p in (img[v] < 1).nonzero().tolist()}
        assert lit == set(rc), f"{name} view {v}"
        d = 1 - MARKERS[0] @ torch.tensor(cam, dtype=torch.float32)  # depth from the camera
        want = (d - d.min().clamp(max=1)) / d.max() * 200 / 255
        got = torch.stack([img[v, r, c] for r, c in rc])
        torch.testing.assert_close(got, want, atol=1e-5, rtol=0)
        assert got.argmin() == d.argmin()  # the nearest marker is the darkest


def naive_zbuf(points, mats, S, radius, dist):
    """pytorch3d's naive kernel, one image at a time: every pixel centre against every point."""
    B, V = points.shape[0], mats.shape[-3]
    out = torch.full((B, V, S, S), -1.0)
    col_x = torch.tensor([-1 + (2 * j + 1) / S for j in range(S)])
    row_y = torch.tensor([1 - (2 * i + 1) / S for i in range(S)])
    for b in range(B):
        for v in range(V):
            m = mats[v] if mats.dim() == 3 else mats[b, v]
            dd = float(dist[b, v]) if torch.is_tensor(dist) else dist
            c = points[b] @ m.T  # (N, 3): right, up, forward
            x, y, z = c[:, 0] / dd, c[:, 1] / dd, dd + c[:, 2] / dd
            d2 = (row_y.view(S, 1, 1) - y) ** 2 + (col_x.view(1, S, 1) - x) ** 2  # (S, S, N)
            hit = (d2 < radius**2) & (z >= 0)
            zz = torch.where(hit, z.expand(S, S, -1), torch.tensor(float("inf"))).amin(-1)
            out[b, v] = torch.where(torch.isinf(zz), torch.tensor(-1.0), zz)
    return out


def test_rasteriser_equals_the_naive_kernel(monkeypatch):
    g = torch.Generator().manual_seed(0)
    pts = torch.randn(3, 60, 3, generator=g) * 0.5
    mats = P.jitter_views(P.view_matrices("clip2point_10"), 3, 20.0, g)  # per-sample cameras
    dist = 1 + (torch.rand(3, 10, generator=g) - 0.5) / 5  # CLIP2Point's pre-training distance jitter
    want = naive_zbuf(pts, mats, 16, 0.15, dist)
    torch.testing.assert_close(R.rasterize_points(pts, mats, 16, 0.15, dist), want)
    shared = P.view_matrices("clip2point_6")
    torch.testing.assert_close(R.rasterize_points(pts, shared, 16, 0.15), naive_zbuf(pts, shared, 16, 0.15, 1.0))
    monkeypatch.setattr(R, "_CHUNK_ENTRIES", 1)  # one cloud per chunk: same images
    torch.testing.assert_close(R.rasterize_points(pts, mats, 16, 0.15, dist), want)
    # CLIP2Point's own setting, 224 px and radius 0.02 (2.24 px), points also beyond the image
    big = torch.randn(1, 40, 3, generator=g) * 0.7
    two = P.view_matrices("clip2point_10")[4:6]
    torch.testing.assert_close(R.rasterize_points(big, two, 224), naive_zbuf(big, two, 224, 0.02, 1.0))


def test_depth_images_picks_the_renderer():
    pts = torch.randn(2, 200, 3, generator=torch.Generator().manual_seed(1))
    c2p = R.depth_images(pts, "clip2point_6", 32, "clip2point")
    torch.testing.assert_close(c2p, R.clip2point_depth(pts, "clip2point_6", 32))
    assert (c2p == 1).float().mean() > 0.3 and c2p.min() == 0  # white background, nearest point black
    vlx = R.depth_images(pts, "clip2point_6", 32, "vlx_depth")
    torch.testing.assert_close(vlx, P.depth_maps(pts, "clip2point_6", 32), atol=0, rtol=0)
    with pytest.raises(ConfigError, match=r"render: expected one of \['clip2point', 'vlx_depth'\], got 'depth'"):
        R.depth_images(pts, "clip2point_6", 32, "depth")
