"""embodied's plugin declarations (entry point ``vlx.plugins``): the embodied_policy recipe,
``vlx embodied eval|quickstart|...`` and the default quickstart (priority 10), by module path."""

RECIPES = {"embodied_policy": "embodied.policy.recipe"}
COMMANDS = {"embodied": ("embodied.cli:add_parser", "embodied planners in MuJoCo benchmarks (eval, quickstart)")}
QUICKSTARTS = {
    "embodied": (
        "embodied.cli:run_quickstart",
        10,
        "SayCan-MiniLM planner + scripted skills on Meta-World MT10",
        ("out", "fast", "seed"),
    )
}
