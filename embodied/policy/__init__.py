"""The plan-conditioned policies (EmbodiedGPT-style embodied-former + MLP/chunked action head):
``PlanConditionedPolicy`` on the simulator's state, ``VisionPolicy`` on camera RGB (with the
``concat`` baseline); their behaviour-cloning recipe ``embodied_policy`` and their harness
skills. Import ``embodied.policy.recipe`` to register the recipe."""

from embodied.policy.model import PlanConditionedPolicy, PolicyModelConfig
from embodied.policy.vision import VisionPolicy

__all__ = ["PlanConditionedPolicy", "PolicyModelConfig", "VisionPolicy"]
