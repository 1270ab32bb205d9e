"""The plan-conditioned policy (EmbodiedGPT-style embodied-former + MLP/chunked action head),
its behaviour-cloning recipe ``embodied_policy`` and its harness skills. Import
``embodied.policy.recipe`` to register the recipe."""

from embodied.policy.model import PlanConditionedPolicy, PolicyModelConfig

__all__ = ["PlanConditionedPolicy", "PolicyModelConfig"]
