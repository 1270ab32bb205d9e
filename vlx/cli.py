"""The ``vlx`` command: train, eval, quickstart, recipes, plus commands that siblings register.

Siblings add commands through their ``vlx.plugins`` module (see docs/ARCHITECTURE.md);
the core never names them.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from vlx.registry import Registry, load_plugins

COMMANDS: Registry[Callable] = Registry("command")


@dataclass
class Quickstart:
    name: str
    run: Callable[[argparse.Namespace], int]
    priority: int
    help: str


QUICKSTARTS: Registry[Quickstart] = Registry("quickstart")


def register_command(name: str) -> Callable:
    """Decorator on ``add_parser(subparsers)`` that adds a ``vlx NAME`` sub-command."""
    return COMMANDS.register(name)


def register_quickstart(name: str, run: Callable[[argparse.Namespace], int], priority: int = 0, help: str = "") -> None:
    """``vlx quickstart`` with no name runs the registered quickstart of highest priority."""
    QUICKSTARTS.register(name, Quickstart(name, run, priority, help))


def _default_env() -> None:
    # No machine here reaches a model hub; local paths only. Headless MuJoCo on the CPU.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if "MUJOCO_GL" not in os.environ:
        try:
            import torch

            gl = "egl" if torch.cuda.is_available() else "osmesa"
        except ImportError:
            gl = "osmesa"
        os.environ["MUJOCO_GL"] = gl
        os.environ.setdefault("PYOPENGL_PLATFORM", gl)


def load_recipe_config(path: str, overrides: list[str]):
    """Read CONFIG, pick its recipe, return (recipe, typed config)."""
    import vlx.recipes  # noqa: F401  the core's own recipes
    from vlx.config import ConfigError, apply_overrides, from_dict, read_yaml_with_extends
    from vlx.train.recipe import RECIPES

    data = apply_overrides(read_yaml_with_extends(path), overrides, where=path)
    name = data.get("recipe")
    if not name:
        raise ConfigError(f"{path}: missing required key 'recipe' (which recipe to run)")
    try:
        recipe = RECIPES.get(name)
    except KeyError as e:
        raise ConfigError(f"{path}: key 'recipe': {e.args[0]}") from None
    return recipe, from_dict(recipe.config_cls, data, where=path)


def cmd_train(args: argparse.Namespace) -> int:
    from vlx.config import to_dict
    from vlx.train.trainer import Trainer

    recipe, cfg = load_recipe_config(args.config, args.set)
    task = recipe.build(cfg)
    result = Trainer(cfg.train, task, config_dict=to_dict(cfg)).fit()
    if result:
        print(json.dumps(result, indent=2, default=str))
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from vlx.train.checkpoint import load_model_weights
    from vlx.train.evaluate import evaluate_task
    from vlx.utils import pick_device

    recipe, cfg = load_recipe_config(args.config, args.set)
    task = recipe.build(cfg)
    if task.evaluate is None:
        print(f"recipe {recipe.name!r} has no evaluation", file=sys.stderr)
        return 2
    device = pick_device(cfg.train.device)
    load_model_weights(task.model, args.ckpt)
    task.model.to(device)
    # the same call, precision and autocast as the evaluation at the end of training
    result = evaluate_task(task, task.model, device, cfg.train.precision)
    out = Path(args.out) if args.out else Path(cfg.train.output_dir) / "eval.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, default=str))
    print(json.dumps(result, indent=2, default=str))
    print(f"wrote {out}")
    return 0


def cmd_recipes(args: argparse.Namespace) -> int:
    import vlx.recipes  # noqa: F401
    from vlx.train.recipe import RECIPES

    for name in RECIPES.names():
        print(name)
    return 0


def cmd_quickstart(args: argparse.Namespace) -> int:
    names = QUICKSTARTS.names()
    if args.name:
        qs = QUICKSTARTS.get(args.name)
    else:
        qs = max((QUICKSTARTS.get(n) for n in names), key=lambda q: q.priority)
    print(f"[vlx] quickstart: {qs.name} ({qs.help})" if qs.help else f"[vlx] quickstart: {qs.name}")
    return qs.run(args)


def build_parser() -> argparse.ArgumentParser:
    import vlx.quickstart  # noqa: F401  registers the core's quickstart

    load_plugins()
    parser = argparse.ArgumentParser(
        prog="vlx", description="vlx: image-text core with video, 3D and embodied siblings"
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train a recipe from a YAML config")
    p.add_argument("config")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("eval", help="evaluate a checkpoint of a recipe")
    p.add_argument("config")
    p.add_argument("--ckpt", required=True, help="checkpoint dir (or the run dir: its latest checkpoint)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--out", default=None, help="where to write the JSON report (default: OUTPUT_DIR/eval.json)")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("recipes", help="list registered recipes")
    p.set_defaults(func=cmd_recipes)

    p = sub.add_parser("quickstart", help="run the embedded default end to end")
    p.add_argument("name", nargs="?", default=None, help=f"which quickstart ({', '.join(QUICKSTARTS.names())})")
    p.add_argument("--out", default=None, help="output directory")
    p.add_argument("--fast", action="store_true", help="smaller run (for smoke tests)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_quickstart)

    for name in COMMANDS.names():
        COMMANDS.get(name)(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    _default_env()
    from vlx.config import ConfigError
    from vlx.data.errors import DataError

    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ConfigError, DataError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    # Run as a script, this file is a second copy of vlx.cli; plugins register their
    # commands into the imported module, so dispatch through that one.
    from vlx.cli import main as _main

    sys.exit(_main())
