"""One helper for the tests that run every recipe config (issues 17 and 18): tiny generated
data for each recipe (shared by every config of that recipe), the CLI's config path
(``load_recipe_config`` -> ``recipe.build`` -> ``Trainer``), a few steps.

``ROOT/configs/**.yaml`` are all run by the config-build test; ``*_tiny.yaml`` by the
2-process and bf16 tests. Configs that need another run first (the pointcloud teachers) list
it in ``NEEDS``; ``ordered`` puts it first."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
# accelerate_*.yaml are accelerate/DeepSpeed launcher configs, not recipe configs.
CONFIGS = sorted(
    p.relative_to(ROOT).as_posix() for p in (ROOT / "configs").rglob("*.yaml") if not p.name.startswith("accelerate_")
)
TINY = [c for c in CONFIGS if c.endswith("_tiny.yaml")]
# The pointcloud 3D pre-trainings distil from a trained image-text teacher.
TEACHER = "configs/pointcloud/image_text_tiny.yaml"


def ordered(configs: list[str]) -> list[str]:
    """Configs with the teacher first (when it is among them)."""
    return sorted(configs, key=lambda c: (c != TEACHER, c))


def _recipe_of(config: str) -> str:
    from vlx.config import read_yaml_with_extends

    return read_yaml_with_extends(str(ROOT / config))["recipe"]


def _tiny_clip(data: Path) -> Path:
    """A tiny random CLIP checkpoint under ``data`` standing in for a config's checkpoint
    directory; written once, atomically (the 2-process test's ranks may race to write it)."""
    import os
    import shutil
    import tempfile

    from _hf_ckpt import save_tiny_clip  # same folder as this file

    d = data / "tiny_clip"
    if not (d / "config.json").exists():
        data.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=data, prefix=".tiny_clip."))
        save_tiny_clip(tmp)
        try:
            os.rename(tmp, d)
        except OSError:  # another process got there first: its copy is the same
            shutil.rmtree(tmp, ignore_errors=True)
    return d


def overrides(config: str, data: Path, out: Path, steps: int, batch: int = 4) -> list[str]:
    """``--set`` items that make ``config`` run on tiny data under ``data`` for ``steps``."""
    recipe = _recipe_of(config)
    s = [
        f"train.output_dir={out}",
        f"train.max_steps={steps}",
        "train.epochs=1",
        f"train.batch_size={batch}",
        "train.grad_accum=1",
        "train.log_every=1",
        "train.progress=false",
        "train.tensorboard=false",
        "train.resume=none",
        "train.warmup_steps=0",
        "train.device=cpu",
        "train.num_threads=1",
    ]
    if recipe == "clip_shapes":
        s += [
            f"data.root={data}/shapes",
            "data.n_train=16",
            "data.n_test=8",
            "data.render_size=32",
            "eval_batch_size=8",
        ]
        from vlx.config import read_yaml_with_extends

        source = read_yaml_with_extends(str(ROOT / config)).get("model", {}).get("name_or_path")
        if source and "/" in str(source):  # a checkpoint directory (clip_finetune*): a tiny random CLIP
            s.append(f"model.name_or_path={_tiny_clip(data)}")
    elif recipe in ("pc_classify", "pc_image_text", "clip2point", "text4point"):
        s += [
            f"data.root={data}/primitives",
            "data.n_train_per_class=2",
            "data.n_test_per_class=1",
            "data.n_points=256",
        ]
        if recipe in ("pc_classify",):
            s += ["n_points=128", "eval_batch_size=8"]
        if recipe in ("clip2point", "text4point"):
            s += [f"teacher.ckpt={data}/runs/teacher", "n_points=128" if recipe == "text4point" else "few_shot.shots=1"]
        if recipe == "clip2point":
            s += ["few_shot.adapter_steps=2"]
    elif recipe.startswith("sg_"):
        s += [
            f"data.root={data}/rooms",
            "data.rooms.n_train=6",
            "data.rooms.n_val=2",
            "data.rooms.points_per_object=16",
            "data.graph.num_points=16",
            "eval_batch_size=8",
        ]
    elif recipe.startswith("video_"):
        s += [
            f"data.shapes_root={data}/moving_shapes",
            "data.n_train=16",
            "data.n_test=8",
            "data.render_size=32",
            "data.load.size=32",
            "data.load.sampler.num_frames=4",
            "eval_batch_size=8",
        ]
        if recipe == "video_llava":
            s += [
                "data.max_length=48",
                "data.max_test=4",
                "model.pool_shape=[4,2,2]",
                "tiny_size={width: 32, hidden: 64}",
                "max_new_tokens=4",
            ]
        elif recipe != "video_retrieval":
            s += [f"model.lm.tiny_dir={data}/tiny_lm", "model.pool_size=[4,2,2]", "max_length=24"]
            s += ["model.vision.kwargs={image_size: 32}"]
            from vlx.config import read_yaml_with_extends

            tower = read_yaml_with_extends(str(ROOT / config)).get("model", {}).get("vision_name_or_path")
            if tower:  # a CLIP/SigLIP checkpoint as the vision tower (captioning_clip*): a tiny random CLIP
                s.append(f"model.vision_name_or_path={_tiny_clip(data)}")
        else:
            s += ["model.dual.image.kwargs={image_size: 32}"]
            s += ["train.batch_size=2"]  # batches of caption groups (6 groups in 16 videos)
    elif recipe == "embodied_policy":
        from vlx.config import read_yaml_with_extends

        tasks = read_yaml_with_extends(str(ROOT / config)).get("data", {}).get("tasks") or ["reach-v3"]
        s += [
            # rendered demos apart (each config its own folder: image sizes and benchmarks differ)
            f"data.demos={data}/demos" + (f"_{Path(config).stem}" if "vision" in config else ""),
            f"data.tasks=[{tasks[0]}]",  # the config's own benchmark's first task (Meta-World or Kitchen)
            "data.episodes=1",
            "data.max_steps=16",
            "data.only_success=false",
            "eval.episodes=1",
            "eval.modes=[plan]",
            "eval.max_steps=2",
        ]
    return s


def build_config(config: str, data: Path, out: Path, steps: int = 3, extra: list[str] = ()):
    """``config`` through the CLI's path up to the Task: (typed config, task). Generates the
    recipe's tiny data under ``data`` when missing."""
    try:  # where the structure work moves it
        from vlx.train.recipe import load_recipe_config
    except ImportError:
        from vlx.train.recipe import load_recipe_config

    recipe, cfg = load_recipe_config(str(ROOT / config), [*overrides(config, data, out, steps), *extra])
    return cfg, recipe.build(cfg)


def train_built(config: str, cfg, task, data: Path, evaluate: bool = True) -> dict[str, Any]:
    """Train a built config; returns the per-step losses and the evaluation result."""
    from vlx.config import to_dict
    from vlx.train import Trainer
    from vlx.train.logging import read_jsonl

    if not evaluate:
        task.evaluate = None
    out = Path(cfg.train.output_dir)
    result = Trainer(cfg.train, task, config_dict=to_dict(cfg)).fit()
    rows = read_jsonl(out / "metrics.jsonl") if (out / "metrics.jsonl").is_file() else []
    loss = {r["step"]: r["loss"] for r in rows if "loss" in r}
    if config == TEACHER:  # the teacher of the 3D recipes
        teacher = data / "runs" / "teacher"
        teacher.parent.mkdir(parents=True, exist_ok=True)
        try:
            teacher.symlink_to(out)
        except FileExistsError:
            pass
    return {"config": config, "loss": loss, "eval": result}


def run_config(
    config: str, data: Path, out: Path, steps: int = 3, evaluate: bool = True, extra: list[str] = ()
) -> dict[str, Any]:
    """Build ``config`` through the CLI's path and train it for ``steps``."""
    cfg, task = build_config(config, data, out, steps, extra)
    return train_built(config, cfg, task, data, evaluate)


if __name__ == "__main__":  # python tests/vlx/recipe_runs.py DATA OUT [CONFIG ...]: timing aid
    import time

    data, out = Path(sys.argv[1]), Path(sys.argv[2])
    for i, c in enumerate(ordered(sys.argv[3:] or TINY)):
        t = time.perf_counter()
        try:
            r = run_config(c, data, out / str(i))["loss"]
        except Exception as e:  # noqa: BLE001  a timing aid: report and go on
            r = f"{type(e).__name__}: {e}"
        print(json.dumps({"config": c, "s": round(time.perf_counter() - t, 1), "loss": r}), flush=True)
