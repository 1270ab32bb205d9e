"""Instruction sets for an evaluation: the benchmark's own (``paraphrases`` cycles each task's
description and paraphrases over episodes, ``canonical`` always uses the description) or a
file of your own, named and hashed so that the report and the run fingerprint say exactly
which instructions were used.

A file maps tasks to instructions, optionally with the expected plan (the ground truth the
plan errors and skill-choice accuracy are measured against; default: the task's own)::

    # YAML or JSON
    reach-v3: ["touch the goal spot", "move the gripper to the target"]
    push-v3:
      instructions: ["shove the puck to the goal"]
      plan: [push]                      # skill names or {skill: .., args: {..}}

    # JSONL: one instruction per line
    {"task": "reach-v3", "instruction": "touch the goal spot", "plan": ["reach"]}

Every problem is one ``DataError`` naming the file, the line and what was expected.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from vlx.data.errors import DataError

SUFFIXES = (".json", ".jsonl", ".yaml", ".yml")


@dataclass(frozen=True)
class Instruction:
    text: str
    plan: tuple[Any, ...] | None = None  # expected plan steps (coerced by the harness), or None
    line: int | None = None  # where it came from in the file


@dataclass
class InstructionSet:
    """``by_task``: task -> its instructions, cycled over episodes in order."""

    name: str
    sha256: str
    by_task: dict[str, list[Instruction]] = field(default_factory=dict)
    path: str | None = None

    def describe(self) -> dict[str, Any]:
        return dict(name=self.name, sha256=self.sha256, path=self.path, tasks=len(self.by_task))


def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()


def builtin_instructions(benchmark: Any, mode: str, tasks: list[str]) -> InstructionSet:
    """The benchmark's own instructions for ``tasks`` (``mode``: paraphrases | canonical)."""
    by_task = {}
    for name in tasks:
        texts = benchmark.instructions(name) if mode == "paraphrases" else [benchmark.task(name).instruction]
        by_task[name] = [Instruction(t) for t in texts]
    digest = _digest({t: [i.text for i in v] for t, v in by_task.items()})
    return InstructionSet(f"{benchmark.name}:{mode}", digest, by_task)


def _line_map(text: str) -> dict[str, int]:
    """Top-level key -> 1-based line, from the YAML node tree (JSON is read as YAML here)."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return {}
    if not isinstance(node, yaml.MappingNode):
        return {}
    return {k.value: k.start_mark.line + 1 for k, _ in node.value if isinstance(k, yaml.ScalarNode)}


def _strings(v: Any, where: str) -> list[str]:
    if isinstance(v, str):
        v = [v]
    if not isinstance(v, list) or not v or not all(isinstance(s, str) and s.strip() for s in v):
        raise DataError(f"{where}: expected a non-empty list of non-empty instruction strings, got {v!r}")
    return [s.strip() for s in v]


def _plan(v: Any, where: str) -> tuple[Any, ...] | None:
    if v is None:
        return None
    if not isinstance(v, list) or not v:
        raise DataError(f"{where}: 'plan' must be a non-empty list of steps (skill names or {{skill, args}})")
    for s in v:
        ok = isinstance(s, str) or (isinstance(s, dict) and isinstance(s.get("skill"), str))
        if not ok:
            raise DataError(f"{where}: plan step {s!r}: expected a skill name or {{skill: .., args: {{..}}}}")
    return tuple(v)


def _entry(v: Any, where: str, line: int | None) -> list[Instruction]:
    """One task's value in a JSON/YAML file: a list of strings, or a mapping with
    ``instructions`` (or Meta-World's ``description`` + ``paraphrases``) and ``plan``."""
    if isinstance(v, dict):
        unknown = set(v) - {"instructions", "plan", "description", "paraphrases"}
        if unknown:
            raise DataError(f"{where}: unknown key(s) {sorted(unknown)}; expected instructions, plan")
        if "instructions" in v:
            texts = _strings(v["instructions"], where)
        elif "description" in v:
            texts = _strings([v["description"], *(v.get("paraphrases") or [])], where)
        else:
            raise DataError(f"{where}: expected 'instructions: [..]'")
        plan = _plan(v.get("plan"), where)
    else:
        texts, plan = _strings(v, where), None
    return [Instruction(t, plan, line) for t in texts]


def load_instruction_file(path: str | Path) -> InstructionSet:
    p = Path(path)
    if p.suffix not in SUFFIXES:
        raise DataError(f"{p}: instruction file must end in {', '.join(SUFFIXES)}")
    if not p.is_file():
        raise DataError(f"{p}: instruction file not found")
    raw = p.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DataError(f"{p}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    by_task: dict[str, list[Instruction]] = {}
    if p.suffix == ".jsonl":
        for n, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            where = f"{p}: line {n}"
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"{where}: not valid JSON ({e.msg})") from None
            if not isinstance(rec, dict) or not isinstance(rec.get("task"), str):
                raise DataError(f'{where}: expected {{"task": .., "instruction": .., "plan": [..]}}')
            unknown = set(rec) - {"task", "instruction", "instructions", "plan"}
            if unknown:
                raise DataError(f"{where}: unknown key(s) {sorted(unknown)}; expected task, instruction, plan")
            texts = _strings(rec.get("instruction", rec.get("instructions")), where)
            plan = _plan(rec.get("plan"), where)
            by_task.setdefault(rec["task"], []).extend(Instruction(t, plan, n) for t in texts)
    else:
        try:
            data = json.loads(text) if p.suffix == ".json" else yaml.safe_load(text)
        except json.JSONDecodeError as e:
            raise DataError(f"{p}: line {e.lineno}: not valid JSON ({e.msg})") from None
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            at = f" line {mark.line + 1}:" if mark else ""
            raise DataError(f"{p}:{at} not valid YAML ({getattr(e, 'problem', e)})") from None
        if not isinstance(data, dict) or not data:
            raise DataError(f"{p}: expected a mapping task -> list of instructions at the top level")
        lines = _line_map(text)
        for task, v in data.items():
            line = lines.get(str(task))
            at = f" line {line}" if line else ""
            by_task[str(task)] = _entry(v, f"{p}:{at} task {task!r}", line)
    if not by_task:
        raise DataError(f"{p}: no instructions")
    return InstructionSet(p.stem, hashlib.sha256(raw).hexdigest(), by_task, str(p))


def check_tasks(instr: InstructionSet, known: list[str]) -> None:
    """DataError naming the file and line of the first task the benchmark does not have."""
    for task, items in instr.by_task.items():
        if task not in known:
            line = items[0].line if items else None
            at = f": line {line}" if line else ""
            raise DataError(
                f"{instr.path or instr.name}{at}: task {task!r} is not in the benchmark; known: {', '.join(known)}"
            )


def expected_plans(instr: InstructionSet, specs: Any) -> dict[tuple[str, int], tuple[Any, ...]]:
    """(task, instruction index) -> the expected plan (``PlanStep``s) that ``instr`` gives,
    checked against the skill specs: a step no skill can run is a DataError naming its line."""
    from embodied.planners import coerce_step, validate_step

    out = {}
    for task, items in instr.by_task.items():
        for k, it in enumerate(items):
            if it.plan is None:
                continue
            at = f"{instr.path}: line {it.line}" if it.line else str(instr.path)
            try:
                steps = tuple(coerce_step(s) for s in it.plan)
            except ValueError as e:
                raise DataError(f"{at}: {e}") from None
            for i, s in enumerate(steps):
                errs = validate_step(s, specs, i)
                if errs:
                    raise DataError(f"{at}: plan step {s.raw or s.skill!r}: {errs[0].detail}")
            out[(task, k)] = steps
    return out


__all__ = [
    "Instruction",
    "InstructionSet",
    "builtin_instructions",
    "check_tasks",
    "expected_plans",
    "load_instruction_file",
]
