"""``vlx scene-graph report``: the tiny experiments the scene_graph issue asks for, in one run,
written to ``<out>/report.json`` and ``<out>/report.md``:

- grounding with the scene graph vs the same model with every relation edge removed,
- QA (EM@1 / EM@10 and grounding of the answer object),
- scene-graph pre-training then grounding fine-tuning vs the same fine-tuning from scratch.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from vlx.config import apply_overrides, from_dict, read_yaml_with_extends, to_dict
from vlx.train.recipe import RECIPES
from vlx.train.trainer import Trainer

RUNS = {
    "graph": "sg_grounding_tiny.yaml",
    "noedges": "sg_grounding_noedges_tiny.yaml",
    "qa": "sg_qa_tiny.yaml",
    "pretrain": "sg_pretrain_tiny.yaml",
}
SHOW = ("class_oracle/overall", "overall/Acc@0.25", "overall/Acc@0.5", "unique/Acc@0.25", "multiple/Acc@0.25", "candidate/overall",
        "candidate/easy", "candidate/hard", "candidate/view_dep", "candidate/view_indep", "EM@1", "EM@10",
        "CIDEr-D", "relation_swap_acc", "masked_object_acc", "skipped")


def run_config(path: Path, overrides: list[str]) -> dict:
    import scene_graph.recipes  # noqa: F401  registers the recipes

    data = apply_overrides(read_yaml_with_extends(path), overrides, where=str(path))
    recipe = RECIPES.get(data["recipe"])
    cfg = from_dict(recipe.config_cls, data, where=str(path))
    t0 = time.time()
    task = recipe.build(cfg)
    result = Trainer(cfg.train, task, config_dict=to_dict(cfg)).fit()
    result = {k: v for k, v in (result or {}).items() if isinstance(v, (int, float))}
    result["seconds"] = round(time.time() - t0, 1)
    result["output_dir"] = cfg.train.output_dir
    return result


def _finetune_overrides(base: list[str], out: Path, name: str, init: str | None, epochs: int) -> list[str]:
    o = base + [f"train.output_dir={out / name}", f"train.epochs={epochs}"]
    return o + ([f"init_from={init}"] if init else [])


def run_report(args) -> int:
    torch.set_num_threads(max(1, int(getattr(args, "threads", 1) or 1)))  # 2 shared cores: 1 thread is fastest
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cdir = Path(args.config_dir or "configs/scene_graph")
    only = set(args.only or ["graph", "noedges", "qa", "pretrain"])
    base = list(args.set) + ["train.resume=none"]
    results: dict[str, dict] = {}
    for name in ("graph", "noedges"):
        if name in only:
            results[name] = run_config(cdir / RUNS[name], base + [f"train.output_dir={out / name}"])
            _write(out, results)
    if "pretrain" in only:
        results["pretrain"] = run_config(cdir / RUNS["pretrain"], base + [f"train.output_dir={out / 'pretrain'}"])
        ft_epochs = int(getattr(args, "finetune_epochs", 3))
        grounding = cdir / RUNS["graph"]
        results["finetune_from_pretrain"] = run_config(
            grounding, _finetune_overrides(base, out, "finetune_from_pretrain", str(out / "pretrain"), ft_epochs))
        results["finetune_from_scratch"] = run_config(
            grounding, _finetune_overrides(base, out, "finetune_from_scratch", None, ft_epochs))
        _write(out, results)
    if "qa" in only:
        results["qa"] = run_config(cdir / RUNS["qa"], base + [f"train.output_dir={out / 'qa'}"])
    _write(out, results)
    print((out / "report.md").read_text())
    return 0


def _write(out: Path, results: dict) -> None:
    (out / "report.json").write_text(json.dumps(results, indent=1))
    lines = ["# scene_graph tiny report", "", "| run | " + " | ".join(SHOW) + " | seconds |",
             "|---" * (len(SHOW) + 2) + "|"]
    for name, r in results.items():
        cells = [f"{r[k]:.1f}" if isinstance(r.get(k), float) else str(r.get(k, "")) for k in SHOW]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {r.get('seconds', '')} |")
    if "graph" in results and "noedges" in results:
        g, n = results["graph"].get("overall/Acc@0.25"), results["noedges"].get("overall/Acc@0.25")
        lines += ["", f"Grounding Acc@0.25: with relation edges {g:.1f}, edges removed {n:.1f} "
                      f"(difference {g - n:+.1f} points)."]
    if "finetune_from_pretrain" in results:
        p = results["finetune_from_pretrain"].get("overall/Acc@0.25")
        s = results["finetune_from_scratch"].get("overall/Acc@0.25")
        lines += [f"Grounding after the same short fine-tuning: from scene-graph pre-training {p:.1f}, "
                  f"from scratch {s:.1f} (difference {p - s:+.1f} points)."]
    (out / "report.md").write_text("\n".join(lines) + "\n")
