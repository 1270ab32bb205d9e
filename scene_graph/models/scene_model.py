"""Scene-graph vision-language model (after "3D Scene Graph Guided Vision-Language
Pre-training", Liu et al. 2024): object tokens from a point encoder, graph layers over the
scene graph with relation edge features, cross-attention fusion with a text encoder from
the core, and heads for grounding, QA, object captioning and the pre-training objectives.

Each fusion block: objects attend to the words of their own scene's text, then exchange
messages along the relation edges (the text-conditioned object states flow along edges whose
features say "left of", "on", ...). ``gnn.use_edges: false`` removes every edge and keeps all
weights: the ablation that shows what the relations buy.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch_geometric.nn import GATConv, GINEConv, TransformerConv
from torch_geometric.utils import scatter, to_dense_batch

from scene_graph.builder import EDGE_DIM, EDGE_GEOMETRY_DIM
from scene_graph.models.object_encoder import ObjectEncoder, ObjectEncoderConfig
from vlx.config import ConfigError
from vlx.encoders import EncoderConfig, build_text_encoder
from vlx.encoders.cache import FrozenTextCache, cache_if_frozen

EDGE_RELATIONS = EDGE_DIM - EDGE_GEOMETRY_DIM  # edge_attr = [relation multi-hot | dx dy dz dist]


@dataclass
class GNNConfig:
    kind: Literal["transformer", "gat", "gine"] = "transformer"
    layers: int = 2
    heads: int = 4
    use_edges: bool = True


@dataclass
class SceneModelConfig:
    dim: int = 128
    objects: ObjectEncoderConfig = field(default_factory=ObjectEncoderConfig)
    text: EncoderConfig = field(default_factory=lambda: EncoderConfig(name="transformer", preset="tiny"))
    gnn: GNNConfig = field(default_factory=GNNConfig)
    fusion_heads: int = 4
    dropout: float = 0.0
    num_answers: int = 0  # QA answer classes (0: no QA head)
    answer_weight: float = 1.0  # QA loss weight against the grounding loss
    num_classes: int = 0  # object categories for masked-object prediction (0: none)
    vocab_size: int = 0  # masked words / captions (0: none)
    init_temperature: float = 0.07
    # MAttNet-style relation module in the grounding score (Yu et al. 2018): the sentence is
    # split by learned word attention into subject / anchor / relation phrases and an object
    # scores subject(i) + logsumexp over its edges (i REL j) of anchor(j) + relation(i, j).
    # With the edges removed the second term is 0 for every object (same weights otherwise).
    relation_head: bool = False
    # What the edges carry into the model: "all" (the rule-based relation multi-hot of
    # scene_graph.relations + dx, dy, dz, distance), "geometry" (the offsets only: relations
    # must be learned from geometry) or "relations" (the multi-hot only).
    edge_features: Literal["all", "geometry", "relations"] = "all"


def make_graph_layer(kind: str, dim: int, heads: int) -> nn.Module:
    """A torch-geometric layer ``(x (N, D), edge_index (2, E), edge_attr (E, D)) -> (N, D)``."""
    if dim % heads:
        raise ConfigError(f"model.dim {dim} must be divisible by model.gnn.heads {heads}")
    if kind == "transformer":
        return TransformerConv(dim, dim // heads, heads=heads, edge_dim=dim, root_weight=True)
    if kind == "gat":
        return GATConv(dim, dim // heads, heads=heads, edge_dim=dim, add_self_loops=True, fill_value="mean")
    if kind == "gine":
        return GINEConv(
            nn.Sequential(nn.Linear(dim, dim), nn.GELU(), nn.Linear(dim, dim)), edge_dim=dim, train_eps=True
        )
    raise ConfigError(f"model.gnn.kind: unknown {kind!r}; known: transformer, gat, gine")


class FusionBlock(nn.Module):
    """Objects cross-attend to their scene's words (optional), then message passing along edges
    whose features are modulated by the sentence (so an edge can say "this is the relation the
    text asks for"), then an MLP."""

    def __init__(self, dim: int, heads: int, gnn: GNNConfig, dropout: float):
        super().__init__()
        self.edge_mlp = nn.Sequential(nn.Linear(EDGE_DIM, dim), nn.GELU(), nn.Linear(dim, dim))
        self.edge_film = nn.Linear(dim, 2 * dim)
        self.norm_x = nn.LayerNorm(dim)
        self.cross = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.norm_g = nn.LayerNorm(dim)
        self.graph = make_graph_layer(gnn.kind, dim, gnn.heads)
        self.norm_m = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))

    def forward(
        self,
        h: Tensor,
        edge_index: Tensor,
        edge_attr: Tensor,
        node_batch: Tensor,
        text: Tensor | None = None,
        text_pad: Tensor | None = None,
        sent: Tensor | None = None,
    ) -> Tensor:
        e = self.edge_mlp(edge_attr)  # (E, D)
        if sent is not None:
            scale, shift = self.edge_film(sent[node_batch[edge_index[0]]]).chunk(2, dim=-1)
            e = e * (1 + scale) + shift
        if text is not None:
            # Each object (one query) attends only to its own scene's words: gather them per node.
            q = self.norm_x(h).unsqueeze(1)  # (N, 1, D)
            kv = text[node_batch]  # (N, L, D)
            a, _ = self.cross(q, kv, kv, key_padding_mask=text_pad[node_batch], need_weights=False)
            h = h + a.squeeze(1)
        h = h + self.graph(self.norm_g(h), edge_index, e)
        return h + self.mlp(self.norm_m(h))


class SceneGraphModel(nn.Module):
    def __init__(self, cfg: SceneModelConfig):
        super().__init__()
        self.cfg = cfg
        d = cfg.dim
        for key, h in (("fusion_heads", cfg.fusion_heads), ("gnn.heads", cfg.gnn.heads)):
            if d % h:
                raise ConfigError(f"model.dim {d} must be divisible by model.{key} {h}")
        self.objects = ObjectEncoder(cfg.objects, d)
        self.text = cache_if_frozen(build_text_encoder(cfg.text))
        self.text_proj = nn.Linear(self.text.output_dim, d)
        self.blocks = nn.ModuleList(
            FusionBlock(d, cfg.fusion_heads, cfg.gnn, cfg.dropout) for _ in range(cfg.gnn.layers)
        )
        self.norm = nn.LayerNorm(d)
        self.ground_head = nn.Sequential(nn.Linear(d, d), nn.GELU(), nn.Linear(d, 1))
        self.ground_query = nn.Linear(d, d)  # score also = <object, sentence>: matches the class fast
        self.relation = RelationScorer(d, cfg.fusion_heads) if cfg.relation_head else None
        # QA reads one object: its fused state, its raw token (the colour/shape evidence before
        # fusion washes it out) and the question. (B, 3D) -> (B, A)
        self.answer_head = (
            nn.Sequential(nn.Linear(3 * d, d), nn.GELU(), nn.Linear(d, cfg.num_answers)) if cfg.num_answers else None
        )
        self.class_head = nn.Linear(d, cfg.num_classes) if cfg.num_classes else None
        self.mask_token = nn.Parameter(torch.zeros(d))
        # Pre-training projections into one contrastive space.
        self.obj_proj = nn.Linear(d, d)
        self.rel_proj = nn.Sequential(nn.Linear(2 * d + EDGE_DIM, d), nn.GELU(), nn.Linear(d, d))
        self.scene_proj = nn.Linear(d, d)
        self.sent_proj = nn.Linear(d, d)
        self.logit_scale = nn.Parameter(torch.tensor(1.0 / cfg.init_temperature).log())
        if cfg.vocab_size:
            self.word_cross = nn.MultiheadAttention(d, cfg.fusion_heads, batch_first=True)
            self.word_head = nn.Linear(d, cfg.vocab_size)
            self.caption = CaptionHead(d, cfg.vocab_size)

    # -- pieces ---------------------------------------------------------------------------
    def encode_text(
        self, input_ids: Tensor, attention_mask: Tensor, cache: bool = True
    ) -> tuple[Tensor, Tensor, Tensor]:
        """-> word tokens ``(B, L, D)``, padding mask ``(B, L)`` (True = pad), pooled ``(B, D)``.
        ``cache=False``: a frozen tower runs without its sentence cache (randomly masked
        sentences, which would only fill it)."""
        if not cache and isinstance(self.text, FrozenTextCache):
            with torch.no_grad():
                out = self.text.encoder(input_ids, attention_mask)
        else:
            out = self.text(input_ids, attention_mask)
        tokens = self.text_proj(out.tokens)
        pad = attention_mask == 0
        pooled = self.text_proj(out.pooled)
        return tokens, pad, pooled

    def edges(self, batch: dict) -> tuple[Tensor, Tensor]:
        ei, ea = batch["edge_index"], batch["edge_attr"]
        if not self.cfg.gnn.use_edges:
            return ei[:, :0], ea[:0]
        if self.cfg.edge_features == "geometry":
            ea = torch.cat([torch.zeros_like(ea[:, :EDGE_RELATIONS]), ea[:, EDGE_RELATIONS:]], -1)
        elif self.cfg.edge_features == "relations":
            ea = torch.cat([ea[:, :EDGE_RELATIONS], torch.zeros_like(ea[:, EDGE_RELATIONS:])], -1)
        return ei, ea

    def encode_objects(self, batch: dict, mask: Tensor | None = None) -> Tensor:
        """Object tokens ``(N, D)``; rows in ``mask (N,)`` bool get the mask token (their
        points hidden, their box kept: masked modality learning predicts them from context)."""
        h = self.objects(batch["points"], batch["box"], batch["node_batch"])
        if mask is not None:
            h = torch.where(mask[:, None], self.mask_token + self._box_only(batch), h)
        return h

    def _box_only(self, batch: dict) -> Tensor:
        box, nb = batch["box"], batch["node_batch"]
        centre = scatter(box[:, :3], nb, dim=0, reduce="mean")[nb]
        return self.objects.box(torch.cat([box[:, :3] - centre, box[:, 3:6]], -1))

    def contextualise(
        self,
        h: Tensor,
        batch: dict,
        text: Tensor | None = None,
        pad: Tensor | None = None,
        sent: Tensor | None = None,
    ) -> Tensor:
        ei, ea = self.edges(batch)
        for blk in self.blocks:
            h = blk(h, ei, ea, batch["node_batch"], text, pad, sent)
        return self.norm(h)

    # -- tasks ----------------------------------------------------------------------------
    def ground(self, batch: dict, return_tokens: bool = False):
        """-> per-object scores ``(N,)``, fused object states ``(N, D)``, pooled text ``(B, D)``
        (and the pre-fusion object tokens ``(N, D)`` when ``return_tokens``)."""
        words, pad, sent = self.encode_text(batch["input_ids"], batch["attention_mask"])
        tokens = self.encode_objects(batch)
        h = self.contextualise(tokens, batch, words, pad, sent)
        q = self.ground_query(sent)[batch["node_batch"]]
        scores = self.ground_head(h).squeeze(-1) + (h * q).sum(-1) / h.shape[-1] ** 0.5
        if self.relation is not None:
            ei, ea = self.edges(batch)
            scores = scores + self.relation(tokens, h, words, pad, batch["node_batch"], ei, ea)
        return (scores, h, sent, tokens) if return_tokens else (scores, h, sent)

    def answer(self, obj: Tensor, h: Tensor, tokens: Tensor, sent: Tensor) -> Tensor:
        """Answer logits ``(B, A)`` about one object per question: ``obj (B,)`` global node index."""
        return self.answer_head(torch.cat([h[obj], tokens[obj], sent], -1))

    def forward(self, batch: dict) -> dict:
        """Grounding (and QA when the model has an answer head): ``loss``, ``scores (N,)``.

        QA answers about one object. Training reads the annotated object (teacher forcing):
        answering from a score-weighted pool of objects gave the answer head an average of
        every object's colour while grounding was still near chance, and it never learned
        (EM@1 22.7 against chance 25). Evaluation reads the object the model grounds."""
        scores, h, sent, tokens = self.ground(batch, return_tokens=True)
        loss_g = grounding_loss(scores, batch["node_batch"], batch["target"])
        out = {"scores": scores, "loss_ground": loss_g.detach()}
        loss = loss_g
        if self.answer_head is not None:
            obj = batch["target"] if self.training else predict_objects(scores, batch["node_batch"])
            logits = self.answer(obj, h, tokens, sent)
            valid = batch["answer"] >= 0
            loss_a = F.cross_entropy(logits[valid], batch["answer"][valid]) if valid.any() else logits.sum() * 0
            out.update(answer_logits=logits, loss_answer=loss_a.detach())
            if not self.training and bool((batch["target"] >= 0).all()):
                # the answer as if grounding were right: bounds what grounding costs QA
                out["answer_logits_gt_object"] = self.answer(batch["target"], h, tokens, sent)
            loss = loss + self.cfg.answer_weight * loss_a
        out["loss"] = loss
        return out


class RelationScorer(nn.Module):
    """Relation module of MAttNet (Yu et al., CVPR 2018), on scene-graph edges.

    Three learned queries attend over the words (modular phrase attention) and give a subject,
    an anchor and a relation phrase per sentence. Object ``i`` then scores

        <obj_i, subject> + log sum_{edges i REL j} exp(<obj_j, anchor> + <edge_ij, relation>)

    i.e. "is i the named kind of object" plus a soft "is there an object j that looks like the
    anchor and stands in the named relation to i". Written by hand: PyG has the scatter pieces
    (used here) but no referring-expression relation module.
    """

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.queries = nn.Parameter(torch.randn(3, dim) * dim**-0.5)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.subject = nn.Linear(2 * dim, dim)
        self.anchor = nn.Linear(2 * dim, dim)
        self.edge = nn.Sequential(nn.Linear(EDGE_DIM, dim), nn.GELU(), nn.Linear(dim, dim))
        self.scale = dim**-0.5

    def phrases(self, words: Tensor, pad: Tensor) -> Tensor:
        """``(B, L, D)`` words, ``(B, L)`` pad mask -> ``(B, 3, D)``: subject, anchor, relation."""
        q = self.queries.unsqueeze(0).expand(words.shape[0], -1, -1)
        out, _ = self.attn(q, words, words, key_padding_mask=pad, need_weights=False)
        return out

    def forward(
        self,
        tokens: Tensor,
        h: Tensor,
        words: Tensor,
        pad: Tensor,
        node_batch: Tensor,
        edge_index: Tensor,
        edge_attr: Tensor,
    ) -> Tensor:
        """Per-object relation-aware scores ``(N,)`` from raw tokens and fused states ``(N, D)``."""
        ph = self.phrases(words, pad)
        obj = torch.cat([tokens, h], -1)
        subj = (self.subject(obj) * ph[node_batch, 0]).sum(-1) * self.scale
        if edge_index.shape[1] == 0:
            return subj
        i, j = edge_index
        anc = (self.anchor(obj) * ph[node_batch, 1]).sum(-1) * self.scale  # (N,)
        rel = (self.edge(edge_attr) * ph[node_batch[i], 2]).sum(-1) * self.scale  # (E,)
        pair = anc[j] + rel
        # log-sum-exp of pair over each object's outgoing edges (objects without edges: 0).
        m = scatter(pair.detach(), i, dim=0, dim_size=h.shape[0], reduce="max")
        s = scatter((pair - m[i]).exp(), i, dim=0, dim_size=h.shape[0], reduce="sum")
        has = s > 0
        ctx = torch.where(has, m + s.clamp(min=1e-30).log(), torch.zeros_like(s))
        return subj + ctx


def grounding_loss(scores: Tensor, node_batch: Tensor, target: Tensor) -> Tensor:
    """Cross-entropy over the objects of each scene: scores ``(N,)``, target ``(B,)`` global index;
    a target of -1 (a question without an object, e.g. ScanQA's test splits) is left out."""
    dense, valid = to_dense_batch(scores, node_batch, fill_value=float("-inf"))  # (B, M)
    ptr = torch.zeros(dense.shape[0] + 1, dtype=torch.long, device=scores.device)
    ptr[1:] = torch.bincount(node_batch, minlength=dense.shape[0]).cumsum(0)
    known = target >= 0
    if not bool(known.all()):
        if not bool(known.any()):
            return scores.sum() * 0
        return F.cross_entropy(dense[known], (target - ptr[:-1])[known])
    return F.cross_entropy(dense, target - ptr[:-1])


def predict_objects(scores: Tensor, node_batch: Tensor) -> Tensor:
    """Global index of the best-scoring object of each scene: ``(B,)``."""
    dense, _ = to_dense_batch(scores, node_batch, fill_value=float("-inf"))
    ptr = torch.zeros(dense.shape[0] + 1, dtype=torch.long, device=scores.device)
    ptr[1:] = torch.bincount(node_batch, minlength=dense.shape[0]).cumsum(0)
    return dense.argmax(-1) + ptr[:-1]


class CaptionHead(nn.Module):
    """Object captioning: a GRU decoder started from an object state (Scan2Cap-style)."""

    def __init__(self, dim: int, vocab_size: int):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, dim)
        self.gru = nn.GRU(dim, dim, batch_first=True)
        self.out = nn.Linear(dim, vocab_size)

    def forward(self, obj: Tensor, input_ids: Tensor) -> Tensor:
        """Teacher forcing: obj ``(B, D)``, input_ids ``(B, L)`` -> logits ``(B, L-1, V)`` for ids[:, 1:]."""
        y, _ = self.gru(self.embed(input_ids[:, :-1]), obj.unsqueeze(0).contiguous())
        return self.out(y)

    @torch.no_grad()
    def generate(self, obj: Tensor, bos: int, eos: int, max_len: int = 20) -> Tensor:
        """Greedy decoding -> ``(B, <=max_len)`` ids (after ``bos``)."""
        hdn = obj.unsqueeze(0).contiguous()
        tok = torch.full((obj.shape[0], 1), bos, dtype=torch.long, device=obj.device)
        out = []
        done = torch.zeros(obj.shape[0], dtype=torch.bool, device=obj.device)
        for _ in range(max_len):
            y, hdn = self.gru(self.embed(tok), hdn)
            tok = self.out(y).argmax(-1)
            out.append(tok)
            done |= tok.squeeze(1) == eos
            if done.all():
                break
        return torch.cat(out, 1)


def build_scene_model(cfg: SceneModelConfig) -> SceneGraphModel:
    return SceneGraphModel(cfg)
