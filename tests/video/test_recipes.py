"""The recipes end to end through the core's `vlx train` / `vlx eval` and `vlx caption`."""

from __future__ import annotations

import json

import pytest

from video.synthetic import generate_moving_shapes
from vlx.cli import main

CFG = "configs/video/"


@pytest.fixture(scope="module")
def tiny_shapes(tmp_path_factory):
    return generate_moving_shapes(tmp_path_factory.mktemp("ms"), n_train=16, n_test=8, size=32, seed=1)


def common(root, out):
    return [
        "--set",
        f"data.shapes_root={root}",
        "--set",
        f"train.output_dir={out}",
        "--set",
        "train.max_steps=2",
        "--set",
        "train.batch_size=4",
        "--set",
        "train.progress=false",
        "--set",
        "train.resume=none",
    ]


def test_retrieval_train_and_eval(tiny_shapes, tmp_path, capsys):
    out = tmp_path / "ret"
    assert main(["train", CFG + "retrieval_tiny.yaml", *common(tiny_shapes, out)]) == 0
    res = json.loads((out / "eval.json").read_text())
    assert res["n_videos"] == 8 and res["n_captions"] == 16 and 0 <= res["t2v_R@1"] <= 100
    assert (out / "checkpoints" / "latest").is_file()
    assert (
        main(
            [
                "eval",
                CFG + "retrieval_tiny.yaml",
                "--ckpt",
                str(out),
                *common(tiny_shapes, out)[:2],
                "--out",
                str(tmp_path / "e.json"),
            ]
        )
        == 0
    )
    again = json.loads((tmp_path / "e.json").read_text())
    assert again["t2v_R@1"] == res["t2v_R@1"]  # same weights, same numbers


def test_captioning_train_then_vlx_caption(tiny_shapes, tmp_path, capsys):
    out = tmp_path / "cap"
    assert main(["train", CFG + "captioning_tiny.yaml", *common(tiny_shapes, out)]) == 0
    res = json.loads((out / "eval.json").read_text())
    assert {"CIDEr-D", "BLEU-4", "ROUGE-L"} <= set(res) and res["n_test"] == 8
    assert len((out / "eval_samples.jsonl").read_text().splitlines()) == 8
    capsys.readouterr()
    assert (
        main(["caption", str(tiny_shapes / "videos" / "video16.mp4"), "--ckpt", str(out), "--max-new-tokens", "3"]) == 0
    )
    printed = capsys.readouterr().out.strip().splitlines()[-1]
    assert 1 <= len(printed.split()) <= 3  # a (short, untrained) caption from the tiny vocabulary
    # several videos: captioned in one batch on the device, same greedy captions as one by one
    videos = [str(tiny_shapes / "videos" / f"video{i}.mp4") for i in (16, 17, 18)]
    assert main(["caption", *videos, "--ckpt", str(out), "--max-new-tokens", "3", "--device", "cpu"]) == 0
    rows = [ln.split("\t") for ln in capsys.readouterr().out.strip().splitlines()[-3:]]
    assert [r[0] for r in rows] == videos and rows[0][1] == printed


def test_qa_recipe_reports_exact_match(tiny_shapes, tmp_path):
    out = tmp_path / "qa"
    assert main(["train", CFG + "qa_tiny.yaml", *common(tiny_shapes, out)]) == 0
    res = json.loads((out / "eval.json").read_text())
    assert "exact_match" in res and res["n_test"] == 16  # two questions per test video
    # the same model through `vlx video eval-qa` on an MSRVTT-QA-layout file
    qa = json.loads((tiny_shapes / "qa_test.json").read_text())
    rows = [{"video_id": q["video_name"], "question": q["Q"], "answer": q["A"], "id": i} for i, q in enumerate(qa)]
    (tmp_path / "test_qa.json").write_text(json.dumps(rows))
    cmd = ["video", "eval-qa", "--format", "msrvtt-qa", "--file", str(tmp_path / "test_qa.json")]
    cmd += ["--video-root", str(tiny_shapes / "videos"), "--ckpt", str(out), "--out", str(tmp_path / "ev")]
    assert main(cmd + ["--device", "cpu", "--no-progress", "--max-new-tokens", "4"]) == 0
    s = json.loads((tmp_path / "ev" / "summary.json").read_text())
    assert s["samples"] == len(rows) == 16 and s["video_errors"] == 0 and 0 <= s["exact_match"] <= 100


def test_bad_config_key_is_one_line_error(capsys):
    assert main(["train", CFG + "retrieval_tiny.yaml", "--set", "data.lod=1"]) != 0
    err = capsys.readouterr().err.strip()
    assert "retrieval_tiny.yaml" in err and "'data.lod'" in err and len(err.splitlines()) == 1


def test_retrieval_on_cached_features(tiny_shapes, tmp_path):
    """`vlx video-features` with the tiny ViT, then the retrieval recipe trains on them."""
    feats = tmp_path / "feats"
    ann = str(tiny_shapes / "annotation.json")
    assert (
        main(
            [
                "video-features",
                ann,
                "--format",
                "msrvtt",
                "--video-root",
                str(tiny_shapes / "videos"),
                "--out",
                str(feats),
                "--preset",
                "tiny",
            ]
        )
        == 0
    )
    out = tmp_path / "ret_feats"
    assert (
        main(["train", CFG + "retrieval_tiny.yaml", *common(tiny_shapes, out), "--set", f"data.features_dir={feats}"])
        == 0
    )
    res = json.loads((out / "eval.json").read_text())
    assert res["n_videos"] == 8 and res["n_captions"] == 16
