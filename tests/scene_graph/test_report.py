import json

import pytest

from scene_graph.report import _finished, _keep, _write, seed_summary


def r(o, u, m):
    return {"overall/Acc@0.25": o, "unique/Acc@0.25": u, "multiple/Acc@0.25": m, "class_oracle/overall": 36.2}


def test_report_summarises_seeds_and_puts_graph_and_noedges_side_by_side(tmp_path):
    results = {
        "graph_seed0": r(98.0, 100.0, 97.0),
        "noedges_seed0": r(56.0, 98.0, 52.0),
        "graph_seed1": r(96.0, 100.0, 95.0),
        "noedges_seed1": r(58.0, 96.0, 54.0),
        "geometry_seed0": r(80.0, 100.0, 77.0),
        "geometry_seed1": r(70.0, 100.0, 65.0),
        "graph_seed2": r(90.0, 100.0, 89.0),  # its no-edges twin missing: left out of the summary
        "finetune_from_pretrain_seed0": r(60.0, 100.0, 50.0),
        "finetune_from_pretrain_seed1": r(62.0, 100.0, 54.0),
        "finetune_from_pretrain_noedges_seed0": r(49.5, 100.0, 44.8),
        "qa": {"EM@1": 50.2, "EM@1_chance": 25.0, "EM@1_gt_object": 100.0, "overall/Acc@0.25": 29.3},
    }
    s = seed_summary(results)
    assert s["seeds"] == ["0", "1"]
    assert s["graph/overall/Acc@0.25"][0] == 97.0 and abs(s["graph/overall/Acc@0.25"][1] - 2**0.5) < 1e-9
    assert s["diff"][0] == 40.0 and s["min_diff"] == 38.0
    _write(tmp_path, results)
    md = (tmp_path / "report.md").read_text()
    assert "over 2 seed(s) (0, 1)" in md
    assert "| overall | 97.0 ± 1.4 | 57.0 ± 1.4 | 75.0 ± 7.1 |" in md and "(2 seed(s))" in md
    assert "Graph - no edges (overall): +40.0 ± 2.8 points; smallest over the seeds +38.0" in md
    assert (
        "| scene-graph pre-training + short fine-tune | 61.0 ± 1.4 | 49.5 ± 0.0 | 100.0 ± 0.0 | 100.0 ± 0.0 "
        "| 52.0 ± 2.8 | 44.8 ± 0.0 | 2 |"
    ) in md
    assert "the same short fine-tune from scratch" not in md  # rows only for runs that exist
    assert "EM@1 50.2 (chance 25.0" in md
    assert json.loads((tmp_path / "report.json").read_text())["graph_vs_noedges"]["min_diff"] == 38.0


def test_no_summary_without_a_complete_pair_and_finished_runs_read_back(tmp_path):
    assert seed_summary({"graph_seed0": r(1, 2, 3)}) is None
    (tmp_path / "graph_seed0").mkdir()
    assert _finished(tmp_path / "graph_seed0") is None  # started, not finished: trained again (resuming)
    results: dict = {}
    _keep(tmp_path, results, "graph_seed0", r(90.0, 100.0, 88.0))
    assert _finished(tmp_path / "graph_seed0") == r(90.0, 100.0, 88.0)
    assert "graph_seed0" in (tmp_path / "report.md").read_text()


def test_variants_sr3d_and_pred_get_their_own_tables(tmp_path):
    def p(o25, o5):
        return {"overall/Acc@0.25": o25, "overall/Acc@0.5": o5, "multiple/Acc@0.25": o25, "multiple/Acc@0.5": o5,
                "unique/Acc@0.25": 100.0, "n": 40}  # fmt: skip

    results = {
        "graph_seed0": r(98.0, 100.0, 97.0),
        "noedges_seed0": r(56.0, 98.0, 52.0),
        "sr3d_graph_seed0": r(80.0, 100.0, 75.0),
        "sr3d_noedges_seed0": r(50.0, 100.0, 45.0),
        "pred_graph_seed0": p(70.0, 40.0),
        "pred_noedges_seed0": p(50.0, 30.0),
        "pred_graph_seed1": p(72.0, 44.0),
        "pred_noedges_seed1": p(48.0, 30.0),
    }
    _write(tmp_path, results)
    md = (tmp_path / "report.md").read_text()
    assert "## Variant sr3d: expressions and graph edges from the sr3d relation set" in md
    assert "| overall/Acc@0.25 | 80.0 ± 0.0 | 50.0 ± 0.0 |" in md
    assert "## Variant pred: predicted proposals" in md
    assert "| overall/Acc@0.5 | 42.0 ± 2.8 | 30.0 ± 0.0 |" in md
    assert "Graph - no edges (overall Acc@0.25): +22.0 ± 2.8; smallest +20.0." in md
    js = json.loads((tmp_path / "report.json").read_text())
    assert js["pred_graph_vs_noedges"]["seeds"] == ["0", "1"] and js["graph_vs_noedges"]["seeds"] == ["0"]


@pytest.mark.slow
def test_report_runs_the_sr3d_and_pred_variants_end_to_end(tmp_path):
    from types import SimpleNamespace

    from scene_graph.report import run_report

    tiny = [
        f"data.root={tmp_path / 'rooms'}",
        "data.rooms.n_train=6",
        "data.rooms.n_val=3",
        "data.rooms.points_per_object=16",
        "train.max_steps=2",
        "train.batch_size=2",
        "train.progress=false",
        "model.dim=32",
        "eval_batch_size=8",
    ]
    args = SimpleNamespace(out=str(tmp_path / "out"), config_dir=None, set=tiny, only=["sr3d", "pred"], threads=1,
                           jobs=1, seeds=[0], finetune_epochs=1)  # fmt: skip
    assert run_report(args) == 0
    js = json.loads((tmp_path / "out" / "report.json").read_text())
    assert js["pred_graph_seed0"]["proposals_pred"] == 1.0 and js["sr3d_graph_seed0"]["proposals_pred"] == 0.0
    assert (tmp_path / "rooms" / "proposals_noisy.npz").is_file() and (tmp_path / "rooms_sr3d" / "meta.json").is_file()
    assert json.loads((tmp_path / "rooms_sr3d" / "meta.json").read_text())["config"]["relations"] == "sr3d"
    md = (tmp_path / "out" / "report.md").read_text()
    assert "## Variant sr3d" in md and "## Variant pred" in md


def test_a_run_stopped_by_a_signal_is_not_kept_as_finished_and_no_later_run_starts(tmp_path, monkeypatch):
    # The trainer returns no results when SIGTERM/SIGINT stops it early (checkpoint saved); the
    # report used to write that run's report_result.json anyway (only "seconds") and go on.
    from types import SimpleNamespace

    import scene_graph.report as rep

    cfg = SimpleNamespace(train=SimpleNamespace(output_dir=str(tmp_path / "graph_seed0")))
    recipe = SimpleNamespace(build=lambda c: None)
    monkeypatch.setattr(rep, "load_recipe_config", lambda path, ov: (recipe, cfg))
    monkeypatch.setattr(rep, "to_dict", lambda c: {})
    started = []

    class Stopped:
        def __init__(self, *a, **k):
            started.append(1)

        def fit(self):
            return None

    monkeypatch.setattr(rep, "Trainer", Stopped)
    (tmp_path / "graph_seed0").mkdir()
    jobs = [("graph_seed0", tmp_path / "a.yaml", []), ("noedges_seed0", tmp_path / "b.yaml", [])]
    with pytest.raises(rep.RunStopped, match="graph_seed0"):
        rep._run_all(jobs, tmp_path, {}, 1, 1)
    assert started == [1] and _finished(tmp_path / "graph_seed0") is None
    assert not (tmp_path / "noedges_seed0").exists()
