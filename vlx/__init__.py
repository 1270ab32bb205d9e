"""vlx: a shared image-text (CLIP-style) core that video, point-cloud, scene-graph and
embodied siblings build on. See docs/ARCHITECTURE.md for the contracts."""

__version__ = "0.1.0"
