"""Point-cloud models: a supervised classifier, CLIP2Point's depth pre-training, zero-shot
heads and the Dual-Path Adapter for few-shot, and Text4Point's image-bridged point encoder."""

from pointcloud.models.classifier import PointClassifier
from pointcloud.models.clip2point import (
    Clip2PointPretrainer,
    DepthEncoder,
    DualPathAdapter,
    class_text_embeddings,
    multiview_depth_embeddings,
)
from pointcloud.models.text4point import Text4PointPretrainer

__all__ = [
    "PointClassifier",
    "Clip2PointPretrainer",
    "DepthEncoder",
    "DualPathAdapter",
    "class_text_embeddings",
    "multiview_depth_embeddings",
    "Text4PointPretrainer",
]
