"""Registers video's recipes and CLI commands with the vlx core (entry point `vlx.plugins`)."""

import video.recipes  # noqa: F401  registers video_retrieval, video_captioning, video_qa
import video.recipes_llava  # noqa: F401  registers video_llava
from video import cli as _cli
from vlx.cli import register_command, register_quickstart


@register_command("caption")
def add_caption_parser(subparsers):
    _cli.add_caption_parser(subparsers)


@register_command("video-features")
def add_features_parser(subparsers):
    _cli.add_features_parser(subparsers)


@register_command("video")
def add_video_parser(subparsers):
    from video.eval_commands import add_video_parser as add

    add(subparsers)


def _quickstart(args) -> int:
    from video.report import run_quickstart

    return run_quickstart(args)


# Below the core's image-text quickstart (priority 0): `vlx quickstart video` runs it.
register_quickstart(
    "video", _quickstart, priority=-1, help="moving shapes: temporal vs meanP retrieval, tiny captioner CIDEr-D"
)
