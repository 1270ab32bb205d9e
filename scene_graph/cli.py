"""``vlx scene-graph report|graph``. Heavy imports live inside the command functions so that
``vlx --help`` stays fast."""

from __future__ import annotations


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "scene-graph", help="scene graphs: build one, or run the grounding/QA/pre-training report"
    )
    sub = p.add_subparsers(dest="sg_command", required=True)
    r = sub.add_parser("report", help="train and evaluate graph vs no-edge grounding, QA, and pre-training vs scratch")
    r.add_argument("--out", default="runs/scene_graph_report")
    r.add_argument(
        "--config-dir", default=None, help="where the *_tiny.yaml configs live (default: configs/scene_graph)"
    )
    r.add_argument("--set", action="append", default=[], help="override for every run, e.g. train.epochs=2")
    r.add_argument("--only", nargs="*", default=None, help="subset of: graph noedges geometry qa pretrain")
    r.add_argument("--threads", type=int, default=1, help="torch CPU threads (1 is fastest on a shared 2-core box)")
    r.add_argument("--jobs", type=int, default=2, help="runs trained at once in worker processes (each with --threads)")
    r.add_argument("--seeds", type=int, nargs="*", default=[0, 1, 2], help="seeds of the graph vs no-edges pairs")
    r.add_argument("--finetune-epochs", type=int, default=2, help="grounding epochs after pre-training / from scratch")
    r.set_defaults(func=_run_report)
    g = sub.add_parser("graph", help="print the relation triples of one ScanNet-layout scene")
    g.add_argument("scans")
    g.add_argument("scene_id")
    g.add_argument("--out", default=None, help="write the triples as JSON here")
    g.set_defaults(func=_run_graph)


def _run_report(args) -> int:
    from scene_graph.report import run_report

    return run_report(args)


def _run_graph(args) -> int:
    import json

    from scene_graph.builder import build_scene_graph, relation_triples
    from scene_graph.data.scannet import load_scannet_scene

    g = build_scene_graph(load_scannet_scene(args.scans, args.scene_id))
    triples = relation_triples(g)
    for t in triples:
        print(*t)
    if args.out:
        with open(args.out, "w") as f:
            json.dump(triples, f)
    return 0
