"""open_clip's model interface over a ``DualEncoder``, so that users' habits carry over
(``vlx.create_model_and_transforms`` returns this).

Differences from ``DualEncoder``'s own methods, all as open_clip has them: ``encode_image`` /
``encode_text`` return unnormalised embeddings unless ``normalize=True``; ``encode_text``
takes the tokenizer's output (a dict, or a tensor of ids); ``logit_scale`` is the parameter
holding the *log* of the scale (use ``model.logit_scale.exp()``); SigLIP's ``logit_bias``
is the bias parameter (None for CLIP-style models). The wrapped model is ``.dual``; recipes
and siblings that take a ``DualEncoder`` take ``model.dual``.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from vlx.models.dual_encoder import DualEncoder, DualEncoderOutput

Tokens = Mapping[str, torch.Tensor] | torch.Tensor


def split_tokens(tokens: Tokens) -> tuple[torch.Tensor, torch.Tensor | None]:
    """A tokenizer's output dict (``input_ids``, ``attention_mask``) or an ids tensor ->
    (input_ids (B, L), attention_mask (B, L) or None)."""
    if isinstance(tokens, torch.Tensor):
        return tokens, None
    if isinstance(tokens, Mapping) and "input_ids" in tokens:
        return tokens["input_ids"], tokens.get("attention_mask")
    raise TypeError(f"tokens: expected the tokenizer's dict or an ids tensor, got {type(tokens).__name__}")


class CLIP(nn.Module):
    """``encode_image(images (B, 3, H, W), normalize=False) -> (B, E)``;
    ``encode_text(tokens, normalize=False) -> (B, E)``; ``forward(images, tokens) ->
    DualEncoderOutput`` (normalised embeddings, exp'd scale, bias); ``get_logits(images,
    tokens) -> (logits_per_image (Bi, Bt), logits_per_text (Bt, Bi))`` = scale * cos + bias."""

    def __init__(self, dual: DualEncoder):
        super().__init__()
        self.dual = dual

    @property
    def kind(self) -> str:
        """Where the model came from: "preset", "clip" or "siglip"."""
        return self.dual.source[0]

    @property
    def logit_scale(self) -> nn.Parameter:
        """The log of the logit scale (a parameter, as in open_clip); ``.exp()`` for the scale."""
        return self.dual.log_logit_scale

    @property
    def logit_bias(self) -> nn.Parameter | None:
        return self.dual.logit_bias

    def encode_image(self, images: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        return self.dual.encode_image(images, normalize=normalize)

    def encode_text(self, tokens: Tokens, normalize: bool = False) -> torch.Tensor:
        ids, mask = split_tokens(tokens)
        return self.dual.encode_text(ids, mask, normalize=normalize)

    def forward(self, images: torch.Tensor, tokens: Tokens) -> DualEncoderOutput:
        ids, mask = split_tokens(tokens)
        return self.dual(images, ids, mask)

    def get_logits(self, images: torch.Tensor, tokens: Tokens) -> tuple[torch.Tensor, torch.Tensor]:
        out = self(images, tokens)
        logits = out.logit_scale * out.image_embeds @ out.text_embeds.T
        if out.logit_bias is not None:
            logits = logits + out.logit_bias
        return logits, logits.T
