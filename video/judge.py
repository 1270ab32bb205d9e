"""A judge model behind any OpenAI-compatible chat-completions endpoint (vLLM, llama.cpp,
Ollama, hosted APIs), for GPT-assisted video QA scoring as Video-ChatGPT (Maaz et al. 2023)
defines it: the judge sees question, reference and prediction, and answers a yes/no match
and an integer score 0-5 (QA), or a score 0-5 for one criterion (generation benchmark).

The prompts are files in ``video/prompts/`` (``--judge-prompt`` takes your own); their
wording is ours, following the protocol's inputs and output format.

Written with the stdlib (urllib) so no HTTP client dependency is needed. The key is read
from the environment variable you name, at each request, and is never stored, logged or
put in an error message; a key is refused over plain http to a non-local host and on
redirects (the request is not followed); replies are read up to ``max_reply_bytes`` and
within one deadline per request.
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import re
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from vlx.config import ConfigError

PROMPT_DIR = Path(__file__).resolve().parent / "prompts"
LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}


class JudgeError(RuntimeError):
    """A judge request that failed after its retries (one line, no key in it)."""


@dataclass
class JudgeConfig:
    base_url: str  # e.g. http://127.0.0.1:8000/v1 (``/chat/completions`` is appended)
    model: str  # the served model's name; written into every result and the report
    api_key_env: str | None = None  # name of the environment variable holding the key
    timeout_s: float = 120.0  # deadline for one request, connection to last byte
    max_retries: int = 2
    max_reply_bytes: int = 1 << 20
    temperature: float = 0.0
    max_tokens: int = 64


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):  # noqa: D401
        raise JudgeError(f"judge endpoint redirected ({code}) to another URL; not followed (set --judge-url to it)")


class Judge:
    """``chat(system, user) -> str``: one chat-completions call, retried on timeouts,
    connection errors and 408/429/5xx."""

    def __init__(self, cfg: JudgeConfig):
        u = urlparse(cfg.base_url)
        if u.scheme not in ("http", "https") or not u.hostname:
            raise ConfigError(f"judge url {cfg.base_url!r}: expected http(s)://host[:port]/path")
        if cfg.api_key_env is not None:
            _read_key(cfg.api_key_env)  # fails now, not at the first sample
            if u.scheme == "http" and u.hostname not in LOCAL_HOSTS:
                raise ConfigError(
                    f"judge url {cfg.base_url!r}: refusing to send an API key over plain http to a non-local host"
                )
        self.cfg = cfg
        self._opener = urllib.request.build_opener(_NoRedirect)

    def chat(self, system: str, user: str) -> str:
        body = {
            "model": self.cfg.model,
            "messages": [{"role": "system", "content": system}, {"role": "user", "content": user}],
            "temperature": self.cfg.temperature,
            "max_tokens": self.cfg.max_tokens,
        }
        headers = {"Content-Type": "application/json"}
        if self.cfg.api_key_env is not None:
            headers["Authorization"] = f"Bearer {_read_key(self.cfg.api_key_env)}"
        url = self.cfg.base_url.rstrip("/") + "/chat/completions"
        last = ""
        for attempt in range(self.cfg.max_retries + 1):
            if attempt:
                time.sleep(min(2.0**attempt * 0.25, 8.0))
            req = urllib.request.Request(url, json.dumps(body).encode(), headers, method="POST")
            try:
                raw = self._read(req)
            except urllib.error.HTTPError as e:
                last = f"HTTP {e.code}"
                if e.code in (408, 429) or e.code >= 500:
                    continue
                raise JudgeError(f"judge {url}: {last}") from None
            except (urllib.error.URLError, TimeoutError, OSError) as e:
                last = type(getattr(e, "reason", e)).__name__
                continue
            try:
                return json.loads(raw)["choices"][0]["message"]["content"] or ""
            except (ValueError, KeyError, IndexError, TypeError):
                raise JudgeError(f"judge {url}: reply is not a chat-completions JSON") from None
        raise JudgeError(f"judge {url}: failed after {self.cfg.max_retries + 1} attempts (last: {last})")

    def _read(self, req: urllib.request.Request) -> bytes:
        deadline = time.monotonic() + self.cfg.timeout_s
        with self._opener.open(req, timeout=self.cfg.timeout_s) as resp:
            chunks, n = [], 0
            while True:
                if time.monotonic() > deadline:
                    raise TimeoutError("judge reply deadline passed")
                chunk = resp.read(65536)
                if not chunk:
                    return b"".join(chunks)
                n += len(chunk)
                if n > self.cfg.max_reply_bytes:
                    raise JudgeError(f"judge reply exceeds {self.cfg.max_reply_bytes} bytes; cut off")
                chunks.append(chunk)


def _read_key(env: str) -> str:
    key = os.environ.get(env)
    if not key:
        raise ConfigError(f"judge API key: environment variable {env} is not set")
    if any(c.isspace() for c in key) or not key.isprintable():
        raise ConfigError(f"judge API key in {env} contains whitespace or control characters (e.g. a newline)")
    return key


# ---------------------------------------------------------------------------------------
# Prompts and replies
# ---------------------------------------------------------------------------------------


@dataclass
class JudgePrompt:
    """A prompt file: the system message, a line ``---``, the user template with
    ``{question}``, ``{answer}``, ``{prediction}`` (and ``{question2}``, ``{prediction2}``
    for consistency)."""

    name: str
    system: str
    user: str
    sha256: str

    @classmethod
    def load(cls, path: str | Path) -> JudgePrompt:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"{path}: judge prompt file not found")
        text = path.read_text()
        if "\n---\n" not in text:
            raise ConfigError(f"{path}: expected the system message, a line '---', then the user template")
        system, user = text.split("\n---\n", 1)
        return cls(path.stem, system.strip(), user.strip(), hashlib.sha256(text.encode()).hexdigest())

    def render(self, **fields: str) -> tuple[str, str]:
        try:
            return self.system, self.user.format(**fields)
        except (KeyError, IndexError) as e:
            raise ConfigError(f"judge prompt {self.name}: unknown placeholder {e}") from None


def builtin_prompt(name: str) -> JudgePrompt:
    return JudgePrompt.load(PROMPT_DIR / f"{name}.txt")


def parse_reply(text: str) -> dict[str, Any]:
    """{"pred": "yes" | "no" | None, "score": float | None} from a judge reply such as
    ``{'pred': 'yes', 'score': 4}``; a score outside 0-5 counts as missing."""
    out: dict[str, Any] = {"pred": None, "score": None}
    m = re.search(r"\{.*?\}", text, re.S)
    obj: Any = None
    if m:
        try:
            obj = ast.literal_eval(m.group(0))
        except (ValueError, SyntaxError):
            try:
                obj = json.loads(m.group(0))
            except ValueError:
                obj = None
    if isinstance(obj, dict):
        pred, score = obj.get("pred"), obj.get("score")
    else:  # be lenient with the layout, strict with the values
        pm = re.search(r"pred\W+(yes|no)\b", text, re.I)
        sm = re.search(r"score\W+(\d+(?:\.\d+)?)", text, re.I)
        pred, score = (pm.group(1) if pm else None), (sm.group(1) if sm else None)
    if isinstance(pred, str) and pred.strip().lower() in ("yes", "no"):
        out["pred"] = pred.strip().lower()
    try:
        s = float(score) if score is not None else None
        out["score"] = s if s is not None and 0.0 <= s <= 5.0 else None
    except (TypeError, ValueError):
        pass
    return out
