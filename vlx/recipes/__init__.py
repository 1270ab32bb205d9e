"""The core's own recipes (siblings register theirs through their plugins)."""

from vlx.recipes import clip_shapes  # noqa: F401
