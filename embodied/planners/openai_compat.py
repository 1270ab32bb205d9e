"""A planner over any OpenAI-compatible chat-completions endpoint (vLLM, llama.cpp server,
Ollama, hosted APIs): POST ``{base_url}/chat/completions``, JSON plan parsed from the answer.

Requests go through ``embodied.planners.http_post`` (stdlib http.client: a deadline per
request, a reply size limit, redirects that never carry the key to another host). Faults
are counted in ``planner.stats``: timeouts, refused connections and retryable HTTP statuses
(408/409/429/5xx) are retried with exponential backoff within the call deadline; when the
retries are spent ``plan()`` raises ``PlannerRequestError`` whose ``error_kind`` (timeout,
http_error, connection, parse_error) is the harness's failure column. A reply that is not a
chat-completions JSON, or whose content holds no JSON plan, is a plan with a PARSE error and
``error_kind="parse_error"``, not an exception.

The API key is read from the environment variable named by ``api_key_env`` at each request;
it is never stored on the planner, never logged, and scrubbed (also JSON-/URL-escaped) from
every string ``plan()`` returns or raises, so a server that echoes it cannot put it in a record.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from embodied.planners.base import PlannerRequestError, build_plan_prompt, plan_from_text
from embodied.planners.http_post import (
    DEFAULT_MAX_REPLY_BYTES,
    Connections,
    Deadline,
    RequestFailed,
    Scrubber,
    check_endpoint,
    check_key,
    post_json,
)
from embodied.types import Plan, PlanError, PlanErrorKind, SkillSpec
from vlx.config import ConfigError

log = logging.getLogger(__name__)


@dataclass
class RequestStats:
    """Counters over the planner's lifetime (a report's "planner faults" row)."""

    requests: int = 0  # HTTP attempts made
    retries: int = 0
    timeouts: int = 0
    connection_errors: int = 0  # refused / unreachable
    http_errors: int = 0  # non-2xx statuses
    bad_responses: int = 0  # 2xx whose body is not a chat-completions JSON
    parse_errors: int = 0  # plans with a PARSE error (bad body or no JSON plan in the answer)
    failures: int = 0  # plan() calls that raised after the retries

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


class OpenAIPlanner:
    """Args:
    base_url: e.g. "http://127.0.0.1:8000/v1" (``/chat/completions`` is appended).
    model: the served model's name.
    api_key_env: name of the environment variable holding the key (None: no key, as
        for local servers). Missing variable, or a key with a control character (a
        trailing newline) -> ConfigError at construction (the message never shows the key).
    timeout_s: deadline of one HTTP request (connect, send, status, headers, body), not
        per socket read. max_retries: extra attempts after the first.
    call_timeout_s: deadline of one ``plan()`` call, all attempts and back-off included
        (None: only ``timeout_s`` per attempt). The harness lowers it to its own
        ``planner_timeout_s`` (``set_call_deadline``); no request is sent after it.
    backoff_s, backoff_max_s: sleep ``backoff_s * 2**attempt`` (capped) between attempts,
        only when the next attempt still fits before the call deadline; a 429's
        Retry-After header is honoured up to the cap.
    temperature, max_tokens: sampling settings sent with each request.
    chain_of_thought: ask for a "Reasoning:" paragraph before the JSON.
    json_mode: send ``response_format={"type": "json_object"}`` (not every server has it).
    system_prompt: optional system message.
    max_reply_bytes: a longer reply is cut off and counted as a parse error.
    allow_insecure_http: allow sending the key over plain http to a non-loopback host.
    mode: "generate" (chat completions, a JSON plan) or "score" (LM scoring of every
        admissible step through ``/completions`` with echo + logprobs; see openai_score).
    score_norm: score mode's "sum" (SayCan) or "mean" (per token) of the log-probabilities.
    max_steps: score mode's cap on plan length.
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key_env: str | None = None,
        timeout_s: float = 30.0,
        max_retries: int = 2,
        backoff_s: float = 0.5,
        backoff_max_s: float = 8.0,
        temperature: float = 0.0,
        max_tokens: int = 512,
        chain_of_thought: bool = False,
        json_mode: bool = False,
        system_prompt: str | None = None,
        call_timeout_s: float | None = None,
        max_reply_bytes: int = DEFAULT_MAX_REPLY_BYTES,
        allow_insecure_http: bool = False,
        mode: str = "generate",
        score_norm: str = "sum",
        max_steps: int = 8,
    ):
        who = f"planner {type(self).NAME!r}"
        if mode not in ("generate", "score"):
            raise ConfigError(f"{who}: key 'mode': expected 'generate' or 'score', got {mode!r}")
        if score_norm not in ("sum", "mean"):
            raise ConfigError(f"{who}: key 'score_norm': expected 'sum' or 'mean', got {score_norm!r}")
        if max_steps < 1:
            raise ConfigError(f"{who}: key 'max_steps': expected >= 1, got {max_steps}")
        if api_key_env is not None:
            key = os.environ.get(api_key_env)
            if not key:
                raise ConfigError(f"{who}: key 'api_key_env': environment variable {api_key_env!r} is not set")
            check_key(key, api_key_env)
        check_endpoint(base_url, api_key_env is not None, allow_insecure_http, who)
        if max_retries < 0 or timeout_s <= 0 or (call_timeout_s is not None and call_timeout_s <= 0):
            raise ConfigError(
                f"{who}: need max_retries >= 0 and timeout_s, call_timeout_s > 0, "
                f"got {max_retries}, {timeout_s}, {call_timeout_s}"
            )
        if max_reply_bytes < 1:
            raise ConfigError(f"{who}: max_reply_bytes: expected >= 1, got {max_reply_bytes}")
        base = base_url.rstrip("/")
        suffix = "/completions" if mode == "score" else "/chat/completions"
        self.url = base if base.endswith(suffix) else base + suffix
        self.mode, self.score_norm, self.max_steps = mode, score_norm, max_steps
        self.model = model
        self.api_key_env = api_key_env
        self.timeout_s = timeout_s
        self.call_timeout_s = call_timeout_s
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.backoff_max_s = backoff_max_s
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.chain_of_thought = chain_of_thought
        self.json_mode = json_mode
        self.system_prompt = system_prompt
        self.max_reply_bytes = max_reply_bytes
        self.stats = RequestStats()
        self._active: set[Connections] = set()
        self._lock = threading.Lock()

    NAME = "openai"

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(url={self.url!r}, model={self.model!r}, api_key_env={self.api_key_env!r}, "
            f"timeout_s={self.timeout_s}, max_retries={self.max_retries})"
        )

    # -- the harness's hooks
    def set_call_deadline(self, seconds: float) -> None:
        """Cap each ``plan()`` call at ``seconds`` (the harness's planner timeout)."""
        self.call_timeout_s = seconds if self.call_timeout_s is None else min(self.call_timeout_s, seconds)

    def cancel(self) -> None:
        """Cut every request in flight and stop their retries (a call the harness gave up on)."""
        with self._lock:
            active = list(self._active)
        for c in active:
            c.cancel_all()

    def _key(self) -> str | None:
        if not self.api_key_env:
            return None
        key = os.environ.get(self.api_key_env) or ""
        check_key(key, self.api_key_env)  # re-read each request: the variable may have changed
        return key

    def _scrubber(self) -> Scrubber:
        key = os.environ.get(self.api_key_env) if self.api_key_env else None
        return Scrubber([key] if key else [])

    def _scrub(self, msg: str) -> str:
        return self._scrubber()(msg)

    def _post(self, body: dict[str, Any]) -> tuple[bytes, float]:
        """The response body of a successful POST (and its seconds), retrying transient
        faults within the call deadline; raises PlannerRequestError (with ``error_kind``)
        when they persist."""
        call = Deadline(self.call_timeout_s)
        conns = Connections()
        with self._lock:
            self._active.add(conns)
        try:
            return self._attempts(body, call, conns)
        finally:
            with self._lock:
                self._active.discard(conns)

    def _attempts(self, body: dict[str, Any], call: Deadline, conns: Connections) -> tuple[bytes, float]:
        key = self._key()
        auth = f"Bearer {key}" if key else None
        del key
        last: RequestFailed | None = None
        attempts = 0
        for attempt in range(self.max_retries + 1):
            if conns.cancelled.is_set() or call.remaining() <= 0:
                last = last or RequestFailed("timeout", "call deadline passed before the first request")
                break
            attempts = attempt + 1
            if attempt:
                self.stats.retries += 1
            self.stats.requests += 1
            t0 = time.perf_counter()
            try:
                raw = post_json(self.url, body, call.earlier(self.timeout_s), auth, self.max_reply_bytes, conns)
                return raw, time.perf_counter() - t0
            except RequestFailed as e:
                last = e
                if e.kind == "timeout":
                    self.stats.timeouts += 1
                elif e.kind == "connection":
                    self.stats.connection_errors += 1
                elif e.kind == "http_error":
                    self.stats.http_errors += 1
                else:
                    self.stats.bad_responses += 1
            e = last
            if e.kind == "timeout":
                e.args = (f"timed out (request deadline {self.timeout_s}s)",)
            if not (e.retryable or e.kind == "timeout") or attempt == self.max_retries:
                break
            wait = min(max(self.backoff_s * (2**attempt), e.retry_after or 0.0), self.backoff_max_s)
            if wait >= call.remaining():
                break  # the next attempt would start after the call deadline
            log.warning(
                "planner request to %s failed (%s); retry %d/%d in %.2fs",
                self.url,
                self._scrub(str(e)),
                attempt + 1,
                self.max_retries,
                wait,
            )
            if conns.cancelled.wait(wait):
                break
        self.stats.failures += 1
        assert last is not None
        msg = self._scrub(f"{self.url}: no answer after {attempts} attempt(s): {last}")
        log.error("planner request failed: %s", msg)
        raise PlannerRequestError(msg, error_kind=last.kind)

    def messages(self, instruction: str, skills: Sequence[SkillSpec]) -> list[dict[str, str]]:
        msgs = [{"role": "system", "content": self.system_prompt}] if self.system_prompt else []
        msgs.append({"role": "user", "content": build_plan_prompt(instruction, skills, self.chain_of_thought)})
        return msgs

    def plan(self, instruction: str, observation: Any, skills: Sequence[SkillSpec]) -> Plan:
        """A plan with every string scrubbed of the key; failures raise a scrubbed
        ``PlannerRequestError`` whose ``error_kind`` is timeout / http_error / connection /
        parse_error (a plan that parses badly is returned with ``error_kind="parse_error"``)."""
        scrub = self._scrubber()
        try:
            plan = self._plan(instruction, observation, skills)
        except PlannerRequestError as e:
            raise PlannerRequestError(scrub(str(e)), error_kind=e.error_kind) from None
        except ConfigError:
            raise
        except Exception as e:  # noqa: BLE001  anything else still leaves no key behind
            raise PlannerRequestError(scrub(f"{type(e).__name__}: {e}"), error_kind="parse_error") from None
        return scrub.plan(plan)

    def _plan(self, instruction: str, observation: Any, skills: Sequence[SkillSpec]) -> Plan:
        if self.mode == "score":
            from embodied.planners.openai_score import plan_by_scoring

            return plan_by_scoring(self, instruction, skills)
        body: dict[str, Any] = {
            "model": self.model,
            "messages": self.messages(instruction, skills),
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
        }
        if self.json_mode:
            body["response_format"] = {"type": "json_object"}
        t0 = time.perf_counter()
        raw, _ = self._post(body)
        latency = time.perf_counter() - t0
        try:
            reply = json.loads(raw)
            content = reply["choices"][0]["message"]["content"]
            if not isinstance(content, str):
                raise TypeError(f"content is {type(content).__name__}")
        except (ValueError, KeyError, IndexError, TypeError) as e:
            self.stats.bad_responses += 1
            self.stats.parse_errors += 1
            snippet = self._scrub(raw[:80].decode("utf-8", "replace"))
            err = PlanError(
                PlanErrorKind.PARSE, None, f"not a chat-completions reply ({type(e).__name__}): {snippet!r}"
            )
            return Plan(
                steps=[],
                raw_text=raw.decode("utf-8", "replace"),
                errors=[err],
                latency_s=latency,
                error_kind="parse_error",
            )
        usage = reply.get("usage") or {}
        plan = plan_from_text(
            content,
            latency_s=latency,
            prompt_tokens=int(usage.get("prompt_tokens") or 0),
            completion_tokens=int(usage.get("completion_tokens") or 0),
        )
        if any(e.kind == PlanErrorKind.PARSE for e in plan.errors):
            self.stats.parse_errors += 1
            if not plan.steps:
                plan.error_kind = "parse_error"
        return plan
