"""Run identity, the eval config, instruction files, planner-failure columns and the report
header: a second planner into the same folder is refused, default folders of two
configurations differ, YAML + flags + --set load one typed config, instruction files are
validated by line, failures land in their own columns, and the Meta-World report leads with
the plan metrics."""

from __future__ import annotations

import json

import pytest

from embodied.eval_config import HarnessConfig, config_from_args, load_harness_config
from embodied.harness import Harness, PlannerUnavailable, evaluate
from embodied.records import load_all_records
from embodied.report import summarize, to_markdown
from embodied.run_identity import RUN_FILE, read_fingerprint
from embodied.types import Plan, PlanStep
from tests.embodied.test_harness_steps import DotBenchmark, FixedPlanner, skills
from vlx.config import ConfigError
from vlx.data.errors import DataError


class OtherPlanner(FixedPlanner):
    pass


def cfg(tmp_path, **kw):
    base = dict(benchmark="dot", episodes=2, seed=0, out=str(tmp_path / "run"), progress=False)
    base.update(kw)
    return HarnessConfig(**base)


def run(c, planner=None, **kw):
    h = Harness(c, benchmark=DotBenchmark(), planner=planner or FixedPlanner(["go-to-goal"]), skills=skills(), **kw)
    try:
        return h, h.run()
    finally:
        h.close()


# -- run identity


def test_second_planner_into_the_same_folder_is_refused(tmp_path):
    h, recs = run(cfg(tmp_path))
    assert len(recs) == 2
    fp = read_fingerprint(h.out)
    assert fp["fields"]["planner"].endswith("FixedPlanner") and set(fp["fields"]["packages"]) >= {"mujoco", "vlx"}
    with pytest.raises(ConfigError) as e:
        run(cfg(tmp_path), OtherPlanner(["go-to-goal"]))
    msg = str(e.value)
    assert "\n" not in msg and "another configuration" in msg and "OtherPlanner" in msg and "--new" in msg
    assert len(load_all_records(tmp_path / "run")) == 2  # nothing relabelled or added
    # --new: starts over in a sibling folder, and resumes there next time
    h2, recs2 = run(cfg(tmp_path, new=True), OtherPlanner(["go-to-goal"]))
    assert h2.out == tmp_path / "run-2" and len(recs2) == 2
    h3, recs3 = run(cfg(tmp_path, new=True), OtherPlanner(["go-to-goal"]))
    assert h3.out == tmp_path / "run-2" and recs3 == []  # same fingerprint: resumed, nothing to do
    # the same configuration resumes in place
    h4, recs4 = run(cfg(tmp_path))
    assert h4.out == tmp_path / "run" and recs4 == []


def test_each_result_changing_setting_changes_the_fingerprint_and_default_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    outs = set()
    for kw in [{}, dict(seed=1), dict(episodes=3), dict(max_steps=50), dict(instructions="canonical")]:
        h = Harness(
            cfg(tmp_path, out=None, **kw),
            benchmark=DotBenchmark(),
            planner=FixedPlanner(["go-to-goal"]),
            skills=skills(),
        )
        h.close()
        assert str(h.out.parent) == "runs/embodied" and h.out.name.startswith("dot-tests.embodied.")
        outs.add(str(h.out))
    assert len(outs) == 5
    # settings that do not change results keep the folder
    a = Harness(cfg(tmp_path, out=None, num_envs=2, videos=1, progress=True), benchmark=DotBenchmark(),
                planner=FixedPlanner(["go-to-goal"]), skills=skills())  # fmt: skip
    assert str(a.out) in outs


def test_records_without_fingerprint_are_not_adopted(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "episodes.rank0.jsonl").write_text(json.dumps({"episode_id": "dot/0", "task_index": 0, "episode": 0}) + "\n")
    with pytest.raises(ConfigError, match="without a fingerprint"):
        run(cfg(tmp_path))
    assert not (out / RUN_FILE).exists()


# -- the config: YAML + flags + --set


def _parse(argv):
    from vlx.cli import build_parser

    return build_parser().parse_args(["embodied", "eval", *argv])


def test_config_yaml_flags_and_set(tmp_path):
    y = tmp_path / "eval.yaml"
    y.write_text("benchmark: kitchen\nplanner: oracle\nepisodes: 4\nplanner_args: {mode: score}\nmax_steps: 300\n")
    c = config_from_args(_parse([str(y), "--episodes", "2", "--set", "planner_args.max_steps=3", "--no-progress"]))
    assert (c.benchmark, c.planner, c.episodes, c.max_steps, c.progress) == ("kitchen", "oracle", 2, 300, False)
    assert c.planner_args == {"mode": "score", "max_steps": 3}
    # the README command still parses, with the defaults of the fields
    c = config_from_args(
        _parse("--benchmark metaworld-mt10 --planner saycan --skills scripted --episodes 10 --seed 0".split())
    )
    assert (c.benchmark, c.planner, c.skills, c.episodes, c.seed, c.out) == (
        "metaworld-mt10", "saycan", "scripted", 10, 0, None
    )  # fmt: skip


@pytest.mark.parametrize(
    "argv,match",
    [
        (["--episodes", "abc"], "key 'episodes': expected an integer"),
        (["--episodes", "0"], "episodes: expected >= 1"),
        (["--set", "epsiodes=3"], "unknown key 'epsiodes'"),
        (["--planner-arg", "x=[1,"], "--planner-arg 'x=\\[1,': value is not valid YAML"),
        (["--max-skill-steps", "0"], "max_skill_steps: expected >= 1"),
        (["--video-episodes", "a/b"], "video_episodes: 'a/b' is not an episode"),
        (["--max-planner-failures", "0"], "max_planner_failures"),
    ],
)
def test_config_errors_name_the_key(argv, match):
    with pytest.raises(ConfigError, match=match) as e:
        config_from_args(_parse(argv))
    assert "\n" not in str(e.value)


def test_every_field_has_exactly_one_flag():
    import dataclasses

    from vlx.cli import build_parser

    p = build_parser()
    sub = next(a for a in p._actions if a.dest == "command").choices["embodied"]
    ev = next(a for a in sub._actions if a.dest == "embodied_command").choices["eval"]
    dests = [a.dest for a in ev._actions if a.dest.startswith("cfg_")]
    assert sorted(dests) == sorted(f"cfg_{f.name}" for f in dataclasses.fields(HarnessConfig))


def test_yaml_type_error_names_file_and_key(tmp_path):
    y = tmp_path / "e.yaml"
    y.write_text("episodes: many\n")
    with pytest.raises(ConfigError, match=r"e.yaml: key 'episodes': expected an integer"):
        load_harness_config(y)


# -- instruction files


@pytest.mark.parametrize(
    "name,text",
    [
        ("mine.json", json.dumps({"dot": ["bring the dot home", "put the dot on the goal"]})),
        ("mine.yaml", "dot:\n  - bring the dot home\n  - put the dot on the goal\n"),
        (
            "mine.jsonl",
            '{"task": "dot", "instruction": "bring the dot home"}\n'
            '{"task": "dot", "instruction": "put the dot on the goal"}\n',
        ),  # fmt: skip
    ],
)
def test_plain_instruction_files(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text)
    h, recs = run(cfg(tmp_path, instructions=str(p), episodes=3))
    assert [r["instruction"] for r in recs] == ["bring the dot home", "put the dot on the goal", "bring the dot home"]
    meta = h.report_meta()
    assert meta["instruction_set"]["name"] == "mine" and len(meta["instruction_set"]["sha256"]) == 64
    assert h.fingerprint["fields"]["instructions"]["sha256"] == meta["instruction_set"]["sha256"]


def test_expected_plan_is_the_ground_truth(tmp_path):
    p = tmp_path / "i.yaml"
    p.write_text("dot:\n  instructions: [wiggle then go]\n  plan: [wander, go-to-goal]\n")
    _, recs = run(cfg(tmp_path, instructions=str(p), episodes=1), FixedPlanner(["wander", "go-to-goal"]))
    (r,) = recs
    assert r["ground_truth"] == ["wander", "go-to-goal"] and r["plans"][0]["exact"]
    assert r["plans"][0]["errors"] == []  # wander is not an extra step here


@pytest.mark.parametrize(
    "name,text,match",
    [
        ("a.jsonl", '{"task": "dot", "instruction": "x"}\n\n{"task": "dot", "instruction": 3}\n',
         r"a.jsonl: line 3: expected a non-empty list"),
        ("b.jsonl", '{"task": "dot", "instruction": "x"}\n{"task": "dot", "instr\n', r"b.jsonl: line 2: not valid"),
        ("c.yaml", "dot: [x]\nfly: [y]\n", r"c.yaml: line 2: task 'fly' is not in the benchmark"),
        ("d.yaml", "dot:\n  instructions: [x]\n  plan: [teleport]\n", r"d.yaml: line 1: plan step 'teleport'"),
        ("e.json", '{"dot": []}', r"e.json: line 1 task 'dot': expected a non-empty list"),
        ("f.txt", "dot: [x]", r"f.txt: instruction file must end in"),
    ],
)  # fmt: skip
def test_instruction_file_errors_name_the_line(tmp_path, name, text, match):
    p = tmp_path / name
    p.write_text(text)
    with pytest.raises((DataError, ConfigError), match=match) as e:
        run(cfg(tmp_path, instructions=str(p)))
    assert "\n" not in str(e.value)


# -- planner failure columns


class KindPlanner:
    """Fails with the given error kinds in turn (as remote planners report them)."""

    def __init__(self, kinds):
        self.kinds, self.i = list(kinds), 0

    def plan(self, instruction, observation, skill_specs):
        k = self.kinds[self.i % len(self.kinds)]
        self.i += 1
        if k == "hallucination":
            return Plan(steps=[PlanStep("teleport")])
        if k == "ok":
            return Plan(steps=[PlanStep("go-to-goal")])
        return Plan(steps=[], error_kind=k)


class RefusedPlanner:
    url = "http://127.0.0.1:9/v1/chat/completions"

    def __init__(self):
        self.calls = 0

    def plan(self, instruction, observation, skill_specs):
        self.calls += 1
        raise ConnectionRefusedError("[Errno 111] Connection refused")


def test_planner_failures_are_counted_in_their_own_columns(tmp_path):
    kinds = ["timeout", "http_error", "connection", "parse_error", "hallucination", "ok"]
    _, recs = run(cfg(tmp_path, episodes=6), KindPlanner(kinds))
    assert [r["plans"][0]["error_kind"] for r in recs] == [*kinds[:5], None]
    o = summarize(recs)["overall"]
    assert o["planner_errors"] == dict(timeout=1, http_error=1, connection=1, parse_error=1, hallucination=1)
    assert o["planner_timeout"] == 1 and o["planner_hallucination"] == 1


def test_consecutive_connection_failures_stop_the_run_naming_the_endpoint(tmp_path):
    p = RefusedPlanner()
    with pytest.raises(PlannerUnavailable, match=r"127.0.0.1:9/v1.*3 consecutive connection failures") as e:
        run(cfg(tmp_path, episodes=10, max_planner_failures=3), p)
    assert p.calls == 3 and "\n" not in str(e.value)
    recs = load_all_records(tmp_path / "run")
    assert len(recs) == 2 and all(r["plans"][0]["error_kind"] == "connection" for r in recs)  # the 3rd not recorded
    # without the cap the run goes on and counts them
    _, recs = run(cfg(tmp_path / "b", episodes=3), RefusedPlanner())
    assert len(recs) == 3


# -- the report


def test_summary_shows_options_instructions_caps_fingerprint_and_redacts_secrets(tmp_path):
    s = evaluate(
        cfg(tmp_path, max_steps=120, planner_args={"api_key": "sk-SECRET", "temperature": 0.5}),
        benchmark=DotBenchmark(),
        planner=FixedPlanner(["go-to-goal"]),
        skills=skills(),
    )
    md = (tmp_path / "run" / "summary.md").read_text()
    assert "temperature=0.5" in md and 'api_key="<redacted>"' in md and "max_steps 120" in md
    assert "`dot:paraphrases` (sha256 " in md and s["meta"]["fingerprint"][:16] in md
    assert md.index("**Success") < md.index("Skill choice accuracy")  # the dot benchmark: success first
    for f in tmp_path.joinpath("run").iterdir():
        assert b"sk-SECRET" not in f.read_bytes(), f


def test_metaworld_report_leads_with_plan_metrics():
    recs = [
        dict(episode_id="push-v3/0", task="push-v3", task_index=0, episode=0, success=True, status="ok",
             plans=[dict(steps=["push"], executable=True, exact=False, latency_s=0.1, errors=[])])
    ]  # fmt: skip
    md = to_markdown(summarize(recs, dict(benchmark="metaworld-mt10", success_measures_planning=False)))
    assert md.index("Skill choice accuracy") < md.index("not a planning metric") < md.index("Success: 100.0%")


# -- paths from user files


def test_kitchen_task_name_with_path_parts_is_one_line_error(tmp_path):
    from embodied.envs.kitchen import load_kitchen_tasks

    sub = "subtasks:\n  microwave: {skill: open-microwave, description: open it}\n"
    for bad in ["../../escape", "a/b", "..", "x\\\\y"]:
        p = tmp_path / "tasks.yaml"
        p.write_text(sub + f'instructions:\n  - {{name: "{bad}", instruction: x, plan: [open-microwave]}}\n')
        with pytest.raises(DataError, match=r"instructions\[0\].name: .* is not a task name") as e:
            load_kitchen_tasks(p)
        assert "\n" not in str(e.value)


def test_video_paths_stay_in_the_run_folder(tmp_path):
    from embodied.report import video_path

    p = video_path(tmp_path, {"task": "../../etc/x", "episode": 3}, True)
    assert p.parent == (tmp_path / "videos").resolve() and p.name == "_.._etc_x_ep3_success.mp4"


@pytest.mark.slow  # deflating 384 MiB of zeros at level 9 takes ~10 s on 2 cores
def test_npz_decompression_bomb_is_refused(tmp_path):
    """0.4 MiB on disk, 384 MiB decompressed: refused from the zip directory, nothing inflated."""
    import zipfile

    import numpy as np

    from embodied.collect import load_episode

    p = tmp_path / "ep_00000.npz"
    n = 384 * 2**20
    header = np.lib.format.header_data_from_array_1_0(np.zeros(0, np.uint8))
    header["shape"] = (n,)
    with zipfile.ZipFile(p, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        with zf.open("obs.npy", "w", force_zip64=True) as f:
            np.lib.format.write_array_header_1_0(f, header)
            chunk = bytes(2**20)
            for _ in range(384):
                f.write(chunk)
    assert p.stat().st_size < 0.5 * 2**20
    with pytest.raises(DataError, match=r"decompresses to 384.0 MiB, over the limit of 256 MiB") as e:
        load_episode(p, max_mib=256)
    assert "\n" not in str(e.value)


def test_cli_exits_nonzero_when_the_planner_endpoint_is_down(tmp_path, capsys):
    from embodied.cli import main
    from embodied.planners import PLANNERS

    if "refusing-test" not in PLANNERS:
        PLANNERS.register("refusing-test", RefusedPlanner)
    argv = ["embodied", "eval", "--benchmark", "metaworld-mt1:reach-v3", "--planner", "refusing-test"]
    argv += ["--episodes", "5", "--max-planner-failures", "2", "--out", str(tmp_path / "run"), "--no-progress"]
    assert main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: planner endpoint http://127.0.0.1:9/v1/chat/completions: 2 consecutive")
    assert not (tmp_path / "run" / "summary.md").exists()
