"""LM scoring through a served model's ``/v1/completions`` (vLLM, llama.cpp's server): the
``openai`` planner's ``mode="score"``.

Each admissible (skill, args) grounding, plus "done", is a continuation " <step text>\\n" of
the scoring prompt (``build_score_prompt`` + "\\n1."), scored by the sum (or mean) of its
token log-probabilities given the prompt; the best is taken, step by step, until "done" wins
or ``max_steps`` (SayCan's "Say" term, LoTa-Bench's scoring; as ``hf_lm``'s score mode).
One request per step carries every option as a prompt list, with ``echo: true``,
``logprobs: 1`` and ``max_tokens: 0``, so the server returns the log-probabilities of the
prompt's own tokens. The continuation's tokens are found by character offset: a token
counts when it ends after the context (``text_offset + len(token) > len(context)``), so a
token merging the context's last character with the option's first is counted once; the
first token's ``null`` log-probability (no context) is skipped.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any

from embodied.planners.base import build_score_prompt, choose_greedily, enumerate_groundings, step_text
from embodied.types import Plan, PlanError, PlanErrorKind, PlanStep, SkillSpec


class ScoreReplyError(ValueError):
    """A /completions reply without what scoring needs (choices, logprobs, offsets)."""


def score_context(instruction: str, skills: Sequence[SkillSpec], history: Sequence[PlanStep] = ()) -> str:
    text = build_score_prompt(instruction, skills) + "\n1."
    for k, s in enumerate(history):
        text += f" {step_text(s)}\n{k + 2}."
    return text


def continuation_logprob(choice: dict, context_len: int, norm: str = "sum") -> float:
    """Sum (or mean) of the log-probabilities of the tokens of ``choice`` (one echoed
    /completions choice) that end after ``context_len`` characters."""
    lp = choice.get("logprobs") if isinstance(choice, dict) else None
    if not isinstance(lp, dict):
        raise ScoreReplyError("choice has no 'logprobs' object (does the server support echo + logprobs?)")
    tokens, values, offsets = lp.get("tokens"), lp.get("token_logprobs"), lp.get("text_offset")
    if not (isinstance(tokens, list) and isinstance(values, list) and isinstance(offsets, list)):
        raise ScoreReplyError("logprobs needs 'tokens', 'token_logprobs' and 'text_offset' lists")
    if not len(tokens) == len(values) == len(offsets):
        raise ScoreReplyError(f"logprobs lists differ in length ({len(tokens)}, {len(values)}, {len(offsets)})")
    picked = [
        float(v)
        for t, v, o in zip(tokens, values, offsets)
        if isinstance(t, str) and isinstance(o, int) and o + len(t) > context_len and v is not None
    ]
    if not picked:
        raise ScoreReplyError(f"no token after the context's {context_len} characters was echoed")
    return sum(picked) / len(picked) if norm == "mean" else sum(picked)


def plan_by_scoring(planner: Any, instruction: str, skills: Sequence[SkillSpec]) -> Plan:
    """The scoring loop; ``planner`` is an ``OpenAIPlanner`` (its ``_post``, ``model``,
    ``max_steps``, ``score_norm``). A reply that cannot be scored is a plan with a parse
    error (``error_kind="parse_error"``) holding the steps chosen so far."""
    t0 = time.perf_counter()
    steps: list[PlanStep] = []
    notes: list[str] = []
    usage = {"prompt_tokens": 0, "raw": b""}

    def score_step(history: list[PlanStep], texts: list[str]) -> list[float]:
        context = score_context(instruction, skills, history)
        body = {
            "model": planner.model,
            "prompt": [f"{context} {t}\n" for t in texts],
            "max_tokens": 0,
            "echo": True,
            "logprobs": 1,
            "temperature": 0.0,
        }
        raw, _ = planner._post(body)
        usage["raw"] = raw
        reply = json.loads(raw)
        choices = sorted(reply["choices"], key=lambda c: int(c.get("index", 0)))
        if len(choices) != len(texts):
            raise ScoreReplyError(f"{len(choices)} choices for {len(texts)} prompts")
        scores = [continuation_logprob(c, len(context), planner.score_norm) for c in choices]
        usage["prompt_tokens"] += int((reply.get("usage") or {}).get("prompt_tokens") or 0)
        return scores

    try:
        choose_greedily(enumerate_groundings(skills), planner.max_steps, score_step, steps, notes, digits=4)
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        planner.stats.parse_errors += 1
        detail = f"not a scorable /completions reply ({type(e).__name__}: {str(e)[:120]})"
        return Plan(
            steps=steps,
            raw_text=usage["raw"][:2000].decode("utf-8", "replace"),
            errors=[PlanError(PlanErrorKind.PARSE, len(steps), detail)],
            latency_s=time.perf_counter() - t0,
            reasoning="; ".join(notes),
            error_kind="parse_error",
        )
    return Plan(
        steps=steps,
        raw_text="\n".join(f"{i + 1}. {step_text(s)}" for i, s in enumerate(steps)),
        latency_s=time.perf_counter() - t0,
        prompt_tokens=usage["prompt_tokens"],
        reasoning="; ".join(notes),
    )
