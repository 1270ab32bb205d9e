"""Registers pointcloud's recipes and CLI commands with the vlx core (entry point `vlx.plugins`).

Recipes: pc_classify, pc_image_text, clip2point, text4point (pointcloud/recipes.py).
Commands: ``vlx pointcloud render`` (a cloud and its depth views to PNG) and
``vlx pointcloud demo`` (all tiny recipes on primitives, one eval report).
"""

from pointcloud import recipes  # noqa: F401  (registers the recipes)
from pointcloud.cli import add_pointcloud_parser  # noqa: F401  (registers `vlx pointcloud`)
