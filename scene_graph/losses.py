"""Scene-graph-guided pre-training objectives (after "3D Scene Graph Guided Vision-Language
Pre-training", Liu et al. 2024): object-text, relation-text and scene-text contrastive terms
(the core's ClipLoss), relation-swap hard negatives (Structure-CLIP), masked objects whose
category is predicted from positions and relations, and masked words."""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader
from torch_geometric.utils import scatter, to_dense_batch

from scene_graph.data.dataset import collate_referrals
from scene_graph.relations import REL_INDEX
from vlx.utils import to_device

# Relations that read naturally as "<target> <phrase> <anchor>".
REL_PHRASES = {
    "left": "left of",
    "right": "right of",
    "front": "in front of",
    "behind": "behind",
    "on": "on top of",
    "supports": "under",
    "above": "above",
    "below": "below",
    "closest": "closest to",
    "farthest": "farthest from",
}
PALETTE = {
    "red": (0.85, 0.1, 0.1),
    "green": (0.1, 0.75, 0.15),
    "blue": (0.1, 0.2, 0.9),
    "yellow": (0.9, 0.85, 0.1),
    "white": (0.95, 0.95, 0.95),
    "black": (0.05, 0.05, 0.05),
    "gray": (0.5, 0.5, 0.5),
    "brown": (0.45, 0.3, 0.15),
}


@dataclass
class PretrainLossConfig:
    object_text: float = 1.0
    relation_text: float = 1.0
    scene_text: float = 1.0
    masked_objects: float = 1.0
    masked_words: float = 0.5
    mask_object_prob: float = 0.2
    mask_word_prob: float = 0.15
    max_objects: int = 64  # object phrases per batch
    max_relations: int = 64  # relation phrases per batch
    swap_negatives: bool = True


def color_names(rgb: Tensor) -> list[str]:
    """Nearest palette colour name of each mean colour ``(N, 3)`` in 0..1."""
    pal = torch.tensor(list(PALETTE.values()), dtype=rgb.dtype)
    return [list(PALETTE)[k] for k in torch.cdist(rgb, pal).argmin(-1).tolist()]


def phrase_id(phrase: str) -> int:
    """A stable 56-bit id of a phrase, the same in every process and batch, so ClipLoss can
    gather object-phrase ids across ranks: equal phrases are positives wherever they are, and
    no two different phrases share an id (a per-batch numbering would collide across ranks)."""
    return int.from_bytes(hashlib.blake2b(phrase.encode(), digest_size=7).digest(), "little")


def relation_text_loss(pair: Tensor, pos: Tensor, swapped: Tensor | None, logit_scale: Tensor) -> Tensor:
    """InfoNCE of object pairs against relation phrases, with each pair's argument-swapped
    phrase as an extra hard negative: pair, pos, swapped ``(R, E)`` unit vectors -> scalar.

    Row r's logits are ``[pair_r . pos_1..R, pair_r . swapped_1..R]``; the target is pos_r.
    """
    logits = pair @ pos.t()
    if swapped is not None:
        logits = torch.cat([logits, pair @ swapped.t()], dim=1)
    return F.cross_entropy(logit_scale * logits, torch.arange(pair.shape[0], device=pair.device))


def mask_words(
    input_ids: Tensor, attention_mask: Tensor, prob: float, mask_id: int, special: Sequence[int], gen: torch.Generator
) -> tuple[Tensor, Tensor]:
    """BERT-style: choose ``prob`` of the real tokens (at least one per text), replace by
    ``mask_id``. -> masked ids ``(B, L)``, labels ``(B, L)`` (-100 where not masked)."""
    real = attention_mask.bool() & ~torch.isin(input_ids, torch.tensor(list(special), dtype=input_ids.dtype))
    r = torch.rand(input_ids.shape, generator=gen)
    chosen = real & (r < prob)
    first = (r.masked_fill(~real, 2.0)).argmin(-1)  # guarantee one masked word per text
    chosen[torch.arange(len(first)), first] |= real[torch.arange(len(first)), first]
    labels = input_ids.masked_fill(~chosen, -100)
    return input_ids.masked_fill(chosen, mask_id), labels


class SceneGraphPretrainer(nn.Module):
    """Wraps a SceneGraphModel with the pre-training objectives; ``forward(batch) -> {"loss", ...}``."""

    def __init__(self, model: nn.Module, tokenizer, labels: list[str], cfg: PretrainLossConfig | None = None):
        super().__init__()
        self.model = model
        self.tok = tokenizer
        self.labels = {l: k for k, l in enumerate(labels)}
        self.cfg = cfg or PretrainLossConfig()
        inner = getattr(tokenizer, "tokenizer", None)
        self.mask_id = int(getattr(inner, "mask_token_id", None) or tokenizer.pad_token_id)
        self.special = [int(i) for i in (getattr(inner, "all_special_ids", None) or [tokenizer.pad_token_id])]
        self._step = 0

    # -- batch ----------------------------------------------------------------------------
    def collate(self, samples: list[dict], seed: int | None = None) -> dict:
        """Referral batch plus object phrases, relation phrases (and their swaps), object /
        word masks. Seeded per call so data order alone fixes the batch."""
        self._step += 1
        rng = random.Random(seed if seed is not None else self._step)
        gen = torch.Generator().manual_seed(rng.randrange(2**31))
        b = collate_referrals(samples, self.tok)
        names = [l for s in samples for l in s["graph"].label_names]
        colors = color_names(b["points"][..., 3:6].mean(1)) if "points" in b else [""] * len(names)
        phrase = [f"{c} {l}".strip() for c, l in zip(colors, names)]
        n = len(phrase)
        objs = sorted(rng.sample(range(n), min(n, self.cfg.max_objects)))
        b["obj_index"] = torch.tensor(objs)
        b["obj_ids"] = torch.tensor([phrase_id(phrase[k]) for k in objs], dtype=torch.long)
        t = self.tok([phrase[k] for k in objs])
        b["obj_input_ids"], b["obj_attention_mask"] = t["input_ids"], t["attention_mask"]
        # Relation phrases: one expressible relation per sampled edge whose two phrases differ
        # (so that swapping the arguments changes the meaning).
        rels = [REL_INDEX[r] for r in REL_PHRASES]
        cand = []
        er = torch.cat([s["graph"].edge_rel for s in samples])
        ei = b["edge_index"]
        for e in (er[:, rels].any(1)).nonzero().flatten().tolist():
            i, j = ei[0, e].item(), ei[1, e].item()
            if phrase[i] != phrase[j]:
                cand.append(e)
        cand = sorted(rng.sample(cand, min(len(cand), self.cfg.max_relations)))
        pos, neg = [], []
        for e in cand:
            options = [r for r in REL_PHRASES if er[e, REL_INDEX[r]]]
            r = options[rng.randrange(len(options))]
            i, j = ei[0, e].item(), ei[1, e].item()
            pos.append(f"{phrase[i]} {REL_PHRASES[r]} {phrase[j]}")
            neg.append(f"{phrase[j]} {REL_PHRASES[r]} {phrase[i]}")
        b["rel_edge"] = torch.tensor(cand, dtype=torch.long)
        if cand:
            tp, tn = self.tok(pos), self.tok(neg)
            b["rel_input_ids"], b["rel_attention_mask"] = tp["input_ids"], tp["attention_mask"]
            b["swap_input_ids"], b["swap_attention_mask"] = tn["input_ids"], tn["attention_mask"]
        # Masked objects (their points hidden) and masked words.
        m = torch.rand(n, generator=gen) < self.cfg.mask_object_prob
        if not m.any():
            m[torch.randint(n, (1,), generator=gen)] = True
        b["obj_mask"] = m
        b["obj_class"] = torch.tensor([self.labels.get(l, -100) for l in names])
        b["mlm_input_ids"], b["mlm_labels"] = mask_words(
            b["input_ids"], b["attention_mask"], self.cfg.mask_word_prob, self.mask_id, self.special, gen
        )
        return b

    # -- objectives -----------------------------------------------------------------------
    def _embed_text(self, ids: Tensor, mask: Tensor) -> Tensor:
        _, _, pooled = self.model.encode_text(ids, mask)
        return F.normalize(self.model.sent_proj(pooled), dim=-1)

    def losses(self, b: dict) -> dict[str, Tensor]:
        from vlx.losses import ClipLoss

        m, cfg = self.model, self.cfg
        clip = ClipLoss()
        scale = m.logit_scale.exp().clamp(max=100)
        h = m.contextualise(m.encode_objects(b), b)  # text-free, graph-contextualised (N, D)
        out: dict[str, Tensor] = {}
        if cfg.object_text:
            o = F.normalize(m.obj_proj(h[b["obj_index"]]), dim=-1)
            out["object_text"] = clip(
                o, self._embed_text(b["obj_input_ids"], b["obj_attention_mask"]), scale, ids=b["obj_ids"]
            )
        if cfg.relation_text and b["rel_edge"].numel() > 1:
            e = b["rel_edge"]
            i, j = b["edge_index"][0, e], b["edge_index"][1, e]
            pair = F.normalize(m.rel_proj(torch.cat([h[i], h[j], b["edge_attr"][e]], -1)), dim=-1)
            swapped = self._embed_text(b["swap_input_ids"], b["swap_attention_mask"]) if cfg.swap_negatives else None
            out["relation_text"] = relation_text_loss(
                pair, self._embed_text(b["rel_input_ids"], b["rel_attention_mask"]), swapped, scale
            )
        if cfg.scene_text:
            scene = F.normalize(m.scene_proj(scatter(h, b["node_batch"], dim=0, reduce="mean")), dim=-1)
            out["scene_text"] = clip(scene, self._embed_text(b["input_ids"], b["attention_mask"]), scale)
        if cfg.masked_objects and m.class_head is not None:
            hm = m.contextualise(m.encode_objects(b, mask=b["obj_mask"]), b)
            sel = b["obj_mask"] & (b["obj_class"] >= 0)
            out["masked_objects"] = F.cross_entropy(m.class_head(hm[sel]), b["obj_class"][sel])
        if cfg.masked_words and m.cfg.vocab_size:
            words, pad, _ = m.encode_text(b["mlm_input_ids"], b["attention_mask"], cache=False)
            objs, valid = to_dense_batch(h, b["node_batch"])
            a, _ = m.word_cross(words, objs, objs, key_padding_mask=~valid, need_weights=False)
            logits = m.word_head(words + a)
            out["masked_words"] = F.cross_entropy(logits.flatten(0, 1), b["mlm_labels"].flatten(), ignore_index=-100)
        return out

    def forward(self, batch: dict) -> dict:
        parts = self.losses(batch)
        w = {
            "object_text": self.cfg.object_text,
            "relation_text": self.cfg.relation_text,
            "scene_text": self.cfg.scene_text,
            "masked_objects": self.cfg.masked_objects,
            "masked_words": self.cfg.masked_words,
        }
        loss = sum(w[k] * v for k, v in parts.items())
        return {"loss": loss, **{f"loss_{k}": v.detach() for k, v in parts.items()}}

    @torch.no_grad()
    def evaluate(self, dataset, device, batch_size: int = 64) -> dict:
        """Validation losses, masked-object accuracy, and relation-swap accuracy (the pair's
        true phrase scores above its argument-swapped phrase)."""
        self.eval()
        loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=lambda s: self.collate(s, seed=0))
        sums: dict[str, float] = {}
        n = 0
        swap_hits = swap_total = cls_hits = cls_total = 0
        for b in loader:
            b = to_device(b, device)
            for k, v in self.losses(b).items():
                sums[k] = sums.get(k, 0.0) + float(v)
            n += 1
            m = self.model
            h = m.contextualise(m.encode_objects(b), b)
            if b["rel_edge"].numel():
                e = b["rel_edge"]
                pair = F.normalize(
                    m.rel_proj(torch.cat([h[b["edge_index"][0, e]], h[b["edge_index"][1, e]], b["edge_attr"][e]], -1)),
                    dim=-1,
                )
                pos = (pair * self._embed_text(b["rel_input_ids"], b["rel_attention_mask"])).sum(-1)
                neg = (pair * self._embed_text(b["swap_input_ids"], b["swap_attention_mask"])).sum(-1)
                swap_hits += int((pos > neg).sum())
                swap_total += len(e)
            if m.class_head is not None:
                hm = m.contextualise(m.encode_objects(b, mask=b["obj_mask"]), b)
                sel = b["obj_mask"] & (b["obj_class"] >= 0)
                cls_hits += int((m.class_head(hm[sel]).argmax(-1) == b["obj_class"][sel]).sum())
                cls_total += int(sel.sum())
        self.train()
        res = {f"val_{k}": v / max(n, 1) for k, v in sums.items()}
        res["relation_swap_acc"] = 100.0 * swap_hits / max(swap_total, 1)
        res["masked_object_acc"] = 100.0 * cls_hits / max(cls_total, 1)
        res["skipped"] = len(getattr(dataset, "skipped", []))
        return res
