"""The trained policy as harness skills, and its evaluation with and without the plan.

``PolicyRunner`` fills the ``embodied.skills.Policy`` protocol (``act(obs, text)``) for a
trained ``PlanConditionedPolicy``; ``policy_skills(benchmark, runner, mode)`` wraps it in
``LearnedPolicySkill``s whose conditioning text is, per ``mode``:

* ``plan``: the plan step's text (``embodied.collect.plan_step_text``), what it was trained on;
* ``instruction``: the episode's bare instruction (a paraphrase; captured from the planner call);
* ``none``: the empty text (trained with text dropout, so in distribution).

``embodied.policy.evaluate.evaluate_policy`` runs the harness once per mode (kept apart so
that this module, which the harness imports, never imports the harness).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from embodied.collect import flatten_obs, plan_step_text
from embodied.skills import LearnedPolicySkill
from embodied.types import PlanStep

MODES = ("plan", "instruction", "none")


class PolicyRunner:
    """``act(obs, text) -> (A,) action`` in [-1, 1]. With action chunks (K > 1) it predicts
    K actions and executes the first ``execute`` of them before predicting again."""

    def __init__(
        self,
        model: Any,
        text_cache: Any,
        device: str | torch.device = "cpu",
        execute: int = 1,
        camera: str | list[str] | None = None,
    ):
        self.model = model.to(device).eval()
        self.text = text_cache
        self.device = torch.device(device)
        self.execute = max(1, min(int(execute), model.cfg.chunk))
        cams = [camera] if isinstance(camera, str) else list(camera or [])
        self.cameras = cams if model.cfg.obs == "image" and cams else None
        self._queue: list[np.ndarray] = []
        self._frames: list[torch.Tensor] = []  # image history (model.frames), cleared on reset
        self._env, self._rig = None, None

    @classmethod
    def from_run(
        cls, run_dir: str | Path, ckpt: str | Path | None = None, device: str = "cpu", execute: int = 1
    ) -> PolicyRunner:
        """A runner for the training run in ``run_dir`` (its ``config.yaml``; weights from
        ``ckpt`` or the run's latest checkpoint)."""
        from embodied.policy.config import PolicyConfig, build_policy_model
        from vlx.config import ConfigError, from_dict, read_yaml_with_extends
        from vlx.train.checkpoint import load_model_weights

        run = Path(run_dir)
        cfg_path = run / "config.yaml"
        if not cfg_path.is_file():
            raise ConfigError(f"{cfg_path}: not found; expected the output_dir of a `vlx train` run of embodied_policy")
        cfg = from_dict(PolicyConfig, read_yaml_with_extends(str(cfg_path)), where=str(cfg_path))
        model, cache = build_policy_model(cfg, state_dim=None)
        load_model_weights(model, ckpt or run)  # the run dir: its checkpoints/latest pointer
        return cls(model, cache, device, execute, camera=cfg.model.views() if cfg.model.obs == "image" else None)

    def reset(self, env: Any = None) -> None:
        self._queue, self._frames = [], []
        if self.cameras is not None and env is not None and env is not self._env:
            from embodied.cameras import env_rig

            if self._rig is not None:
                self._rig.close()
            size = self.model.cfg.image_size
            shadows = bool(self.model.cfg.shadows)  # rendered as the demos were
            where = f"policy cameras {self.cameras} on {getattr(getattr(env, 'task', None), 'name', 'the env')}"
            self._env, self._rig = env, env_rig(env, self.cameras, size, size, where=where, shadows=shadows)

    @torch.no_grad()
    def act(self, obs: Any, text: str) -> np.ndarray:
        history = self.model.cfg.frames > 1
        images = None
        if self.cameras is not None and (history or not self._queue):
            images = self._observe()  # with a history, every step's frame enters it
        if not self._queue:
            tokens, mask = self.text.features([text])
            state = torch.from_numpy(flatten_obs(obs))[None]
            chunk = self.model.predict(state.to(self.device), tokens.to(self.device), mask.to(self.device), images)[0]
            self._queue = [a for a in chunk[: self.execute].float().cpu().numpy()]
        return np.clip(self._queue.pop(0), -1.0, 1.0).astype(np.float32)

    def _observe(self) -> torch.Tensor:
        """The cameras' frames now, appended to the history: (1, F*V, 3, H, W) in [0, 1],
        oldest first, each time step's V views in order, the episode's first frames repeated
        before its start (as ``DemoFrames``)."""
        if self._rig is None:
            raise RuntimeError("image policy needs the env: the skill's reset(env, ...) got env=None (vector envs?)")
        from embodied.collect import sim_handles

        data = sim_handles(self._env)[1]
        rgb = np.stack([self._rig.render(data, cam, "rgb") for cam in self.cameras])
        frame = torch.from_numpy(rgb).permute(0, 3, 1, 2).float().div(255.0)  # (V, 3, H, W)
        F_ = self.model.cfg.frames
        self._frames = ((self._frames or [frame] * F_)[1:] + [frame]) if F_ > 1 else [frame]
        return torch.cat(self._frames)[None].to(self.device)


class PlanConditionedSkill(LearnedPolicySkill):
    """A ``LearnedPolicySkill`` that also hands the env to the policy on reset (image
    policies render their own camera from it)."""

    def reset(self, env: Any, args: dict[str, str]) -> None:
        self._text = self.text_fn(args)
        self.policy.reset(env)


class InstructionRecorder:
    """Wraps a planner and remembers the instruction of the latest ``plan`` call, which the
    ``instruction`` mode conditions on (skills only see plan-step arguments)."""

    def __init__(self, planner: Any):
        self.planner, self.instruction = planner, ""

    def set_ground_truth(self, steps: Any) -> None:
        if hasattr(self.planner, "set_ground_truth"):
            self.planner.set_ground_truth(steps)

    def plan(self, instruction: str, observation: Any, skills: Any) -> Any:
        self.instruction = instruction
        return self.planner.plan(instruction, observation, skills)

    def __getattr__(self, name: str) -> Any:  # the planner's other attributes (name, url, ...)
        if name == "planner":
            raise AttributeError(name)
        return getattr(self.planner, name)


def skill_success_fn(benchmark: Any, skill: str) -> Any:
    """When a learned skill's plan step is done, by the benchmark's own signal: Franka Kitchen
    (a benchmark with a subtask per skill, ``taskset``): the skill's subtask is among the
    episode's completed subgoals (``info['vlx_subgoals']``, the env's completion rule), so a
    multi-subtask plan moves on; otherwise (Meta-World, one task per episode) ``info['success']``."""
    taskset = getattr(benchmark, "taskset", None)
    if taskset is not None and hasattr(taskset, "subtask_of_skill"):
        subtask = taskset.subtask_of_skill(skill)
        return lambda info: subtask in info.get("vlx_subgoals", ())
    return lambda info: bool(info.get("success", 0.0) >= 1.0)


def policy_skills(
    benchmark: Any, runner: PolicyRunner, mode: str, recorder: InstructionRecorder | None = None
) -> dict[str, PlanConditionedSkill]:
    """One skill per skill spec of ``benchmark``, all driven by ``runner`` with ``mode``'s text."""
    from vlx.config import ConfigError

    if mode not in MODES:
        raise ConfigError(f"policy mode: expected one of {', '.join(MODES)}, got {mode!r}")
    if mode == "instruction" and recorder is None:
        raise ValueError("mode 'instruction' needs the InstructionRecorder that wraps the planner")
    skills = {}
    for spec in benchmark.skill_specs():
        ok = skill_success_fn(benchmark, spec.name)
        if mode == "plan":
            fn = lambda args, spec=spec: plan_step_text(PlanStep(spec.name, tuple(sorted(args.items()))), spec)  # noqa: E731
        elif mode == "instruction":
            fn = lambda args: recorder.instruction  # noqa: E731
        else:
            fn = lambda args: ""  # noqa: E731
        skills[spec.name] = PlanConditionedSkill(spec, runner, ok, fn)
    return skills


def skills_from_run(benchmark: Any, run_dir: str | Path, mode: str, planner: Any) -> tuple[dict, Any]:
    """``vlx embodied eval --skills learned --policy RUN``: every skill of ``benchmark`` run by
    the trained policy of ``run_dir`` with ``mode``'s text; returns (skills, the planner the
    harness should call: ``planner``, wrapped to record the instruction in mode
    ``instruction``)."""
    runner = PolicyRunner.from_run(run_dir)
    recorder = InstructionRecorder(planner) if mode == "instruction" else None
    return policy_skills(benchmark, runner, mode, recorder), (recorder or planner)


__all__ = [
    "InstructionRecorder",
    "MODES",
    "PlanConditionedSkill",
    "PolicyRunner",
    "policy_skills",
    "skill_success_fn",
    "skills_from_run",
]
