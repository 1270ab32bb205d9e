"""pointcloud's recipes, run by ``vlx train`` / ``vlx eval`` (configs in configs/pointcloud/):

* ``pc_classify``   supervised classification with a point encoder (top-1 on held-out clouds);
* ``pc_image_text`` the image-text model the 3D recipes bridge to: a core DualEncoder trained
                    CLIP-style on the primitives' RGB renders and captions (here no pretrained
                    CLIP is reachable, so this stands in for it; point ``clip2point.teacher``
                    at an ``hf_clip_vision``/``hf_clip_text`` config to use a real one); a
                    caption is a positive of every image it describes (``described_by_loss``);
* ``clip2point``    CLIP2Point image-depth pre-training; its evaluation is zero-shot
                    classification from depth views (``zero_shot_views``; the report adds the
                    few-shot views and CLIP2Point's 6) against prompted class texts, and
                    few-shot with the Dual-Path Adapter on K shots per class;
* ``text4point``    image-bridged point-text pre-training via pixel-point correspondences;
                    evaluated by zero-shot classification from point embeddings.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from pointcloud.data.primitives import CAPTION_TEMPLATES, COLORS, generate_primitives
from pointcloud.data.readers import PointCloudDataset
from pointcloud.encoders import PointEncoderConfig, build_point_encoder
from vlx.config import ConfigError
from vlx.data.errors import DataError
from vlx.encoders.base import EncoderConfig
from vlx.factory import get_tokenizer
from vlx.models.dual_encoder import DualEncoderConfig, build_dual_encoder
from vlx.tokenizers import TokenizerConfig, build_tokenizer
from vlx.train.recipe import RecipeConfig, Task, register_recipe


@dataclass
class PrimitivesConfig:
    """Where the procedural primitives live; generated there when missing and ``generate``."""

    root: str = "data/pointcloud/primitives"
    n_train_per_class: int = 100
    n_test_per_class: int = 30
    n_points: int = 1024
    render_size: int = 64
    seed: int = 0
    generate: bool = True


def ensure_primitives(cfg: PrimitivesConfig) -> Path:
    """The primitives under ``cfg.root``, generated when missing, and regenerated when the
    parameters recorded in ``params.json`` differ from ``cfg`` (a directory without that
    file is used as it is)."""
    import json

    root = Path(cfg.root)
    want = {
        "n_train_per_class": cfg.n_train_per_class,
        "n_test_per_class": cfg.n_test_per_class,
        "n_points": cfg.n_points,
        "render_size": cfg.render_size,
        "seed": cfg.seed,
    }
    meta = root / "params.json"
    have = json.loads(meta.read_text()) if meta.is_file() else None
    if not (root / "test.npz").is_file() or (have is not None and have != want):
        if not cfg.generate:
            what = "not found" if have is None else f"generated with {have}, config asks for {want}"
            raise DataError(f"{root}: primitives {what} and data.generate is false")
        generate_primitives(root, cfg.n_train_per_class, cfg.n_test_per_class, cfg.n_points, cfg.render_size, cfg.seed)
        meta.write_text(json.dumps(want))
    return root


def top1(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Top-1 accuracy in percent through the core's metric."""
    from vlx.metrics import topk_accuracy

    return float(topk_accuracy(logits, labels, ks=(1,))["top1"])


class PrimitivePairs(torch.utils.data.Dataset):
    """Primitives with their renders: ``{"points" (N, 3), "image" (3, S, S), "views" (2,),
    "label", "caption", "index"}``; images decoded once and kept (tiny datasets)."""

    def __init__(self, root: Path, split: str, image_size: int, transform=None):
        from vlx.data.image_text import read_caption_jsonl
        from vlx.data.transforms import load_image, load_image_with

        self.clouds = PointCloudDataset.from_primitives(root, split)
        self.records = read_caption_jsonl(root / f"{split}.jsonl")
        if len(self.records) != len(self.clouds):
            raise DataError(
                f"{root / (split + '.jsonl')}: {len(self.records)} records but {len(self.clouds)} clouds in {split}.npz"
            )
        if transform is None:
            self.images = torch.stack([load_image(root / r["image"], image_size) for r in self.records])
        else:  # a checkpoint teacher's own preprocessing (PIL -> tensor)
            self.images = torch.stack([load_image_with(root / r["image"], transform) for r in self.records])

    def __len__(self) -> int:
        return len(self.clouds)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {
            "points": self.clouds.points[i],
            "image": self.images[i],
            "views": self.clouds.views[i],
            "label": int(self.clouds.labels[i]),
            "caption": self.records[i]["caption"],
            "index": i,
        }


def collate_points(items: list[dict]) -> dict[str, torch.Tensor]:
    out = {"points": torch.stack([it["points"] for it in items]), "label": torch.tensor([it["label"] for it in items])}
    if "image" in items[0]:
        out["images"] = torch.stack([it["image"] for it in items])
        out["views"] = torch.stack([it["views"] for it in items])
    return out


# ----------------------------------------------------------------------------- supervised


@dataclass
class ClassifyConfig(RecipeConfig):
    data: PrimitivesConfig = field(default_factory=PrimitivesConfig)
    encoder: PointEncoderConfig = field(
        default_factory=lambda: PointEncoderConfig(
            "point_transformer",
            {"n_patches": 32, "patch_size": 32, "width": 64, "layers": 2, "heads": 2, "out_dim": 128},
        )
    )
    n_points: int = 512  # points per cloud the encoder sees (a random subset in training)
    eval_batch_size: int = 64


class SubsetPoints(torch.utils.data.Dataset):
    """Random ``n`` of each cloud's points per access (train) or the first ``n`` (eval)."""

    def __init__(self, base, n: int, random: bool):
        self.base, self.n, self.random = base, n, random

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int) -> dict:
        it = dict(self.base[i])
        p = it["points"]
        idx = torch.randperm(len(p))[: self.n] if self.random else torch.arange(min(self.n, len(p)))
        it["points"] = p[idx]
        return it


@register_recipe("pc_classify", ClassifyConfig)
def build_classify(cfg: ClassifyConfig) -> Task:
    from pointcloud.models.classifier import PointClassifier

    root = ensure_primitives(cfg.data)
    train = PointCloudDataset.from_primitives(root, "train")
    test = PointCloudDataset.from_primitives(root, "test")
    torch.manual_seed(cfg.train.seed)
    model = PointClassifier(build_point_encoder(cfg.encoder), len(train.class_names))
    # The classifier reads only the pooled output: the encoder's per-token projection (used
    # by Text4Point) gets no gradient here, which DDP without find_unused_parameters rejects.
    if hasattr(model.encoder, "token_proj"):
        model.encoder.token_proj.requires_grad_(False)

    @torch.no_grad()
    def evaluate(m, device) -> dict:
        pts = test.points[:, : cfg.n_points]
        logits = torch.cat(
            [m.logits(pts[s : s + cfg.eval_batch_size].to(device)) for s in range(0, len(pts), cfg.eval_batch_size)]
        )
        return {"top1": top1(logits.cpu(), test.labels), "chance": 100.0 / len(test.class_names), "n_test": len(test)}

    return Task(
        model=model, train_dataset=SubsetPoints(train, cfg.n_points, True), collate_fn=collate_points, evaluate=evaluate
    )


# ----------------------------------------------------------------------------- image-text teacher


def _default_dual() -> DualEncoderConfig:
    return DualEncoderConfig(
        image=EncoderConfig(name="vit", preset="tiny"),
        text=EncoderConfig(name="transformer", preset="tiny"),
        embed_dim=64,
    )


@dataclass
class ImageTextConfig(RecipeConfig):
    data: PrimitivesConfig = field(default_factory=PrimitivesConfig)
    model: DualEncoderConfig = field(default_factory=_default_dual)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    image_size: int = 32


class ImageTextModel(torch.nn.Module):
    def __init__(self, dual: torch.nn.Module, tokenizer):
        super().__init__()
        from vlx.losses import ClipLoss

        self.dual, self.tokenizer, self.loss = dual, tokenizer, ClipLoss()

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        out = self.dual(batch["images"], batch["input_ids"], batch["attention_mask"])
        if "caption_color" in batch:
            loss = described_by_loss(
                out.image_embeds,
                out.text_embeds,
                out.logit_scale,
                batch["label"],
                batch["image_color"],
                batch["caption_color"],
            )
        else:
            loss = self.loss(out.image_embeds, out.text_embeds, out.logit_scale, ids=batch.get("caption_ids"))
        return {"loss": loss, "logit_scale": out.logit_scale.detach()}


def described_by_loss(
    img: torch.Tensor,
    txt: torch.Tensor,
    logit_scale: torch.Tensor,
    shape: torch.Tensor,
    image_color: torch.Tensor,
    caption_color: torch.Tensor,
) -> torch.Tensor:
    """Symmetric multi-positive InfoNCE where caption j is a positive of image i whenever it
    describes it: same shape, and the same colour or none named (``caption_color`` -1).

    img, txt (N, E) normalised; shape, image_color, caption_color (N,) int. Why not the core
    ClipLoss with caption ids: ids make an equivalence relation, so "a box" would be a
    negative for every box image captioned "a red box" -- pushing shape out of the text
    embedding, the opposite of what prompted zero-shot by shape needs."""
    from vlx.losses.clip import gather_batch, multi_positive_nce, pairwise_logits

    img, txt, shape, image_color, caption_color = gather_batch(img, txt, shape, image_color, caption_color)
    logits = pairwise_logits(img, txt, logit_scale)  # rows images, columns captions; float32
    pos = (shape[:, None] == shape[None, :]) & (
        (caption_color[None, :] < 0) | (caption_color[None, :] == image_color[:, None])
    )
    return (multi_positive_nce(logits, pos) + multi_positive_nce(logits.T, pos.T)) / 2


def prompt_classifier(dual, tokenizer, class_names: list[str]) -> torch.Tensor:
    """Class text embeddings (C, E), ensembled over the caption templates and colours."""
    from pointcloud.models.clip2point import class_text_embeddings

    return class_text_embeddings(dual, tokenizer, class_names, list(CAPTION_TEMPLATES), {"color": list(COLORS)})


@register_recipe("pc_image_text", ImageTextConfig)
def build_image_text(cfg: ImageTextConfig) -> Task:
    root = ensure_primitives(cfg.data)
    tok = build_tokenizer(cfg.tokenizer)
    train = PrimitivePairs(root, "train", cfg.image_size)
    test = PrimitivePairs(root, "test", cfg.image_size)
    torch.manual_seed(cfg.train.seed)
    model = ImageTextModel(build_dual_encoder(cfg.model), tok)

    color_ids = {c: i for i, c in enumerate(COLORS)}

    def collate(items):
        b = collate_points(items)
        t = tok([it["caption"] for it in items])
        recs = [train.records[it["index"]] for it in items]
        b.update(
            input_ids=t["input_ids"],
            attention_mask=t["attention_mask"],
            image_color=torch.tensor([color_ids[r["color"]] for r in recs]),
            caption_color=torch.tensor([color_ids[r["color"]] if r["color"] in r["caption"] else -1 for r in recs]),
        )
        return b

    @torch.no_grad()
    def evaluate(m, device) -> dict:
        text = prompt_classifier(m.dual, tok, train.clouds.class_names)
        img = torch.cat([m.dual.encode_image(test.images[s : s + 128].to(device)) for s in range(0, len(test), 128)])
        return {"image_zero_shot_top1": top1((img @ text.T).cpu(), test.clouds.labels), "chance": 100.0 / len(text)}

    return Task(model=model, train_dataset=train, collate_fn=collate, evaluate=evaluate)


def load_teacher(model_cfg: DualEncoderConfig, ckpt: str) -> torch.nn.Module:
    """The frozen DualEncoder of a ``pc_image_text`` run (checkpoint dir or run dir), or, with
    ``teacher.model.name_or_path`` and no ``ckpt``, a user's CLIP/SigLIP checkpoint as it is."""
    from vlx.train.checkpoint import load_model_weights

    if not ckpt and model_cfg.name_or_path:
        return build_dual_encoder(model_cfg).eval().requires_grad_(False)
    if not ckpt:
        raise ConfigError(
            "teacher.ckpt: path to a pc_image_text run or checkpoint is required "
            "(or teacher.model.name_or_path: a CLIP/SigLIP checkpoint directory)"
        )
    holder = ImageTextModel(build_dual_encoder(model_cfg), None)
    load_model_weights(holder, ckpt)
    return holder.dual.eval().requires_grad_(False)


# ----------------------------------------------------------------------------- CLIP2Point


@dataclass
class TeacherConfig:
    model: DualEncoderConfig = field(default_factory=_default_dual)
    ckpt: str = ""
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)


@dataclass
class FewShotConfig:
    shots: int = 8  # per class
    adapter_steps: int = 300
    adapter_lr: float = 1e-2
    views: str = "vlx_10"
    seed: int = 0


@dataclass
class Clip2PointConfig(RecipeConfig):
    data: PrimitivesConfig = field(default_factory=PrimitivesConfig)
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    depth_encoder: EncoderConfig = field(default_factory=lambda: EncoderConfig(name="vit", preset="tiny"))
    image_size: int = 32  # depth and teacher image size
    jitter_degrees: float = 10.0
    temperature: float = 0.1
    zero_shot_views: str = "vlx_6"
    few_shot: FewShotConfig = field(default_factory=FewShotConfig)
    # depth images for pre-training, zero-shot and few-shot: "clip2point" (CLIP2Point's
    # renderer, its definition) or "vlx_depth" (vlx's depth_maps); pointcloud/render_clip2point.py
    render: str = "clip2point"


def few_shot_split(labels: torch.Tensor, shots: int, seed: int) -> torch.Tensor:
    """Indices of ``shots`` random examples per class (error if a class has fewer)."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for c in labels.unique().tolist():
        idx = (labels == c).nonzero().view(-1)
        if len(idx) < shots:
            raise ConfigError(f"few_shot.shots={shots} but class {c} has only {len(idx)} training examples")
        out.append(idx[torch.randperm(len(idx), generator=g)[:shots]])
    return torch.cat(out)


def _teacher_and_primitives(cfg):
    """What both image-bridged pre-trainings start from: the frozen image-text teacher, its
    tokenizer, paired (cloud, render) training data and the test clouds; seeds model init."""
    root = ensure_primitives(cfg.data)
    teacher = load_teacher(cfg.teacher.model, cfg.teacher.ckpt)
    src = cfg.teacher.model.name_or_path
    # A checkpoint teacher brings its tokenizer and sees renders preprocessed its own way.
    tok = get_tokenizer(src) if src else build_tokenizer(cfg.teacher.tokenizer)
    transform = teacher.preprocess if src else None
    train = PrimitivePairs(root, "train", cfg.image_size, transform)
    test = PointCloudDataset.from_primitives(root, "test")
    torch.manual_seed(cfg.train.seed)
    return teacher, tok, train, test


@register_recipe("clip2point", Clip2PointConfig)
def build_clip2point(cfg: Clip2PointConfig) -> Task:
    from pointcloud.models.clip2point import (
        Clip2PointPretrainer,
        DepthEncoder,
        multiview_depth_embeddings,
        train_adapter,
    )
    from pointcloud.render_clip2point import check_render

    check_render(cfg.render)
    teacher, tok, train, test = _teacher_and_primitives(cfg)
    depth = DepthEncoder(cfg.depth_encoder, teacher.embed_dim)
    model = Clip2PointPretrainer(teacher, depth, cfg.image_size, cfg.jitter_degrees, cfg.temperature, cfg.render)

    @torch.no_grad()
    def evaluate(m, device) -> dict:
        text = prompt_classifier(m.teacher, tok, train.clouds.class_names)
        fs = cfg.few_shot
        # Zero-shot from the configured views, from the few-shot views (the like-for-like
        # baseline of the adapter) and from vlx_6 (z-up front/right/back/left/top/bottom:
        # CLIP2Point's 6 directions on z-up data) for reference.
        sets = list(dict.fromkeys([cfg.zero_shot_views, fs.views, "vlx_6"]))
        test_feats = {
            v: multiview_depth_embeddings(m.depth, test.points.to(device), v, cfg.image_size, render=cfg.render)
            for v in sets
        }
        result: dict = {}
        for v in sets:
            zs = F.normalize(test_feats[v].mean(1), dim=-1) @ text.T
            result["zero_shot_top1" if v == cfg.zero_shot_views else f"zero_shot_top1_{v}"] = top1(
                zs.cpu(), test.labels
            )
        result["zero_shot_views"] = cfg.zero_shot_views
        shot_idx = few_shot_split(train.clouds.labels, fs.shots, fs.seed)
        shot_feats = multiview_depth_embeddings(
            m.depth, train.clouds.points[shot_idx].to(device), fs.views, cfg.image_size, render=cfg.render
        )
        with torch.enable_grad():
            adapter = train_adapter(
                shot_feats,
                train.clouds.labels[shot_idx].to(device),
                text,
                fs.adapter_steps,
                fs.adapter_lr,
                seed=fs.seed,
            )
        result[f"few_shot_{fs.shots}shot_top1"] = top1(adapter(test_feats[fs.views], text).cpu(), test.labels)
        result["few_shot_views"] = fs.views
        result["chance"] = 100.0 / len(text)
        result["n_test"] = len(test)
        return result

    return Task(
        model=model,
        train_dataset=train,
        collate_fn=collate_points,
        evaluate=evaluate,
        optimizer_params=lambda m: [p for p in m.parameters() if p.requires_grad],
    )


# ----------------------------------------------------------------------------- Text4Point


@dataclass
class Text4PointConfig(RecipeConfig):
    data: PrimitivesConfig = field(default_factory=PrimitivesConfig)
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    encoder: PointEncoderConfig = field(
        default_factory=lambda: PointEncoderConfig(
            "point_transformer",
            {"n_patches": 32, "patch_size": 32, "width": 64, "layers": 2, "heads": 2, "out_dim": 128},
        )
    )
    image_size: int = 32
    patch_size: int = 8  # the teacher ViT's patch size
    n_points: int = 512
    token_weight: float = 1.0


@register_recipe("text4point", Text4PointConfig)
def build_text4point(cfg: Text4PointConfig) -> Task:
    from pointcloud.models.text4point import Text4PointPretrainer

    teacher, tok, train, test = _teacher_and_primitives(cfg)
    model = Text4PointPretrainer(
        teacher, build_point_encoder(cfg.encoder), cfg.image_size, cfg.patch_size, cfg.token_weight
    )

    @torch.no_grad()
    def evaluate(m, device) -> dict:
        text = prompt_classifier(m.teacher, tok, train.clouds.class_names)
        pts = test.points[:, : cfg.n_points].to(device)
        emb = torch.cat([m.encode_points(pts[s : s + 64]) for s in range(0, len(pts), 64)])
        return {
            "point_zero_shot_top1": top1((emb @ text.T).cpu(), test.labels),
            "chance": 100.0 / len(text),
            "n_test": len(test),
        }

    return Task(
        model=model,
        train_dataset=SubsetPoints(train, cfg.n_points, True),
        collate_fn=collate_points,
        evaluate=evaluate,
        optimizer_params=lambda m: [p for p in m.parameters() if p.requires_grad],
    )
