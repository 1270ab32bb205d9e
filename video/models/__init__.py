"""Video models: VideoCLIP (retrieval on the core's DualEncoder) and VideoCaptioner (LLaVA-style)."""

from video.models.captioner import (
    GenerationConfig,
    LMConfig,
    LoraSettings,
    VideoCaptioner,
    VideoCaptionerConfig,
    build_video_captioner,
)
from video.models.video_clip import VideoCLIP, VideoCLIPConfig, build_video_clip

__all__ = [
    "GenerationConfig",
    "LMConfig",
    "LoraSettings",
    "VideoCaptioner",
    "VideoCaptionerConfig",
    "build_video_captioner",
    "VideoCLIP",
    "VideoCLIPConfig",
    "build_video_clip",
]
