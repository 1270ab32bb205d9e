"""Planners behind one interface, ``plan(instruction, observation, skills) -> Plan``, built
by name: ``build_planner("saycan")``, ``build_planner("hf_lm", path=..., mode="score")``,
``build_planner("openai", base_url=..., model=..., api_key_env="OPENAI_API_KEY")``,
``build_planner("oracle")`` (the harness passes ground truth via ``set_ground_truth``).

Heavy imports (torch models, transformers) happen inside the constructors' modules, which are
imported only when that planner is built.
"""

from __future__ import annotations

import inspect
from importlib import import_module
from typing import Any

from embodied.planners.base import (
    DONE,
    PlannerRequestError,
    build_plan_prompt,
    build_score_prompt,
    classify_plan_errors,
    coerce_step,
    count_errors,
    enumerate_groundings,
    executable_steps,
    parse_plan_text,
    plan_from_text,
    step_text,
    validate_step,
)
from vlx.config import ConfigError
from vlx.registry import Registry

PLANNERS: Registry[Any] = Registry("planner")

# name -> "module:Class"; resolved lazily so `import embodied.planners` stays light.
_LAZY = {
    "oracle": "embodied.planners.oracle:OraclePlanner",
    "saycan": "embodied.planners.saycan:SayCanPlanner",
    "hf_lm": "embodied.planners.hf_lm:HFLMPlanner",
    "openai": "embodied.planners.openai_compat:OpenAIPlanner",
}


def _lazy(target: str):
    def construct(**kwargs: Any):
        mod, cls = target.split(":")
        return getattr(import_module(mod), cls)(**kwargs)

    construct.target = target  # type: ignore[attr-defined]
    return construct


for _name, _target in _LAZY.items():
    PLANNERS.register(_name, _lazy(_target))


def planner_class(name: str) -> type:
    ctor = PLANNERS.get(name)
    target = getattr(ctor, "target", None)
    if target is None:
        return ctor
    mod, cls = target.split(":")
    return getattr(import_module(mod), cls)


def build_planner(name: str, **kwargs: Any) -> Any:
    """The planner registered as ``name`` built with ``kwargs``; an unknown name or option
    raises ``ConfigError`` naming it and listing what is known."""
    try:
        cls = planner_class(name)
    except KeyError as e:
        raise ConfigError(f"planner: {e.args[0]}") from None
    params = inspect.signature(cls.__init__).parameters
    if not any(p.kind == p.VAR_KEYWORD for p in params.values()):
        known = [k for k in params if k != "self"]
        for k in kwargs:
            if k not in known:
                raise ConfigError(f"planner {name!r}: unknown option {k!r}; known: {', '.join(known)}")
    return cls(**kwargs)


__all__ = [
    "DONE",
    "PLANNERS",
    "PlannerRequestError",
    "build_plan_prompt",
    "build_planner",
    "build_score_prompt",
    "classify_plan_errors",
    "coerce_step",
    "count_errors",
    "enumerate_groundings",
    "executable_steps",
    "parse_plan_text",
    "plan_from_text",
    "planner_class",
    "step_text",
    "validate_step",
]
