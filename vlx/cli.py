"""The ``vlx`` command: parses arguments and dispatches; nothing imports this module.

Built in: ``train``, ``eval``, ``recipes``, ``quickstart``. Everything else (``doctor`` and the
siblings' commands) is declared in a plugin module (``vlx/plugin.py``, ``<sibling>/plugin.py``)
by module path, and only the command being run is imported (see ``vlx.registry``).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterable
from pathlib import Path

from vlx.registry import COMMANDS, QUICKSTARTS, RECIPES, load_plugins

__all__ = ["COMMANDS", "QUICKSTARTS", "build_parser", "main"]

QUICKSTART_OUT = "runs/quickstart"  # default --out of `vlx quickstart NAME`: runs/quickstart/NAME


def cmd_train(args: argparse.Namespace) -> int:
    from vlx.config import to_dict
    from vlx.train.recipe import load_recipe_config
    from vlx.train.summary import print_summary
    from vlx.train.trainer import Trainer

    recipe, cfg = load_recipe_config(args.config, args.set)
    task = recipe.build(cfg)
    result = Trainer(cfg.train, task, config_dict=to_dict(cfg)).fit()
    out = Path(cfg.train.output_dir)
    print_summary(
        result, f"vlx train {args.config}", [out / "eval.json", out / "train_curve.png", out / "metrics.jsonl"]
    )
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    import json

    from vlx.train.checkpoint import load_model_weights
    from vlx.train.evaluate import evaluate_task
    from vlx.train.recipe import load_recipe_config
    from vlx.train.summary import print_summary
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
    print_summary(result, f"vlx eval {args.config} --ckpt {args.ckpt}", [out])
    return 0


def cmd_recipes(args: argparse.Namespace) -> int:
    for name in RECIPES.names():
        print(name)
    return 0


def quickstart_cache(cache: str | None, out: Path) -> Path:
    """Where a quickstart writes generated data: ``--cache``, else ``$VLX_CACHE``, else
    ``OUT/cache`` (so that by default everything stays under ``--out``)."""
    return Path(cache or os.environ.get("VLX_CACHE") or out / "cache")


def cmd_quickstart(args: argparse.Namespace) -> int:
    from vlx.config import ConfigError

    if args.name:
        qs = QUICKSTARTS.get(args.name)
    else:
        qs = max((QUICKSTARTS.get(n) for n in QUICKSTARTS.names()), key=lambda q: q.priority)
    given = {"out": args.out is not None, "fast": args.fast, "seed": args.seed is not None, "cache": args.cache}
    refused = [f"--{f}" for f, on in given.items() if on and f not in qs.flags]
    if refused:
        takes = ", ".join(f"--{f}" for f in qs.flags) or "no options"
        raise ConfigError(f"quickstart {qs.name!r} does not take {', '.join(refused)} (it takes {takes})")
    args.out = str(Path(args.out or f"{QUICKSTART_OUT}/{qs.name}"))
    args.seed = 0 if args.seed is None else args.seed
    args.cache = str(quickstart_cache(args.cache, Path(args.out)))
    print(f"[vlx] quickstart: {qs.name}" + (f" ({qs.help})" if qs.help else ""))
    print(f"[vlx] outputs under {args.out}" + (f", generated data in {args.cache}" if "cache" in qs.flags else ""))
    return qs.load()(args)


def _add_core_commands(sub) -> None:
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

    lines = []
    for n in QUICKSTARTS.names():
        q = QUICKSTARTS.get(n)
        lines.append(f"  {n} (priority {q.priority}; takes {', '.join('--' + f for f in q.flags)}): {q.help}")
    p = sub.add_parser(
        "quickstart",
        help="run the embedded default end to end",
        epilog="quickstarts (no NAME: the highest priority):\n" + "\n".join(lines),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("name", nargs="?", default=None, help=f"which quickstart ({', '.join(QUICKSTARTS.names())})")
    p.add_argument("--out", default=None, help=f"output directory (default: {QUICKSTART_OUT}/NAME)")
    p.add_argument("--fast", action="store_true", help="smaller run (for smoke tests)")
    p.add_argument("--seed", type=int, default=None, help="random seed (default: 0)")
    p.add_argument("--cache", default=None, help="generated data directory (default: $VLX_CACHE, else OUT/cache)")
    p.set_defaults(func=cmd_quickstart)


def build_parser(load: Iterable[str] | None = None) -> argparse.ArgumentParser:
    """The full parser. ``load``: the plugin commands whose own parsers are built (imported);
    the others appear in ``--help`` by name and help only. None: all of them."""
    load_plugins()
    parser = argparse.ArgumentParser(
        prog="vlx", description="vlx: image-text core with video, 3D and embodied siblings"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    _add_core_commands(sub)
    wanted = None if load is None else set(load)
    for name in COMMANDS.names():
        spec = COMMANDS.get(name)
        if wanted is None or name in wanted:
            spec.add_parser(sub)
        else:
            sub.add_parser(name, help=spec.help)
    return parser


def _command_of(argv: list[str]) -> str | None:
    return next((a for a in argv if not a.startswith("-")), None)


def main(argv: list[str] | None = None) -> int:
    from vlx import runtime
    from vlx.config import ConfigError
    from vlx.data.errors import DataError

    argv = sys.argv[1:] if argv is None else list(argv)
    command = _command_of(argv)
    try:
        args = build_parser(load=[command] if command else []).parse_args(argv)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    try:
        runtime.setup()
        return int(args.func(args) or 0)
    except (ConfigError, DataError, runtime.RuntimeSetupError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
