"""Video recipes for ``vlx train`` / ``vlx eval``: text-video retrieval (VideoCLIP with a
configurable temporal pooler), captioning and open-ended QA (VideoCaptioner). The default
data is the procedural moving-shapes set (generated on first use), read through the
MSR-VTT / Video-ChatGPT loaders like any real dataset."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from video.datasets import (
    AnnotationConfig,
    HardNegativeGroups,
    VideoDataset,
    collate_groups,
    collate_video,
    load_annotations,
)
from video.io import SamplerConfig, VideoLoadConfig
from video.models.captioner import VideoCaptionerConfig, build_video_captioner
from video.models.video_clip import VideoCLIPConfig, build_video_clip
from video.pooling import TemporalPoolingConfig
from vlx.encoders import EncoderConfig
from vlx.factory import get_tokenizer
from vlx.models.dual_encoder import DualEncoderConfig
from vlx.tokenizers import TokenizerConfig, build_tokenizer
from vlx.train.build import freeze_unused
from vlx.train.recipe import RecipeConfig, Task, register_recipe

SHAPES_ROOT = "data/moving_shapes"


@dataclass
class VideoDataConfig:
    # An empty ``file`` means the moving-shapes set under ``shapes_root`` (MSR-VTT json for
    # captions, Video-ChatGPT QA json for QA), generated when missing.
    train: AnnotationConfig = field(default_factory=lambda: AnnotationConfig(format="msrvtt", file=""))
    test: AnnotationConfig = field(default_factory=lambda: AnnotationConfig(format="msrvtt", file=""))
    load: VideoLoadConfig = field(default_factory=lambda: VideoLoadConfig(sampler=SamplerConfig("uniform", 8), size=32))
    skip_bad: bool = True
    cache: bool = True  # keep decoded frames in memory (small sets)
    # Batches of whole groups of videos whose captions are word-permutations of each other
    # (order-dependent hard negatives); train.batch_size then counts groups.
    hard_negative_groups: bool = False
    # Train/evaluate on cached image-tower features (``vlx video-features``) instead of
    # pixels; the image tower then stays as it was when the features were extracted.
    features_dir: str | None = None
    max_test: int | None = None
    # Generate moving shapes into ``shapes_root`` when the annotation file is missing.
    generate: bool = True
    shapes_root: str = SHAPES_ROOT
    n_train: int = 600
    n_test: int = 64
    render_size: int = 64
    data_seed: int = 0


def resolve_annotations(cfg: VideoDataConfig, qa: bool) -> tuple[AnnotationConfig, AnnotationConfig]:
    """The train/test annotation configs, with empty ``file`` filled in as moving shapes (and
    the set generated when its files are missing and ``generate`` is on)."""
    root = Path(cfg.shapes_root)
    out = []
    for split, a in (("train", cfg.train), ("test", cfg.test)):
        if a.file:
            out.append(a)
        elif qa:
            out.append(AnnotationConfig("qa", str(root / f"qa_{split}.json"), str(root / "videos"), None, a.ext))
        else:
            out.append(AnnotationConfig("msrvtt", str(root / "annotation.json"), str(root / "videos"), split, a.ext))
    if cfg.generate and any(not a.file for a in (cfg.train, cfg.test)) and not (root / "annotation.json").is_file():
        from video.synthetic import generate_moving_shapes

        generate_moving_shapes(root, cfg.n_train, cfg.n_test, cfg.render_size, seed=cfg.data_seed, progress=True)
    return out[0], out[1]


def _eval_load(cfg: VideoLoadConfig) -> VideoLoadConfig:
    """Evaluation always samples deterministically (TSN -> uniform)."""
    s = cfg.sampler
    kind = "uniform" if s.kind == "tsn" else s.kind
    return VideoLoadConfig(
        SamplerConfig(kind, s.num_frames, s.fps, list(s.timestamps)), cfg.size, cfg.crop, cfg.backend, cfg.num_threads
    )


def _datasets(cfg: VideoDataConfig, pairs: bool, seed: int, qa: bool = False) -> tuple[VideoDataset, VideoDataset]:
    train_ann, test_ann = resolve_annotations(cfg, qa)
    train = VideoDataset(
        load_annotations(train_ann), cfg.load, pairs=pairs, skip_bad=cfg.skip_bad, cache=cfg.cache, seed=seed
    )
    test_recs = load_annotations(test_ann)[: cfg.max_test]
    test = VideoDataset(test_recs, _eval_load(cfg.load), pairs=False, skip_bad=False, cache=cfg.cache)
    return train, test


def _batches(ds, batch_size: int):
    for s in range(0, len(ds), batch_size):
        yield collate_video([ds[i] for i in range(s, min(len(ds), s + batch_size))])


# ---------------------------------------------------------------------------------------
# Retrieval
# ---------------------------------------------------------------------------------------


@dataclass
class VideoRetrievalConfig(RecipeConfig):
    model: VideoCLIPConfig = field(
        default_factory=lambda: VideoCLIPConfig(
            dual=DualEncoderConfig(
                image=EncoderConfig(name="vit", preset="tiny"),
                text=EncoderConfig(name="transformer", preset="tiny"),
                embed_dim=64,
            ),
            pooling=TemporalPoolingConfig("seqtransf", layers=2, heads=4),
        )
    )
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    data: VideoDataConfig = field(default_factory=VideoDataConfig)
    eval_batch_size: int = 64


@torch.no_grad()
def evaluate_video_retrieval(model, test, tokenizer, device: torch.device, batch_size: int = 64) -> dict[str, Any]:
    """Text->video over every caption of every test video, video->text with all of a
    video's captions correct. Percent, with chance R@1."""
    from vlx.metrics import retrieval_metrics

    vids, caps, cap_video = [], [], []
    for b in _batches(test, batch_size):
        vids.append(model.encode_video(b["features" if "features" in b else "frames"].to(device)).float())
    for vi, r in enumerate(test.records):
        for c in r["captions"]:
            caps.append(c)
            cap_video.append(vi)
    txt = []
    for s in range(0, len(caps), batch_size):
        t = tokenizer(caps[s : s + batch_size])
        txt.append(model.encode_text(t["input_ids"].to(device), t["attention_mask"].to(device)).float())
    v, t = torch.cat(vids), torch.cat(txt)
    sim = t @ v.T  # (captions, videos)
    t2v = retrieval_metrics(sim, torch.tensor(cap_video))
    per_video: list[set[int]] = [set() for _ in range(len(v))]
    for ci, vi in enumerate(cap_video):
        per_video[vi].add(ci)
    v2t = retrieval_metrics(sim.T, per_video)
    out = {f"t2v_{k}": float(x) for k, x in t2v.items()}
    out.update({f"v2t_{k}": float(x) for k, x in v2t.items()})
    out.update({"n_videos": len(v), "n_captions": len(caps), "chance_t2v_R@1": 100.0 / len(v)})
    return out


def _tokenize_collate(tokenizer):
    def collate(items: list[dict]) -> dict[str, Any]:
        batch = collate_video(items)
        batch.update(tokenizer(batch.pop("caption")))
        batch.pop("video_id", None)
        return batch

    return collate


@register_recipe("video_retrieval", VideoRetrievalConfig)
def build_video_retrieval(cfg: VideoRetrievalConfig) -> Task:
    src = cfg.model.dual.name_or_path
    # Initialised from a preset or checkpoint: its tokenizer (the tokenizer section is not used).
    tokenizer = get_tokenizer(src) if src else build_tokenizer(cfg.tokenizer)
    train, test = _datasets(cfg.data, pairs=True, seed=cfg.train.seed)
    if cfg.data.features_dir:
        from video.features import FeatureDataset

        train = FeatureDataset(train.records, cfg.data.features_dir, pairs=True)
        test = FeatureDataset(test.records, cfg.data.features_dir, pairs=False)
        if test.missing:
            from vlx.data.errors import DataError

            raise DataError(
                f"{cfg.data.features_dir}: no features for {len(test.missing)} test videos, e.g. {test.missing[0]!r}"
            )
    model = build_video_clip(cfg.model)
    if cfg.data.features_dir:
        # Cached image-tower features: the tower itself never runs, so it is frozen (DDP
        # would otherwise find its parameters without a gradient).
        freeze_unused(model, ["dual.image_encoder.*"])
    pre = model.dual.preprocess
    want = pre.output_size if src and pre is not None else None
    if want is not None and tuple(want) != (cfg.data.load.size,) * 2:
        from vlx.config import ConfigError

        raise ConfigError(
            f"data.load.size: {cfg.data.load.size} px frames, but {src} expects {want[0]}x{want[1]} images; "
            f"set data.load.size={want[0]}"
        )
    collate = _tokenize_collate(tokenizer)
    if cfg.data.hard_negative_groups:
        train, collate = HardNegativeGroups(train), collate_groups(collate)
    return Task(
        model=model,
        train_dataset=train,
        collate_fn=collate,
        evaluate=lambda m, device: evaluate_video_retrieval(m, test, tokenizer, device, cfg.eval_batch_size),
        on_epoch_end=train.on_epoch_end,
    )


# ---------------------------------------------------------------------------------------
# Captioning and QA
# ---------------------------------------------------------------------------------------


@dataclass
class VideoCaptioningConfig(RecipeConfig):
    model: VideoCaptionerConfig = field(default_factory=VideoCaptionerConfig)
    data: VideoDataConfig = field(default_factory=VideoDataConfig)
    prompt: str = ""  # captioning prompt (empty: the LM captions right after the video)
    max_length: int = 48
    eval_batch_size: int = 32
    samples_file: str = "eval_samples.jsonl"  # predictions vs references, under output_dir


@dataclass
class VideoQAConfig(VideoCaptioningConfig):
    """Open-ended QA: annotations in a QA format (VideoInstruct / Video-ChatGPT json)."""


def _caption_collate(model, prompt: str, max_length: int):
    def collate(items: list[dict]) -> dict[str, Any]:
        batch = collate_video(items)
        if "question" in batch:
            prompts, targets = batch.pop("question"), batch.pop("answer")
        else:
            prompts, targets = [prompt] * len(items), batch["caption"]
        batch.update(model.make_targets(prompts, targets, max_length))
        if model.preprocess is not None:  # a checkpoint's geometry (PIL, per frame) in the loader workers
            batch["frames"] = model.prepare_frames(batch["frames"])
        for k in ("caption", "video_id"):
            batch.pop(k, None)
        return batch

    return collate


@torch.no_grad()
def evaluate_captioning(
    model,
    test: VideoDataset,
    device: torch.device,
    prompt: str,
    batch_size: int,
    samples_path: Path | None = None,
    **gen: Any,
) -> dict[str, Any]:
    """Generates for every test item; captioning: BLEU/ROUGE-L/CIDEr-D against all of a
    video's captions; QA: also exact-match accuracy of the answer."""
    from vlx.metrics import caption_metrics

    preds, refs, rows = [], [], []
    for b in _batches(test, batch_size):
        prompts = b.get("question", [prompt] * len(b["frames"]))
        out = model.generate(b["frames"].to(device), prompts, **gen)
        preds.extend(out)
    for i, p in enumerate(preds):
        rec = test.records[test.items[i][0]]
        ref = [rec["answer"]] if "answer" in rec else rec["captions"]
        refs.append(ref)
        rows.append(
            {"video": rec["video_id"], "question": rec.get("question", prompt), "prediction": p, "references": ref}
        )
    result = {k: float(v) for k, v in caption_metrics(preds, refs).items()}
    if any("answer" in test.records[j] for j, _ in test.items):
        norm = lambda s: " ".join(s.lower().strip(" .").split())
        result["exact_match"] = 100.0 * sum(norm(p) == norm(r[0]) for p, r in zip(preds, refs)) / len(preds)
    result["n_test"] = len(preds)
    result["distinct_predictions"] = len(set(preds))  # 1 = the model ignores the video
    result["examples"] = [f"{r['prediction']!r} | ref {r['references'][0]!r}" for r in rows[:3]]
    if samples_path is not None:
        samples_path.parent.mkdir(parents=True, exist_ok=True)
        samples_path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return result


def _build_captioning_task(cfg: VideoCaptioningConfig, qa: bool) -> Task:
    train, test = _datasets(cfg.data, pairs=True, seed=cfg.train.seed, qa=qa)
    if not Path(cfg.model.lm.tiny_dir).is_absolute() and not cfg.model.lm.path:
        cfg.model.lm.tiny_dir = str(Path(cfg.train.output_dir) / Path(cfg.model.lm.tiny_dir).name)
    corpus = [cfg.prompt] + [
        t for r in train.records for t in (r.get("captions", []) + [r.get("question", ""), r.get("answer", "")])
    ]
    model = build_video_captioner(cfg.model, corpus)
    samples = Path(cfg.train.output_dir) / cfg.samples_file
    return Task(
        model=model,
        train_dataset=train,
        collate_fn=_caption_collate(model, cfg.prompt, cfg.max_length),
        evaluate=lambda m, device: evaluate_captioning(m, test, device, cfg.prompt, cfg.eval_batch_size, samples),
        on_epoch_end=train.on_epoch_end,
    )


@register_recipe("video_captioning", VideoCaptioningConfig)
def build_video_captioning(cfg: VideoCaptioningConfig) -> Task:
    return _build_captioning_task(cfg, qa=False)


@register_recipe("video_qa", VideoQAConfig)
def build_video_qa(cfg: VideoQAConfig) -> Task:
    return _build_captioning_task(cfg, qa=True)
