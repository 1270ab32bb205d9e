"""``video_llava``: fine-tune a released video LLM (a local LLaVA / LLaVA-NeXT(-Video) /
LLaVA-OneVision / Qwen2-VL / PLLaVA directory, :mod:`video.models.hf_vlm`) on video
instruction data (:mod:`video.instruct`) the PLLaVA way, LoRA or full, and evaluate
captioning (CIDEr-D) and open-ended QA (exact match) with greedy answers.

With ``model.path`` empty a random tiny checkpoint (``tiny_kind``) is built under
``train.output_dir`` with a vocabulary over the training text: the untrained stand-in the
tiny recipe fine-tunes. With the data files empty the moving-shapes set is used, its
captions and QA written as one VideoInstruct-format file (``instruct_train.json``).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from video.datasets import AnnotationConfig, VideoDataset, load_annotations
from video.export import write_hf_dir
from video.instruct import InstructDataset, instruct_collate, load_instructions
from video.io import SamplerConfig, VideoLoadConfig
from video.models.hf_vlm import HFVideoLLMConfig, load_hf_video_llm
from vlx.train.recipe import RecipeConfig, Task, register_recipe


@dataclass
class InstructFileConfig:
    file: str = ""  # LLaVA-Video-178K / VideoInstruct JSON or JSONL; empty: moving shapes
    video_root: str | None = None  # default: the file's folder
    ext: str | None = None


@dataclass
class VideoLLaVADataConfig:
    train: InstructFileConfig = field(default_factory=InstructFileConfig)
    # Evaluation: QA in Video-ChatGPT / VideoInstruct json (exact match) and captions in
    # MSR-VTT json (CIDEr-D); empty file: the moving-shapes test split.
    test_qa: AnnotationConfig = field(default_factory=lambda: AnnotationConfig(format="qa", file=""))
    test_captions: AnnotationConfig = field(default_factory=lambda: AnnotationConfig(format="msrvtt", file=""))
    caption_prompt: str = "describe the video."
    # One frame-sampling spec for training and evaluation (evaluation: TSN -> uniform).
    load: VideoLoadConfig = field(
        default_factory=lambda: VideoLoadConfig(sampler=SamplerConfig("uniform", 16), size=336)
    )
    skip_bad: bool = True
    cache: bool = False
    max_length: int = 512
    max_test: int | None = None
    shapes_root: str = "data/moving_shapes"
    n_train: int = 464
    n_test: int = 64
    render_size: int = 64
    data_seed: int = 0


@dataclass
class VideoLLaVAConfig(RecipeConfig):
    model: HFVideoLLMConfig = field(default_factory=HFVideoLLMConfig)
    tiny_kind: str = "llava"  # with model.path empty: the tiny checkpoint class to build
    tiny_size: dict[str, int] = field(default_factory=lambda: {"width": 64, "hidden": 128})
    data: VideoLLaVADataConfig = field(default_factory=VideoLLaVADataConfig)
    eval_batch_size: int = 16
    max_new_tokens: int = 16


def moving_shapes_instructions(cfg: VideoLLaVADataConfig) -> Path:
    """Generates the moving-shapes set if needed and writes ``instruct_train.json``
    (VideoInstruct ``video_id``/``q``/``a``: one captioning entry per caption, and the QA)."""
    root = Path(cfg.shapes_root)
    if not (root / "annotation.json").is_file():
        from video.synthetic import generate_moving_shapes

        generate_moving_shapes(root, cfg.n_train, cfg.n_test, cfg.render_size, seed=cfg.data_seed, progress=True)
    out = root / "instruct_train.json"
    if not out.is_file():
        ann = json.loads((root / "annotation.json").read_text())
        train = {v["video_id"] for v in ann["videos"] if v.get("split") == "train"}
        entries = [
            {"video_id": s["video_id"], "q": cfg.caption_prompt, "a": s["caption"]}
            for s in ann["sentences"]
            if s["video_id"] in train
        ]
        entries += [
            {"video_id": e["video_name"], "q": e["Q"], "a": e["A"]}
            for e in json.loads((root / "qa_train.json").read_text())
        ]
        tmp = out.with_name(f".{out.name}.tmp{os.getpid()}")  # atomic: ranks may write it at once
        tmp.write_text(json.dumps(entries, indent=1))
        tmp.replace(out)
    return out


def _eval_load(load: VideoLoadConfig) -> VideoLoadConfig:
    s = load.sampler
    kind = "uniform" if s.kind == "tsn" else s.kind
    return VideoLoadConfig(
        SamplerConfig(kind, s.num_frames, s.fps, list(s.timestamps)), load.size, load.crop, load.backend
    )


def _test_sets(cfg: VideoLLaVADataConfig) -> dict[str, VideoDataset]:
    root = Path(cfg.shapes_root)
    qa = cfg.test_qa if cfg.test_qa.file else AnnotationConfig("qa", str(root / "qa_test.json"), str(root / "videos"))
    cap = cfg.test_captions
    if not cap.file:
        cap = AnnotationConfig("msrvtt", str(root / "annotation.json"), str(root / "videos"), "test")
    load = _eval_load(cfg.load)
    return {
        name: VideoDataset(load_annotations(a)[: cfg.max_test], load, skip_bad=False, cache=cfg.cache)
        for name, a in (("qa", qa), ("caption", cap))
    }


def evaluate_video_llava(
    model, tests: dict[str, VideoDataset], device, cfg: VideoLLaVAConfig, out_dir: Path
) -> dict[str, Any]:
    from video.recipes import evaluate_captioning

    out: dict[str, Any] = {}
    model.eval()
    for name, ds in tests.items():
        r = evaluate_captioning(
            model,
            ds,
            device,
            cfg.data.caption_prompt,
            cfg.eval_batch_size,
            out_dir / f"eval_samples_{name}.jsonl",
            max_new_tokens=cfg.max_new_tokens,
        )
        keep = ("CIDEr-D", "BLEU-4", "ROUGE-L", "distinct_predictions", "n_test", "examples")
        keep = keep + ("exact_match",) if name == "qa" else keep
        out.update({f"{name}_{k}": v for k, v in r.items() if k in keep})
    return out


def build_model(cfg: VideoLLaVAConfig, corpus: list[str] | None = None):
    """The model of a run: ``model.path`` or the tiny stand-in under ``train.output_dir``."""
    if not cfg.model.path:
        from video.models.tiny_vlm import build_tiny_vlm

        size = cfg.data.load.size
        path = build_tiny_vlm(
            Path(cfg.train.output_dir) / "tiny_checkpoint",
            cfg.tiny_kind,
            words=corpus or [],
            image_size=size,
            patch=size // 4,
            **cfg.tiny_size,
        )
        cfg.model.path = str(path)
    cuda = torch.cuda.is_available() and cfg.train.device in ("auto", "cuda") or cfg.train.device.startswith("cuda:")
    return load_hf_video_llm(cfg.model, cuda=cuda)


@register_recipe("video_llava", VideoLLaVAConfig)
def build_video_llava(cfg: VideoLLaVAConfig) -> Task:
    d = cfg.data
    train_file = d.train.file or str(moving_shapes_instructions(d))
    root = d.train.video_root if d.train.file else str(Path(d.shapes_root) / "videos")
    records = load_instructions(train_file, root, d.train.ext)
    corpus = [d.caption_prompt] + [t for r in records for qa in r["turns"] for t in qa]
    model = build_model(cfg, corpus)
    train = InstructDataset(records, d.load, skip_bad=d.skip_bad, cache=d.cache)
    tests = _test_sets(d)
    out_dir = Path(cfg.train.output_dir)
    return Task(
        model=model,
        train_dataset=train,
        collate_fn=instruct_collate(model, d.max_length),
        evaluate=lambda m, device: evaluate_video_llava(m, tests, device, cfg, out_dir),
        on_epoch_end=train.on_epoch_end,
        gradient_checkpointing=lambda m: m.hf.gradient_checkpointing_enable(
            gradient_checkpointing_kwargs={"use_reentrant": False}
        ),
        shard_modules=shard_units,
        export=lambda sd, out: export_state_dict(cfg, sd, out),
    )


def shard_units(model) -> list:
    """FSDP units: each LM decoder layer and the projector. The vision tower stays with the
    root unit (which also keeps the embeddings, final norm and LM head): wrapped on its
    own, transformers' hidden-state capture returns no ``hidden_states`` (FSDP2 swaps the
    module's class)."""
    m = model.hf.model
    units = list(m.language_model.layers)
    if hasattr(m, "multi_modal_projector"):
        units.append(m.multi_modal_projector)
    return units


def export_state_dict(cfg: VideoLLaVAConfig, state_dict: dict, out_dir: Path) -> None:
    """The Task's export hook after an FSDP run: the trainer's ``model.safetensors`` and,
    beside it, the plain HF directory ``hf/`` (LoRA merged)."""
    from vlx.train.fsdp import default_export

    default_export(state_dict, out_dir)
    model = build_model(cfg)
    model.load_state_dict(state_dict)
    write_hf_dir(model, Path(out_dir) / "hf", cfg.model.path)


def merge_lora_run(run: str | Path, out: str | Path, config: str) -> Path:
    """``vlx video merge-lora``: the run's config (``config``) and latest checkpoint -> a
    plain HF directory ``out``."""
    from vlx.cli import load_recipe_config
    from vlx.config import ConfigError
    from vlx.train.checkpoint import load_model_weights

    _, cfg = load_recipe_config(config, [])
    if cfg.recipe != "video_llava":
        raise ConfigError(f"{config}: recipe {cfg.recipe!r} is not video_llava")
    model = build_model(cfg)
    load_model_weights(model, run)
    return write_hf_dir(model, out, cfg.model.path)
