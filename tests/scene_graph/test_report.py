from scene_graph.report import _write


def test_report_puts_graph_and_noedges_side_by_side_with_qa_chance(tmp_path):
    r = lambda o, u, m: {"overall/Acc@0.25": o, "unique/Acc@0.25": u, "multiple/Acc@0.25": m}  # noqa: E731
    results = {"graph": r(34.3, 61.2, 31.8), "noedges": r(26.7, 28.6, 26.6),
               "finetune_from_pretrain": r(53.8, 100.0, 49.5), "finetune_from_pretrain_noedges": r(49.5, 100.0, 44.8),
               "qa": {"EM@1": 50.2, "EM@1_chance": 25.0, "EM@1_gt_object": 100.0, "overall/Acc@0.25": 29.3}}
    _write(tmp_path, results)
    md = (tmp_path / "report.md").read_text()
    assert "| from scratch, the tiny budget | 34.3 | 26.7 | 61.2 | 28.6 | 31.8 | 26.6 | +7.6 |" in md
    assert "| scene-graph pre-training + short fine-tune | 53.8 | 49.5 | 100.0 | 100.0 | 49.5 | 44.8 | +4.3 |" in md
    assert "short fine-tune from scratch" not in md  # rows only for runs that exist
    assert "EM@1 50.2 (chance 25.0" in md
