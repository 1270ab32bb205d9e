"""``vlx scene-graph report|graph|build-scannet|show|predict-scanqa``. Heavy imports live inside the command
functions so that ``vlx --help`` stays fast."""

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
    r.add_argument("--only", nargs="*", default=None, help="subset of: graph noedges geometry qa pretrain sr3d pred")
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
    b = sub.add_parser("build-scannet", help="ScanNet v2 (published layout) -> one axis-aligned .npz per scene")
    b.add_argument("--scans", required=True, help="ScanNet's scans/ folder (scans/<scene>/...)")
    b.add_argument("--out", required=True, help="where the built scenes and scenes.json go")
    b.add_argument("--label-map", default=None, help="scannetv2-labels.combined.tsv (default: next to or in --scans)")
    b.add_argument("--workers", type=int, default=2, help="worker processes")
    b.add_argument("--force", action="store_true", help="rebuild scenes that are already built")
    b.set_defaults(func=_run_build)
    s = sub.add_parser("show", help="write a PLY (boxes + relation edges) and a PNG of one scene graph")
    s.add_argument("scene", help="a ScanNet-layout scene folder (scans/<scene>) or a built <scene>.npz")
    s.add_argument("--out", required=True, help="the .ply to write (the .png goes next to it)")
    s.add_argument("--relations", choices=["sr3d", "viewer"], default="sr3d")
    s.set_defaults(func=_run_show)
    q = sub.add_parser(
        "predict-scanqa", help="answer a ScanQA question file with an sg_qa checkpoint (ScanQA's pred.<split>.json)"
    )
    q.add_argument("config", help="the sg_qa config the checkpoint was trained with")
    q.add_argument("--ckpt", required=True, help="checkpoint dir (or the run dir: its latest checkpoint)")
    q.add_argument("--questions", required=True, help="ScanQA json, e.g. ScanQA_v1.0_test_w_obj.json")
    q.add_argument("--out", required=True, help="where the predictions go, e.g. pred.test_w_obj.json")
    q.add_argument("--set", action="append", default=[], help="config override, e.g. data.root=/data/scannet")
    q.set_defaults(func=_run_predict_scanqa)


def _run_report(args) -> int:
    from scene_graph.report import run_report

    return run_report(args)


def _run_build(args) -> int:
    from scene_graph.data.scannet_build import build_scannet

    res = build_scannet(args.scans, args.out, args.label_map, workers=args.workers, force=args.force)
    print(f"built {len(res.built)}, already built {len(res.reused)}, skipped {len(res.skipped)}")
    for sid, why in res.skipped.items():
        print(f"skipped {sid}: {why}")
    return 0


def _run_predict_scanqa(args) -> int:
    from scene_graph.predict import predict_scanqa

    path, n, skipped = predict_scanqa(args.config, args.ckpt, args.questions, args.out, args.set)
    print(f"wrote {n} predictions to {path}" + (f"; skipped {len(skipped)} question(s)" if skipped else ""))
    for why in skipped:
        print(f"skipped: {why}")
    return 0


def _run_show(args) -> int:
    from scene_graph.show import show_scene

    ply, png = show_scene(args.scene, args.out, args.relations)
    print(f"wrote {ply} and {png}")
    return 0


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
