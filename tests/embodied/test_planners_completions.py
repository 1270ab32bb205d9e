"""The ``openai`` planner's LM-scoring mode through ``/v1/completions`` with echo + logprobs,
against a stub server on 127.0.0.1 implementing that API with a tiny deterministic language
model, so the scores and the chosen plan are known by hand."""

from __future__ import annotations

import json
import re

import pytest

from embodied.planners import build_planner
from embodied.planners.openai_score import continuation_logprob, score_context
from embodied.types import SkillSpec
from tests.embodied.stub_servers import StubServer, send

SKILLS = [
    SkillSpec("open", "open an articulated object", (("object", ("microwave", "slide_cabinet")),)),
    SkillSpec("reach", "reach the goal position"),
]
FAV, OTHER = -0.05, -5.0
TOKEN = re.compile(r"\s*\w+|\s*[^\w\s]|\s+")


def tiny_lm(text: str) -> tuple[list[str], list[float | None], list[int]]:
    """Tokens (a word or a punctuation mark with its leading spaces), their log-probabilities
    and character offsets. A word scores FAV if it is an instruction word not yet written in
    the plan before it, or "done" once every instruction word is written; other words score
    OTHER; punctuation and spaces FAV. The first token has no log-probability (null)."""
    instr = set(re.search(r"Instruction: (.*)\n", text).group(1).lower().split())
    plan_start = text.index("Plan, one skill per line:")
    tokens, lps, offs = [], [], []
    for m in TOKEN.finditer(text):
        tok, off = m.group(0), m.start()
        word = tok.strip().lower()
        if not tokens:
            lp = None
        elif not re.fullmatch(r"\w+", word):
            lp = FAV
        else:
            used = set(re.findall(r"\w+", text[plan_start:off].lower()))
            if word in instr - used or (word == "done" and instr <= used):
                lp = FAV
            else:
                lp = OTHER
        tokens.append(tok)
        lps.append(lp)
        offs.append(off)
    return tokens, lps, offs


def completions(h, req):
    body = req["body"]
    prompts = body["prompt"] if isinstance(body["prompt"], list) else [body["prompt"]]
    assert body["echo"] is True and body["logprobs"] == 1 and body["max_tokens"] == 0
    choices = []
    for i, p in enumerate(prompts):
        toks, lps, offs = tiny_lm(p)
        lp = {"tokens": toks, "token_logprobs": lps, "text_offset": offs, "top_logprobs": None}
        choices.append({"index": i, "text": p, "logprobs": lp, "finish_reason": "length"})
    choices.reverse()  # the planner must order by "index", not by position
    n = sum(len(tiny_lm(p)[0]) for p in prompts)
    send(h, json.dumps({"object": "text_completion", "choices": choices, "usage": {"prompt_tokens": n}}).encode())


@pytest.fixture
def server():
    with StubServer(completions) as s:
        yield s


def test_scoring_through_completions_chooses_by_continuation_logprob(server):
    p = build_planner("openai", base_url=server.url, model="m", mode="score", score_norm="mean")
    assert p.url == f"{server.url}/completions"
    plan = p.plan("open slide_cabinet", None, SKILLS)
    assert [str(s) for s in plan.steps] == ["open(object=slide_cabinet)"]
    assert plan.error_kind is None and plan.errors == []
    # step 1: " open ( object = slide_cabinet ) \n": 6 FAV tokens + "object" (OTHER), mean
    # step 2: " done \n": both FAV, so "done" wins over everything
    assert f"(logp {(6 * FAV + OTHER) / 7:.4f})" in plan.reasoning
    assert f"step 2: done (logp {FAV:.4f})" in plan.reasoning
    assert len(server.requests) == 2 and server.requests[0]["path"] == "/v1/completions"
    assert len(server.requests[0]["body"]["prompt"]) == 4  # 3 groundings + done, one request


def test_sum_mode(server):
    p = build_planner("openai", base_url=server.url, model="m", mode="score", score_norm="sum")
    plan = p.plan("open object slide_cabinet", None, SKILLS)
    assert [str(s) for s in plan.steps] == ["open(object=slide_cabinet)"]
    assert f"step 1: open(object=slide_cabinet) (logp {7 * FAV:.4f})" in plan.reasoning
    plan = p.plan("reach", None, SKILLS)  # " reach \n": 2 FAV; then "done" (2 FAV) beats a repeat
    assert [str(s) for s in plan.steps] == ["reach()"]
    assert f"step 1: reach (logp {2 * FAV:.4f}); step 2: done (logp {2 * FAV:.4f})" == plan.reasoning


def test_offsets_pick_only_the_continuation():
    context = "ab cd\n1."
    choice = {"logprobs": {"tokens": ["ab", " cd", "\n1", ".", " x", "\n"],
                           "token_logprobs": [None, -1.0, -2.0, -3.0, -0.5, -0.25],
                           "text_offset": [0, 2, 5, 7, 8, 10]}}  # fmt: skip
    assert continuation_logprob(choice, len(context)) == pytest.approx(-0.75)
    assert continuation_logprob(choice, len(context), "mean") == pytest.approx(-0.375)
    # a token straddling the boundary (".x" merged) counts once, as part of the continuation
    merged = {"logprobs": {"tokens": ["ab", " cd", "\n1", ". x", "\n"], "token_logprobs": [None, -1, -2, -4.0, -0.25],
                           "text_offset": [0, 2, 5, 7, 10]}}  # fmt: skip
    assert continuation_logprob(merged, len(context)) == pytest.approx(-4.25)
    assert score_context("do it", SKILLS).endswith("Plan, one skill per line:\n1.")


def test_server_without_logprobs_is_a_counted_parse_error():
    def no_logprobs(h, req):
        choices = [{"index": i, "text": "x"} for i, _ in enumerate(req["body"]["prompt"])]
        send(h, json.dumps({"choices": choices}).encode())

    with StubServer(no_logprobs) as srv:
        p = build_planner("openai", base_url=srv.url, model="m", mode="score")
        plan = p.plan("open slide_cabinet", None, SKILLS)
    assert plan.steps == [] and plan.error_kind == "parse_error"
    assert "echo + logprobs" in plan.errors[0].detail and p.stats.parse_errors == 1
