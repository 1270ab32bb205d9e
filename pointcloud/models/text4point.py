"""Text4Point-style image-bridged point-text pre-training (Huang et al. 2023, "Joint
Representation Learning for Text and 3D Point Cloud"; its code was not released, so this is
our reading of the paper): a point encoder is aligned to a frozen image-text model through
RGB-D pixel-point correspondences, so it inherits the image model's text alignment and can
classify zero-shot with prompted class texts, with no text seen in training.

Losses per batch of (cloud, RGB render, the render's camera):
* token level: every patch centre of the point encoder is projected into the image with the
  render's camera; its token is contrasted (InfoNCE) against the frozen image patch token
  at that pixel, with centres landing on the same patch of the same image as positives;
* global: the pooled point embedding against the image embedding (CLIP InfoNCE).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from pointcloud import projection
from vlx.losses import ClipLoss


class Text4PointPretrainer(nn.Module):
    def __init__(
        self, teacher: nn.Module, point_encoder: nn.Module, image_size: int, patch_size: int, token_weight: float = 1.0
    ):
        super().__init__()
        self.teacher = teacher.requires_grad_(False)
        self.points = point_encoder
        E = teacher.embed_dim
        self.proj = nn.Linear(point_encoder.output_dim, E, bias=False)
        self.token_proj = nn.Linear(point_encoder.output_dim, E, bias=False)
        self.image_size, self.patch_size = image_size, patch_size
        self.token_weight = token_weight
        # the token ids (row offset + patch) are unique within a rank's batch only
        self.token_loss = ClipLoss(id_scope="local")
        self.loss = ClipLoss()
        self.log_scale = nn.Parameter(torch.tensor(2.6593))  # log(1/0.07), CLIP's init

    def train(self, mode: bool = True) -> Text4PointPretrainer:
        super().train(mode)
        self.teacher.eval()
        return self

    def encode_points(self, points: torch.Tensor) -> torch.Tensor:
        """points (B, N, 3) -> normalised (B, E) in the teacher's text-aligned space."""
        return F.normalize(self.proj(self.points(points).pooled), dim=-1)

    def correspondences(self, centers: torch.Tensor, views: torch.Tensor) -> torch.Tensor:
        """centers (B, G, 3), views (B, 2) -> index (B, G) of the image patch token (CLS = 0)
        that each centre projects to, with the cameras the renders were made with."""
        mats = projection.view_matrices(views.to(centers.device)).unsqueeze(1)  # (B, 1, 3, 3)
        pix, _ = projection.project_points(centers, mats, self.image_size)  # (B, 1, G), float32 geometry
        row, col = pix[:, 0] // self.image_size, pix[:, 0] % self.image_size
        grid = self.image_size // self.patch_size
        return 1 + (row // self.patch_size) * grid + col // self.patch_size

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        pts, views, images = batch["points"], batch["views"], batch["images"]
        out = self.points(pts)
        centers = self.points.last_centers  # (B, G, 3), set by the encoder's forward
        with torch.no_grad():
            img = self.teacher.image_encoder(images)
            img_tokens = F.normalize(self.teacher.image_proj(img.tokens), dim=-1)  # (B, 1+P, E)
            img_embed = F.normalize(self.teacher.image_proj(img.pooled), dim=-1)
        patch = self.correspondences(centers, views)  # (B, G)
        B, G = patch.shape
        target = img_tokens.gather(1, patch.unsqueeze(-1).expand(-1, -1, img_tokens.shape[-1])).reshape(B * G, -1)
        tok = F.normalize(self.token_proj(out.tokens), dim=-1).reshape(B * G, -1)
        ids = (torch.arange(B, device=pts.device).view(B, 1) * img_tokens.shape[1] + patch).reshape(-1)
        scale = self.log_scale.exp().clamp(max=100)
        token_loss = self.token_loss(tok, target, scale, ids=ids)
        global_loss = self.loss(F.normalize(self.proj(out.pooled), dim=-1), img_embed, scale)
        return {
            "loss": global_loss + self.token_weight * token_loss,
            "token": token_loss.detach(),
            "global": global_loss.detach(),
        }
