"""CLIP2Point's view sets: marker points land where CLIP2Point's renderer puts them.

Expected values worked out by hand from CLIP2Point's cameras (render/selector.py elevations
and azimuths, rendered through pytorch3d's look_at_view_transform + an orthographic camera):
the camera sits at C = (cos e sin a, sin e, cos e cos a), looks at the origin with +Y as the up
hint; pytorch3d's view x axis is cross(up, forward) and points to the image's LEFT (NDC +X is
the left edge), its y axis cross(forward, x) points up. So per view (right, up):

  e0   a0    C=( 0, 0, 1)          right=+x                up=+y
  e90  a0    C=( 0, 1, 0)  (top)   right=-x                up=+z   (pole: float32 cos(90) < 0)
  e180 a0    C=( 0, 0,-1)  (back)  right=-x                up=+y
  e270 a0    C=( 0,-1, 0)  (bottom) right=+x               up=+z   (pole: float32 cos(270) > 0)
  e225 a-45  C=( .5,-.71,-.5)      right=(-.71, 0,-.71)    up=( .5, .71,-.5)
  e225 a45   C=(-.5,-.71,-.5)      right=(-.71, 0, .71)    up=(-.5, .71,-.5)
  e315 a-45  C=(-.5,-.71, .5)      right=( .71, 0, .71)    up=(-.5, .71, .5)
  e315 a45   C=( .5,-.71, .5)      right=( .71, 0,-.71)    up=( .5, .71, .5)
  e0   a-90  C=(-1, 0, 0)          right=+z                up=+y
  e0   a90   C=( 1, 0, 0)          right=-z                up=+y

Markers at 0.5 on +x, +y, +z; image 21 px, no margin: col = floor((1 + right.p) * 10.5), row =
floor((1 - up.p) * 10.5) (row 0 at the top), i.e. right.p in {0, .5, -.5, .354, -.354, .25, -.25}
-> col {10, 15, 5, 14, 6, 13, 7} and up.p in the same -> row {10, 5, 15, 6, 14, 7, 13}. Depth
from the camera, in vlx's [0, 2] scale: 1 - C.p.
"""

import pytest
import torch

from pointcloud import projection as P

S = 21
MARKERS = torch.tensor([[[0.5, 0.0, 0.0], [0.0, 0.5, 0.0], [0.0, 0.0, 0.5]]])  # +x, +y, +z

# per view: (row, col) of the +x, +y, +z markers, and the camera position C
CLIP2POINT_10 = [
    ([(10, 15), (5, 10), (10, 10)], (0, 0, 1)),  # e0 a0: front
    ([(10, 5), (10, 10), (5, 10)], (0, 1, 0)),  # e90 a0: top
    ([(10, 5), (5, 10), (10, 10)], (0, 0, -1)),  # e180 a0: back, upright
    ([(10, 15), (10, 10), (5, 10)], (0, -1, 0)),  # e270 a0: bottom
    ([(7, 6), (6, 10), (13, 6)], (0.5, -0.7071, -0.5)),  # e225 a-45
    ([(13, 6), (6, 10), (13, 14)], (-0.5, -0.7071, -0.5)),  # e225 a45
    ([(13, 14), (6, 10), (7, 14)], (-0.5, -0.7071, 0.5)),  # e315 a-45
    ([(7, 14), (6, 10), (7, 6)], (0.5, -0.7071, 0.5)),  # e315 a45
    ([(10, 10), (5, 10), (10, 15)], (-1, 0, 0)),  # e0 a-90
    ([(10, 10), (5, 10), (10, 5)], (1, 0, 0)),  # e0 a90
]
# CLIP2Point's 6: (e0 a0), (e0 a90), (e0 a180), (e0 a270), (e90 a0), (e-90 a180); the same
# cameras as front, e0 a90, back, e0 a-90, top and bottom above.
CLIP2POINT_6 = [CLIP2POINT_10[i] for i in (0, 9, 2, 8, 1, 3)]


@pytest.mark.parametrize("name,table", [("clip2point_10", CLIP2POINT_10), ("clip2point_6", CLIP2POINT_6)])
def test_clip2point_markers_land_where_its_renderer_puts_them(name, table):
    mats = P.view_matrices(name)
    assert mats.shape == (len(table), 3, 3)
    pix, depth = P.project_points(MARKERS, mats, S, margin=1.0)
    for v, (rc, cam) in enumerate(table):
        expect = torch.tensor([r * S + c for r, c in rc])
        assert pix[0, v].tolist() == expect.tolist(), f"{name} view {v}"
        want = 1 - MARKERS[0] @ torch.tensor(cam, dtype=torch.float32)
        torch.testing.assert_close(depth[0, v], want, atol=1e-4, rtol=0)


@pytest.mark.parametrize("name,table", [("clip2point_10", CLIP2POINT_10), ("clip2point_6", CLIP2POINT_6)])
def test_clip2point_depth_images_light_the_marker_pixels(name, table):
    # depth_maps' own kernel: exactly the three marker pixels lit, nearest 1.0, farthest 0.2
    img = P.depth_maps(MARKERS, name, S, normalize=False, margin=1.0).flatten(2)[0]  # (V, S*S)
    for v, (rc, cam) in enumerate(table):
        flat = [r * S + c for r, c in rc]
        assert sorted(img[v].nonzero().view(-1).tolist()) == sorted(flat), f"{name} view {v}"
        d = 1 - MARKERS[0] @ torch.tensor(cam, dtype=torch.float32)
        want = 1.0 + (0.2 - 1.0) * (d - d.min()) / (d.max() - d.min())
        torch.testing.assert_close(img[v, flat], want, atol=1e-3, rtol=0)


def test_clip2point_views_are_rotations_with_y_up():
    m = P.view_matrices("clip2point_10")
    torch.testing.assert_close(m @ m.transpose(1, 2), torch.eye(3).expand(10, 3, 3), atol=1e-6, rtol=0)
    # rows (right, up, depth away from the camera): an unmirrored image has det -1, as vlx's own
    det = torch.linalg.det(torch.cat([m, P.view_matrices("vlx_10")]))
    torch.testing.assert_close(det, -torch.ones(20), atol=1e-6, rtol=0)
    # every view except top/bottom keeps world +y pointing up in the image
    side = [0, 2, 4, 5, 6, 7, 8, 9]
    assert (m[side, 1, 1] > 0.7).all() and (m[side, 0, 1].abs() < 1e-6).all()


def test_vlx_view_sets_keep_their_old_cameras():
    # the sets vlx's own recipes ran with, renamed: z up, azimuth 0 looks along +y
    assert P.VIEW_SETS["vlx_10"][6:] == [(45, 30), (135, 30), (225, 30), (315, 30)]
    m = P.view_matrices("vlx_6")
    torch.testing.assert_close(m[0], torch.tensor([[1.0, 0, 0], [0, 0, 1], [0, 1, 0]]))
    m.zero_()  # named sets are built once and handed out as copies
    assert P.view_matrices("vlx_6")[0, 0, 0] == 1.0
    torch.testing.assert_close(P.view_matrices("vlx_10"), P.view_matrices(P.VIEW_SETS["vlx_10"]), atol=0, rtol=0)
    with pytest.raises(KeyError, match="clip2point_10"):
        P.view_matrices("nope")
