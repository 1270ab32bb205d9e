"""``vlx scene-graph report``: the tiny experiments the scene_graph issue asks for, in one run,
written to ``<out>/report.json`` and ``<out>/report.md``:

- grounding with the scene graph vs the same model with every relation edge removed, for
  several seeds (mean, spread and every seed's pair),
- QA (EM@1 against chance, EM@1 on the annotated object, EM@10, grounding of the answer object),
- scene-graph pre-training then a short grounding fine-tune vs the same fine-tune from
  scratch, each with and without relation edges,
- ``sr3d``: graph vs no edges on rooms whose expressions and graph edges both come from the
  ``sr3d`` relation set (rooms written to ``<data.root>_sr3d``),
- ``pred``: graph vs no edges on predicted proposals: a noisy proposal file
  (:func:`scene_graph.data.proposals.noisy_proposals`, ``<data.root>/proposals_noisy.npz``)
  instead of the annotated boxes, so Acc@0.5 is reported apart from Acc@0.25.

Runs that do not depend on each other can go to ``--jobs`` worker processes (each with
``--threads`` torch threads). ``report.json`` is rewritten after every run; a finished run's
numbers are also kept in its output dir and read back instead of training again, and an
unfinished one resumes from its last checkpoint, so an interrupted report resumes where it
stopped.
"""

from __future__ import annotations

import json
import math
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

from vlx.config import to_dict
from vlx.runtime import set_threads
from vlx.train.recipe import load_recipe_config
from vlx.train.trainer import Trainer

RUNS = {
    "graph": "sg_grounding_tiny.yaml",
    "noedges": "sg_grounding_noedges_tiny.yaml",
    "qa": "sg_qa_tiny.yaml",
    "pretrain": "sg_pretrain_tiny.yaml",
}
SHOW = (
    "class_oracle/overall",
    "overall/Acc@0.25",
    "overall/Acc@0.5",
    "proposals_pred",
    "proposal_ceiling/Acc@0.25",
    "proposal_ceiling/Acc@0.5",
    "unique/Acc@0.25",
    "multiple/Acc@0.25",
    "candidate/overall",
    "candidate/easy",
    "candidate/hard",
    "candidate/view_dep",
    "candidate/view_indep",
    "EM@1",
    "EM@1_chance",
    "EM@1_gt_object",
    "EM@10",
    "EM@1_refined",
    "EM@10_refined",
    "METEOR",
    "CIDEr-D",
    "relation_swap_acc",
    "masked_object_acc",
    "skipped",
)
SPLITS = ("overall/Acc@0.25", "unique/Acc@0.25", "multiple/Acc@0.25")
PRED_SPLITS = ("overall/Acc@0.25", "overall/Acc@0.5", "multiple/Acc@0.25", "multiple/Acc@0.5")
VARIANTS = {  # prefix -> what the runs change (overrides are added in run_report)
    "sr3d_": "expressions and graph edges from the sr3d relation set",
    "pred_": "predicted proposals from a noisy proposal file instead of the annotated boxes",
}
NOISE = {"centre_noise": 0.1, "size_noise": 0.2, "extra": 2}


def run_config(path: Path, overrides: list[str], threads: int | None = None) -> dict:
    """Train + evaluate one config; -> its numeric results, ``seconds`` and ``output_dir``."""
    import scene_graph.recipes  # noqa: F401  registers the recipes (in a spawned worker too)

    if threads:
        set_threads(threads)
    recipe, cfg = load_recipe_config(str(path), overrides)
    t0 = time.time()
    task = recipe.build(cfg)
    result = Trainer(cfg.train, task, config_dict=to_dict(cfg)).fit()
    if not result:  # stopped by a signal before the end: not finished, resumes from its checkpoint
        raise RunStopped(cfg.train.output_dir)
    result = {k: v for k, v in result.items() if isinstance(v, (int, float))}
    result["seconds"] = round(time.time() - t0, 1)
    result["output_dir"] = cfg.train.output_dir
    return result


DONE = "report_result.json"  # written into a run's output dir once it has finished


class RunStopped(Exception):
    """A run stopped by a signal (SIGINT/SIGTERM) before its last step; its checkpoint is kept."""


def prepare_data(path: Path, overrides: list[str]) -> None:
    """Generate the config's procedural rooms (when missing) and cache their scene graphs."""
    from scene_graph.recipes import _prepare, load_splits

    _, cfg = load_recipe_config(str(path), overrides)
    _prepare(cfg.data)
    load_splits(cfg.data)


def variant_overrides(path: Path, base: list[str]) -> dict[str, list[str]]:
    """The overrides of the ``sr3d`` and ``pred`` variants of a config (data.root from it)."""
    _, cfg = load_recipe_config(str(path), base)
    root = cfg.data.root.rstrip("/")
    return {
        "sr3d_": [f"data.root={root}_sr3d", "data.rooms.relations=sr3d", "data.graph.relations.set=sr3d"],
        "pred_": ["data.proposals=pred", "data.proposal_file=proposals_noisy.npz"],
    }


def prepare_proposals(path: Path, overrides: list[str]) -> Path:
    """Write ``<data.root>/proposals_noisy.npz`` for every scene of the config (once)."""
    from scene_graph.data.proposals import noisy_proposals, write_proposals
    from scene_graph.data.scannet import load_scannet_scene
    from scene_graph.recipes import _prepare

    _, cfg = load_recipe_config(str(path), overrides)
    root = _prepare(cfg.data)
    out = root / "proposals_noisy.npz"
    if not out.is_file():
        scans = root / cfg.data.scans
        objs = {d.name: load_scannet_scene(scans, d.name) for d in sorted(scans.iterdir()) if d.is_dir()}
        tmp = write_proposals(root / ".proposals_noisy.tmp.npz", noisy_proposals(objs, **NOISE))
        tmp.replace(out)
    return out


def _finished(out_dir: Path) -> dict | None:
    """The results of a run that already finished in ``out_dir``, else None."""
    try:
        return json.loads((out_dir / DONE).read_text())
    except (OSError, json.JSONDecodeError):
        return None


def _keep(out: Path, results: dict, name: str, res: dict) -> None:
    results[name] = res
    (out / name / DONE).write_text(json.dumps(res, indent=1))
    _write(out, results)


def _run_all(jobs: list[tuple[str, Path, list[str]]], out: Path, results: dict, workers: int, threads: int) -> None:
    """Run ``(name, config, overrides)`` jobs (independent of each other), ``workers`` at a time;
    results land in ``results[name]`` and the report is rewritten after each."""
    todo = []
    for name, cfg, ov in jobs:
        done = _finished(out / name)
        if done is not None:
            results[name] = done
        else:
            todo.append((name, cfg, ov + [f"train.output_dir={out / name}"]))
    _write(out, results)
    if workers <= 1 or len(todo) <= 1:
        for name, cfg, ov in todo:
            _keep(out, results, name, run_config(cfg, ov, threads))
        return
    with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
        futures = {pool.submit(run_config, cfg, ov, threads): name for name, cfg, ov in todo}
        try:
            for fut in futures:  # in submission order; each one's numbers are kept as soon as read
                _keep(out, results, futures[fut], fut.result())
        except RunStopped:
            pool.shutdown(wait=True, cancel_futures=True)  # the queued runs do not start
            raise


def run_report(args) -> int:
    threads = max(1, int(getattr(args, "threads", 1) or 1))  # 2 shared cores: 1 thread per run is fastest
    set_threads(threads)
    workers = max(1, int(getattr(args, "jobs", 1) or 1))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cdir = Path(args.config_dir or "configs/scene_graph")
    only = set(args.only or ["graph", "noedges", "geometry", "qa", "pretrain", "sr3d", "pred"])
    seeds = [int(s) for s in (getattr(args, "seeds", None) or [0, 1, 2])]
    base = list(args.set) + ["train.resume=auto"]
    ft_epochs = int(getattr(args, "finetune_epochs", 2))
    results: dict[str, dict] = {}
    # Rooms and the graph cache are written once here, before any worker could race on them.
    prepare_data(cdir / RUNS["graph"], base)
    variants = {k: v for k, v in variant_overrides(cdir / RUNS["graph"], base).items() if k[:-1] in only}
    if "pred_" in variants:
        prepare_proposals(cdir / RUNS["graph"], base)
    for ov in variants.values():
        prepare_data(cdir / RUNS["graph"], base + ov)
    # Phase 1, independent runs. graph and noedges: the same config, data, budget, overrides and
    # seed in each pair; only model.gnn.use_edges differs.
    jobs = [
        (f"{name}_seed{s}", cdir / RUNS[name], base + [f"train.seed={s}"])
        for s in seeds
        for name in ("graph", "noedges")
        if name in only
    ]
    if "geometry" in only:  # edges with the offsets only: the relations must be learned from geometry
        jobs += [
            (f"geometry_seed{s}", cdir / RUNS["graph"], base + [f"train.seed={s}", "model.edge_features=geometry"])
            for s in seeds
        ]
    jobs += [
        (f"{prefix}{name}_seed{s}", cdir / RUNS[name], base + ov + [f"train.seed={s}"])
        for prefix, ov in variants.items()
        for s in seeds
        for name in ("graph", "noedges")
    ]
    # seed by seed, so an interrupted report already holds a complete pair of every variant
    jobs.sort(key=lambda job: job[0].rsplit("_seed", 1)[-1] if "_seed" in job[0] else "")
    if "pretrain" in only:
        jobs.append(("pretrain", cdir / RUNS["pretrain"], base))
    if "qa" in only:
        jobs.append(("qa", cdir / RUNS["qa"], base))
    try:
        _run_all(jobs, out, results, workers, threads)
    except RunStopped as e:  # no later run starts, nothing unfinished is marked done
        print(f"stopped in {e}; rerun the same command to resume")
        return 130
    # Phase 2, runs that start from phase 1's checkpoints.
    jobs = []
    if "pretrain" in only:
        ft = [f"train.epochs={ft_epochs}"]
        for s in seeds:
            for name, cfg, init in (
                ("finetune_from_pretrain", "graph", out / "pretrain"),
                ("finetune_from_pretrain_noedges", "noedges", out / "pretrain"),
                ("finetune_from_scratch", "graph", None),
                ("finetune_from_scratch_noedges", "noedges", None),
            ):
                jobs.append(
                    (
                        f"{name}_seed{s}",
                        cdir / RUNS[cfg],
                        base + ft + [f"train.seed={s}"] + ([f"init_from={init}"] if init else []),
                    )
                )
        if "qa" in only:  # QA started from the pre-trained weights
            jobs.append(("qa_from_pretrain", cdir / RUNS["qa"], base + [f"init_from={out / 'pretrain'}"]))
    if "qa" in only and f"graph_seed{seeds[0]}" in results:  # QA started from a grounding run's weights
        jobs.append(("qa_from_grounding", cdir / RUNS["qa"], base + [f"init_from={out / f'graph_seed{seeds[0]}'}"]))
    try:
        _run_all(jobs, out, results, workers, threads)
    except RunStopped as e:
        print(f"stopped in {e}; rerun the same command to resume")
        return 130
    print((out / "report.md").read_text())
    return 0


PAIRS = (
    ("finetune_from_pretrain", "finetune_from_pretrain_noedges", "scene-graph pre-training + short fine-tune"),
    ("finetune_from_scratch", "finetune_from_scratch_noedges", "the same short fine-tune from scratch"),
)


def _num(v) -> str:
    return f"{v:.1f}" if isinstance(v, (int, float)) and v == v else "-"


def _f(r: dict, k: str) -> str:
    return _num(r.get(k))


def _mean_std(xs: list[float]) -> tuple[float, float]:
    m = sum(xs) / len(xs)
    return m, (math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1)) if len(xs) > 1 else 0.0)


def _seed_stats(results: dict, name: str) -> dict:
    """Mean and sample std per split over ``<name>_seed*`` runs (and a plain ``<name>`` run);
    ``n``: how many. Empty when there is none."""
    runs = [r for k, r in results.items() if (k == name or k.startswith(f"{name}_seed")) and "overall/Acc@0.25" in r]
    if not runs:
        return {}
    return dict({k: _mean_std([r[k] for r in runs]) for k in SPLITS}, n=len(runs))


def _ms(v) -> str:
    return f"{v[0]:.1f} ± {v[1]:.1f}" if v else "-"


def seed_summary(results: dict, prefix: str = "", splits: tuple[str, ...] = SPLITS) -> dict | None:
    """Graph vs no-edges over every seed that has both (runs ``<prefix>graph_seed*`` and
    ``<prefix>noedges_seed*``): per-split mean and sample std, and the smallest per-seed
    overall difference. None when no seed has both."""
    g_, n_ = f"{prefix}graph_seed", f"{prefix}noedges_seed"
    seeds = sorted({k.split("_seed")[1] for k in results if k.startswith((g_, n_))})
    pairs = [
        (results[f"{g_}{s}"], results[f"{n_}{s}"], s)
        for s in seeds
        if "overall/Acc@0.25" in results.get(f"{g_}{s}", {}) and "overall/Acc@0.25" in results.get(f"{n_}{s}", {})
    ]
    if not pairs:
        return None
    summary: dict = {"seeds": [s for _, _, s in pairs], "n_val": pairs[0][0].get("n")}
    for k in splits:
        summary[f"graph/{k}"] = _mean_std([g[k] for g, _, _ in pairs])
        summary[f"noedges/{k}"] = _mean_std([n[k] for _, n, _ in pairs])
    geo = [
        results[f"{prefix}geometry_seed{s}"]
        for _, _, s in pairs
        if "overall/Acc@0.25" in results.get(f"{prefix}geometry_seed{s}", {})
    ]
    if geo:
        summary["geometry_seeds"] = len(geo)
        for k in SPLITS:
            summary[f"geometry/{k}"] = _mean_std([g[k] for g in geo])
    diffs = [g["overall/Acc@0.25"] - n["overall/Acc@0.25"] for g, n, _ in pairs]
    summary["diff"] = _mean_std(diffs)
    summary["min_diff"] = min(diffs)
    summary["class_oracle"] = pairs[0][0].get("class_oracle/overall")
    return summary


def _write(out: Path, results: dict) -> None:
    summary = seed_summary(results)
    summaries = {"graph_vs_noedges": summary} if summary else {}
    for prefix in VARIANTS:
        v = seed_summary(results, prefix, PRED_SPLITS if prefix == "pred_" else SPLITS)
        if v:
            summaries[f"{prefix}graph_vs_noedges"] = v
    (out / "report.json").write_text(json.dumps(dict(results, **summaries), indent=1))
    lines = [
        "# scene_graph tiny report",
        "",
        "| run | " + " | ".join(SHOW) + " | seconds |",
        "|---" * (len(SHOW) + 2) + "|",
    ]
    for name, r in results.items():
        cells = [f"{r[k]:.1f}" if isinstance(r.get(k), float) else str(r.get(k, "")) for k in SHOW]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {r.get('seconds', '')} |")
    if summary:
        n = len(summary["seeds"])
        geo = "geometry/overall/Acc@0.25" in summary
        lines += [
            "",
            "## Grounding with the relation edges vs the same model with every edge removed",
            "",
            f"From scratch, the tiny budget; Acc@0.25 (%), mean ± sample std over {n} seed(s) "
            f"({', '.join(summary['seeds'])}); each seed trains both models with the same data order."
            + (
                f" 'graph, offsets only': the same edges carrying dx, dy, dz, distance but not the "
                f"relation labels ({summary['geometry_seeds']} seed(s))."
                if geo
                else ""
            ),
            "",
            "| split | graph | no edges |" + (" graph, offsets only |" if geo else ""),
            "|---|---|---|" + ("---|" if geo else ""),
        ]
        for k in SPLITS:
            (gm, gs), (nm, ns) = summary[f"graph/{k}"], summary[f"noedges/{k}"]
            extra = " {:.1f} ± {:.1f} |".format(*summary[f"geometry/{k}"]) if geo else ""
            lines.append(f"| {k.split('/')[0]} | {gm:.1f} ± {gs:.1f} | {nm:.1f} ± {ns:.1f} |{extra}")
        dm, ds = summary["diff"]
        lines += [
            "",
            f"Graph - no edges (overall): {dm:+.1f} ± {ds:.1f} points; smallest over the seeds "
            f"{summary['min_diff']:+.1f}. Class-only oracle (a uniform pick among the target's class): "
            f"{_num(summary['class_oracle'])}.",
        ]
    lines += _variant_lines(summaries)
    ft = {name: _seed_stats(results, name) for pair in PAIRS for name in pair[:2]}
    rows = [(g, n, what) for g, n, what in PAIRS if ft[g] or ft[n]]
    if rows:
        lines += [
            "",
            "## Short fine-tunes, with and without the relation edges",
            "",
            "Same config, data and training budget in each row; Acc@0.25 (%), mean ± sample std over "
            "the seeds of the fine-tune (one pre-training run).",
            "",
            "| setting | "
            + " | ".join(f"graph {k.split('/')[0]} | no edges {k.split('/')[0]}" for k in SPLITS)
            + " | seeds |",
            "|---" * (2 * len(SPLITS) + 2) + "|",
        ]
        for g, n, what in rows:
            cells = [f"{_ms(ft[g].get(k))} | {_ms(ft[n].get(k))}" for k in SPLITS]
            lines.append(f"| {what} | " + " | ".join(cells) + f" | {max(ft[g].get('n', 0), ft[n].get('n', 0))} |")
    p, sc = ft["finetune_from_pretrain"], ft["finetune_from_scratch"]
    if p and sc:
        lines += [
            "",
            f"Grounding after the same short fine-tune (overall Acc@0.25): from scene-graph pre-training "
            f"{_ms(p['overall/Acc@0.25'])}, from scratch {_ms(sc['overall/Acc@0.25'])} (difference "
            f"{p['overall/Acc@0.25'][0] - sc['overall/Acc@0.25'][0]:+.1f} points).",
        ]
    for name in ("qa", "qa_from_grounding", "qa_from_pretrain"):
        r = results.get(name, {})
        if "EM@1" in r:
            lines += [
                "",
                f"QA ({name}): EM@1 {r['EM@1']:.1f} (chance {r.get('EM@1_chance', float('nan')):.1f}: "
                f"a uniform guess over the answers); EM@1 answering about the annotated object "
                f"{_f(r, 'EM@1_gt_object')} (what the answer head knows when grounding is right); "
                f"grounding of the asked-about object Acc@0.25 {_f(r, 'overall/Acc@0.25')}.",
            ]
    (out / "report.md").write_text("\n".join(lines) + "\n")


def _variant_lines(summaries: dict) -> list[str]:
    """One table per variant (sr3d relations, predicted proposals): graph vs no edges."""
    lines = []
    for prefix, what in VARIANTS.items():
        v = summaries.get(f"{prefix}graph_vs_noedges")
        if not v:
            continue
        splits = PRED_SPLITS if prefix == "pred_" else SPLITS
        lines += [
            "",
            f"## Variant {prefix[:-1]}: {what}",
            "",
            f"Mean ± sample std over {len(v['seeds'])} seed(s) ({', '.join(v['seeds'])}); "
            f"{v['n_val']} val expressions.",
            "",
            "| split | graph | no edges |",
            "|---|---|---|",
        ]
        for k in splits:
            lines.append(f"| {k} | {_ms(v[f'graph/{k}'])} | {_ms(v[f'noedges/{k}'])} |")
        dm, ds = v["diff"]
        lines += ["", f"Graph - no edges (overall Acc@0.25): {dm:+.1f} ± {ds:.1f}; smallest {v['min_diff']:+.1f}."]
    return lines
