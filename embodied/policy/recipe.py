"""``embodied_policy``: behaviour cloning of the plan-conditioned policy on collected demos
through the core Trainer (``vlx train configs/embodied/policy.yaml``; checkpointed and
resumable by the Trainer). Demos are collected into ``data.demos`` first when missing; the
evaluation at the end of training rolls the policy out through the harness. ``data.demos`` may
also be a LeRobotDataset v3.0 folder (``embodied.lerobot``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from embodied.policy.config import PolicyConfig, PolicyDataConfig, PolicyEvalConfig, build_policy_model
from vlx.train.recipe import Task, register_recipe


def ensure_demos(cfg: PolicyConfig) -> Path:
    from embodied.collect import CollectConfig, collect
    from embodied.lerobot_read import is_lerobot

    root = Path(cfg.data.demos)
    if not (root / "dataset.json").is_file() and not is_lerobot(root) and cfg.data.collect:
        cams = cfg.model.views() if cfg.model.obs == "image" else []
        collect(
            CollectConfig(
                benchmark=cfg.data.benchmark,
                episodes=cfg.data.episodes,
                out=str(root),
                tasks=cfg.data.tasks,
                seed=cfg.data.seed,
                cameras=cams,
                width=cfg.model.image_size,
                height=cfg.model.image_size,
                shadows=cfg.model.shadows,
                max_steps=cfg.data.max_steps,
            )
        )
    return root


def _check_rendering(cfg: PolicyConfig, root: Path, episodes: list) -> None:
    """The policy renders its camera at rollout as ``model``; the demos must match (frame size,
    shadows), or it would be evaluated on images unlike its training frames."""
    if cfg.model.obs != "image" or not episodes:
        return
    from vlx.config import ConfigError

    ep = episodes[0]
    for cam in cfg.model.views():
        shape = ep.rgb[cam].shape[1:3]
        if tuple(shape) != (cfg.model.image_size, cfg.model.image_size):
            raise ConfigError(
                f"model.image_size: {cfg.model.image_size}, but the demos in {root} have {shape[1]}x{shape[0]} frames"
            )
    shadows = ep.meta.get("shadows")  # None: demos from before the option record nothing, not checked
    if shadows is not None and bool(shadows) != cfg.model.shadows:
        raise ConfigError(
            f"model.shadows: {cfg.model.shadows}, but the demos in {root} were rendered with shadows={shadows}"
        )


@register_recipe("embodied_policy", PolicyConfig)
def build_embodied_policy(cfg: PolicyConfig) -> Task:
    from embodied.collect import load_demos
    from embodied.policy.data import DemoFrames, make_collate
    from vlx.data.errors import DataError

    if cfg.model.obs == "image":  # before any collection at that size
        from embodied.policy.vision import check_image_size

        check_image_size(cfg.model.image_encoder, cfg.model.image_size)
    root = ensure_demos(cfg)
    camera = cfg.model.views() if cfg.model.obs == "image" else None
    episodes = load_demos(
        root,
        benchmark=cfg.data.benchmark,
        tasks=cfg.data.tasks,
        cameras=camera or [],
        images=camera is not None,
        only_success=cfg.data.only_success,
        max_mib=cfg.data.max_demo_mib,
    )
    _check_rendering(cfg, root, episodes)
    if not episodes:
        raise DataError(f"{root}: no successful demos to train on (data.only_success is true)")
    data = DemoFrames(episodes, chunk=cfg.model.chunk, camera=camera, frames=cfg.model.frames)
    state_dim, action_dim = episodes[0].obs.shape[1], episodes[0].actions.shape[1]
    if cfg.model.proprio_dims > state_dim:
        from vlx.config import ConfigError

        raise ConfigError(f"model.proprio_dims: {cfg.model.proprio_dims} exceeds the demos' state size {state_dim}")
    model, cache = build_policy_model(cfg, state_dim, action_dim)
    model.set_normalization(*data.state_stats())
    if hasattr(model, "parameter_counts"):
        counts = model.parameter_counts()
        print(f"policy parameters ({cfg.model.arch}): " + ", ".join(f"{k} {v:,}" for k, v in counts.items()))
    bank_tokens, bank_mask = cache.features(data.texts)

    def evaluate(m: torch.nn.Module, device: torch.device) -> dict[str, Any]:
        out: dict[str, Any] = {
            "train_samples": len(data),
            "train_episodes": len(episodes),
            "plan_texts": len(data.texts),
        }
        if cfg.eval.episodes <= 0:
            return out
        from embodied.policy.evaluate import evaluate_policy  # heavy (sim); on use
        from embodied.policy.skill import PolicyRunner

        runner = PolicyRunner(m, cache, device, camera=cfg.model.views())
        res = evaluate_policy(
            runner,
            cfg.data.benchmark,
            cfg.data.tasks,
            cfg.eval.episodes,
            cfg.eval.modes,
            Path(cfg.train.output_dir) / "rollouts",
            seed=cfg.eval.seed,
            max_steps=cfg.eval.max_steps,
            fresh=True,
            progress=False,
            train_dir=cfg.train.output_dir,
        )
        m.train()  # the runner put it in eval mode; the Trainer restores train mode itself too
        for mode, r in res["modes"].items():
            out[f"success_{mode}"] = r["overall"]["success_rate"]
            for task, s in r["per_task"].items():
                out[f"success_{mode}/{task}"] = s["success_rate"]
        return out

    return Task(model=model, train_dataset=data, collate_fn=make_collate(bank_tokens, bank_mask), evaluate=evaluate)


__all__ = [
    "PolicyConfig",
    "PolicyDataConfig",
    "PolicyEvalConfig",
    "build_embodied_policy",
    "build_policy_model",
    "ensure_demos",
]
