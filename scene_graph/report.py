"""``vlx scene-graph report``: the tiny experiments the scene_graph issue asks for, in one run,
written to ``<out>/report.json`` and ``<out>/report.md``:

- grounding with the scene graph vs the same model with every relation edge removed,
- QA (EM@1 against chance, EM@1 on the annotated object, EM@10, grounding of the answer object),
- scene-graph pre-training then grounding fine-tuning vs the same fine-tuning from scratch,
  each with and without relation edges.
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
        "candidate/easy", "candidate/hard", "candidate/view_dep", "candidate/view_indep", "EM@1", "EM@1_chance", "EM@1_gt_object", "EM@10",
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
    # graph and noedges: the same config, data, budget and overrides; only model.gnn.use_edges differs.
    for name in ("graph", "noedges"):
        if name in only:
            results[name] = run_config(cdir / RUNS[name], base + [f"train.output_dir={out / name}"])
            _write(out, results)
    if "qa" in only:
        results["qa"] = run_config(cdir / RUNS["qa"], base + [f"train.output_dir={out / 'qa'}"])
        _write(out, results)
        if (out / "graph").is_dir() and "graph" in results:  # QA started from the grounding run's weights
            results["qa_from_grounding"] = run_config(
                cdir / RUNS["qa"], base + [f"train.output_dir={out / 'qa_from_grounding'}", f"init_from={out / 'graph'}"])
            _write(out, results)
    if "pretrain" in only:
        results["pretrain"] = run_config(cdir / RUNS["pretrain"], base + [f"train.output_dir={out / 'pretrain'}"])
        _write(out, results)
        ft_epochs = int(getattr(args, "finetune_epochs", 3))
        for name, cfg, init in (("finetune_from_pretrain", "graph", str(out / "pretrain")),
                                ("finetune_from_pretrain_noedges", "noedges", str(out / "pretrain")),
                                ("finetune_from_scratch", "graph", None),
                                ("finetune_from_scratch_noedges", "noedges", None)):
            results[name] = run_config(cdir / RUNS[cfg], _finetune_overrides(base, out, name, init, ft_epochs))
            _write(out, results)
        if "qa" in only:  # QA started from the pre-trained weights: better grounding, better answers
            results["qa_from_pretrain"] = run_config(
                cdir / RUNS["qa"], base + [f"train.output_dir={out / 'qa_from_pretrain'}", f"init_from={out / 'pretrain'}"])
    _write(out, results)
    print((out / "report.md").read_text())
    return 0


PAIRS = (("graph", "noedges", "from scratch, the tiny budget"),
         ("finetune_from_pretrain", "finetune_from_pretrain_noedges", "scene-graph pre-training + short fine-tune"),
         ("finetune_from_scratch", "finetune_from_scratch_noedges", "short fine-tune from scratch"))
SPLITS = ("overall/Acc@0.25", "unique/Acc@0.25", "multiple/Acc@0.25")


def _f(r: dict, k: str) -> str:
    v = r.get(k)
    return f"{v:.1f}" if isinstance(v, (int, float)) else "-"


def _write(out: Path, results: dict) -> None:
    (out / "report.json").write_text(json.dumps(results, indent=1))
    lines = ["# scene_graph tiny report", "", "| run | " + " | ".join(SHOW) + " | seconds |",
             "|---" * (len(SHOW) + 2) + "|"]
    for name, r in results.items():
        cells = [f"{r[k]:.1f}" if isinstance(r.get(k), float) else str(r.get(k, "")) for k in SHOW]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {r.get('seconds', '')} |")
    rows = [(g, n, what) for g, n, what in PAIRS if g in results or n in results]
    if rows:
        lines += ["", "## Grounding with the relation edges vs the same model with every edge removed",
                  "", "Same config, data and training budget in each row; Acc@0.25 (%).", "",
                  "| setting | " + " | ".join(f"graph {k.split('/')[0]} | no edges {k.split('/')[0]}" for k in SPLITS)
                  + " | graph - no edges (overall) |", "|---" * (2 * len(SPLITS) + 2) + "|"]
        for g, n, what in rows:
            rg, rn = results.get(g, {}), results.get(n, {})
            diff = (f"{rg['overall/Acc@0.25'] - rn['overall/Acc@0.25']:+.1f}"
                    if "overall/Acc@0.25" in rg and "overall/Acc@0.25" in rn else "-")
            lines.append(f"| {what} | " + " | ".join(f"{_f(rg, k)} | {_f(rn, k)}" for k in SPLITS) + f" | {diff} |")
    if "finetune_from_pretrain" in results and "finetune_from_scratch" in results:
        p = results["finetune_from_pretrain"].get("overall/Acc@0.25")
        s = results["finetune_from_scratch"].get("overall/Acc@0.25")
        lines += ["", f"Grounding after the same short fine-tuning: from scene-graph pre-training {p:.1f}, "
                      f"from scratch {s:.1f} (difference {p - s:+.1f} points)."]
    for name in ("qa", "qa_from_grounding", "qa_from_pretrain"):
        r = results.get(name, {})
        if "EM@1" in r:
            lines += ["", f"QA ({name}): EM@1 {r['EM@1']:.1f} (chance {r.get('EM@1_chance', float('nan')):.1f}: "
                          f"a uniform guess over the answers); EM@1 answering about the annotated object "
                          f"{_f(r, 'EM@1_gt_object')} (what the answer head knows when grounding is right); "
                          f"grounding of the asked-about object Acc@0.25 {_f(r, 'overall/Acc@0.25')}."]
    (out / "report.md").write_text("\n".join(lines) + "\n")
