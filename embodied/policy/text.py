"""Frozen text features for the policy: the core's text encoder (the offline MiniLM by
default) run once per distinct string and cached on the instance, since plans repeat (a
Meta-World suite has one plan text per task; the cache turns per-step encoding into a lookup).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from vlx.encoders import EncoderConfig, build_text_encoder
from vlx.tokenizers import TokenizerConfig, build_tokenizer


class TextFeatureCache:
    """``features(texts) -> (tokens (N, L, D) float32, mask (N, L) bool)`` with L the
    tokenizer's ``max_length`` (padded, so any two results stack). Runs on the CPU under
    ``no_grad``; the encoder is frozen and never part of the trained model."""

    def __init__(
        self, encoder: EncoderConfig | None = None, tokenizer: TokenizerConfig | None = None, batch_size: int = 64
    ):
        self.encoder_cfg = encoder or EncoderConfig(name="minilm", freeze=True)
        self.tokenizer_cfg = tokenizer or TokenizerConfig(name="minilm", max_length=32)
        self.tokenizer = build_tokenizer(self.tokenizer_cfg)
        self.encoder = build_text_encoder(self.encoder_cfg).eval()
        self.encoder.requires_grad_(False)
        self.dim = int(self.encoder.output_dim)
        self.length = int(self.tokenizer_cfg.max_length)
        self.batch_size = batch_size
        self._cache: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    @torch.no_grad()
    def _encode(self, texts: list[str]) -> None:
        for s in range(0, len(texts), self.batch_size):
            chunk = texts[s : s + self.batch_size]
            t = self.tokenizer(chunk)
            out = self.encoder(t["input_ids"], t["attention_mask"])
            tokens, mask = out.tokens.float(), t["attention_mask"].bool()
            L = tokens.shape[1]
            if L < self.length:
                tokens = torch.nn.functional.pad(tokens, (0, 0, 0, self.length - L))
                mask = torch.nn.functional.pad(mask, (0, self.length - L))
            for i, text in enumerate(chunk):
                self._cache[text] = (tokens[i, : self.length].clone(), mask[i, : self.length].clone())

    def features(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        todo = sorted({t for t in texts if t not in self._cache})
        if todo:
            self._encode(todo)
        tokens = torch.stack([self._cache[t][0] for t in texts])
        mask = torch.stack([self._cache[t][1] for t in texts])
        return tokens, mask

    def __len__(self) -> int:
        return len(self._cache)


__all__ = ["TextFeatureCache"]
