"""The core's quickstart: shapes world -> tiny dual encoder -> retrieval report (filled in by the shapes-world work)."""
from vlx.cli import register_quickstart


def run(args) -> int:
    raise NotImplementedError("image-text quickstart is being built")


register_quickstart("image-text", run, priority=0, help="shapes world -> tiny CLIP -> retrieval report")
