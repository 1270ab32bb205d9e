"""Shared planner pieces: prompt building, JSON plan parsing, step validation and the
Embodied Agent Interface error taxonomy (Li et al., 2024, "Embodied Agent Interface").

Plans are parsed with ``json`` only; nothing a model writes is ever evaluated as code.
A parsed ``Plan`` keeps every step that has the shape of a step (a skill name plus string
arguments), including ones that name unknown skills, so executability can be measured;
``Plan.errors`` holds only what the planner found while planning (parse errors).
``classify_plan_errors`` gives the full taxonomy (``plan.errors`` carried over + per-step validation +
comparison with the ground truth), and ``validate_step`` tells the harness whether one step may be run.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from string import Template
from typing import Any

from embodied.types import Plan, PlanError, PlanErrorKind, PlanStep, SkillSpec

PROMPTS_DIR = Path(__file__).resolve().parent.parent / "prompts"

# The schema a generating planner is asked to follow (shown in the prompt verbatim).
PLAN_SCHEMA = '{"steps": [{"skill": "<skill name>", "args": {"<arg name>": "<value>"}}]}'

DONE = "done"  # the stop option of step-by-step scoring planners (SayCan's "done")


class PlannerRequestError(RuntimeError):
    """A remote planner could not produce an answer (timeouts, refused connection, HTTP
    errors) after its retries. The message never contains credentials. ``error_kind``: the
    harness's failure column (``embodied.types.PLANNER_ERROR_KINDS``) of the last attempt."""

    def __init__(self, message: str, error_kind: str = "connection"):
        super().__init__(message)
        self.error_kind = error_kind


# ----------------------------------------------------------------------------- prompts


def load_prompt(name: str) -> Template:
    """The template ``embodied/prompts/<name>.txt`` ($-placeholders, so JSON braces in the
    text need no escaping)."""
    path = PROMPTS_DIR / f"{name}.txt"
    if not path.is_file():
        known = sorted(p.stem for p in PROMPTS_DIR.glob("*.txt"))
        raise FileNotFoundError(f"{path}: no such prompt template; known: {known}")
    return Template(path.read_text())


def step_text(step: PlanStep | tuple[str, Mapping[str, str]]) -> str:
    """Canonical one-line text of a step: ``name`` or ``name(k=v, ...)``; used in prompts
    and as the continuation that scoring planners rank."""
    if isinstance(step, PlanStep):
        name, args = step.skill, step.arg_dict
    else:
        name, args = step
    if not args:
        return name
    return f"{name}(" + ", ".join(f"{k}={args[k]}" for k in sorted(args)) + ")"


def describe_skills(skills: Sequence[SkillSpec]) -> str:
    """One line per skill: ``- name(arg: v1|v2): description``."""
    lines = []
    for s in skills:
        sig = ", ".join(f"{a}: {'|'.join(vals)}" for a, vals in s.args)
        lines.append(f"- {s.name}({sig}): {s.description}" if sig else f"- {s.name}: {s.description}")
    return "\n".join(lines)


def build_plan_prompt(instruction: str, skills: Sequence[SkillSpec], chain_of_thought: bool = False) -> str:
    """The user message asking for a JSON plan (with a reasoning paragraph first if
    ``chain_of_thought``)."""
    tpl = load_prompt("plan_json_cot" if chain_of_thought else "plan_json")
    return tpl.substitute(instruction=instruction.strip(), skills=describe_skills(skills), schema=PLAN_SCHEMA)


def build_score_prompt(instruction: str, skills: Sequence[SkillSpec]) -> str:
    """The request whose continuations (``step_text`` of each grounding) a scoring planner
    ranks, one numbered line per step after "1."; the planner appends "1." itself (after
    the chat template's assistant header, when there is one)."""
    tpl = load_prompt("score")
    return tpl.substitute(instruction=instruction.strip(), skills=describe_skills(skills), done=DONE).rstrip()


def enumerate_groundings(skills: Sequence[SkillSpec]) -> list[PlanStep]:
    """Every admissible (skill, args) combination, in skill order then argument order:
    the closed set a scoring planner chooses from."""
    out: list[PlanStep] = []
    for s in skills:
        combos: list[tuple[tuple[str, str], ...]] = [()]
        for name, values in s.args:
            combos = [c + ((name, v),) for c in combos for v in values]
        for c in combos:
            args = tuple(sorted(c))
            out.append(PlanStep(skill=s.name, args=args, raw=step_text((s.name, dict(args)))))
    return out


# ----------------------------------------------------------------------------- parsing


@dataclass
class ParsedPlan:
    steps: list[PlanStep]
    errors: list[PlanError]
    reasoning: str


_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.S)


def choose_greedily(
    groundings: Sequence[PlanStep],
    max_steps: int,
    score_step: Any,
    steps: list[PlanStep],
    notes: list[str],
    digits: int = 4,
) -> None:
    """The scoring planners' greedy decoding (SayCan's "Say" term, LoTa-Bench's scoring):
    ``score_step(steps, texts)`` scores every grounding's step text plus "done" given the steps
    so far; the best is taken (the first on ties) until "done" wins or ``max_steps``. Appends to
    ``steps`` and ``notes`` in place, so a caller that catches ``score_step``'s exception still
    holds the steps chosen before it."""
    texts = [step_text(g) for g in groundings] + [DONE]
    while len(steps) < max_steps:
        scores = [float(s) for s in score_step(steps, texts)]
        k = max(range(len(scores)), key=scores.__getitem__)
        notes.append(f"step {len(steps) + 1}: {texts[k]} (logp {scores[k]:.{digits}f})")
        if k == len(groundings):  # "done" wins
            break
        steps.append(groundings[k])


def _json_candidates(text: str) -> list[tuple[int, Any]]:
    """Every JSON object/array that decodes starting at some '{' or '[' in ``text``, as
    (start index, value); models wrap JSON in prose and code fences."""
    dec = json.JSONDecoder()
    found = []
    i = 0
    while i < len(text):
        if text[i] in "{[":
            try:
                value, end = dec.raw_decode(text, i)
            except json.JSONDecodeError:
                i += 1
                continue
            found.append((i, value))
            i = end
        else:
            i += 1
    return found


def _step_from_item(item: Any, index: int) -> PlanStep | PlanError:
    raw = json.dumps(item, sort_keys=True) if not isinstance(item, str) else item
    if isinstance(item, str):  # a bare skill name is a forgivable shorthand
        name = item.strip()
        if not name:
            return PlanError(PlanErrorKind.PARSE, index, "empty step")
        return PlanStep(skill=name, args=(), raw=raw)
    if not isinstance(item, dict):
        return PlanError(PlanErrorKind.PARSE, index, f"step is a {type(item).__name__}, expected an object")
    name = item.get("skill", item.get("action"))
    if not isinstance(name, str) or not name.strip():
        return PlanError(PlanErrorKind.PARSE, index, "step has no string 'skill'")
    args = item.get("args", item.get("arguments", {}))
    if args is None:
        args = {}
    if not isinstance(args, dict):
        # Shape is wrong but the skill is known: keep it visible as a bad-arguments step.
        return PlanStep(skill=name.strip(), args=(("<invalid>", json.dumps(args)),), raw=raw)
    pairs = tuple(sorted((str(k), v if isinstance(v, str) else json.dumps(v)) for k, v in args.items()))
    return PlanStep(skill=name.strip(), args=pairs, raw=raw)


def parse_plan_text(text: str) -> ParsedPlan:
    """Parse a model's answer into steps. Accepts ``{"steps": [...]}`` (the last such object
    wins, so a chain-of-thought that quotes the schema first is fine), a bare list of steps,
    code fences, and prose around them. Text before the JSON is returned as reasoning.
    An answer with no such JSON yields one PARSE error; a malformed item yields a PARSE
    error for that item while the others are kept."""
    if not text or not text.strip():
        return ParsedPlan([], [PlanError(PlanErrorKind.PARSE, None, "empty answer")], "")
    candidates = _json_candidates(text)  # code fences are plain text to the scan
    plans = [(i, v["steps"]) for i, v in candidates if isinstance(v, dict) and isinstance(v.get("steps"), list)]
    if not plans:
        plans = [(i, v) for i, v in candidates if isinstance(v, list) and v and all(isinstance(x, dict) for x in v)]
    if not plans:
        snippet = text.strip().replace("\n", " ")[:80]
        return ParsedPlan(
            [], [PlanError(PlanErrorKind.PARSE, None, f"no JSON plan in answer: {snippet!r}")], text.strip()
        )
    start, items = max(plans, key=lambda p: p[0])
    steps, errors = [], []
    for k, item in enumerate(items):
        r = _step_from_item(item, k)
        (errors if isinstance(r, PlanError) else steps).append(r)
    reasoning = re.sub(r"```(?:json)?\s*$", "", _FENCE.sub("", text[:start]).strip()).strip()
    return ParsedPlan(steps, errors, reasoning)


def plan_from_text(text: str, **fields: Any) -> Plan:
    """``parse_plan_text`` wrapped into a ``Plan`` (extra fields: latency, tokens)."""
    p = parse_plan_text(text)
    return Plan(steps=p.steps, raw_text=text, errors=p.errors, reasoning=p.reasoning, **fields)


# ----------------------------------------------------------------------------- validation


def _step_key(step: PlanStep) -> tuple[str, tuple[tuple[str, str], ...]]:
    return (step.skill, tuple(sorted(step.args)))


def validate_step(step: PlanStep, skills: Sequence[SkillSpec], index: int | None = None) -> list[PlanError]:
    """Errors that make ``step`` not executable with ``skills`` (empty list = run it).
    Unknown skill -> HALLUCINATED_SKILL (HALLUCINATED_OBJECT when the name is an argument
    value, i.e. the model named an object instead of an action); unknown or missing
    argument -> BAD_ARGUMENTS; a value that is not admissible -> HALLUCINATED_OBJECT."""
    by_name = {s.name: s for s in skills}
    spec = by_name.get(step.skill)
    if spec is None:
        values = {v for s in skills for _, vals in s.args for v in vals}
        kind = PlanErrorKind.HALLUCINATED_OBJECT if step.skill in values else PlanErrorKind.HALLUCINATED_SKILL
        return [PlanError(kind, index, f"unknown skill {step.skill!r}")]
    errors = []
    admissible = spec.arg_values
    given = step.arg_dict
    for k, v in step.args:
        if k not in admissible:
            errors.append(PlanError(PlanErrorKind.BAD_ARGUMENTS, index, f"{step.skill}: unknown argument {k!r}={v!r}"))
        elif v not in admissible[k]:
            errors.append(
                PlanError(
                    PlanErrorKind.HALLUCINATED_OBJECT, index, f"{step.skill}: {k}={v!r} not in {list(admissible[k])}"
                )
            )
    for k in admissible:
        if k not in given:
            errors.append(PlanError(PlanErrorKind.BAD_ARGUMENTS, index, f"{step.skill}: missing argument {k!r}"))
    return errors


def _lcs_len(a: Sequence[Any], b: Sequence[Any]) -> int:
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b):
            cur.append(prev[j] + 1 if x == y else max(prev[j + 1], cur[j]))
        prev = cur
    return prev[-1]


def classify_plan_errors(
    plan: Plan,
    skills: Sequence[SkillSpec],
    ground_truth: Sequence[PlanStep] | None = None,
    affordances: Mapping[str, float] | None = None,
) -> list[PlanError]:
    """All Embodied-Agent-Interface errors of ``plan``:

    - the errors the planner recorded while planning (``plan.errors``: parse errors,
      a scoring planner's "nothing afforded");
    - per step, ``validate_step`` (hallucinated skill/object, bad arguments);
    - with ``affordances`` (skill name -> score in [0, 1]), AFFORDANCE for a valid step
      whose skill scores 0 in the current state (e.g. a Kitchen subtask already done);
    - with ``ground_truth``, comparing the valid steps as multisets of (skill, args):
      MISSING_STEP per ground-truth step absent from the plan, EXTRA_STEP per plan step
      not in the ground truth (repeats beyond the truth's count included), and
      WRONG_ORDER per shared step outside the longest common subsequence of the two orders.
    Execution-time affordance failures (a skill that cannot succeed) are the harness's to add.
    """
    errors = list(plan.errors)
    valid: list[tuple[int, PlanStep]] = []
    for i, step in enumerate(plan.steps):
        errs = validate_step(step, skills, i)
        errors += errs
        if not errs:
            valid.append((i, step))
    if affordances is not None:
        for i, step in valid:
            if affordances.get(step.skill, 1.0) <= 0.0:
                errors.append(
                    PlanError(PlanErrorKind.AFFORDANCE, i, f"{step_text(step)} is not afforded in this state")
                )
    if ground_truth is not None:
        gt = [_step_key(s) for s in ground_truth]
        got = [_step_key(s) for _, s in valid]
        gt_count, got_count = Counter(gt), Counter(got)
        for key, n in (gt_count - got_count).items():
            errors += [PlanError(PlanErrorKind.MISSING_STEP, None, f"missing {step_text((key[0], dict(key[1])))}")] * n
        extra_left = got_count - gt_count
        extras = []
        for i, s in reversed(valid):  # the first occurrences are the ones that match the truth
            k = _step_key(s)
            if extra_left[k] > 0:
                extra_left[k] -= 1
                extras.append(PlanError(PlanErrorKind.EXTRA_STEP, i, f"extra {step_text(s)}"))
        errors += extras[::-1]
        # Order is judged on the shared steps only (each kept up to its count in both).
        budget = gt_count & got_count

        def shared(seq: list) -> list:
            left = Counter(budget)
            out = []
            for k in seq:
                if left[k] > 0:
                    left[k] -= 1
                    out.append(k)
            return out

        a, b = shared(got), shared(gt)
        n_wrong = len(a) - _lcs_len(a, b)
        errors += [PlanError(PlanErrorKind.WRONG_ORDER, None, f"{n_wrong} step(s) out of order")] * n_wrong
    return errors


def count_errors(errors: Iterable[PlanError]) -> dict[str, int]:
    """Counts per ``PlanErrorKind`` value, every kind present (zeros included), for reports."""
    c = Counter(e.kind for e in errors)
    return {k.value: c.get(k, 0) for k in PlanErrorKind}


def executable_steps(plan: Plan, skills: Sequence[SkillSpec]) -> list[PlanStep]:
    """The steps of ``plan`` that pass ``validate_step``, in order."""
    return [s for i, s in enumerate(plan.steps) if not validate_step(s, skills, i)]


def coerce_step(x: PlanStep | Mapping[str, Any] | str | tuple) -> PlanStep:
    """A ground-truth step from a PlanStep, ``{"skill": .., "args": {..}}``, a skill name,
    or a (name, args-dict) pair."""
    if isinstance(x, PlanStep):
        return x
    if isinstance(x, str):
        return PlanStep(skill=x, raw=x)
    if isinstance(x, tuple) and len(x) == 2 and isinstance(x[0], str):
        name, args = x
    elif isinstance(x, Mapping) and isinstance(x.get("skill"), str):
        name, args = x["skill"], x.get("args") or {}
    else:
        raise ValueError(f"cannot read a plan step from {x!r}; expected a PlanStep, skill name or {{'skill', 'args'}}")
    pairs = tuple(sorted((str(k), str(v)) for k, v in dict(args).items()))
    return PlanStep(skill=name, args=pairs, raw=step_text((name, dict(pairs))))
