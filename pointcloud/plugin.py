"""pointcloud's plugin declarations (entry point ``vlx.plugins``), by module path.

Recipes: pc_classify, pc_image_text, clip2point, text4point (pointcloud/recipes.py).
Commands: ``vlx pointcloud render`` (a cloud and its depth views to PNG) and
``vlx pointcloud demo`` (all tiny recipes on primitives, one eval report).
"""

RECIPES = {name: "pointcloud.recipes" for name in ("pc_classify", "pc_image_text", "clip2point", "text4point")}
COMMANDS = {"pointcloud": ("pointcloud.cli:add_pointcloud_parser", "point clouds: render depth views, run the 3D demo")}
