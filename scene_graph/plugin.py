"""scene_graph's plugin declarations (entry point ``vlx.plugins``): the recipes
(sg_grounding, sg_qa, sg_pretrain) and ``vlx scene-graph``, by module path."""

RECIPES = {name: "scene_graph.recipes" for name in ("sg_grounding", "sg_qa", "sg_pretrain")}
COMMANDS = {
    "scene-graph": (
        "scene_graph.cli:add_parser",
        "scene graphs: build one, show one, build ScanNet, or run the grounding/QA/pre-training report",
    )
}
