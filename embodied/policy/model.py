"""The plan-conditioned state policy, after EmbodiedGPT's embodied-former (Mu et al., 2023):
learnable queries cross-attend to state tokens and to the plan text's token features; the query
outputs, concatenated with a global state feature and proprioception, feed an MLP that predicts
a chunk of K actions (K = 1: a plain BC head; K > 1: ACT-style action chunks, executed
receding-horizon). Image observations (``obs: image``) build ``embodied.policy.vision``'s
``VisionPolicy`` instead (``build_policy``).

Text features come precomputed from a frozen text encoder (``embodied.policy.text``), so
this module trains only its own (small) weights and its checkpoint holds no text encoder.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from vlx.encoders import EncoderConfig


@dataclass
class PolicyModelConfig:
    """obs: "state" (flat observation vector, split into ``state_token_size`` tokens) or
    "image" (RGB from ``camera`` at ``image_size`` through ``image_encoder``: ``cnn`` = a small
    CNN, any core image encoder such as ``vit``, or ``pretrained`` + ``path`` for
    ``vlx.create_model_and_transforms``; see ``embodied.policy.vision``). ``proprio_dims``: the
    leading state dims that are proprioception (Meta-World: hand xyz + gripper = 4; Franka Kitchen:
    robot joint positions and velocities = 18), fed to the
    head directly. ``text_dropout``: training-time probability of replacing the plan text by
    the empty text, so the "no text" evaluation mode stays in distribution. Image policies
    only: ``arch`` "former" (embodied-former) or "concat" (the baseline), ``frames`` of
    history, ``concat_hidden`` (None: sized to the former's parameter count), ``image_shift``
    (random-shift augmentation in training: pad by that many pixels, edge-replicated, then
    crop at a random offset, as DrQ, Kostrikov et al. 2021), ``cameras`` (several views, each
    encoded alone and fed to the fusion as its own frame; empty: ``[camera]``). Image encoder
    ``cnn_spatial_softmax``: ``SpatialSoftmaxCNN`` (robomimic's keypoint encoder, small trunk).
    ``aux_state`` (vlx's variant, not EmbodiedGPT's): training only, a linear head on the current
    frame's pooled image features regresses these (normalised) state dims, e.g. Meta-World's
    object and goal positions, with weight ``aux_weight`` added to the BC loss; the policy
    never reads the state beyond ``proprio_dims``, at training or test time."""

    obs: Literal["state", "image"] = "state"
    state_token_size: int = 3
    proprio_dims: int = 4
    image_encoder: EncoderConfig = field(default_factory=lambda: EncoderConfig(name="cnn"))
    camera: str = "corner"
    image_size: int = 64
    shadows: bool = False  # the camera renders shadows/reflections (must match the demos; off: ~6x cheaper)
    width: int = 128
    num_queries: int = 4
    heads: int = 4
    layers: int = 2
    head_hidden: int = 256
    chunk: int = 1
    dropout: float = 0.0
    text_dropout: float = 0.1
    arch: Literal["former", "concat"] = "former"
    frames: int = 1
    concat_hidden: int | None = None
    image_shift: int = 0  # training-time random shift of the frames by up to this many pixels (DrQ)
    cameras: list[str] = field(default_factory=list)  # several views (each its own frame); empty: [camera]
    aux_state: list[int] = field(default_factory=list)  # state dims an auxiliary head regresses from the image
    aux_weight: float = 1.0

    def views(self) -> list[str]:
        """The cameras an image policy sees, in order: ``cameras``, or ``[camera]`` when empty."""
        return list(self.cameras) or [self.camera]


class SmallCNN(nn.Module):
    """(B, 3, H, W) in [0, 1] -> tokens (B, h*w, C) of the last feature map and pooled (B, C)."""

    def __init__(self, width: int = 64):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(3, 32, 5, stride=2, padding=2),
            nn.GELU(),
            nn.Conv2d(32, 64, 3, stride=2, padding=1),
            nn.GELU(),
            nn.Conv2d(64, width, 3, stride=2, padding=1),
            nn.GELU(),
        )
        self.output_dim = width

    def forward(self, images: torch.Tensor):
        from vlx.encoders import EncoderOutput

        fmap = self.net(images)  # (B, C, h, w)
        tokens = fmap.flatten(2).transpose(1, 2)
        return EncoderOutput(pooled=tokens.mean(1), tokens=tokens, mask=None)


class SpatialSoftmaxCNN(nn.Module):
    """CNN + spatial softmax, the image encoder of robomimic's BC-RNN (Mandlekar et al., 2021,
    after Levine et al., 2016): a conv trunk (``channels`` / 2, ``channels``, ``channels``
    filters at strides 2, 2, 1: 64x64 frames give a 16x16 map),
    a 1x1 conv to ``keypoints`` heat maps, a softmax over each map (learned temperature) and
    its expected (x, y) in [-1, 1]. Our small trunk replaces robomimic's ResNet-18 (CPU
    budget). (B, 3, H, W) -> pooled (B, width) = a linear map of the flattened keypoints (as
    robomimic), tokens (B, keypoints, width) = one per keypoint: a linear map of its (x, y) and
    of the feature map averaged under its softmax, plus a learned embedding of which keypoint."""

    def __init__(self, width: int = 64, keypoints: int = 32, channels: int = 32, temperature: float = 1.0):
        super().__init__()
        # GroupNorm after each conv (robomimic's ResNet has BatchNorm): without a normalisation
        # the small trunk's maps start nearly flat, every softmax is uniform, every keypoint
        # sits at the centre whatever the image, and BC learns a blind policy (measured here).
        self.net = nn.Sequential(
            nn.Conv2d(3, channels // 2, 5, stride=2, padding=2),
            nn.GroupNorm(min(8, channels // 2), channels // 2),
            nn.GELU(),
            nn.Conv2d(channels // 2, channels, 3, stride=2, padding=1),
            nn.GroupNorm(min(8, channels), channels),
            nn.GELU(),
            nn.Conv2d(channels, channels, 3, stride=1, padding=1),
            nn.GroupNorm(min(8, channels), channels),
            nn.GELU(),
        )
        self.to_maps = nn.Conv2d(channels, keypoints, 1)
        self.log_temperature = nn.Parameter(torch.tensor(math.log(temperature)))  # learned, from ``temperature``
        self.pool_proj = nn.Linear(2 * keypoints, width)
        self.token_proj = nn.Linear(2 + channels, width)
        self.token_embed = nn.Parameter(torch.zeros(1, keypoints, width))
        self.output_dim = width

    def keypoints(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """-> expected (x, y) per keypoint (B, K, 2) in [-1, 1] (x right, y down) and the
        feature map averaged under each keypoint's softmax (B, K, C)."""
        fmap = self.net(images)  # (B, C, h, w)
        B, C, h, w = fmap.shape
        attn = torch.softmax(self.to_maps(fmap).flatten(2) / self.log_temperature.exp(), dim=-1)  # (B, K, h*w)
        ys, xs = torch.meshgrid(
            torch.linspace(-1, 1, h, device=fmap.device, dtype=fmap.dtype),
            torch.linspace(-1, 1, w, device=fmap.device, dtype=fmap.dtype),
            indexing="ij",
        )
        grid = torch.stack([xs.flatten(), ys.flatten()], dim=-1)  # (h*w, 2)
        return attn @ grid, attn @ fmap.flatten(2).transpose(1, 2)

    def forward(self, images: torch.Tensor):
        from vlx.encoders import EncoderOutput

        kp, feat = self.keypoints(images)
        tokens = self.token_proj(torch.cat([kp, feat], dim=-1)) + self.token_embed
        return EncoderOutput(pooled=self.pool_proj(kp.flatten(1)), tokens=tokens, mask=None)


class StateTokenizer(nn.Module):
    """(B, D) normalised state -> (B, N, W) tokens: consecutive groups of ``size`` dims, each
    group with its own linear embedding (a grouped linear; groups are e.g. hand xyz, puck xyz)."""

    def __init__(self, state_dim: int, size: int, width: int):
        super().__init__()
        self.n = -(-state_dim // size)
        self.size, self.state_dim = size, state_dim
        self.weight = nn.Parameter(torch.randn(self.n, size, width) / size**0.5)
        self.bias = nn.Parameter(torch.zeros(self.n, width))

    def forward(self, state: torch.Tensor) -> torch.Tensor:
        pad = self.n * self.size - self.state_dim
        x = F.pad(state, (0, pad)).view(state.shape[0], self.n, self.size)
        return torch.einsum("bns,nsw->bnw", x, self.weight) + self.bias


class FormerLayer(nn.Module):
    """Queries (B, Q, W): cross-attention to observation tokens, then to text tokens, then
    self-attention, then an MLP, each pre-norm with a residual."""

    def __init__(self, width: int, heads: int, dropout: float):
        super().__init__()
        self.norm_o, self.norm_t, self.norm_s, self.norm_m = (nn.LayerNorm(width) for _ in range(4))
        self.attn_o = nn.MultiheadAttention(width, heads, dropout=dropout, batch_first=True)
        self.attn_t = nn.MultiheadAttention(width, heads, dropout=dropout, batch_first=True)
        self.attn_s = nn.MultiheadAttention(width, heads, dropout=dropout, batch_first=True)
        self.mlp = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width))

    def forward(
        self, q: torch.Tensor, obs_tokens: torch.Tensor, text_tokens: torch.Tensor, text_mask: torch.Tensor
    ) -> torch.Tensor:
        h = self.norm_o(q)
        q = q + self.attn_o(h, obs_tokens, obs_tokens, need_weights=False)[0]
        h = self.norm_t(q)
        q = q + self.attn_t(h, text_tokens, text_tokens, key_padding_mask=~text_mask, need_weights=False)[0]
        h = self.norm_s(q)
        q = q + self.attn_s(h, h, h, need_weights=False)[0]
        return q + self.mlp(self.norm_m(q))


class PolicyBase(nn.Module):
    """What the state and the vision policy share: the demos' state mean/std and the empty
    text's features, as buffers (saved in the checkpoint; set from the data before training)."""

    def __init__(self, state_dim: int, text_dim: int, text_len: int):
        super().__init__()
        self.register_buffer("state_mean", torch.zeros(state_dim))
        self.register_buffer("state_std", torch.ones(state_dim))
        self.register_buffer("null_text_tokens", torch.zeros(text_len, text_dim))
        self.register_buffer("null_text_mask", torch.zeros(text_len, dtype=torch.bool))

    def set_normalization(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        self.state_mean.copy_(mean)
        self.state_std.copy_(std.clamp_min(1e-3))  # constant dims (unused object slots) stay finite

    def set_null_text(self, tokens: torch.Tensor, mask: torch.Tensor) -> None:
        self.null_text_tokens.copy_(tokens)
        self.null_text_mask.copy_(mask)

    def normalized_state(self, state: torch.Tensor) -> torch.Tensor:
        return (state - self.state_mean) / self.state_std


class PlanConditionedPolicy(PolicyBase):
    """``forward(batch) -> {"loss", "mse"}`` for behaviour cloning; ``predict(...) -> (B, K, A)``.

    batch: ``state`` (B, D) raw observation vectors; ``text_tokens`` (B, L, Dt) and
    ``text_mask`` (B, L) bool from the frozen text encoder; ``actions`` (B, K, A) targets with
    ``action_mask`` (B, K) (False past the episode's end); ``images`` (B, 3, H, W) in [0, 1]
    when ``obs == "image"``. States are normalised with the demos' mean/std (buffers saved in
    the checkpoint); the empty text's features are a buffer too (text dropout, "none" mode).
    """

    def __init__(self, cfg: PolicyModelConfig, state_dim: int, action_dim: int, text_dim: int, text_len: int):
        super().__init__(state_dim, text_dim, text_len)
        self.cfg, self.state_dim, self.action_dim = cfg, state_dim, action_dim
        W = cfg.width
        if cfg.obs != "state":
            raise ValueError("PlanConditionedPolicy takes states; image policies are embodied.policy.vision")
        self.state_tokens = StateTokenizer(state_dim, cfg.state_token_size, W)
        self.obs_pos = nn.Parameter(torch.zeros(1, self.state_tokens.n, W))
        self.global_obs = nn.Sequential(nn.Linear(state_dim, W), nn.GELU(), nn.Linear(W, W))
        self.text_proj = nn.Linear(text_dim, W)
        self.queries = nn.Parameter(torch.randn(1, cfg.num_queries, W) * 0.02)
        self.layers = nn.ModuleList(FormerLayer(W, cfg.heads, cfg.dropout) for _ in range(cfg.layers))
        self.norm = nn.LayerNorm(W)
        head_in = cfg.num_queries * W + W + cfg.proprio_dims
        self.head = nn.Sequential(
            nn.Linear(head_in, cfg.head_hidden),
            nn.GELU(),
            nn.Dropout(cfg.dropout),
            nn.Linear(cfg.head_hidden, cfg.head_hidden),
            nn.GELU(),
            nn.Linear(cfg.head_hidden, cfg.chunk * action_dim),
        )

    def predict(
        self,
        state: torch.Tensor,
        text_tokens: torch.Tensor,
        text_mask: torch.Tensor,
        images: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """state (B, D), text_tokens (B, L, Dt), text_mask (B, L) bool -> actions (B, K, A)
        (``images`` is ignored: the interface is shared with ``VisionPolicy``)."""
        s = self.normalized_state(state)
        obs_tokens = self.state_tokens(s) + self.obs_pos
        glob = self.global_obs(s)
        text = self.text_proj(text_tokens)
        mask = text_mask.bool()
        q = self.queries.expand(s.shape[0], -1, -1)
        for layer in self.layers:
            q = layer(q, obs_tokens, text, mask)
        q = self.norm(q).flatten(1)
        out = self.head(torch.cat([q, glob, s[:, : self.cfg.proprio_dims]], dim=-1))
        return out.view(s.shape[0], self.cfg.chunk, self.action_dim)

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return bc_loss(self, batch)


def bc_loss(model: nn.Module, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Behaviour cloning: masked MSE over the action chunk, with text dropout in training
    (the text swapped for the model's empty-text buffers with probability ``text_dropout``)."""
    tokens, mask = batch["text_tokens"], batch["text_mask"].bool()
    if model.training and model.cfg.text_dropout > 0:
        drop = torch.rand(tokens.shape[0], device=tokens.device) < model.cfg.text_dropout
        null_t, null_m = model.null_text_tokens, model.null_text_mask
        L, N = tokens.shape[1], null_t.shape[0]
        if L < N:  # the collate cut trailing padding: pad back (padding is ignored anyway)
            tokens, mask = F.pad(tokens, (0, 0, 0, N - L)), F.pad(mask, (0, N - L))
        tokens = torch.where(drop[:, None, None], null_t.to(tokens.dtype), tokens[:, :N])
        mask = torch.where(drop[:, None], null_m, mask[:, :N])
    pred = model.predict(batch["state"], tokens, mask, batch.get("images"))
    target, amask = batch["actions"], batch["action_mask"].float()
    err = ((pred - target) ** 2).mean(-1)  # (B, K)
    loss = (err * amask).sum() / amask.sum().clamp_min(1.0)
    return {"loss": loss, "mse_first": err[:, 0].mean().detach()}


__all__ = [
    "FormerLayer",
    "PlanConditionedPolicy",
    "PolicyBase",
    "PolicyModelConfig",
    "SmallCNN",
    "SpatialSoftmaxCNN",
    "StateTokenizer",
    "bc_loss",
]
