"""Point encoders behind one factory: ``build_point_encoder(PointEncoderConfig(name, kwargs))``.

Registered: ``pointnet2`` (PointNet++ SSG, Qi et al. 2017), ``dgcnn`` (Wang et al. 2019, PyG
EdgeConv over a kNN graph recomputed in feature space every layer), ``point_transformer``
(FPS + kNN patches, mini-PointNet tokens, transformer; Point-BERT / Point-MAE style).

Every encoder maps points ``(B, N, 3)`` to the core's ``EncoderOutput(pooled (B, D), tokens
(B, L, D), mask=None)`` and has ``.output_dim = D``; tokens are per patch (pointnet2: the
second set-abstraction level's centroids; point_transformer: the patches) or per point
(dgcnn). After a forward, ``encoder.last_centers`` (B, L, 3) holds the token positions.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from torch import nn

from vlx.config import ConfigError
from vlx.registry import Registry

POINT_ENCODERS: Registry = Registry("point encoder")
# Declared by module path: the encoder modules import this package to register themselves,
# and torch_geometric (dgcnn) loads only when that encoder is built.
for _name in ("pointnet2", "dgcnn", "point_transformer"):
    POINT_ENCODERS.register_lazy(_name, f"pointcloud.encoders.{_name}")


@dataclass
class PointEncoderConfig:
    """``name``: a registered point encoder; ``kwargs``: its constructor arguments
    (e.g. ``{width: 64, out_dim: 128}``)."""

    name: str = "pointnet2"
    kwargs: dict[str, Any] = field(default_factory=dict)


def build_point_encoder(cfg: PointEncoderConfig) -> nn.Module:
    """The encoder named by ``cfg``; ConfigError for an unknown name or bad kwargs."""
    if cfg.name not in POINT_ENCODERS:
        raise ConfigError(f"point encoder {cfg.name!r} is not registered; known: {', '.join(POINT_ENCODERS.names())}")
    try:
        return POINT_ENCODERS.get(cfg.name)(**dict(cfg.kwargs))
    except TypeError as e:
        raise ConfigError(f"point encoder {cfg.name!r}: bad kwargs {sorted(cfg.kwargs)}: {e}") from None


__all__ = ["POINT_ENCODERS", "PointEncoderConfig", "build_point_encoder"]
