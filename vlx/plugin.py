"""The core's own plugin declarations, read by ``vlx.registry.load_plugins`` like every
sibling's ``plugin.py``: names -> module paths, nothing imported here."""

RECIPES = {"clip_shapes": "vlx.recipes.clip_shapes"}
COMMANDS = {"doctor": ("vlx.doctor:add_parser", "check this machine: torch/CUDA, renderers, decoders, 3D libraries")}
QUICKSTARTS = {
    "image-text": (
        "vlx.quickstart:run",
        0,
        "shapes world -> tiny CLIP -> retrieval report",
        ("out", "fast", "seed", "cache"),
    )
}
