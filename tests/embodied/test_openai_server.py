"""OpenAIPlanner end to end against a loopback server speaking the chat-completions protocol:
a normal answer, garbage, timeouts, a down server, and the key never leaking."""

import json
import logging
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from embodied.planners import PlannerRequestError, build_planner, classify_plan_errors
from embodied.planners.openai_compat import OpenAIPlanner
from embodied.types import PlanErrorKind, SkillSpec
from vlx.config import ConfigError

KEY = "sk-test-SECRET-4f9c2e"
SKILLS = [
    SkillSpec("open", "open an articulated object", (("object", ("microwave", "slide_cabinet")),)),
    SkillSpec("reach", "reach the goal position"),
]
GOOD = '{"steps": [{"skill": "open", "args": {"object": "microwave"}}, {"skill": "reach", "args": {}}]}'
MAX_REQUESTS = 50  # no test needs more; a runaway retry loop fails instead of hanging


class ChatServer:
    """A minimal chat-completions endpoint. ``script`` is a list of behaviours consumed one per
    request (the last repeats): ("ok", content), ("garbage", body), ("sleep", seconds),
    ("status", code)."""

    def __init__(self):
        self.script = [("ok", GOOD)]
        self.requests: list[dict] = []
        self.auth: list[str | None] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):  # keep pytest output clean
                pass

            def do_POST(self):
                n = len(server.requests)
                if n >= MAX_REQUESTS:
                    self.send_error(500, "request budget exhausted")
                    return
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                server.requests.append({"path": self.path, "body": body})
                server.auth.append(self.headers.get("Authorization"))
                kind, arg = server.script[min(n, len(server.script) - 1)]
                if kind == "sleep":
                    time.sleep(arg)
                    kind, arg = "ok", GOOD
                if kind == "status":
                    self.send_response(arg)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if kind == "ok":
                    payload = json.dumps(
                        {
                            "id": "cmpl-1",
                            "object": "chat.completion",
                            "model": body["model"],
                            "choices": [
                                {"index": 0, "message": {"role": "assistant", "content": arg}, "finish_reason": "stop"}
                            ],
                            "usage": {"prompt_tokens": 111, "completion_tokens": 22, "total_tokens": 133},
                        }
                    ).encode()
                else:
                    payload = arg.encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                try:
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):  # the client timed out and left
                    pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


@pytest.fixture
def server():
    s = ChatServer()
    yield s
    s.close()


@pytest.fixture
def key_env(monkeypatch):
    monkeypatch.setenv("VLX_TEST_PLANNER_KEY", KEY)
    return "VLX_TEST_PLANNER_KEY"


def make(server_url, key_env, **kw):
    kw = {"timeout_s": 2.0, "max_retries": 2, "backoff_s": 0.01, **kw}
    return build_planner("openai", base_url=server_url, model="tiny-planner", api_key_env=key_env, **kw)


def test_normal_answer(server, key_env):
    p = make(server.url, key_env, chain_of_thought=True, json_mode=True)
    plan = p.plan("open the microwave, then reach", None, SKILLS)
    assert [str(s) for s in plan.steps] == ["open(object=microwave)", "reach()"]
    assert classify_plan_errors(plan, SKILLS) == []
    assert (plan.prompt_tokens, plan.completion_tokens) == (111, 22)
    assert plan.latency_s > 0
    req = server.requests[0]
    assert req["path"] == "/v1/chat/completions"
    assert req["body"]["model"] == "tiny-planner" and req["body"]["response_format"] == {"type": "json_object"}
    assert "Reasoning:" in req["body"]["messages"][-1]["content"]
    assert server.auth == [f"Bearer {KEY}"]  # the key is sent, to the server only
    assert p.stats.as_dict() == {
        "requests": 1,
        "retries": 0,
        "timeouts": 0,
        "connection_errors": 0,
        "http_errors": 0,
        "bad_responses": 0,
        "parse_errors": 0,
        "failures": 0,
    }


def test_garbage_answers_are_counted_parse_errors(server, key_env):
    server.script = [("ok", "Sure! I will open the microwave."), ("garbage", "<html>502 proxy</html>"), ("ok", GOOD)]
    p = make(server.url, key_env)
    plans = [p.plan("open the microwave", None, SKILLS) for _ in range(3)]
    assert [[e.kind for e in pl.errors] for pl in plans] == [[PlanErrorKind.PARSE], [PlanErrorKind.PARSE], []]
    assert plans[0].steps == [] and plans[1].steps == [] and len(plans[2].steps) == 2
    assert (p.stats.parse_errors, p.stats.bad_responses, p.stats.requests, p.stats.failures) == (2, 1, 3, 0)


def test_timeout_retries_then_counted_failure(server, key_env):
    server.script = [("sleep", 1.0)]
    p = make(server.url, key_env, timeout_s=0.2, max_retries=2)
    t0 = time.perf_counter()
    with pytest.raises(PlannerRequestError, match=r"no answer after 3 attempt\(s\): timed out"):
        p.plan("open the microwave", None, SKILLS)
    assert time.perf_counter() - t0 < 3.0
    assert (p.stats.timeouts, p.stats.retries, p.stats.requests, p.stats.failures) == (3, 2, 3, 1)
    assert len(server.requests) == 3


def test_transient_5xx_then_success_and_4xx_not_retried(server, key_env):
    server.script = [("status", 503), ("sleep", 0.0)]
    p = make(server.url, key_env)
    assert len(p.plan("x", None, SKILLS).steps) == 2
    assert (p.stats.http_errors, p.stats.retries, p.stats.failures) == (1, 1, 0)
    server.script = [("status", 401)]
    server.requests.clear()
    with pytest.raises(PlannerRequestError, match=r"1 attempt\(s\): HTTP 401"):
        p.plan("x", None, SKILLS)
    assert len(server.requests) == 1


def test_server_down_is_counted_connection_failure(key_env):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    p = make(f"http://127.0.0.1:{port}/v1", key_env, max_retries=1)
    with pytest.raises(PlannerRequestError, match="connection failed"):
        p.plan("open the microwave", None, SKILLS)
    assert (p.stats.connection_errors, p.stats.requests, p.stats.failures) == (2, 2, 1)


def test_key_never_in_logs_reprs_or_errors(server, key_env, caplog):
    caplog.set_level(logging.DEBUG)
    # A hostile server that echoes the Authorization header back in its answer.
    server.script = [("status", 500), ("garbage", f"echo: Bearer {KEY}"), ("sleep", 1.0)]
    p = make(server.url, key_env, timeout_s=0.3, max_retries=1)
    seen = [repr(p), str(vars(p)), str(p.stats.as_dict())]
    plan = p.plan("x", None, SKILLS)  # 500 then the echo
    seen += [repr(plan), plan.raw_text, str(plan.errors)]
    server.script = [("sleep", 1.0)]
    server.requests.clear()
    with pytest.raises(PlannerRequestError) as exc:
        p.plan("x", None, SKILLS)
    seen += [str(exc.value), repr(exc.value), caplog.text]
    assert "***" in plan.raw_text  # the echo was scrubbed, not dropped silently
    assert "retry 1/1" in caplog.text  # the retries were logged ...
    for text in seen:
        assert KEY not in text  # ... and the key appears nowhere
    assert all(a == f"Bearer {KEY}" for a in server.auth)


def test_config_errors(monkeypatch):
    monkeypatch.delenv("VLX_TEST_MISSING_KEY", raising=False)
    with pytest.raises(ConfigError, match="VLX_TEST_MISSING_KEY"):
        OpenAIPlanner("http://127.0.0.1:1/v1", "m", api_key_env="VLX_TEST_MISSING_KEY")
    with pytest.raises(ConfigError, match="base_url"):
        OpenAIPlanner("127.0.0.1:1/v1", "m")
    with pytest.raises(ConfigError, match="unknown option 'api_key'"):
        build_planner("openai", base_url="http://x/v1", model="m", api_key=KEY)
