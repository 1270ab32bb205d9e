"""The vision policy: camera RGB -> image encoder -> EmbodiedGPT's embodied-former (Mu et al.,
2023, "EmbodiedGPT", Sec. 3.3) -> policy head on the former's output, a global image feature
and proprioception; and the ``concat`` baseline of the same size without the former.

Embodied-former, as EmbodiedGPT takes it from BLIP-2's Q-Former: learned queries and the plan
text's tokens share one self-attention (text tokens attend to each other and to the queries,
padding masked out), then only the queries cross-attend to the visual tokens, then a
feed-forward network per stream. The queries' outputs ("instance-level features") go, with the
image encoder's pooled output ("global context"), to the policy MLP.

``concat`` (vlx's baseline, not from the paper): the pooled image feature(s) and the masked
mean of the text tokens, each projected to ``width``, concatenated with proprioception into an
MLP whose hidden size is chosen so the whole model has as many parameters as the former's.

Image encoders (``model.image_encoder``): ``cnn`` (a small CNN), ``cnn_spatial_softmax``
(robomimic's keypoint encoder: a small conv trunk + spatial softmax), any core image encoder
(``vit``, from scratch), or ``pretrained`` with ``path`` = a name or directory for
``vlx.create_model_and_transforms`` (a CLIP/SigLIP checkpoint or a vlx preset): its image
tower, with the checkpoint's mean/std and input size (frames are resized to it). ``freeze``
keeps any of them fixed (run under ``no_grad``, in eval mode).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from embodied.policy.model import PolicyBase, PolicyModelConfig, SmallCNN, SpatialSoftmaxCNN
from vlx.config import ConfigError
from vlx.encoders import EncoderConfig

# Inputs of encoders trained here are [0, 1] frames shifted to [-1, 1].
_HALF = (0.5, 0.5, 0.5)


class ImageTower(nn.Module):
    """frames (B, 3, H, W) in [0, 1] -> EncoderOutput (pooled (B, D), tokens (B, N, D)) of the
    configured encoder, normalised (and resized, for a pretrained tower) as it expects."""

    def __init__(self, cfg: EncoderConfig, image_size: int):
        super().__init__()
        self.resize: tuple[int, int] | None = None
        mean, std = _HALF, _HALF
        if cfg.name in ("cnn", "cnn_spatial_softmax"):
            check_image_size(cfg, image_size)
            self.encoder = (SmallCNN if cfg.name == "cnn" else SpatialSoftmaxCNN)(**dict(cfg.kwargs))
        elif cfg.name == "pretrained":
            if not cfg.path:
                raise ConfigError(
                    "model.image_encoder.path: name 'pretrained' needs a CLIP/SigLIP directory or preset name"
                )
            from vlx.factory import create_model_and_transforms

            clip, _, val = create_model_and_transforms(cfg.path, **dict(cfg.kwargs))
            self.encoder = clip.dual.image_encoder  # the text tower is dropped with ``clip``
            self.resize = tuple(val.output_size)
            mean, std = val.mean or (0.0, 0.0, 0.0), val.std or (1.0, 1.0, 1.0)
        else:
            from vlx.encoders import build_image_encoder

            kwargs = dict(cfg.kwargs)
            if cfg.name == "vit":  # the grid the position embeddings are learned for
                kwargs.setdefault("image_size", image_size)
            check_image_size(cfg, image_size)
            enc_cfg = EncoderConfig(name=cfg.name, preset=cfg.preset, path=cfg.path, kwargs=kwargs)
            self.encoder = build_image_encoder(enc_cfg)
        self.frozen = bool(cfg.freeze)
        if self.frozen:
            self.encoder.requires_grad_(False)
        self.output_dim = int(self.encoder.output_dim)
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)

    def train(self, mode: bool = True) -> ImageTower:
        super().train(mode)
        if self.frozen:
            self.encoder.eval()  # a frozen tower keeps eval behaviour (dropout off) while training
        return self

    def forward(self, frames: torch.Tensor):
        x = frames
        if self.resize is not None and tuple(x.shape[-2:]) != self.resize:
            x = F.interpolate(x, size=self.resize, mode="bilinear", align_corners=False, antialias=True)
        x = (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)
        if self.frozen:
            with torch.no_grad():
                return self.encoder(x)
        return self.encoder(x)


def check_image_size(cfg: EncoderConfig, image_size: int) -> None:
    """One-line ConfigError when frames of ``image_size`` cannot go through encoder ``cfg``: a
    ViT needs a multiple of its patch size, the cnn at least 8 pixels (a pretrained tower
    resizes frames to its own size, so any size works)."""
    if image_size < 8 and cfg.name != "pretrained":
        raise ConfigError(f"model.image_size: {image_size} is too small for the {cfg.name} encoder (>= 8)")
    if cfg.name != "vit":
        return
    from vlx.encoders.vit import VIT_PRESETS

    values = dict(VIT_PRESETS.get((cfg.preset or "").replace("-", "/"), {}))
    values.update(cfg.kwargs)
    patch = int(values.get("patch_size", 16))
    if image_size % patch:
        raise ConfigError(
            f"model.image_size: {image_size} is not a multiple of the vit encoder's patch size {patch} "
            f"(model.image_encoder); use a multiple of {patch}, e.g. {patch * max(1, round(image_size / patch))}"
        )


class EmbodiedFormerLayer(nn.Module):
    """One embodied-former layer. ``forward(q (B, Q, W), text (B, L, W), text_mask (B, L) bool
    True = real token, vis (B, N, W)) -> (q, text)``: self-attention over [queries; text]
    (padded text is never attended to), cross-attention queries -> visual tokens, then a
    feed-forward per stream; every sub-layer pre-norm with a residual. The last layer
    (``last=True``) has no text feed-forward: its text output is never read."""

    def __init__(self, width: int, heads: int, dropout: float = 0.0, last: bool = False):
        super().__init__()
        self.norm_s, self.norm_c, self.norm_v = nn.LayerNorm(width), nn.LayerNorm(width), nn.LayerNorm(width)
        self.norm_q = nn.LayerNorm(width)
        self.attn_s = nn.MultiheadAttention(width, heads, dropout=dropout, batch_first=True)
        self.attn_c = nn.MultiheadAttention(width, heads, dropout=dropout, batch_first=True)
        self.mlp_q = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width))
        self.last = last
        if not last:
            self.norm_t = nn.LayerNorm(width)
            self.mlp_t = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width))

    def forward(
        self, q: torch.Tensor, text: torch.Tensor, text_mask: torch.Tensor, vis: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        B, Q = q.shape[:2]
        x = torch.cat([q, text], dim=1)
        pad = torch.cat([torch.zeros(B, Q, dtype=torch.bool, device=q.device), ~text_mask], dim=1)
        h = self.norm_s(x)
        x = x + self.attn_s(h, h, h, key_padding_mask=pad, need_weights=False)[0]
        q, text = x[:, :Q], x[:, Q:]
        v = self.norm_v(vis)
        q = q + self.attn_c(self.norm_c(q), v, v, need_weights=False)[0]
        q = q + self.mlp_q(self.norm_q(q))
        return q, (text if self.last else text + self.mlp_t(self.norm_t(text)))


def _mlp(d_in: int, hidden: int, d_out: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(d_in, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, hidden), nn.GELU(),
        nn.Linear(hidden, d_out),
    )  # fmt: skip


def _count(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


class FormerFusion(nn.Module):
    """visual tokens (B, F, N, Dv) + pooled (B, F, Dv), text (B, L, Dt) + mask, proprio (B, P)
    -> actions (B, K*A) through the embodied-former; ``queries_out`` gives the former's output."""

    def __init__(self, cfg: PolicyModelConfig, vis_dim: int, text_dim: int, out_dim: int):
        super().__init__()
        W = cfg.width
        self.vis_proj = nn.Linear(vis_dim, W)
        self.views = len(cfg.views())
        # which frame of the history and which camera (frame-major: f0 views..., f1 views...)
        self.frame_embed = nn.Parameter(torch.zeros(1, cfg.frames * self.views, 1, W))
        self.text_proj = nn.Linear(text_dim, W)
        self.queries = nn.Parameter(torch.randn(1, cfg.num_queries, W) * 0.02)
        self.layers = nn.ModuleList(
            EmbodiedFormerLayer(W, cfg.heads, cfg.dropout, last=i == cfg.layers - 1) for i in range(cfg.layers)
        )
        self.norm = nn.LayerNorm(W)
        self.global_proj = nn.Linear(self.views * vis_dim, W)
        self.head = _mlp(cfg.num_queries * W + W + cfg.proprio_dims, cfg.head_hidden, out_dim, cfg.dropout)

    def queries_out(self, vis_tokens, text_tokens, text_mask) -> torch.Tensor:
        """-> (B, Q, W), the instance-level features."""
        B = vis_tokens.shape[0]
        vis = (self.vis_proj(vis_tokens) + self.frame_embed).flatten(1, 2)  # (B, F*N, W)
        text = self.text_proj(text_tokens)
        q = self.queries.expand(B, -1, -1)
        for layer in self.layers:
            q, text = layer(q, text, text_mask, vis)
        return self.norm(q)

    def forward(self, vis_tokens, pooled, text_tokens, text_mask, proprio) -> torch.Tensor:
        q = self.queries_out(vis_tokens, text_tokens, text_mask).flatten(1)
        glob = self.global_proj(pooled[:, -self.views :].flatten(1))  # the current frame's views
        return self.head(torch.cat([q, glob, proprio], dim=-1))


class ConcatFusion(nn.Module):
    """Baseline: [pooled image of every frame; masked-mean text; proprio] -> MLP (hidden ``hidden``)."""

    def __init__(self, cfg: PolicyModelConfig, vis_dim: int, text_dim: int, out_dim: int, hidden: int):
        super().__init__()
        W = cfg.width
        self.img_proj = nn.Linear(vis_dim, W)
        self.text_proj = nn.Linear(text_dim, W)
        self.head = _mlp(cfg.frames * len(cfg.views()) * W + W + cfg.proprio_dims, hidden, out_dim, cfg.dropout)

    @staticmethod
    def head_params(d_in: int, hidden: int, d_out: int) -> int:
        return (d_in + 1) * hidden + (hidden + 1) * hidden + (hidden + 1) * d_out

    def forward(self, vis_tokens, pooled, text_tokens, text_mask, proprio) -> torch.Tensor:
        m = text_mask.to(text_tokens.dtype).unsqueeze(-1)
        text = (text_tokens * m).sum(1) / m.sum(1).clamp_min(1.0)
        img = self.img_proj(pooled).flatten(1)
        return self.head(torch.cat([img, self.text_proj(text), proprio], dim=-1))


def matched_concat_hidden(cfg: PolicyModelConfig, vis_dim: int, text_dim: int, out_dim: int) -> int:
    """The concat head's hidden size h whose model has (nearest to) the former's parameter
    count: solves h^2 + (d_in + 3 + d_out) h + (fixed + d_out - target) = 0 for the two-hidden-
    layer MLP, where ``fixed`` is the concat model's projections."""
    target = _count(FormerFusion(cfg, vis_dim, text_dim, out_dim))
    W = cfg.width
    fixed = (vis_dim + 1) * W + (text_dim + 1) * W
    d_in = cfg.frames * len(cfg.views()) * W + W + cfg.proprio_dims
    b, c = d_in + 3 + out_dim, fixed + out_dim - target
    h = (-b + math.sqrt(b * b - 4 * c)) / 2
    return max(1, round(h))


class VisionPolicy(PolicyBase):
    """``forward(batch) -> {"loss", "mse_first"}`` (behaviour cloning); ``predict(state,
    text_tokens, text_mask, images) -> (B, K, A)``. Same interface as ``PlanConditionedPolicy``.

    images: (B, 3, H, W) or (B, F*V, 3, H, W) in [0, 1]: ``model.frames`` F of history, oldest
    first, each the V views of ``model.views()`` in order; state (B, D) raw observations, of
    which the first ``proprio_dims`` (normalised with the demos' mean/std) are the
    proprioception; text_tokens (B, L, Dt), text_mask (B, L) bool.
    """

    def __init__(self, cfg: PolicyModelConfig, state_dim: int, action_dim: int, text_dim: int, text_len: int):
        super().__init__(state_dim, text_dim, text_len)
        if cfg.arch not in ("former", "concat"):
            raise ConfigError(f"model.arch: expected 'former' or 'concat', got {cfg.arch!r}")
        if cfg.frames < 1:
            raise ConfigError(f"model.frames: expected >= 1, got {cfg.frames}")
        self.cfg, self.state_dim, self.action_dim = cfg, state_dim, action_dim
        self.image_encoder = ImageTower(cfg.image_encoder, cfg.image_size)
        D, out = self.image_encoder.output_dim, cfg.chunk * action_dim
        if cfg.arch == "former":
            self.fusion: nn.Module = FormerFusion(cfg, D, text_dim, out)
        else:
            hidden = cfg.concat_hidden or matched_concat_hidden(cfg, D, text_dim, out)
            self.fusion = ConcatFusion(cfg, D, text_dim, out, hidden)
            enc = self.image_encoder.encoder
            if isinstance(enc, SpatialSoftmaxCNN):  # concat reads only the pooled keypoints, never the tokens
                for p in (enc.token_proj.weight, enc.token_proj.bias, enc.token_embed):
                    p.requires_grad_(False)
        bad = [i for i in cfg.aux_state if not 0 <= i < state_dim]
        if bad:
            raise ConfigError(f"model.aux_state: dims {bad} outside the state's 0..{state_dim - 1}")
        # the same in both archs: the current frame's pooled views -> the chosen state dims
        self.aux_head = nn.Linear(len(cfg.views()) * D, len(cfg.aux_state)) if cfg.aux_state else None

    def parameter_counts(self) -> dict[str, int]:
        """All parameters, the trained ones (a frozen tower's, and the spatial-softmax tokens that
        ``concat`` never reads, are not), those outside the image encoder (where the archs
        differ) and the image encoder's."""
        return {
            "total": _count(self),
            "trainable": sum(p.numel() for p in self.parameters() if p.requires_grad),
            "fusion": _count(self.fusion),
            "image_encoder": _count(self.image_encoder),
        }

    def encode_images(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, [F*V,] 3, H, W) -> visual tokens (B, F*V, N, D), pooled (B, F*V, D)."""
        if images.ndim == 4:
            images = images.unsqueeze(1)
        B, Fr = images.shape[:2]
        n = self.cfg.frames * len(self.cfg.views())
        if Fr != n:
            raise ValueError(f"VisionPolicy: expected {n} frame(s) x view(s) per sample, got {Fr}")
        enc = self.image_encoder(images.flatten(0, 1))
        return enc.tokens.unflatten(0, (B, Fr)), enc.pooled.unflatten(0, (B, Fr))

    def former_features(self, images: torch.Tensor, text_tokens: torch.Tensor, text_mask: torch.Tensor):
        """The embodied-former's query outputs (B, Q, W) (``arch: former`` only)."""
        tokens, _ = self.encode_images(images)
        return self.fusion.queries_out(tokens, text_tokens, text_mask.bool())

    def predict(
        self,
        state: torch.Tensor,
        text_tokens: torch.Tensor,
        text_mask: torch.Tensor,
        images: torch.Tensor | None = None,
    ) -> torch.Tensor:
        if images is None:
            raise ValueError("VisionPolicy: batch has no 'images'")
        proprio = self.normalized_state(state)[:, : self.cfg.proprio_dims]
        tokens, pooled = self.encode_images(images)
        if self.aux_head is not None:
            self._pooled = pooled  # for the auxiliary loss in forward()
        out = self.fusion(tokens, pooled, text_tokens, text_mask.bool(), proprio)
        return out.view(state.shape[0], self.cfg.chunk, self.action_dim)

    def forward(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        from embodied.policy.model import bc_loss

        if self.training and self.cfg.image_shift > 0 and "images" in batch:
            batch = {**batch, "images": random_shift(batch["images"], self.cfg.image_shift)}
        if self.aux_head is None:
            return bc_loss(self, batch)
        self._pooled = None
        out = bc_loss(self, batch)  # predict() keeps the pooled features it computed
        V = len(self.cfg.views())
        dims = list(self.cfg.aux_state)
        target = self.normalized_state(batch["state"])[:, dims]
        aux = ((self.aux_head(self._pooled[:, -V:].flatten(1)) - target) ** 2).mean()
        self._pooled = None
        return {
            **out,
            "bc_loss": out["loss"].detach(),
            "aux_mse": aux.detach(),
            "loss": out["loss"] + self.cfg.aux_weight * aux,
        }


def random_shift(images: torch.Tensor, pad: int) -> torch.Tensor:
    """(B, [F,] C, H, W) -> same shape: each sample (all its frames alike) edge-padded by
    ``pad`` and cropped back at a random offset in [0, 2 * pad]."""
    x = images if images.ndim == 5 else images.unsqueeze(1)
    B, Fr, C, H, W = x.shape
    padded = F.pad(x.flatten(1, 2), (pad, pad, pad, pad), mode="replicate").unflatten(1, (Fr, C))
    off = torch.randint(0, 2 * pad + 1, (B, 2)).tolist()
    out = torch.stack([padded[b, :, :, i : i + H, j : j + W] for b, (i, j) in enumerate(off)])
    return out if images.ndim == 5 else out.squeeze(1)


__all__ = [
    "ConcatFusion",
    "EmbodiedFormerLayer",
    "FormerFusion",
    "ImageTower",
    "VisionPolicy",
    "check_image_size",
    "matched_concat_hidden",
    "random_shift",
]
