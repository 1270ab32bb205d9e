"""CLIP-style contrastive training on an image-caption JSONL (shapes world by default), with
optional relation-swap hard negatives (Structure-CLIP) and a retrieval + swap evaluation.

With ``model.name_or_path`` set to a user's CLIP/SigLIP checkpoint this is fine-tuning from
it: the checkpoint's tokenizer and image preprocessing, ``objective.loss: auto`` = its
pre-training loss (FLYP: InfoNCE for CLIP, the sigmoid loss with its bias for SigLIP), and
``finetune`` for LiT-style locking and partial freezing (vlx.models.finetune)."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from vlx.data.image_text import ImageTextDataset, make_image_text_collate
from vlx.data.negatives import swap_arguments
from vlx.data.shapes import generate_shapes_world
from vlx.data.transforms import pil_to_tensor
from vlx.data.webdataset import ShardStream
from vlx.encoders import EncoderConfig, cache_if_frozen
from vlx.factory import get_tokenizer, get_transforms
from vlx.losses import build_loss
from vlx.losses.clip import multi_positive_nce, positive_mask
from vlx.metrics import retrieval_metrics
from vlx.models.dual_encoder import DualEncoderConfig, build_dual_encoder
from vlx.models.finetune import FinetuneConfig, apply_finetune
from vlx.tokenizers import TokenizerConfig, build_tokenizer
from vlx.train.recipe import RecipeConfig, Task, register_recipe


@dataclass
class ImageTextDataConfig:
    root: str = "data/shapes_world"
    train_file: str = "train.jsonl"
    test_file: str = "test.jsonl"
    image_size: int = 32  # what the model sees
    cache_images: bool = True
    # Generate shapes world into ``root`` when its files are missing.
    generate: bool = True
    n_train: int = 4000
    n_test: int = 200
    render_size: int = 64
    data_seed: int = 0
    # Train from WebDataset shards (a directory, brace pattern or list; img2dataset layout,
    # see vlx.data.webdataset) instead of train_file; evaluation still reads test_file.
    shards: str | None = None
    shuffle_buffer: int = 1000


@dataclass
class ContrastiveConfig:
    # "auto": the model's pre-training loss (siglip when it has a logit bias, else clip).
    loss: Literal["auto", "clip", "siglip", "filip", "soft_clip"] = "clip"
    hard_negative_weight: float = 1.0  # 0 turns the relation-swap negatives off
    # Image-side relation hard negative: the image mirrored along its relation's axis (left/right
    # -> horizontal flip, above/below -> vertical) is the scene the swapped caption describes, so
    # the caption must score its image above the mirror, and the swapped caption the mirror above
    # the image. Unlike the text-only negative this forces the image tower to keep which object
    # is where. 0 turns it off.
    image_hard_negative_weight: float = 0.0
    label_smoothing: float = 0.1  # for soft_clip
    # Structure-CLIP negatives for records without a "negative": the caption's relation
    # arguments swapped (vlx.data.negatives.swap_arguments).
    swap_negatives: bool = False


@dataclass
class ClipShapesConfig(RecipeConfig):
    model: DualEncoderConfig = field(
        default_factory=lambda: DualEncoderConfig(
            image=EncoderConfig(name="vit", preset="tiny"),
            text=EncoderConfig(name="transformer", preset="tiny"),
            embed_dim=64,
        )
    )
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    data: ImageTextDataConfig = field(default_factory=ImageTextDataConfig)
    objective: ContrastiveConfig = field(default_factory=ContrastiveConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    eval_batch_size: int = 256


def resolve_loss(name: str, dual: nn.Module) -> str:
    """``auto`` -> the model's pre-training loss: siglip when it carries a logit bias, else clip."""
    if name != "auto":
        return name
    return "siglip" if getattr(dual, "logit_bias", None) is not None else "clip"


class ContrastiveImageText(nn.Module):
    """DualEncoder + a contrastive loss (+ hard negatives): ``forward(batch) -> {"loss", ...}``."""

    def __init__(self, dual: nn.Module, objective: ContrastiveConfig):
        super().__init__()
        self.dual = dual
        self.objective = objective
        self.loss_name = resolve_loss(objective.loss, dual)
        kw = {"smoothing": objective.label_smoothing} if self.loss_name == "soft_clip" else {}
        self.loss_fn = build_loss(self.loss_name, **kw)
        if self.loss_name == "siglip" and getattr(dual, "logit_bias", None) is None:
            self.logit_bias = nn.Parameter(torch.tensor(-10.0))  # SigLIP's learnable bias, init -10

    @property
    def bias(self) -> torch.Tensor:
        """The SigLIP bias: the checkpoint's when it has one, else this module's own."""
        b = getattr(self.dual, "logit_bias", None)
        return b if b is not None else self.logit_bias

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        out = self.dual(batch["images"], batch["input_ids"], batch["attention_mask"])
        ids = batch.get("caption_ids")
        name = self.loss_name
        if name == "siglip":
            loss = self.loss_fn(out.image_embeds, out.text_embeds, out.logit_scale, self.bias)
        elif name == "filip":
            loss = self.loss_fn(out.image_tokens, out.text_tokens, None, out.text_mask, out.logit_scale)
        else:
            loss = self.loss_fn(out.image_embeds, out.text_embeds, out.logit_scale, ids=ids)
        logs = {"contrastive": loss.detach(), "logit_scale": out.logit_scale.detach()}
        w = self.objective.hard_negative_weight
        neg = None
        if w > 0 and "neg_input_ids" in batch:
            neg = self.dual.encode_text(batch["neg_input_ids"], batch["neg_attention_mask"])
            pos_logit = (out.image_embeds * out.text_embeds).sum(-1)
            neg_logit = (out.image_embeds * neg).sum(-1)
            logits = out.logit_scale * torch.stack([pos_logit, neg_logit], dim=1)
            hn = F.cross_entropy(logits, torch.zeros(len(logits), dtype=torch.long, device=logits.device))
            loss = loss + w * hn
            logs["hard_negative"] = hn.detach()
        wi = self.objective.image_hard_negative_weight
        if wi > 0 and "flip_axis" in batch:
            images = batch["images"]
            axis = batch["flip_axis"].view(-1, 1, 1, 1)
            mirrored = torch.where(axis == 3, images.flip(3), images.flip(2))
            mir = self.dual.encode_image(mirrored)
            if neg is None:
                neg = self.dual.encode_text(batch["neg_input_ids"], batch["neg_attention_mask"])
            # caption: its image over the mirror; swapped caption: the mirror over the image
            s_cap = torch.stack([(out.text_embeds * out.image_embeds).sum(-1), (out.text_embeds * mir).sum(-1)], 1)
            s_neg = torch.stack([(neg * mir).sum(-1), (neg * out.image_embeds).sum(-1)], 1)
            logits = out.logit_scale * torch.cat([s_cap, s_neg])
            ihn = F.cross_entropy(logits, torch.zeros(len(logits), dtype=torch.long, device=logits.device))
            loss = loss + wi * ihn
            logs["image_hard_negative"] = ihn.detach()
        return {"loss": loss, **logs}


def ensure_data(cfg: ImageTextDataConfig) -> Path:
    root = Path(cfg.root)
    if not (root / cfg.train_file).is_file() and cfg.generate:
        generate_shapes_world(root, cfg.n_train, cfg.n_test, cfg.render_size, cfg.data_seed)
    return root


class CaptionIdDataset(torch.utils.data.Dataset):
    """Adds ``caption_id`` (equal captions share an id) so duplicates are not negatives."""

    def __init__(self, base: ImageTextDataset, swap_negatives: bool = False):
        self.base = base
        self.swap_negatives = swap_negatives
        ids: dict[str, int] = {}
        self.caption_ids = [ids.setdefault(r["caption"], len(ids)) for r in base.records]

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int) -> dict[str, Any]:
        item = self.base[i]
        item["caption_id"] = self.caption_ids[i]
        return complete_item(item, self.base.records[i].get("relation"), self.swap_negatives)


def complete_item(item: dict[str, Any], relation: str | None, swap_negatives: bool) -> dict[str, Any]:
    """Add the Structure-CLIP swap negative (when asked and missing) and ``flip_axis``: the image
    dim to mirror for the relation-swapped scene (3 = width, 2 = height, 0 = none)."""
    if swap_negatives and not item.get("negative"):
        item["negative"] = swap_arguments(item["caption"])
    item["flip_axis"] = 3 if relation in ("left of", "right of") else 2 if relation in ("above", "below") else 0
    return item


def _stream_item(item: dict[str, Any], swap_negatives: bool) -> dict[str, Any]:
    return complete_item(item, item.pop("relation", None), swap_negatives)


@torch.no_grad()
def held_out_loss(
    model: ContrastiveImageText, img: torch.Tensor, txt: torch.Tensor, captions, batch_size: int
) -> float:
    """The training objective's contrastive loss (InfoNCE or sigmoid, equal captions positive) on
    held-out pairs, averaged over batches of ``batch_size`` in order. Computed here on this
    process's embeddings (evaluation runs on rank 0 alone, so the losses' all-gather is off)."""
    dual = model.dual
    scale = dual.logit_scale.float()
    ids_of: dict[str, int] = {}
    ids = torch.tensor([ids_of.setdefault(c, len(ids_of)) for c in captions], device=img.device)
    losses = []
    for s in range(0, len(img), batch_size):
        a, b, i = img[s : s + batch_size], txt[s : s + batch_size], ids[s : s + batch_size]
        logits = scale * a @ b.T
        pos = positive_mask(i, len(a), a.device)
        if model.loss_name == "siglip":
            logits = logits + model.bias.float()
            losses.append(float(-F.logsigmoid((pos.float() * 2 - 1) * logits).sum() / len(a)))
        else:
            losses.append(float((multi_positive_nce(logits, pos) + multi_positive_nce(logits.T, pos.T)) / 2))
    return sum(losses) / len(losses)


@torch.no_grad()
def evaluate_retrieval(
    model: ContrastiveImageText,
    dataset: ImageTextDataset,
    tokenizer,
    device: torch.device,
    batch_size: int = 256,
    max_k: int = 50,
) -> dict[str, Any]:
    """Text->image and image->text retrieval on held-out pairs (equal captions count as
    correct for each other), and relation-swap accuracy: does the image score its caption
    above the caption with the relation's arguments swapped (chance 50%)?"""
    dual = model.dual
    n = len(dataset)
    img, txt, neg = [], [], []
    for s in range(0, n, batch_size):
        idx = range(s, min(n, s + batch_size))
        images = torch.stack([dataset.image(i) for i in idx]).to(device)
        img.append(dual.encode_image(images).float())
        t = tokenizer([dataset.records[i]["caption"] for i in idx])
        txt.append(dual.encode_text(t["input_ids"].to(device), t["attention_mask"].to(device)).float())
        if all(dataset.records[i].get("negative") for i in idx):
            u = tokenizer([dataset.records[i]["negative"] for i in idx])
            neg.append(dual.encode_text(u["input_ids"].to(device), u["attention_mask"].to(device)).float())
    img, txt = torch.cat(img), torch.cat(txt)
    captions = [r["caption"] for r in dataset.records]
    same: dict[str, set[int]] = {}
    for i, c in enumerate(captions):
        same.setdefault(c, set()).add(i)
    gt = [same[c] for c in captions]
    sim = img @ txt.T  # (N images, N captions)
    t2i = retrieval_metrics(sim.T, gt)
    i2t = retrieval_metrics(sim, gt)
    result: dict[str, Any] = {f"t2i_{k}": v for k, v in t2i.items()}
    result.update({f"i2t_{k}": v for k, v in i2t.items()})
    result["n_test"] = n
    result["chance_R@1"] = 100.0 * sum(len(g) for g in gt) / n / n
    # recall@K curves for the plot: the rank of the best correct item per query
    ks = list(range(1, min(max_k, n) + 1))
    for name, s in (("t2i", sim.T), ("i2t", sim)):
        order = s.argsort(dim=1, descending=True)
        ranks = torch.tensor([min(int((order[q] == j).nonzero()[0]) for j in gt[q]) + 1 for q in range(n)])
        result[f"{name}_recall_curve"] = [round(100.0 * float((ranks <= k).float().mean()), 3) for k in ks]
    result["test_loss"] = held_out_loss(model, img, txt, captions, batch_size)
    if neg:
        neg_t = torch.cat(neg)
        result["relation_swap_acc"] = 100.0 * float(((img * txt).sum(-1) > (img * neg_t).sum(-1)).float().mean())
        result["relation_swap_chance"] = 50.0
    return result


@register_recipe("clip_shapes", ClipShapesConfig)
def build_clip_shapes(cfg: ClipShapesConfig) -> Task:
    root = ensure_data(cfg.data)
    src = cfg.model.name_or_path
    # A preset or checkpoint brings its own tokenizer and image preprocessing (the tokenizer
    # section and data.image_size are then not used).
    tokenizer = get_tokenizer(src) if src else build_tokenizer(cfg.tokenizer)
    transform = get_transforms(src)[1] if src else None
    torch.manual_seed(cfg.train.seed)  # model init is part of the seeded run
    dual = build_dual_encoder(cfg.model)
    apply_finetune(dual, cfg.finetune)
    dual.text_encoder = cache_if_frozen(dual.text_encoder)  # a frozen tower: once per distinct caption
    model = ContrastiveImageText(dual, cfg.objective)
    kw = dict(cache=cfg.data.cache_images, transform=transform)
    test = ImageTextDataset(root / cfg.data.test_file, cfg.data.image_size, **kw)
    if cfg.data.shards:
        train_dataset = ShardStream(
            cfg.data.shards,
            transform or partial(pil_to_tensor, size=cfg.data.image_size),
            shuffle_buffer=cfg.data.shuffle_buffer,
            seed=cfg.train.seed,
            item_fn=partial(_stream_item, swap_negatives=cfg.objective.swap_negatives),
        )
    else:
        train = ImageTextDataset(root / cfg.data.train_file, cfg.data.image_size, **kw)
        train_dataset = CaptionIdDataset(train, cfg.objective.swap_negatives)
    base_collate = make_image_text_collate(tokenizer)

    def collate(items):
        batch = base_collate(items)
        batch["caption_ids"] = torch.tensor([it["caption_id"] for it in items])
        if "neg_input_ids" in batch and all(it["flip_axis"] for it in items):
            batch["flip_axis"] = torch.tensor([it["flip_axis"] for it in items])
        return batch

    return Task(
        model=model,
        train_dataset=train_dataset,
        collate_fn=collate,
        evaluate=lambda m, device: evaluate_retrieval(m, test, tokenizer, device, cfg.eval_batch_size),
    )
