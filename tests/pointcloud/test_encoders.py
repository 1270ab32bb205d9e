"""Every point encoder: shapes, gradients, permutation behaviour; the DGCNN graph against a loop."""

import pytest
import torch

from pointcloud.encoders import PointEncoderConfig, build_point_encoder
from pointcloud.encoders.dgcnn import knn_edge_index
from vlx.config import ConfigError

SMALL = {
    "pointnet2": {"width": 8, "out_dim": 16, "n_centers": [32, 8], "k": [8, 8]},
    "dgcnn": {"k": 6, "dims": [8, 8], "emb_dim": 16, "out_dim": 16},
    "point_transformer": {"n_patches": 8, "patch_size": 8, "width": 16, "layers": 1, "heads": 2, "out_dim": 16},
}


@pytest.mark.parametrize("name", sorted(SMALL))
def test_encoder_outputs_and_grad(name):
    torch.manual_seed(0)
    enc = build_point_encoder(PointEncoderConfig(name, SMALL[name])).eval()
    x = torch.rand(2, 96, 3)
    out = enc(x)
    assert out.pooled.shape == (2, 16) and out.tokens.shape[0] == 2 and out.tokens.shape[2] == 16
    assert enc.last_centers.shape[:2] == out.tokens.shape[:2]
    (out.pooled.sum() + out.tokens.sum()).backward()
    assert all(p.grad is not None for p in enc.parameters() if p.requires_grad)
    # Shuffling the input points changes which point FPS starts from, so only dgcnn is exactly
    # permutation invariant; all must still give the same result for the same input.
    perm = torch.randperm(96)
    with torch.no_grad():
        again = enc(x).pooled
        shuffled = enc(x[:, perm]).pooled
    torch.testing.assert_close(again, out.pooled.detach())
    if name == "dgcnn":
        torch.testing.assert_close(shuffled, again, atol=1e-5, rtol=1e-4)


def test_knn_edge_index_matches_loop():
    x = torch.rand(2, 10, 4)
    ei = knn_edge_index(x, 3)
    for b in range(2):
        for i in range(10):
            d = ((x[b] - x[b, i]) ** 2).sum(-1)
            expect = set((d.argsort()[:3] + b * 10).tolist())
            got = set(ei[0, ei[1] == b * 10 + i].tolist())
            assert got == expect


def test_unknown_encoder_and_kwargs():
    with pytest.raises(ConfigError, match="'pointnet3' is not registered"):
        build_point_encoder(PointEncoderConfig("pointnet3"))
    with pytest.raises(ConfigError, match="bad kwargs"):
        build_point_encoder(PointEncoderConfig("dgcnn", {"depth": 3}))
