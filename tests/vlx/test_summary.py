"""What `vlx train` / `vlx eval` print at the end: a short rounded table and the paths."""

import re
from pathlib import Path

import pytest

from vlx.cli import main
from vlx.train.summary import format_summary, human_number

ROOT = Path(__file__).resolve().parents[2]


def test_numbers_are_rounded_for_people_and_curves_left_out(tmp_path):
    (tmp_path / "eval.json").write_text("{}")
    result = {"swap": 57.999998331069946, "R@1": 0.012345678, "n_test": 200, "curve": [1.0] * 50, "sub": {"a": 1}}
    text = format_summary(result, "title", [tmp_path / "eval.json", tmp_path / "missing.png"])
    lines = text.splitlines()
    assert lines[0] == "title"
    assert re.fullmatch(r"  swap\s+58\.00", lines[1]) and lines[2].split() == ["R@1", "0.0123"]
    assert lines[3].split() == ["n_test", "200"]
    assert lines[4] == "  (2 more entries: curves and lists, in the JSON report)"
    assert lines[5] == f"wrote: {tmp_path / 'eval.json'}"  # only paths that exist
    assert human_number(float("nan")) == "nan" and human_number(True) == "True" and human_number(-3.14159) == "-3.14"


@pytest.mark.slow  # about 20 s of CPU: a real (tiny) train + eval through the CLI
def test_train_and_eval_print_the_table_not_the_json(tmp_path, capsys):
    out = tmp_path / "run"
    sets = [
        f"train.output_dir={out}",
        f"data.root={tmp_path / 'data'}",
        "data.n_train=64",
        "data.n_test=16",
        "train.epochs=1",
        "train.batch_size=32",
        "train.progress=false",
        "train.tensorboard=false",
    ]
    args = [x for s in sets for x in ("--set", s)]
    assert main(["train", str(ROOT / "configs/vlx/clip_shapes_tiny.yaml"), *args]) == 0
    printed = capsys.readouterr().out
    assert "recall_curve" not in printed and "{" not in printed  # no raw JSON
    assert re.search(r"^  t2i_R@1\s+\d+\.\d\d$", printed, re.M)
    assert f"wrote: {out / 'eval.json'}, {out / 'train_curve.png'}" in printed
    assert main(["eval", str(ROOT / "configs/vlx/clip_shapes_tiny.yaml"), "--ckpt", str(out), *args]) == 0
    printed = capsys.readouterr().out
    assert "recall_curve" not in printed and re.search(r"^  i2t_R@1\s+\d+\.\d\d$", printed, re.M)
    assert printed.strip().endswith(f"wrote: {out / 'eval.json'}")
