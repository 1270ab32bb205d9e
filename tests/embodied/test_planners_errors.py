"""Every bad planner input is one line on stderr and exit status 2 from ``vlx embodied eval``
(never a traceback): a missing model folder, a folder without config or tokenizer, a broken
tokenizer, bad mode values, a missing required option, a mistyped option, a YAML error."""

from __future__ import annotations

import json

import pytest

from vlx.cli import main

BASE = ["embodied", "eval", "--benchmark", "metaworld-mt1:reach-v3", "--episodes", "1", "--no-progress"]


def _folders(tmp_path):
    (tmp_path / "no_config").mkdir()
    no_tok = tmp_path / "no_tokenizer"
    no_tok.mkdir()
    (no_tok / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    broken = tmp_path / "broken_tokenizer"
    broken.mkdir()
    (broken / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    (broken / "tokenizer.json").write_text("{not json")
    return tmp_path


CASES = [
    (
        ["--planner", "hf_lm", "--planner-arg", "path=/nonexistent/model"],
        r"'/nonexistent/model' is not an existing folder",
    ),
    (["--planner", "hf_lm", "--planner-arg", "path={tmp}/no_config"], r"no_config has no config.json"),
    (["--planner", "hf_lm", "--planner-arg", "path={tmp}/no_tokenizer"], r"no_tokenizer has no tokenizer \(none of"),
    (
        ["--planner", "hf_lm", "--planner-arg", "path={tmp}/broken_tokenizer"],
        r"broken_tokenizer: cannot load its tokenizer",
    ),
    (
        ["--planner", "hf_lm", "--planner-arg", "path={tmp}", "--planner-arg", "mode=bogus"],
        r"key 'mode': expected 'generate' or 'score', got 'bogus'",
    ),
    (["--planner", "hf_lm"], r"planner 'hf_lm': missing option 'path'"),
    (
        ["--planner", "saycan", "--planner-arg", "mode=bogus"],
        r"planner 'saycan': key 'mode': expected 'clauses' or 'greedy'",
    ),
    (["--planner", "openai", "--planner-arg", "model=m"], r"planner 'openai': missing option 'base_url'"),
    (
        [
            "--planner",
            "openai",
            "--planner-arg",
            "base_url=http://127.0.0.1:9/v1",
            "--planner-arg",
            "model=m",
            "--planner-arg",
            "max_retries=two",
        ],
        r"option 'max_retries': expected int, got 'two'",
    ),
    (
        ["--planner", "hf_lm", "--planner-arg", "path=[unclosed"],
        r"--planner-arg 'path=\[unclosed': value is not valid YAML",
    ),
    (["--planner", "saycan", "--planner-arg", "stray"], r"--planner-arg 'stray': expected KEY=VALUE"),
    (["--planner", "nope"], r"unknown planner 'nope'"),
]


@pytest.mark.parametrize("args, match", CASES)
def test_bad_planner_input_is_one_line_exit_2(tmp_path, capsys, args, match):
    import re

    tmp = _folders(tmp_path)
    argv = BASE + ["--out", str(tmp_path / "run")] + [a.replace("{tmp}", str(tmp)) for a in args]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err, err
    assert err.startswith("error: planner") or err.startswith("error: --planner-arg"), err
    assert re.search(match, err), err
    assert not (tmp_path / "run" / "summary.md").exists()
