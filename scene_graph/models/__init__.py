"""Scene-graph models: object encoders, graph fusion, grounding / QA / captioning heads."""

from scene_graph.models.object_encoder import ObjectEncoder, ObjectEncoderConfig
from scene_graph.models.scene_model import (
    CaptionHead,
    GNNConfig,
    SceneGraphModel,
    SceneModelConfig,
    build_scene_model,
    grounding_loss,
    predict_objects,
)

__all__ = [
    "ObjectEncoder",
    "ObjectEncoderConfig",
    "CaptionHead",
    "GNNConfig",
    "SceneGraphModel",
    "SceneModelConfig",
    "build_scene_model",
    "grounding_loss",
    "predict_objects",
]
