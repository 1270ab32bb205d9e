"""Planners behind one interface, ``plan(instruction, observation, skills) -> Plan``, built
by name: ``build_planner("saycan")``, ``build_planner("hf_lm", path=..., mode="score")``,
``build_planner("openai", base_url=..., model=..., api_key_env="OPENAI_API_KEY")``,
``build_planner("oracle")`` (the harness passes ground truth via ``set_ground_truth``).

Heavy imports (torch models, transformers) happen inside the constructors' modules, which are
imported only when that planner is built.
"""

from __future__ import annotations

import inspect
import types
import typing
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


_SIMPLE = {int: (int,), float: (int, float), bool: (bool,), str: (str,)}


def _check_option_types(name: str, cls: type, kwargs: dict[str, Any]) -> None:
    """Options annotated int / float / bool / str (or ``X | None``) must have that type
    (``--planner-arg`` values are YAML: ``max_retries=two`` is a string)."""
    try:
        hints = typing.get_type_hints(cls.__init__)
    except Exception:  # noqa: BLE001  unresolvable annotations: nothing to check against
        return
    for k, v in kwargs.items():
        tp = hints.get(k)
        args = typing.get_args(tp) if typing.get_origin(tp) in (typing.Union, types.UnionType) else (tp,)
        if v is None and type(None) in args:
            continue
        allowed = [t for a in args for t in _SIMPLE.get(a, ())]
        if len(allowed) != sum(len(_SIMPLE.get(a, ())) for a in args) or not allowed:
            continue  # not a plain scalar option
        if isinstance(v, bool) and bool not in allowed or not isinstance(v, tuple(allowed)):
            want = " or ".join(a.__name__ for a in args if a is not type(None))
            raise ConfigError(f"planner {name!r}: option {k!r}: expected {want}, got {v!r}")


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
    _check_option_types(name, cls, kwargs)
    for k, p in params.items():
        plain = p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
        if k != "self" and plain and p.default is p.empty and k not in kwargs:
            raise ConfigError(f"planner {name!r}: missing option {k!r} (--planner-arg {k}=...)")
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
