"""A CLIP-style text transformer (Radford et al. 2021): token + learned position embeddings,
pre-norm Blocks (shared with the ViT), a final LayerNorm, and CLS / mean / EOT pooling.
Bidirectional by default (fits the MiniLM/BERT tokenizer's [CLS] ... [SEP]); ``causal=True``
with ``pool="eot"`` is CLIP's text tower."""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch import nn

from vlx.encoders.base import TEXT_ENCODERS, EncoderOutput, construct, resolve_preset
from vlx.encoders.vit import Block

# vocab 30522 = the default (MiniLM/BERT uncased) tokenizer; ``base`` is CLIP ViT-B's text size.
TEXT_PRESETS: dict[str, dict[str, Any]] = {
    "tiny": dict(vocab_size=30522, context_length=64, width=64, layers=2, heads=2, pool="mean"),
    "small": dict(vocab_size=30522, context_length=64, width=256, layers=4, heads=4, pool="mean"),
    "base": dict(vocab_size=30522, context_length=77, width=512, layers=12, heads=8, causal=True, pool="eot"),
}


def masked_mean(tokens: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """tokens (B, L, D), mask (B, L) (1 = real token) or None -> (B, D) mean over real tokens."""
    if mask is None:
        return tokens.mean(dim=1)
    m = mask.to(tokens.dtype).unsqueeze(-1)
    return (tokens * m).sum(dim=1) / m.sum(dim=1).clamp_min(1.0)


class TextTransformer(nn.Module):
    """``forward(input_ids (B, L), attention_mask (B, L) or None) -> EncoderOutput(pooled (B, D),
    tokens (B, L, D), mask (B, L) bool)``. Padding must be on the right (``eot`` pools the last
    real token); padded keys are never attended to."""

    def __init__(
        self,
        vocab_size: int = 30522,
        context_length: int = 64,
        width: int = 512,
        layers: int = 12,
        heads: int = 8,
        causal: bool = False,
        pool: Literal["cls", "mean", "eot"] = "mean",
        mlp_ratio: float = 4.0,
        drop: float = 0.0,
    ):
        super().__init__()
        if pool not in ("cls", "mean", "eot"):
            raise ValueError(f"pool must be 'cls', 'mean' or 'eot', got {pool!r}")
        self.vocab_size, self.context_length, self.causal, self.pool = vocab_size, context_length, causal, pool
        self.output_dim = self.embed_dim = width
        self.token_embedding = nn.Embedding(vocab_size, width)
        self.pos_embed = nn.Parameter(torch.zeros(1, context_length, width))
        self.blocks = nn.ModuleList([Block(width, heads, mlp_ratio, drop=drop) for _ in range(layers)])
        self.norm = nn.LayerNorm(width)
        nn.init.normal_(self.token_embedding.weight, std=0.02)
        nn.init.normal_(self.pos_embed, std=0.01)
        for m in self.blocks.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)

    def _attn_mask(self, attention_mask: torch.Tensor | None, L: int) -> torch.Tensor | None:
        """(B, 1, 1|L, L) bool (True = attend), or None when SDPA's fused path gives the same
        real-token outputs: nothing padded, or causal attention over right-padded text (a real
        token only sees earlier positions, which are all real). Pad positions' outputs then
        differ, but they are marked False in the returned mask and never pooled.

        Off the CPU nothing is read back to the host (that would wait for the device every
        forward): causal text is taken as right-padded, as documented, under an asynchronous
        device assertion, and bidirectional text always gets its mask."""
        if attention_mask is None:
            return None
        real = attention_mask.bool()
        on_host = real.device.type == "cpu"
        if self.causal:
            right = (real[:, 1:] <= real[:, :-1]).all()
            if not on_host:
                torch._assert_async(right, "TextTransformer: causal text must be right-padded")
                return None
            if bool(right):
                return None
        elif on_host and bool(real.all()):
            return None
        keep = real[:, None, None, :]  # (B, 1, 1, L)
        if self.causal:
            keep = keep & torch.ones(L, L, dtype=torch.bool, device=keep.device).tril()
        return keep

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> EncoderOutput:
        B, L = input_ids.shape
        if L > self.context_length:
            raise ValueError(
                f"TextTransformer: input length {L} exceeds context_length {self.context_length}; "
                "lower the tokenizer's max_length or raise context_length"
            )
        x = self.token_embedding(input_ids) + self.pos_embed[:, :L]
        attn_mask = self._attn_mask(attention_mask, L)
        for blk in self.blocks:
            x = blk(x, attn_mask=attn_mask, is_causal=self.causal)
        tokens = self.norm(x)
        mask = (
            attention_mask.bool() if attention_mask is not None else torch.ones(B, L, dtype=torch.bool, device=x.device)
        )
        if self.pool == "cls":
            pooled = tokens[:, 0]
        elif self.pool == "mean":
            pooled = masked_mean(tokens, mask)
        else:  # the last real token (CLIP's EOT) under right padding
            last = mask.long().sum(dim=1).clamp_min(1) - 1
            pooled = tokens[torch.arange(B, device=tokens.device), last]
        return EncoderOutput(pooled=pooled, tokens=tokens, mask=mask)


@TEXT_ENCODERS.register("transformer")
def build_text_transformer(preset: str | None = None, path: str | None = None, **kwargs: Any) -> TextTransformer:
    """A TextTransformer from a preset (``tiny``, ``small``, ``base``) + keyword overrides."""
    values = resolve_preset(TEXT_PRESETS, preset, kwargs, "text encoder 'transformer'")
    return construct(TextTransformer, "text encoder 'transformer'", values)
