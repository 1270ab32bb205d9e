"""The harness: episode loop, plan validation -> taxonomy, planner faults, env faults,
re-planning, resume after a crash or kill, sharding, vector envs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from embodied.envs.metaworld import MetaWorldBenchmark, MetaWorldEnv
from embodied.harness import Harness, HarnessConfig, evaluate
from embodied.records import load_all_records, read_records
from embodied.types import Plan, PlanStep

REPO = Path(__file__).resolve().parents[2]


class FixedPlanner:
    """Returns the given step names (a test stand-in for embodied.planners)."""

    def __init__(self, *plans):
        self.plans = [list(p) for p in plans]
        self.calls = []

    def plan(self, instruction, observation, skills):
        self.calls.append((instruction, observation))
        names = self.plans[min(len(self.calls) - 1, len(self.plans) - 1)]
        return Plan(steps=[PlanStep(n) for n in names], raw_text=" ".join(names), prompt_tokens=5, completion_tokens=2)


class TaskPlanner:
    """Plans the task whose description matches the instruction (so multi-task runs work)."""

    def __init__(self, bench):
        self.by_instr = {i: t.ground_truth[0].skill for t in bench.tasks() for i in bench.instructions(t.name)}

    def plan(self, instruction, observation, skills):
        return Plan(steps=[PlanStep(self.by_instr[instruction])])


class RaisingPlanner:
    def plan(self, instruction, observation, skills):
        raise ConnectionRefusedError("planner server is down")


class SlowPlanner:
    def plan(self, instruction, observation, skills):
        time.sleep(2.0)
        return Plan(steps=[PlanStep("reach")])


class GarbagePlanner:
    def plan(self, instruction, observation, skills):
        return "reach the goal!!"


def cfg(tmp_path, **kw):
    base = dict(benchmark="metaworld-mt1:reach-v3", episodes=2, seed=0, out=str(tmp_path / "run"), progress=False)
    base.update(kw)
    return HarnessConfig(**base)


def run(c, planner, bench=None, **kw):
    h = Harness(c, benchmark=bench, planner=planner, **kw)
    try:
        return h.run()
    finally:
        h.close()


def test_episode_records_and_success(tmp_path):
    recs = run(cfg(tmp_path), FixedPlanner(["reach"]))
    assert [r["episode_id"] for r in recs] == ["reach-v3/0", "reach-v3/1"]
    for r in recs:
        assert r["success"] and r["status"] == "ok" and r["chain_length"] == 1
        assert r["plans"][0]["executable"] and r["plans"][0]["exact"] and r["plans"][0]["errors"] == []
        assert r["executed"][0]["success"] and 10 < r["env_steps"] < 200
        assert r["first_success_step"] == r["env_steps"]  # stops at the benchmark's success
    assert recs[0]["seed"] != recs[1]["seed"]
    assert len(read_records(tmp_path / "run" / "episodes.rank0.jsonl")) == 2


def test_plan_validation_feeds_the_taxonomy_and_never_runs_unknown_steps(tmp_path):
    recs = run(cfg(tmp_path, episodes=1), FixedPlanner(["fly", "reach", "reach"]))
    (r,) = recs
    kinds = sorted(e["kind"] for e in r["plans"][0]["errors"])
    assert kinds == ["extra_step", "hallucinated_skill"]
    assert not r["plans"][0]["executable"]
    assert [e["step"] for e in r["executed"]] == ["reach"]  # 'fly' skipped; success ends the episode
    assert r["success"]


@pytest.mark.parametrize(
    "planner,status,detail",
    [
        (RaisingPlanner(), "exception", "ConnectionRefusedError"),
        (SlowPlanner(), "timeout", "timed out"),
        (GarbagePlanner(), "garbage", "not a Plan"),
    ],
)
def test_planner_faults_are_counted_failures(tmp_path, planner, status, detail):
    c = cfg(tmp_path, episodes=2, planner_timeout_s=0.3)
    recs = run(c, planner)
    assert len(recs) == 2  # the run keeps going
    for r in recs:
        p = r["plans"][0]
        assert p["status"] == status and not r["success"] and r["env_steps"] == 0
        assert p["errors"][0]["kind"] == "parse_error" and detail in p["errors"][0]["detail"]
    from embodied.report import summarize

    s = summarize(recs)["overall"]
    assert (
        s["error_taxonomy"]["parse_error"] == 2 and s["planner_status"] == {status: 2} and s["plan_executability"] == 0
    )


class FlakyBenchmark(MetaWorldBenchmark):
    """Its env raises at step 5 of the episode seeded ``bad_seed``."""

    def __init__(self, bad_seed):
        super().__init__("mt1:reach-v3")
        self.bad_seed = bad_seed

    def make_env(self, task, **kw):
        env = super().make_env(task, **kw)
        orig_reset, orig_step = env.reset, env.step
        state = {"n": 0, "seed": None}

        def reset(seed=None):
            state.update(n=0, seed=seed)
            return orig_reset(seed)

        def step(a):
            state["n"] += 1
            if state["seed"] == self.bad_seed and state["n"] == 5:
                raise FloatingPointError("simulator diverged")
            return orig_step(a)

        env.reset, env.step = reset, step
        return env


def test_env_error_mid_episode_is_recorded_and_run_continues(tmp_path):
    c = cfg(tmp_path, episodes=3)
    seeds = [u.seed for u in Harness(c, planner=FixedPlanner(["reach"])).units()]
    recs = run(c, FixedPlanner(["reach"]), bench=FlakyBenchmark(seeds[1]))
    assert [r["status"] for r in recs] == ["ok", "env_error", "ok"]
    assert "FloatingPointError: simulator diverged" in recs[1]["error"] and recs[1]["env_steps"] == 4
    assert recs[0]["success"] and recs[2]["success"] and not recs[1]["success"]
    from embodied.report import summarize

    o = summarize(recs)["overall"]
    assert o["errored"] == 1 and o["env_errors"][0]["episode_id"] == "reach-v3/1"


def test_replanning_from_feedback_with_cap(tmp_path):
    p = FixedPlanner(["fly"], ["reach"])
    (r,) = run(cfg(tmp_path / "a", episodes=1, max_replans=1), p)
    assert r["success"] and r["replans"] == 1 and len(p.calls) == 2
    assert p.calls[1][1]["feedback"] == ["the plan could not be executed"]
    p0 = FixedPlanner(["fly"], ["reach"])
    (r0,) = run(cfg(tmp_path / "b", episodes=1, max_replans=0), p0)
    assert not r0["success"] and len(p0.calls) == 1
    # the cap holds even when the planner never recovers
    p3 = FixedPlanner(["fly"])
    (r3,) = run(cfg(tmp_path / "c", episodes=1, max_replans=3), p3)
    assert len(p3.calls) == 4 and r3["replans"] == 3 and not r3["success"]


class CrashAfter(FixedPlanner):
    """Simulates a kill: raises a BaseException (not caught as a planner fault) on call k."""

    def __init__(self, k):
        super().__init__(["reach"])
        self.k = k

    def plan(self, instruction, observation, skills):
        if len(self.calls) + 1 == self.k:
            raise SystemExit("killed")
        return super().plan(instruction, observation, skills)


def _key(r):
    return (r["episode_id"], r["seed"], r["success"], r["env_steps"], r["instruction"])


def test_resume_after_crash_neither_repeats_nor_loses(tmp_path):
    ref = run(cfg(tmp_path / "ref", episodes=4), FixedPlanner(["reach"]))
    c = cfg(tmp_path, episodes=4)
    with pytest.raises(SystemExit):
        run(c, CrashAfter(3))
    path = tmp_path / "run" / "episodes.rank0.jsonl"
    assert len(read_records(path)) == 2
    with open(path, "a") as f:  # a torn last line, as a kill during write leaves
        f.write('{"episode_id": "reach-v3/2", "succ')
    p = CrashAfter(10**9)  # the same planner (class), resumed: it never crashes now
    resumed = run(c, p)
    assert [r["episode_id"] for r in resumed] == ["reach-v3/2", "reach-v3/3"] and len(p.calls) == 2
    assert '"succ' in (tmp_path / "run" / "episodes.rank0.jsonl.bad").read_text()  # quarantined, not lost
    allr = load_all_records(tmp_path / "run")
    assert [_key(r) for r in allr] == [_key(r) for r in ref]
    assert len(path.read_text().splitlines()) == 4


def test_sharded_ranks_merge_into_one_report(tmp_path):
    ref = run(cfg(tmp_path / "ref", episodes=4), FixedPlanner(["reach"]))
    c = cfg(tmp_path, episodes=4)
    r1 = run(c, FixedPlanner(["reach"]), rank=1, world_size=2)
    assert [r["episode_id"] for r in r1] == ["reach-v3/1", "reach-v3/3"]
    os.environ.update(RANK="0", WORLD_SIZE="2")
    try:
        summary = evaluate(c, planner=FixedPlanner(["reach"]))
    finally:
        del os.environ["RANK"], os.environ["WORLD_SIZE"]
    assert summary["overall"]["episodes"] == 4 and summary["meta"]["world_size"] == 2
    assert [_key(r) for r in load_all_records(tmp_path / "run")] == [_key(r) for r in ref]
    assert (tmp_path / "run" / "summary.md").exists() and (tmp_path / "run" / "per_task.csv").exists()


@pytest.mark.slow
def test_vector_envs_match_single_env(tmp_path):
    b = MetaWorldBenchmark("mt10")
    kw = dict(benchmark="metaworld-mt10", tasks=["reach-v3", "drawer-close-v3"], episodes=3)
    one = run(cfg(tmp_path / "one", **kw), TaskPlanner(b), bench=b)
    two = run(cfg(tmp_path / "two", num_envs=2, **kw), TaskPlanner(b), bench=b)
    key = lambda r: (_key(r), [e["step"] for e in r["executed"]], r["completed_subgoals"])  # noqa: E731
    assert sorted(map(key, one)) == sorted(map(key, two))
    assert all(r["success"] for r in two)


@pytest.mark.slow
def test_killed_cli_run_resumes_without_loss(tmp_path):
    out = tmp_path / "cli"
    # not `python -m vlx.cli`: as __main__ that module is a second copy that plugins do not register into
    cmd = [
        sys.executable,
        "-c",
        "import sys; from vlx.cli import main; sys.exit(main(sys.argv[1:]))",
        "embodied",
        "eval",
        "--benchmark",
        "metaworld-mt1:drawer-close-v3",
        "--planner",
        "oracle",
        "--episodes",
        "8",
        "--seed",
        "3",
        "--out",
        str(out),
        "--no-progress",
    ]
    env = dict(os.environ, MUJOCO_GL="osmesa")
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    path = out / "episodes.rank0.jsonl"
    t0 = time.time()
    while len(read_records(path)) < 2 and time.time() - t0 < 120:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    n_before = len(read_records(path))
    assert 2 <= n_before < 8
    assert subprocess.run(cmd, cwd=REPO, env=env, capture_output=True).returncode == 0
    recs = load_all_records(out)
    assert [r["episode"] for r in recs] == list(range(8))
    assert len(read_records(path)) == 8  # nothing repeated
    assert json.loads((out / "summary.json").read_text())["overall"]["episodes"] == 8


def _chat_server(mode):
    """A loopback chat-completions server: 'plan' answers a JSON plan, 'garbage' prose,
    'slow' sleeps past the client's timeout."""
    import http.server
    import threading

    class H(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            self.rfile.read(int(self.headers["Content-Length"]))
            if mode == "slow":
                time.sleep(1.5)
            content = (
                '{"steps": [{"skill": "reach", "args": {}}]}' if mode == "plan" else "Sure! Just reach it, I guess."
            )
            body = json.dumps(
                {
                    "choices": [{"message": {"role": "assistant", "content": content}}],
                    "usage": {"prompt_tokens": 11, "completion_tokens": 4},
                }
            ).encode()
            try:
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):
                pass

        def log_message(self, *a):
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv


def test_openai_planner_server_faults_through_harness(tmp_path):
    """Real OpenAIPlanner against loopback servers: a good plan, garbage, a timeout, a dead port."""
    import socket

    from embodied.planners import build_planner

    def planner(url):
        return build_planner("openai", base_url=url, model="tiny", timeout_s=0.4, max_retries=0, backoff_s=0.01)

    results = {}
    for mode in ("plan", "garbage", "slow"):
        srv = _chat_server(mode)
        try:
            url = f"http://127.0.0.1:{srv.server_address[1]}/v1"
            results[mode] = run(cfg(tmp_path / mode, episodes=1), planner(url))[0]
        finally:
            srv.shutdown()
            srv.server_close()
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    dead = s.getsockname()[1]
    s.close()  # nothing listens here any more
    results["down"] = run(cfg(tmp_path / "down", episodes=1), planner(f"http://127.0.0.1:{dead}/v1"))[0]

    good = results["plan"]
    assert good["success"] and good["plans"][0]["prompt_tokens"] == 11 and good["plans"][0]["completion_tokens"] == 4
    g = results["garbage"]["plans"][0]
    assert not results["garbage"]["success"] and g["errors"][0]["kind"] == "parse_error" and not g["executable"]
    for mode in ("slow", "down"):
        p = results[mode]["plans"][0]
        assert p["status"] == "exception" and p["errors"][0]["kind"] == "parse_error", (mode, p)
        assert not results[mode]["success"] and results[mode]["env_steps"] == 0


class _RaisingTaskEnv(MetaWorldEnv):
    """Raises at step 3 of episodes whose seed has bit 8 clear (picklable for vector workers)."""

    def reset(self, seed=None):
        self._bad = seed is not None and (seed >> 8) % 2 == 0
        return super().reset(seed)

    def step(self, action):
        if self._bad and self._steps == 2:
            raise FloatingPointError("worker sim diverged")
        return super().step(action)


class _RaisingBenchmark(MetaWorldBenchmark):
    def make_env(self, task, **kw):
        return _RaisingTaskEnv(self.task(task))


@pytest.mark.slow
def test_vector_worker_env_error_is_recorded(tmp_path, monkeypatch):
    import embodied.envs as envs

    monkeypatch.setitem(envs.BENCHMARKS._items, "raisingmw", lambda variant: _RaisingBenchmark("mt1:reach-v3"))
    b = _RaisingBenchmark("mt1:reach-v3")
    b.name = "raisingmw-x"  # workers rebuild the benchmark by name (forked, so they see the patch)
    from embodied.skills import build_skills

    skills = build_skills(MetaWorldBenchmark("mt1:reach-v3"))
    recs = run(cfg(tmp_path, episodes=4, num_envs=2), FixedPlanner(["reach"]), bench=b, skills=skills)
    assert len(recs) == 4 and {r["status"] for r in recs} == {"ok", "env_error"}
    for r in recs:
        if (r["seed"] >> 8) % 2 == 0:
            assert r["status"] == "env_error" and "worker sim diverged" in r["error"] and r["env_steps"] == 2
        else:
            assert r["status"] == "ok" and r["success"]


def test_bad_config_values_are_config_errors(tmp_path):
    from vlx.config import ConfigError

    for kw, key in [
        (dict(episodes=0), "episodes"),
        (dict(num_envs=0), "num_envs"),
        (dict(instructions="random"), "instructions"),
        (dict(tasks=["fly-v3"]), "fly-v3"),
    ]:
        with pytest.raises(ConfigError, match=key):
            Harness(cfg(tmp_path, **kw), planner=FixedPlanner(["reach"])).units()
    with pytest.raises(ConfigError, match="unknown option 'temprature'"):
        Harness(cfg(tmp_path, planner="saycan", planner_args={"temprature": 1}))
    with pytest.raises(ConfigError, match="needs policy="):
        Harness(cfg(tmp_path, skills="learned"), planner=FixedPlanner(["reach"]))


def test_cli_and_quickstart_are_registered():
    from vlx.cli import QUICKSTARTS, build_parser

    args = build_parser().parse_args(
        [
            "embodied",
            "eval",
            "--benchmark",
            "metaworld-mt1:reach-v3",
            "--planner",
            "oracle",
            "--episodes",
            "3",
            "--planner-arg",
            "timeout_s=5",
            "--tasks",
            "reach-v3",
        ]
    )
    from embodied.eval_config import config_from_args

    c = config_from_args(args)
    assert (c.benchmark, c.planner, c.episodes, c.planner_args, c.tasks) == (
        "metaworld-mt1:reach-v3",
        "oracle",
        3,
        {"timeout_s": 5},
        ["reach-v3"],
    )
    qs = QUICKSTARTS.get("embodied")
    assert qs.priority == 10
