"""The ``vlx`` command: parses arguments and dispatches; nothing imports this module.

Built in: ``train``, ``eval``, ``recipes``, ``quickstart``. Everything else (``doctor`` and the
siblings' commands) is declared in a plugin module (``vlx/plugin.py``, ``<sibling>/plugin.py``)
by module path, and only the command being run is imported (see ``vlx.registry``).
"""

from __future__ import annotations

import argparse
import json
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


def _write_report(result: dict, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, default=str))
    from vlx.train.summary import print_summary

    print_summary(result, "vlx eval", [out])


def cmd_eval(args: argparse.Namespace) -> int:
    from vlx.config import ConfigError
    from vlx.train.checkpoint import load_model_weights
    from vlx.train.evaluate import evaluate_task
    from vlx.train.recipe import load_recipe_config
    from vlx.train.summary import print_summary
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
    print_summary(result, f"vlx eval {args.config} --ckpt {args.ckpt}", [out])
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


def _add_core_commands(sub) -> None:
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
