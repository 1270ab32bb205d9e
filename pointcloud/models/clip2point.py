"""CLIP2Point (Huang et al. 2023): pre-train a depth encoder against a frozen image-text model
by image-depth contrast, then classify clouds zero-shot from multi-view depth against
prompted class texts, and few-shot with the Dual-Path Adapter.

Pre-training loss, per batch of (cloud, its RGB render, the render's camera):
two depth renders d1, d2 from the render's camera with independent camera jitter;
``L_intra = NT-Xent(f(d1), f(d2))`` and ``L_cross = NT-Xent((f(d1) + f(d2)) / 2, g(image))``
with g the frozen image tower; combined with learnable weights
``exp(-s_c) L_cross + exp(-s_i) L_intra + s_c + s_i`` (uncertainty weighting, so a weight
can be learned without collapsing to 0).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from pointcloud import projection
from pointcloud.render_clip2point import check_render, depth_images
from vlx.encoders import build_image_encoder
from vlx.encoders.base import EncoderConfig
from vlx.losses import nt_xent


class DepthEncoder(nn.Module):
    """A core image encoder on 1-channel depth + a projection into the teacher's embedding
    space. depth (B, 1, H, W) -> normalised (B, E)."""

    def __init__(self, image: EncoderConfig, embed_dim: int):
        super().__init__()
        kw = {"in_channels": 1, **dict(image.kwargs)}
        self.backbone = build_image_encoder(EncoderConfig(image.name, image.preset, image.path, False, kw))
        self.proj = nn.Linear(self.backbone.output_dim, embed_dim, bias=False)

    def forward(self, depth: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.proj(self.backbone(depth).pooled), dim=-1)


class Clip2PointPretrainer(nn.Module):
    """``forward(batch)`` with batch ``points (B, N, 3)``, ``images (B, 3, S, S)`` (teacher
    input), ``views (B, 2)`` (azimuth, elevation of the image) -> {"loss", ...}.
    ``render``: the depth images, ``"clip2point"`` (CLIP2Point's renderer, grey in [0, 1]) or
    ``"vlx_depth"`` (``projection.depth_maps``); see ``pointcloud.render_clip2point``."""

    def __init__(
        self,
        teacher: nn.Module,
        depth_encoder: DepthEncoder,
        image_size: int,
        jitter_degrees: float = 10.0,
        temperature: float = 0.1,
        render: str = "clip2point",
    ):
        super().__init__()
        self.render_name = check_render(render)
        self.teacher = teacher.requires_grad_(False)  # the frozen image-text model (DualEncoder)
        self.depth = depth_encoder
        self.image_size = image_size
        self.jitter_degrees = jitter_degrees
        self.temperature = temperature
        self.log_var = nn.Parameter(torch.zeros(2))  # (cross, intra) uncertainty weights

    def train(self, mode: bool = True) -> Clip2PointPretrainer:
        super().train(mode)
        self.teacher.eval()
        return self

    def render(self, points: torch.Tensor, views: torch.Tensor, jitter: float) -> torch.Tensor:
        """points (B, N, 3), views (B, 2) -> depth (B, 1, S, S) from each sample's own camera,
        every sample's camera jittered independently. All on the points' device."""
        mats = projection.view_matrices(views.to(points.device)).unsqueeze(1)  # (B, 1, 3, 3)
        return depth_images(points, mats, self.image_size, self.render_name, jitter_degrees=jitter)

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        pts, views = batch["points"], batch["views"]
        d1 = self.depth(self.render(pts, views, self.jitter_degrees))
        d2 = self.depth(self.render(pts, views, self.jitter_degrees))
        with torch.no_grad():
            img = self.teacher.encode_image(batch["images"])
        intra = nt_xent(d1, d2, self.temperature)
        cross = nt_xent(F.normalize((d1 + d2) / 2, dim=-1), img, self.temperature)
        s = self.log_var
        loss = torch.exp(-s[0]) * cross + torch.exp(-s[1]) * intra + s.sum()
        return {"loss": loss, "cross": cross.detach(), "intra": intra.detach(), "w_cross": torch.exp(-s[0]).detach()}


@torch.no_grad()
def class_text_embeddings(
    dual: nn.Module, tokenizer, class_names: list[str], templates: list[str], fill: dict[str, list[str]] | None = None
) -> torch.Tensor:
    """Prompt-ensembled class embeddings (B=C, E), normalised: every template, and every value
    of the extra fields in ``fill`` (e.g. colours), averaged per class (CLIP's ensembling)."""
    import itertools

    device = next(dual.parameters()).device
    fill = fill or {}
    keys = list(fill)
    out = []
    for name in class_names:
        texts = []
        for t in templates:
            for combo in itertools.product(*[fill[k] for k in keys]):
                texts.append(t.format(shape=name, **dict(zip(keys, combo))))
        tok = tokenizer(texts)
        e = dual.encode_text(tok["input_ids"].to(device), tok["attention_mask"].to(device))
        out.append(F.normalize(e.mean(0), dim=-1))
    return torch.stack(out)


@torch.no_grad()
def multiview_depth_embeddings(
    depth_encoder: DepthEncoder,
    points: torch.Tensor,
    views,
    image_size: int,
    batch_size: int = 64,
    render: str = "clip2point",
) -> torch.Tensor:
    """points (B, N, 3) -> per-view depth embeddings (B, V, E) of the ``render`` images
    (``render_clip2point.depth_images``: CLIP2Point's or vlx's)."""
    out = []
    for s in range(0, points.shape[0], batch_size):
        d = depth_images(points[s : s + batch_size], views, image_size, render)  # (b, V, S, S)
        b, V = d.shape[:2]
        out.append(depth_encoder(d.reshape(b * V, 1, image_size, image_size)).view(b, V, -1))
    return torch.cat(out)


class DualPathAdapter(nn.Module):
    """CLIP2Point's Dual-Path Adapter for few-shot: on frozen multi-view features (B, V, E),
    path 1 adapts every view with a shared bottleneck MLP (residual, ratio ``alpha``) and
    pools the views, path 2 fuses the concatenated views into a global feature with an MLP;
    both are scored against the class text embeddings and added to the zero-shot logits.
    ``forward(feats, text) -> logits (B, C)`` (without the logit scale)."""

    def __init__(self, n_views: int, dim: int, hidden: int = 64, alpha: float = 0.5, beta: float = 1.0):
        super().__init__()
        self.view_mlp = nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Linear(hidden, dim))
        self.global_mlp = nn.Sequential(
            nn.Linear(n_views * dim, hidden), nn.ReLU(), nn.Dropout(0.3), nn.Linear(hidden, dim)
        )
        self.alpha, self.beta = alpha, beta

    def forward(self, feats: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        zero_shot = F.normalize(feats.mean(1), dim=-1) @ text.T
        local = F.normalize(feats + self.alpha * self.view_mlp(feats), dim=-1).mean(1)
        glob = self.global_mlp(feats.flatten(1))
        adapted = F.normalize(local, dim=-1) @ text.T + F.normalize(glob, dim=-1) @ text.T
        return zero_shot + self.beta * adapted


def train_adapter(
    feats: torch.Tensor,
    labels: torch.Tensor,
    text: torch.Tensor,
    steps: int = 300,
    lr: float = 1e-2,
    logit_scale: float = 20.0,
    seed: int = 0,
) -> DualPathAdapter:
    """Fit a DualPathAdapter on few-shot features (K*C, V, E) with cross-entropy."""
    torch.manual_seed(seed)
    ad = DualPathAdapter(feats.shape[1], feats.shape[2]).to(feats.device)
    opt = torch.optim.AdamW(ad.parameters(), lr=lr, weight_decay=1e-2)
    for _ in range(steps):
        loss = F.cross_entropy(logit_scale * ad(feats, text), labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return ad.eval()
