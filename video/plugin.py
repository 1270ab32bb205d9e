"""video's plugin declarations (entry point ``vlx.plugins``): recipes, commands and the
quickstart by module path; nothing is imported until one is used."""

RECIPES = {
    "video_retrieval": "video.recipes",
    "video_captioning": "video.recipes",
    "video_qa": "video.recipes",
    "video_llava": "video.recipes_llava",
}
COMMANDS = {
    "caption": ("video.cli:add_caption_parser", "caption videos (or answer --prompt) with a trained video captioner"),
    "video-features": ("video.cli:add_features_parser", "extract frozen frame features for a video annotation file"),
    "video": ("video.eval_commands:add_video_parser", "video benchmark evaluation (QA, generation, retrieval)"),
}
# Below the core's image-text quickstart (priority 0): `vlx quickstart video` runs it.
QUICKSTARTS = {
    "video": (
        "video.report:run_quickstart",
        -1,
        "moving shapes: temporal vs meanP retrieval, tiny captioner CIDEr-D",
        ("out", "fast", "seed", "cache"),
    )
}
