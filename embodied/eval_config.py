"""``HarnessConfig``: what one planner evaluation varies, loaded like every vlx config (YAML
file, then command-line flags, then ``--set key=value``; typed by ``vlx.config`` with errors
naming the key) and checked in one place (``HarnessConfig.__post_init__``).

The flags of ``vlx embodied eval`` are generated from the fields, one per field:
``--max-skill-steps`` sets ``max_skill_steps``; lists take ``a,b``; ``planner_args`` takes
``--planner-arg KEY=VALUE`` (repeatable, values parsed as YAML); booleans take
``--progress`` / ``--no-progress``.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from embodied.records import parse_episode_ids
from vlx.config import ConfigError, apply_overrides, from_dict, read_yaml_with_extends

INSTRUCTION_MODES = ("paraphrases", "canonical")


@dataclass
class HarnessConfig:
    """What one evaluation run varies (each field is also a flag: ``--field-name``)."""

    benchmark: str = "metaworld-mt10"
    planner: str = "saycan"
    planner_args: dict[str, Any] = field(default_factory=dict)
    skills: str = "scripted"
    policy: str | None = None
    policy_mode: str = "plan"
    episodes: int = 10
    seed: int = 0
    out: str | None = None
    new: bool = False
    tasks: list[str] | None = None
    num_envs: int = 1
    max_replans: int = 0
    planner_timeout_s: float = 60.0
    max_planner_failures: int | None = 5  # a dead endpoint fails the run (exit 1), not 0% success
    instructions: str = "paraphrases"
    max_steps: int | None = None
    max_skill_steps: int | None = None
    videos: int = 0
    video_episodes: list[str] | None = None
    video_size: int = 128
    video_shadows: bool = False
    progress: bool = True

    def __post_init__(self) -> None:
        _validate(self)


HELP = {
    "benchmark": "metaworld-mt10 | metaworld-mt50 | metaworld-mt1:<task> | kitchen | kitchen-single | kitchen-multi",
    "planner": "oracle | saycan | hf_lm | openai",
    "planner_args": "planner option KEY=VALUE (YAML value; repeatable)",
    "skills": "skill set kind (scripted | learned)",
    "policy": "skills learned: output_dir of a `vlx train` run of embodied_policy (state or vision policy)",
    "policy_mode": "skills learned: the policy's text: plan (the plan step's, as trained) | instruction | none",
    "episodes": "episodes per task (Meta-World: one goal each)",
    "seed": "run seed (episode seeds derive from it, the task and the episode)",
    "out": "run folder (default: runs/embodied/<benchmark>-<planner>-<fingerprint>)",
    "new": "if the run folder holds another configuration's run, start over in a fresh sibling folder",
    "tasks": "comma-separated subset of the benchmark's tasks",
    "num_envs": "lockstep vector envs (gymnasium AsyncVectorEnv)",
    "max_replans": "re-plans from execution feedback per episode",
    "planner_timeout_s": "seconds per planner call",
    "max_planner_failures": "stop the run (exit 1) after this many consecutive connection failures (default 5)",
    "instructions": "paraphrases | canonical | FILE (JSON, JSONL or YAML: task -> instructions)",
    "max_steps": "env steps per episode (default: the task's limit)",
    "max_skill_steps": "env steps per plan step (default: the benchmark's, 400 in Franka Kitchen)",
    "videos": "rollout mp4s: the first episode of the first VIDEOS tasks",
    "video_episodes": "also film these episodes: numbers (3,7: those of every task) or ids (push-v3/7)",
    "video_size": "rollout video frame size in pixels (square)",
    "video_shadows": "render shadows and reflections in videos (several times slower with software OpenGL)",
    "progress": "show a progress bar",
}


def _validate(c: HarnessConfig) -> None:
    """Every check of the config's own values (the task list is checked against the benchmark
    by the harness). Raises ``ConfigError`` naming the key."""
    for key in ("episodes", "num_envs", "video_size"):
        if getattr(c, key) < 1:
            raise ConfigError(f"{key}: expected >= 1, got {getattr(c, key)}")
    for key in ("max_replans", "videos"):
        if getattr(c, key) < 0:
            raise ConfigError(f"{key}: expected >= 0, got {getattr(c, key)}")
    if c.planner_timeout_s <= 0:
        raise ConfigError(f"planner_timeout_s: expected > 0, got {c.planner_timeout_s}")
    for key in ("max_steps", "max_skill_steps", "max_planner_failures"):
        v = getattr(c, key)
        if v is not None and v < 1:
            raise ConfigError(f"{key}: expected >= 1 or None, got {v}")
    if c.instructions not in INSTRUCTION_MODES and not Path(c.instructions).suffix:
        raise ConfigError(
            f"instructions: expected 'paraphrases', 'canonical' or a .json/.jsonl/.yaml file, got {c.instructions!r}"
        )
    if c.policy_mode not in ("plan", "instruction", "none"):
        raise ConfigError(f"policy_mode: expected plan, instruction or none, got {c.policy_mode!r}")
    if c.policy is not None and c.skills != "learned":
        raise ConfigError(f"policy: a trained policy runs only as skills 'learned', got skills {c.skills!r}")
    if c.tasks is not None and not c.tasks:
        raise ConfigError("tasks: expected task names or None (all tasks), got an empty list")
    parse_episode_ids(c.video_episodes)


# ----------------------------------------------------------------------------- flags


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _base_type(tp: Any) -> Any:
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    return args[0] if typing.get_origin(tp) in (typing.Union, types.UnionType) else tp


def add_config_arguments(p: argparse.ArgumentParser) -> None:
    """``CONFIG`` (optional YAML), ``--set KEY=VALUE`` and one flag per ``HarnessConfig`` field.
    Flags default to "not given" so that the YAML file's values stand unless overridden."""
    p.add_argument("config", nargs="?", default=None, help="YAML file of HarnessConfig fields")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key")
    hints = typing.get_type_hints(HarnessConfig)
    for f in dataclasses.fields(HarnessConfig):
        tp = _base_type(hints[f.name])
        kw: dict[str, Any] = dict(dest=f"cfg_{f.name}", default=argparse.SUPPRESS, help=HELP.get(f.name))
        if tp is bool:
            p.add_argument(_flag(f.name), action=argparse.BooleanOptionalAction, **kw)
        elif typing.get_origin(tp) is dict:  # one KEY=VALUE per flag; the flag is singular
            p.add_argument(_flag(f.name)[:-1], action="append", metavar="KEY=VALUE", **kw)
        elif typing.get_origin(tp) is list:
            p.add_argument(_flag(f.name), metavar="A,B", **kw)
        else:
            p.add_argument(_flag(f.name), metavar=f.name.upper(), **kw)


def _key_values(pairs: list[str], flag: str) -> dict[str, Any]:
    out = {}
    for item in pairs:
        if "=" not in item:
            raise ConfigError(f"{flag} {item!r}: expected KEY=VALUE")
        k, v = item.split("=", 1)
        try:
            out[k.strip()] = yaml.safe_load(v)
        except yaml.YAMLError as e:
            raise ConfigError(f"{flag} {item!r}: value is not valid YAML ({getattr(e, 'problem', e)})") from None
    return out


def flag_values(args: argparse.Namespace) -> dict[str, Any]:
    """The fields given as flags, as config values (still untyped; ``from_dict`` types them)."""
    hints = typing.get_type_hints(HarnessConfig)
    out: dict[str, Any] = {}
    for f in dataclasses.fields(HarnessConfig):
        if not hasattr(args, f"cfg_{f.name}"):
            continue
        raw = getattr(args, f"cfg_{f.name}")
        tp = _base_type(hints[f.name])
        if tp is bool or tp is str:
            out[f.name] = raw
        elif typing.get_origin(tp) is dict:
            out[f.name] = _key_values(raw, _flag(f.name)[:-1])
        elif typing.get_origin(tp) is list:
            out[f.name] = [x.strip() for x in raw.split(",") if x.strip()]
        else:
            try:
                out[f.name] = yaml.safe_load(raw)
            except yaml.YAMLError:
                out[f.name] = raw  # from_dict names the key and the expected type
    return out


def load_harness_config(
    path: str | Path | None = None, flags: dict[str, Any] | None = None, overrides: list[str] | tuple[str, ...] = ()
) -> HarnessConfig:
    """YAML file (optional) <- flags <- ``--set`` overrides -> a checked ``HarnessConfig``."""
    data = read_yaml_with_extends(path) if path else {}
    data.update(flags or {})
    where = str(path) if path else "embodied eval"
    data = apply_overrides(data, list(overrides), where=where)
    return from_dict(HarnessConfig, data, where=where)


def config_from_args(args: argparse.Namespace) -> HarnessConfig:
    return load_harness_config(getattr(args, "config", None), flag_values(args), getattr(args, "set", []))


__all__ = [
    "HELP",
    "INSTRUCTION_MODES",
    "HarnessConfig",
    "add_config_arguments",
    "config_from_args",
    "flag_values",
    "load_harness_config",
]
