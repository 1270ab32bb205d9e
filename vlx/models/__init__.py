"""Models built from encoders: the CLIP-style DualEncoder."""

from vlx.models.dual_encoder import DualEncoder, DualEncoderConfig, DualEncoderOutput, build_dual_encoder

__all__ = ["DualEncoder", "DualEncoderConfig", "DualEncoderOutput", "build_dual_encoder"]
