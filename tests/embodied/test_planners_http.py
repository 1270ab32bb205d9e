"""Remote-planner I/O at the edges, against stub servers on 127.0.0.1: per-request deadlines
(slow drip, hanging endpoint, nothing sent after the deadline, no thread left behind), reply
size limit, redirects that never carry the key to another host, key and endpoint checks,
failure kinds, and an echoed key never reaching disk through the harness."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time

import pytest

from embodied.planners import PlannerRequestError, build_planner
from embodied.planners.http_post import Scrubber, is_loopback
from embodied.records import load_all_records
from embodied.types import Plan, PlanError, PlanErrorKind, PlanStep, SkillSpec
from tests.embodied.stub_servers import StubServer, answer, chat_reply, hang, send
from vlx.config import ConfigError

KEY = "sk-test-SECRET-7d1e0b"
SKILLS = [SkillSpec("go-to-goal", "move the dot to the goal"), SkillSpec("wander", "wiggle the dot")]
GOOD = '{"steps": [{"skill": "go-to-goal", "args": {}}]}'


@pytest.fixture
def key_env(monkeypatch):
    monkeypatch.setenv("VLX_TEST_PLANNER_KEY", KEY)
    return "VLX_TEST_PLANNER_KEY"


def make(url, key_env=None, **kw):
    kw = {"timeout_s": 2.0, "max_retries": 0, "backoff_s": 0.01, **kw}
    return build_planner("openai", base_url=url, model="m", api_key_env=key_env, **kw)


def dead_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


# -- deadlines


def _drip(h, req):
    """Headers at once, then one byte every 0.5 s of a 40-byte body (20 s in all)."""
    h.send_response(200)
    h.send_header("Content-Length", "40")
    h.end_headers()
    h.wfile.flush()
    for _ in range(40):
        if h.stub.stop.wait(0.5):
            return
        h.wfile.write(b" ")
        h.wfile.flush()


def _drip_headers(h, req):
    """The status line and then one header byte every 0.3 s."""
    h.wfile.write(b"HTTP/1.1 200 OK\r\n")
    for _ in range(60):
        if h.stub.stop.wait(0.3):
            return
        h.wfile.write(b"X")
        h.wfile.flush()


@pytest.mark.parametrize("behave", [_drip, _drip_headers])
def test_request_deadline_holds_against_a_slow_drip(behave):
    with StubServer(behave) as srv:
        p = make(srv.url, timeout_s=1.0)
        t0 = time.monotonic()
        with pytest.raises(PlannerRequestError, match="timed out") as e:
            p.plan("go", None, SKILLS)
        took = time.monotonic() - t0
    assert e.value.error_kind == "timeout"
    assert 0.9 < took < 3.0, took  # the request's 1 s deadline (slack for busy CPUs), not the drip's 20 s


def test_call_deadline_bounds_retries_and_no_request_after_it():
    with StubServer(hang) as srv:
        p = make(srv.url, timeout_s=0.4, max_retries=10, backoff_s=0.3, call_timeout_s=1.0)
        t0 = time.monotonic()
        with pytest.raises(PlannerRequestError) as e:
            p.plan("go", None, SKILLS)
        end = t0 + 1.0
        took = time.monotonic() - t0
        time.sleep(0.5)
        n = len(srv.requests)
        sent = [r["t"] for r in srv.requests]
    assert e.value.error_kind == "timeout" and took < 2.0, took  # 10 retries would take > 4 s
    assert 1 <= n <= 3 and all(t < end for t in sent)  # 0.4 + 0.3 + 0.4 > 1.0: at most 2 fit


def test_cancel_cuts_the_request_in_flight():
    with StubServer(hang) as srv:
        p = make(srv.url, timeout_s=30.0, max_retries=3)
        out = {}

        def call():
            try:
                p.plan("go", None, SKILLS)
            except PlannerRequestError as e:
                out["kind"] = e.error_kind

        t = threading.Thread(target=call)
        t.start()
        time.sleep(0.5)
        t0 = time.monotonic()
        p.cancel()
        t.join(5)
        assert not t.is_alive() and time.monotonic() - t0 < 1.0
        assert out["kind"] == "timeout" and len(srv.requests) == 1  # no retry after a cancel


# -- reply size


def test_oversized_reply_is_cut_off_with_a_clear_error():
    def claim_300mib(h, req):  # declares 300 MiB: refused from the header, nothing read
        h.send_response(200)
        h.send_header("Content-Length", str(300 * 2**20))
        h.end_headers()
        h.wfile.write(b"x" * 2**16)

    def stream(h, req):  # no length, closes at the end: 300 MiB unless the client hangs up
        h.send_response(200)
        h.send_header("Connection", "close")
        h.end_headers()
        block = b"x" * 2**20
        for _ in range(300):
            h.wfile.write(block)

    with StubServer(claim_300mib) as srv:
        with pytest.raises(PlannerRequestError, match=r"reply of 314572800 bytes is over the limit of 16777216") as e:
            make(srv.url).plan("go", None, SKILLS)
    assert e.value.error_kind == "parse_error"
    with StubServer(stream) as srv:
        p = make(srv.url, max_reply_bytes=2**20, max_retries=2)
        with pytest.raises(PlannerRequestError, match=r"over the limit of 1048576 bytes; cut off") as e:
            p.plan("go", None, SKILLS)
        assert len(srv.requests) == 1  # not retried: the same reply would come again
    assert e.value.error_kind == "parse_error"


# -- secrets


@pytest.mark.parametrize("code", [301, 302, 303, 307, 308])
def test_redirect_never_forwards_the_key_to_another_host(key_env, code):
    with StubServer(answer(GOOD)) as second:

        def redirect(h, req):
            if req["path"].endswith("/moved"):  # same origin: the key may follow
                send(h, b"", code, {"Location": f"{second.url}/chat/completions"})
            else:
                send(h, b"", code, {"Location": "/v1/moved"})

        with StubServer(redirect) as first:
            plan = make(first.url, key_env).plan("go", None, SKILLS)
            assert [str(s) for s in plan.steps] == ["go-to-goal()"]
            assert [r["auth"] for r in first.requests] == [f"Bearer {KEY}"] * 2
        assert [r["auth"] for r in second.requests] == [None]
        assert second.requests[0]["body"]["model"] == "m"  # the same request, re-posted


@pytest.mark.parametrize("bad", [KEY + "\n", KEY + "\r", "sk-\tx", "sk-\x7fx", "sk-\u00e9"])
def test_key_with_control_char_is_refused_without_showing_it(monkeypatch, bad):
    monkeypatch.setenv("VLX_TEST_PLANNER_KEY", bad)
    with pytest.raises(ConfigError, match="VLX_TEST_PLANNER_KEY") as e:
        make("http://127.0.0.1:9/v1", "VLX_TEST_PLANNER_KEY")
    assert bad.strip() not in str(e.value) and "sk-" not in str(e.value)


def test_key_changed_to_a_bad_one_after_construction_never_leaves(key_env, monkeypatch):
    with StubServer(answer(GOOD)) as srv:
        p = make(srv.url, key_env)
        monkeypatch.setenv(key_env, KEY + "\n")
        with pytest.raises(ConfigError) as e:
            p.plan("go", None, SKILLS)
        assert KEY not in str(e.value) and srv.requests == []


def test_plain_http_to_a_remote_host_with_a_key_is_refused(key_env):
    with pytest.raises(ConfigError, match="plain http to a non-loopback host") as e:
        make("http://planner.example.org/v1", key_env)
    assert KEY not in str(e.value)
    assert make("http://planner.example.org/v1", key_env, allow_insecure_http=True).url.endswith("/chat/completions")
    make("https://planner.example.org/v1", key_env)  # encrypted: fine
    make("http://planner.example.org/v1")  # no key to leak: fine
    for host in ["localhost", "127.0.0.1", "127.3.2.1", "[::1]"]:
        make(f"http://{host}:8000/v1", key_env)
    assert not is_loopback("10.0.0.1") and not is_loopback("localhost.example.org")


def test_scrubber_covers_every_string_of_a_plan():
    s = Scrubber(['k"ey/+1'])
    echoed = ['k"ey/+1', json.dumps('k"ey/+1'), "k%22ey%2F%2B1"]
    plan = Plan(
        steps=[PlanStep(echoed[0], (("a", echoed[1]),), echoed[2])],
        raw_text=" ".join(echoed),
        errors=[PlanError(PlanErrorKind.PARSE, 0, echoed[0])],
        reasoning=echoed[2],
    )
    text = repr(s.plan(plan))
    assert "ey/" not in text and "ey%2F" not in text and text.count("***") >= 7


# -- failure kinds


@pytest.mark.parametrize(
    "behave, kind",
    [
        (lambda h, r: send(h, b"", 500), "http_error"),
        (lambda h, r: send(h, b"", 404), "http_error"),
        (hang, "timeout"),
        (lambda h, r: send(h, b"<html>proxy error</html>"), "parse_error"),
    ],
)
def test_failure_kinds(behave, kind):
    with StubServer(behave) as srv:
        p = make(srv.url, timeout_s=0.5)
        try:
            plan = p.plan("go", None, SKILLS)
        except PlannerRequestError as e:
            got = e.error_kind
        else:
            got = plan.error_kind
    assert got == kind
    with pytest.raises(PlannerRequestError) as e:
        make(f"http://127.0.0.1:{dead_port()}/v1").plan("go", None, SKILLS)
    assert e.value.error_kind == "connection"


# -- through the harness


def _harness_run(tmp_path, planner, **kw):
    from embodied.harness import Harness, HarnessConfig
    from tests.embodied.test_harness_steps import DotBenchmark, skills

    cfg = HarnessConfig(benchmark="dot", seed=0, out=str(tmp_path / "run"), progress=False, **kw)
    h = Harness(cfg, benchmark=DotBenchmark(), planner=planner, skills=skills())
    try:
        return h.run()
    finally:
        h.close()


def test_hanging_endpoint_ends_the_run_in_time_with_nothing_sent_after_the_deadline(tmp_path):
    with StubServer(hang) as srv:
        before = threading.active_count()
        p = make(srv.url, timeout_s=30.0, max_retries=5)
        t0 = time.monotonic()
        recs = _harness_run(tmp_path, p, episodes=2, planner_timeout_s=1.0)
        took = time.monotonic() - t0
        n_at_end = len(srv.requests)
        time.sleep(1.5)
        assert len(srv.requests) == n_at_end  # nothing sent once the run is over
        # every request was sent within its call's second (calls start about 1 s apart)
        assert n_at_end == 2 and srv.requests[1]["t"] - srv.requests[0]["t"] < 1.5
        workers = [t for t in threading.enumerate() if t.name.startswith(("ThreadPoolExecutor", "Thread-"))]
    assert took < 2 * 1.0 + 5, took
    assert [r["plans"][0]["error_kind"] for r in recs] == ["timeout", "timeout"]
    assert threading.active_count() <= before + 1, workers  # no abandoned call left running


def test_process_exits_soon_after_the_last_episode_against_a_hanging_endpoint(tmp_path):
    code = f"""
import time
from embodied.harness import HarnessConfig, evaluate
from embodied.planners import build_planner
from tests.embodied.test_harness_steps import DotBenchmark, skills
p = build_planner("openai", base_url=URL, model="m", timeout_s=60.0, max_retries=5)
cfg = HarnessConfig(benchmark="dot", episodes=2, out={str(tmp_path / "run")!r}, progress=False, planner_timeout_s=1.0)
evaluate(cfg, benchmark=DotBenchmark(), planner=p, skills=skills())
print("REPORT", time.monotonic(), flush=True)
"""
    with StubServer(hang) as srv:
        env = {**os.environ, "PYTHONPATH": os.getcwd()}
        t0 = time.monotonic()
        out = subprocess.run(
            [sys.executable, "-c", f"URL = {srv.url!r}\n" + code], env=env, capture_output=True, text=True, timeout=60
        )
        t_exit = time.monotonic()
    assert out.returncode == 0, out.stderr[-2000:]
    t_report = float(out.stdout.split("REPORT")[1])
    assert t_exit - t_report < 4.0, (t_exit - t_report, t_exit - t0)  # was 90 s before the cancel
    assert len(srv.requests) == 2


def test_echoed_key_never_reaches_disk_through_the_records(tmp_path, key_env):
    def echo(h, req):
        a = req["auth"]  # "Bearer <key>": echoed into the skill name, the prose and the JSON
        content = f'I was called with {a}. {{"steps": [{{"skill": "go-to-goal {a}", "args": {{"k": "{a}"}}}}]}}'
        send(h, chat_reply(content))

    with StubServer(echo) as srv:
        recs = _harness_run(tmp_path, make(srv.url, key_env), episodes=2)
        assert srv.requests[0]["auth"] == f"Bearer {KEY}"
    assert "***" in recs[0]["plans"][0]["raw_text"]
    assert recs[0]["plans"][0]["error_kind"] == "hallucination"
    files = [f for f in (tmp_path / "run").rglob("*") if f.is_file()]
    assert files and len(load_all_records(tmp_path / "run")) == 2
    for f in files:
        assert KEY.encode() not in f.read_bytes(), f


def test_cli_exits_nonzero_on_a_refused_connection(tmp_path, capsys):
    from embodied.cli import main

    url = f"http://127.0.0.1:{dead_port()}/v1"
    argv = ["embodied", "eval", "--benchmark", "metaworld-mt1:reach-v3", "--planner", "openai"]
    argv += ["--planner-arg", f"base_url={url}", "--planner-arg", "model=m", "--planner-arg", "max_retries=0"]
    argv += ["--episodes", "3", "--max-planner-failures", "2", "--out", str(tmp_path / "run"), "--no-progress"]
    assert main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith(f"error: planner endpoint {url}/chat/completions: 2 consecutive connection failures")
    recs = load_all_records(tmp_path / "run")
    assert [r["plans"][0]["error_kind"] for r in recs] == ["connection"]
