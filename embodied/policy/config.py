"""Config of the plan-conditioned policy recipe (``embodied_policy``) and the model built from
it; shared by the training recipe (``embodied.policy.recipe``) and the harness skills that
load a trained run (``embodied.policy.skill``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from embodied.policy.model import PlanConditionedPolicy, PolicyModelConfig
from vlx.encoders import EncoderConfig
from vlx.tokenizers import TokenizerConfig
from vlx.train.recipe import RecipeConfig


@dataclass
class PolicyDataConfig:
    """demos: a directory written by ``vlx embodied collect`` (collected here when missing and
    ``collect`` is true, with ``episodes`` per task); ``only_success`` drops failed demos."""

    demos: str = "data/embodied/demos/reach-pickplace"
    benchmark: str = "metaworld-mt10"
    tasks: list[str] | None = field(default_factory=lambda: ["reach-v3", "pick-place-v3"])
    collect: bool = True
    episodes: int = 50
    seed: int = 0
    max_steps: int | None = None
    only_success: bool = True
    max_demo_mib: float = 2048.0  # a demo file decompressing to more is refused (shared folders)


@dataclass
class PolicyEvalConfig:
    """Rollouts at the end of training (``episodes`` per task and mode; 0 skips them)."""

    episodes: int = 5
    modes: list[str] = field(default_factory=lambda: ["plan", "none"])
    seed: int = 0
    max_steps: int | None = None


@dataclass
class PolicyConfig(RecipeConfig):
    model: PolicyModelConfig = field(default_factory=PolicyModelConfig)
    data: PolicyDataConfig = field(default_factory=PolicyDataConfig)
    eval: PolicyEvalConfig = field(default_factory=PolicyEvalConfig)
    text: EncoderConfig = field(default_factory=lambda: EncoderConfig(name="minilm", freeze=True))
    tokenizer: TokenizerConfig = field(default_factory=lambda: TokenizerConfig(name="minilm", max_length=32))


def build_policy_model(cfg: PolicyConfig, state_dim: int | None, action_dim: int = 4) -> tuple[torch.nn.Module, Any]:
    """The (untrained) policy (``PlanConditionedPolicy`` for states, ``VisionPolicy`` for
    ``model.obs: image``) and the frozen text-feature cache. ``state_dim=None`` reads the
    dimensions from the demos' benchmark (for loading a trained run)."""
    from embodied.policy.text import TextFeatureCache

    if state_dim is None:
        from embodied.envs import build_benchmark

        bench = build_benchmark(cfg.data.benchmark)
        env = bench.make_env((cfg.data.tasks or [bench.tasks()[0].name])[0])
        from embodied.collect import flatten_obs

        state_dim = int(flatten_obs(env.reset(seed=0)[0]).shape[0])
        action_dim = int(env.action_space.shape[0])
        env.close()
    cache = TextFeatureCache(cfg.text, cfg.tokenizer)
    torch.manual_seed(cfg.train.seed)  # model init is part of the seeded run
    if cfg.model.obs == "image":
        from embodied.policy.vision import VisionPolicy

        model = VisionPolicy(cfg.model, state_dim, action_dim, cache.dim, cache.length)
    else:
        model = PlanConditionedPolicy(cfg.model, state_dim, action_dim, cache.dim, cache.length)
    null_tokens, null_mask = cache.features([""])
    model.set_null_text(null_tokens[0], null_mask[0])
    return model, cache
