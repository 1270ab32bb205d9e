"""A planner over any OpenAI-compatible chat-completions endpoint (vLLM, llama.cpp server,
Ollama, hosted APIs): POST ``{base_url}/chat/completions``, JSON plan parsed from the answer.

Written with the stdlib (urllib) so the package needs no HTTP client dependency. Faults are
counted in ``planner.stats``: timeouts, refused connections and retryable HTTP statuses
(408/409/429/5xx) are retried with exponential backoff; when the retries are spent
``plan()`` raises ``PlannerRequestError`` (the harness counts it as a planner failure). A
reply that is not a chat-completions JSON, or whose content holds no JSON plan, is a plan
with a PARSE error, not an exception.

The API key is read from the environment variable named by ``api_key_env`` at each request;
it is never stored on the planner, never logged, and scrubbed from every message.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from embodied.planners.base import PlannerRequestError, build_plan_prompt, plan_from_text
from embodied.types import Plan, PlanError, PlanErrorKind, SkillSpec
from vlx.config import ConfigError

log = logging.getLogger(__name__)

_RETRY_STATUS = {408, 409, 429, 500, 502, 503, 504}


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
        for local servers). Missing variable -> ConfigError at construction.
    timeout_s: per-request socket timeout. max_retries: extra attempts after the first.
    backoff_s, backoff_max_s: sleep ``backoff_s * 2**attempt`` (capped) between attempts;
        a 429's Retry-After header is honoured up to the cap.
    temperature, max_tokens: sampling settings sent with each request.
    chain_of_thought: ask for a "Reasoning:" paragraph before the JSON.
    json_mode: send ``response_format={"type": "json_object"}`` (not every server has it).
    system_prompt: optional system message.
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
    ):
        if not base_url.startswith(("http://", "https://")):
            raise ConfigError(f"planner 'openai': key 'base_url': expected an http(s) URL, got {base_url!r}")
        if api_key_env is not None and not os.environ.get(api_key_env):
            raise ConfigError(f"planner 'openai': key 'api_key_env': environment variable {api_key_env!r} is not set")
        if max_retries < 0 or timeout_s <= 0:
            raise ConfigError(
                f"planner 'openai': need max_retries >= 0 and timeout_s > 0, got {max_retries}, {timeout_s}"
            )
        base = base_url.rstrip("/")
        self.url = base if base.endswith("/chat/completions") else base + "/chat/completions"
        self.model = model
        self.api_key_env = api_key_env
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.backoff_max_s = backoff_max_s
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.chain_of_thought = chain_of_thought
        self.json_mode = json_mode
        self.system_prompt = system_prompt
        self.stats = RequestStats()

    def __repr__(self) -> str:
        return (
            f"OpenAIPlanner(url={self.url!r}, model={self.model!r}, api_key_env={self.api_key_env!r}, "
            f"timeout_s={self.timeout_s}, max_retries={self.max_retries})"
        )

    def _key(self) -> str | None:
        return os.environ.get(self.api_key_env) if self.api_key_env else None

    def _scrub(self, msg: str) -> str:
        key = self._key()
        return msg.replace(key, "***") if key else msg

    def _post(self, body: dict[str, Any]) -> tuple[bytes, float]:
        """The response body of a successful POST (and its seconds), retrying transient
        faults; raises PlannerRequestError when they persist."""
        data = json.dumps(body).encode()
        last = ""
        attempts = 0
        for attempt in range(self.max_retries + 1):
            attempts = attempt + 1
            if attempt:
                self.stats.retries += 1
            headers = {"Content-Type": "application/json"}
            key = self._key()
            if key:
                headers["Authorization"] = f"Bearer {key}"
            req = urllib.request.Request(self.url, data=data, headers=headers, method="POST")
            del key, headers  # keep the key's lifetime to this request
            self.stats.requests += 1
            t0 = time.perf_counter()
            wait = self.backoff_s * (2**attempt)
            try:
                with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
                    return resp.read(), time.perf_counter() - t0
            except urllib.error.HTTPError as e:
                self.stats.http_errors += 1
                last = f"HTTP {e.code} {e.reason}"
                retry_after = e.headers.get("Retry-After") if e.headers else None
                e.close()
                if e.code not in _RETRY_STATUS:
                    break  # 400/401/404: retrying cannot help
                if retry_after and retry_after.replace(".", "", 1).isdigit():
                    wait = max(wait, float(retry_after))
            except TimeoutError as e:
                self.stats.timeouts += 1
                last = f"timed out after {self.timeout_s}s ({type(e).__name__})"
            except urllib.error.URLError as e:
                if isinstance(e.reason, (TimeoutError, socket.timeout)):
                    self.stats.timeouts += 1
                    last = f"timed out after {self.timeout_s}s"
                else:
                    self.stats.connection_errors += 1
                    last = f"connection failed: {e.reason}"
            except (ConnectionError, OSError) as e:  # reset mid-response, remote closed
                self.stats.connection_errors += 1
                last = f"connection failed: {type(e).__name__}: {e}"
            last = self._scrub(last)
            if attempt < self.max_retries:
                wait = min(wait, self.backoff_max_s)
                log.warning(
                    "planner request to %s failed (%s); retry %d/%d in %.2fs",
                    self.url,
                    last,
                    attempt + 1,
                    self.max_retries,
                    wait,
                )
                time.sleep(wait)
        self.stats.failures += 1
        msg = self._scrub(f"{self.url}: no answer after {attempts} attempt(s): {last}")
        log.error("planner request failed: %s", msg)
        raise PlannerRequestError(msg)

    def messages(self, instruction: str, skills: Sequence[SkillSpec]) -> list[dict[str, str]]:
        msgs = [{"role": "system", "content": self.system_prompt}] if self.system_prompt else []
        msgs.append({"role": "user", "content": build_plan_prompt(instruction, skills, self.chain_of_thought)})
        return msgs

    def plan(self, instruction: str, observation: Any, skills: Sequence[SkillSpec]) -> Plan:
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
            return Plan(steps=[], raw_text=self._scrub(raw.decode("utf-8", "replace")), errors=[err], latency_s=latency)
        usage = reply.get("usage") or {}
        plan = plan_from_text(
            content,
            latency_s=latency,
            prompt_tokens=int(usage.get("prompt_tokens") or 0),
            completion_tokens=int(usage.get("completion_tokens") or 0),
        )
        if any(e.kind == PlanErrorKind.PARSE for e in plan.errors):
            self.stats.parse_errors += 1
        return plan
