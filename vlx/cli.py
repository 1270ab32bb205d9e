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


def _write_report(result: dict, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, default=str))
    brief = {k: v for k, v in result.items() if not isinstance(v, list)}
    print(json.dumps(brief, indent=2, default=str))
    print(f"wrote {out}")


def cmd_eval(args: argparse.Namespace) -> int:
    from vlx.config import ConfigError
    from vlx.train.checkpoint import load_model_weights
    from vlx.train.evaluate import evaluate_task
    from vlx.utils import pick_device

    if args.model is not None:  # a preset or a user's checkpoint on data in its own layout
        from vlx.eval.run import run_eval

        if args.config is not None or args.data is None:
            raise ConfigError("eval: --model takes --data (and no CONFIG); a recipe takes CONFIG --ckpt")
        result = run_eval(
            args.model,
            args.data,
            task=args.task,
            classnames=args.classnames,
            templates=args.templates,
            device=args.device,
            batch_size=args.batch_size,
            num_workers=args.workers,
            images=args.images,
        )
        _write_report(result, Path(args.out or "eval.json"))
        return 0
    if args.config is None or args.ckpt is None:
        raise ConfigError("eval: give CONFIG --ckpt RUN_DIR (a recipe) or --model NAME_OR_PATH --data PATH")
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


def cmd_embed(args: argparse.Namespace) -> int:
    from vlx.config import ConfigError
    from vlx.eval.run import run_embed

    if args.model is None or args.data is None:
        raise ConfigError("embed: --model NAME_OR_PATH and --data PATH are required")
    m = run_embed(
        args.model, args.data, args.out, args.shard_size, args.classnames, args.device, args.batch_size, args.workers
    )
    print(f"{m['rows']} rows in {len(m['shards'])} shards: wrote {m['written']}, kept {m['skipped']} -> {args.out}")
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


def cmd_data_shards(args: argparse.Namespace) -> int:
    from vlx.data.shard_writer import write_shards

    r = write_shards(args.source, args.out, args.per_shard, args.classnames, args.template)
    n, bad = r["samples"], r["failed_to_decode"]
    print(f"{n} samples in {len(r['shards'])} shards -> {r['out']} ({bad} unreadable left out)")
    return 0


def _model_data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--model", default=None, help="a vlx preset (tiny, B-32, B-16) or a local CLIP/SigLIP checkpoint dir"
    )
    p.add_argument("--data", default=None, help="a directory of class folders, or a .jsonl/.csv/.tsv of pairs")
    p.add_argument("--classnames", default=None, help="class names: .json {folder: name} or .txt")
    p.add_argument("--device", default="auto")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--workers", type=int, default=2, help="dataloader workers for image decoding")


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

    p = sub.add_parser(
        "eval",
        help="evaluate a recipe's checkpoint (CONFIG --ckpt) or any model on data (--model --data)",
        description="CONFIG --ckpt RUN_DIR: a recipe's evaluation. --model NAME_OR_PATH --data PATH: a vlx "
        "preset or local CLIP/SigLIP checkpoint dir on a directory of class folders (zero-shot "
        "classification, --classnames, --templates) or a .jsonl/.csv/.tsv of image-caption pairs (retrieval).",
    )
    p.add_argument("config", nargs="?", default=None)
    p.add_argument("--ckpt", default=None, help="checkpoint dir (or the run dir: its latest checkpoint)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--out", default=None, help="the JSON report (default: OUTPUT_DIR/eval.json, or ./eval.json)")
    _model_data_args(p)
    p.add_argument(
        "--task",
        default="auto",
        help="auto (from the data's layout), zeroshot, retrieval, sugarcrepe (--data = its data/ dir of "
        "category JSONs, --images = COCO val2017), aro (--data = visual_genome_relation.json or "
        "visual_genome_attribution.json, --images default: images/ beside it)",
    )
    p.add_argument("--images", default=None, help="image root for --task sugarcrepe / aro")
    p.add_argument(
        "--templates", default=None, help="prompt templates file, one per line with {} (default: 'a photo of a {}.')"
    )
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("embed", help="image (and caption) embeddings to safetensors shards, resumable")
    _model_data_args(p)
    p.add_argument("--out", required=True, help="output directory (rerun the same command to resume)")
    p.add_argument("--shard-size", type=int, default=4096)
    p.set_defaults(func=cmd_embed)

    p = sub.add_parser("data", help="data tools")
    dsub = p.add_subparsers(dest="data_command", required=True)
    q = dsub.add_parser("shards", help="image folder or JSONL/CSV pairs -> WebDataset shards (img2dataset layout)")
    q.add_argument("source", help="a directory of class folders, or a .jsonl/.csv/.tsv of image-caption pairs")
    q.add_argument("--out", required=True)
    q.add_argument("--per-shard", type=int, default=1000, help="samples per tar shard")
    q.add_argument("--classnames", default=None, help="class names file for an image folder")
    q.add_argument("--template", default="{}", help="caption of an image-folder sample, {} = class name")
    q.set_defaults(func=cmd_data_shards)

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
