"""LLaVA-style video captioner / video QA (Liu et al. 2023; PLLaVA, Xu et al. 2024): a vision
tower (vlx's own, or a user's CLIP/SigLIP checkpoint: :mod:`video.models.vision_tower`)
encodes each frame to patch tokens, PLLaVA adaptive pooling shrinks the (T, H, W)
grid to (t, h, w), an MLP projector maps the tokens into the LM's embedding space, and any
Hugging Face causal LM from a local directory reads ``[visual tokens] [bos] prompt`` and
predicts the answer. LoRA (peft) on the LM is optional; ``generate`` exposes the usual
decoding options.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from video.io import frames_to_model
from video.pooling import AdaptiveGridPooling
from vlx.config import ConfigError
from vlx.data.preprocess import ImagePreprocess
from vlx.data.transforms import IMAGE_MEAN, IMAGE_STD
from vlx.encoders import EncoderConfig, build_image_encoder


@dataclass
class LoraSettings:
    enabled: bool = False
    r: int = 8
    alpha: int = 16
    dropout: float = 0.05
    target_modules: list[str] = field(default_factory=lambda: ["q_proj", "v_proj"])


@dataclass
class LMConfig:
    """``path``: a local HF causal-LM dir (weights + tokenizer). Empty: a tiny LM is built from
    ``tiny`` (a LlamaConfig dict) with the MiniLM tokenizer and saved to ``tiny_dir``."""

    path: str | None = None
    # Tokenizer of the tiny LM: "words" = a word-level vocabulary built from the training
    # text (tiny softmax, fast on a CPU), "minilm" = the packaged MiniLM WordPiece (30k).
    tiny_vocab: Literal["words", "minilm"] = "words"
    tiny: dict[str, Any] = field(
        default_factory=lambda: dict(
            hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4
        )
    )
    tiny_dir: str = "runs/tiny_lm"
    freeze: bool = False
    lora: LoraSettings = field(default_factory=LoraSettings)


@dataclass
class GenerationConfig:
    max_new_tokens: int = 24
    num_beams: int = 1
    do_sample: bool = False
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 50
    repetition_penalty: float = 1.0


@dataclass
class VideoCaptionerConfig:
    vision: EncoderConfig = field(default_factory=lambda: EncoderConfig(name="vit", preset="tiny"))
    # LLaVA starts from a contrastively pretrained vision tower: a checkpoint (run dir,
    # checkpoint dir or .safetensors) of e.g. a video_retrieval run, and the key prefix of
    # the image encoder inside it.
    vision_init: str | None = None
    vision_init_prefix: str = "dual.image_encoder."
    # A local HF CLIPModel / SiglipModel directory as the vision tower (LLaVA's way, replacing
    # ``vision``): its weights, its preprocessing (preprocessor_config.json), hidden states of
    # ``vision_feature_layer`` (LLaVA/PLLaVA: -2, no post-layernorm), patch tokens only.
    vision_name_or_path: str | None = None
    vision_feature_layer: int = -2
    freeze_vision: bool = False
    pool_size: list[int] = field(default_factory=lambda: [4, 2, 2])  # PLLaVA (t, h, w)
    # "pool_then_project": vlx's captioner order (fewer tokens through the MLP);
    # "project_then_pool": PLLaVA's (the MLP on every patch token, then the 3D pool).
    pooling_order: Literal["pool_then_project", "project_then_pool"] = "pool_then_project"
    # Also give the LM each frame's CLS token (T more tokens, in time order): the summary a
    # contrastively trained tower learned to produce.
    use_cls: bool = False
    # A learned embedding per visual-token slot ((t, h, w) grid cell, and each frame's CLS),
    # added after the projector: the vision tower sees frames one at a time, so without it a
    # token's frame index (and, after pooling, its cell) is only implicit in its sequence
    # position, which a small LM reads poorly.
    visual_pos_embed: bool = False
    projector_layers: int = 2
    lm: LMConfig = field(default_factory=LMConfig)
    generation: GenerationConfig = field(default_factory=GenerationConfig)


def word_tokenizer(corpus: Sequence[str]):
    """A word-level HF tokenizer (``tokenizers`` WordLevel, lower-cased, punctuation split off)
    over the words of ``corpus`` plus [PAD] [UNK] [BOS] [EOS]."""
    from tokenizers import Tokenizer, normalizers, pre_tokenizers
    from tokenizers.models import WordLevel
    from transformers import PreTrainedTokenizerFast

    specials = ["[PAD]", "[UNK]", "[BOS]", "[EOS]"]
    pre = pre_tokenizers.Whitespace()
    words = sorted({w for text in corpus for w, _ in pre.pre_tokenize_str(text.lower())})
    vocab = {t: i for i, t in enumerate(specials + [w for w in words if w not in specials])}
    tok = Tokenizer(WordLevel(vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]", bos_token="[BOS]", eos_token="[EOS]"
    )


def build_tiny_lm(
    out_dir: str | Path, tiny: dict[str, Any], corpus: Sequence[str] | None = None, seed: int = 0
) -> Path:
    """A randomly initialised LlamaForCausalLM (sizes from ``tiny``) saved as a normal HF dir
    with its tokenizer: word-level over ``corpus`` when given, else the MiniLM WordPiece
    ([CLS] as bos, [SEP] as eos). Idempotent: an existing dir is reused."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    out = Path(out_dir)
    if (out / "config.json").is_file() and (out / "tokenizer_config.json").is_file():
        return out
    if corpus is not None:
        tok = word_tokenizer(corpus)
    else:
        from vlx.encoders.hf import minilm_path

        tok = AutoTokenizer.from_pretrained(str(minilm_path()), local_files_only=True)
        tok.bos_token, tok.eos_token = tok.cls_token, tok.sep_token
    cfg = LlamaConfig(
        vocab_size=len(tok),
        max_position_embeddings=256,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        tie_word_embeddings=True,
        **tiny,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(cfg)
    tmp = out.with_name(out.name + f".tmp{os.getpid()}")
    model.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    if out.exists():  # another process built it meanwhile
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    else:
        tmp.replace(out)
    return out


def load_lm(cfg: LMConfig, corpus: Sequence[str] | None = None):
    """-> (causal LM, tokenizer) from ``cfg.path`` or a tiny LM (word vocabulary from
    ``corpus`` when ``tiny_vocab="words"``); LoRA applied if enabled."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from vlx.runtime import configure_huggingface

    configure_huggingface()
    if cfg.path:
        path = Path(cfg.path)
    else:
        if cfg.tiny_vocab == "words" and corpus is None and not (Path(cfg.tiny_dir) / "config.json").is_file():
            raise ConfigError(
                "model.lm: a tiny LM with tiny_vocab=words needs the training text to build its vocabulary"
            )
        path = build_tiny_lm(cfg.tiny_dir, cfg.tiny, corpus if cfg.tiny_vocab == "words" else None)
    if not (path / "config.json").is_file():
        raise ConfigError(f"model.lm.path: {path} is not a local Hugging Face causal-LM directory (no config.json)")
    tok = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    lm = AutoModelForCausalLM.from_pretrained(str(path), local_files_only=True)
    if cfg.freeze or cfg.lora.enabled:
        lm.requires_grad_(False)
    if cfg.lora.enabled:
        from peft import LoraConfig, get_peft_model

        lm = get_peft_model(
            lm,
            LoraConfig(
                r=cfg.lora.r,
                lora_alpha=cfg.lora.alpha,
                lora_dropout=cfg.lora.dropout,
                target_modules=list(cfg.lora.target_modules),
                task_type="CAUSAL_LM",
            ),
        )
    return lm, tok


def _special(tok, *names: str) -> int | None:
    for n in names:
        v = getattr(tok, n, None)
        if v is not None:
            return int(v)
    return None


class VideoCaptioner(nn.Module):
    """``forward(batch) -> {"loss"}`` with batch: frames uint8 (B, T, H, W, 3) or prepared float
    (B, T, 3, H, W) (:meth:`prepare_frames`), input_ids (B, L) (``[bos] prompt target [eos]``
    right-padded), attention_mask (B, L), labels (B, L) (-100 outside the target).
    ``generate(frames, prompts) -> list[str]``. ``preprocess``: a checkpoint tower's image
    preprocessing (:mod:`video.models.vision_tower`), applied to uint8 frames."""

    def __init__(
        self,
        vision: nn.Module,
        lm: nn.Module,
        tokenizer,
        pool_size: Sequence[int],
        projector_layers: int = 2,
        generation: GenerationConfig | None = None,
        use_cls: bool = False,
        visual_pos_embed: bool = False,
        preprocess: ImagePreprocess | None = None,
        pooling_order: str = "pool_then_project",
    ):
        super().__init__()
        self.use_cls = use_cls
        self.vision, self.lm, self.tokenizer = vision, lm, tokenizer
        # The checkpoint's preprocessing when the tower came from one (vision_name_or_path);
        # None: vlx's towers, frames normalised with the OpenAI CLIP mean/std as before.
        self.preprocess = preprocess
        self.has_cls = bool(getattr(vision, "has_cls", True))
        if use_cls and not self.has_cls:
            raise ConfigError("model.use_cls: the vision tower has no CLS token (SigLIP); set use_cls: false")
        self.pool = AdaptiveGridPooling(tuple(pool_size))
        if pooling_order not in ("pool_then_project", "project_then_pool"):
            raise ConfigError(f"model.pooling_order: pool_then_project or project_then_pool, got {pooling_order!r}")
        self.pooling_order = pooling_order
        d_v, d_lm = vision.output_dim, lm.get_input_embeddings().embedding_dim
        layers: list[nn.Module] = [nn.Linear(d_v, d_lm)]
        for _ in range(projector_layers - 1):
            layers += [nn.GELU(), nn.Linear(d_lm, d_lm)]
        self.projector = nn.Sequential(*layers)
        self.visual_pos: nn.Parameter | None = None
        if visual_pos_embed:
            t, h, w = pool_size
            if None in (t, h, w):
                raise ConfigError("model.visual_pos_embed needs a fixed model.pool_size (no None entries)")
            n = t * h * w + (t if use_cls else 0)  # CLS tokens: one per frame, T == t assumed
            self.visual_pos = nn.Parameter(torch.randn(1, n, d_lm) * 0.02)
        self.generation = generation or GenerationConfig()
        self.bos_id = _special(tokenizer, "bos_token_id", "cls_token_id")
        self.eos_id = _special(tokenizer, "eos_token_id", "sep_token_id")
        self.pad_id = _special(tokenizer, "pad_token_id", "eos_token_id") or 0

    # -- vision -> LM tokens --------------------------------------------------------------
    def prepare_frames(self, frames: torch.Tensor) -> torch.Tensor:
        """uint8 (B, T, H, W, 3) -> float (B, T, 3, h, w) as the vision tower expects: the
        checkpoint's preprocessing (geometry on the CPU) or vlx's normalisation."""
        if self.preprocess is not None:
            from video.models.vision_tower import preprocess_frames

            return preprocess_frames(frames, self.preprocess)
        return frames_to_model(frames, IMAGE_MEAN, IMAGE_STD)

    def vision_features(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """frames uint8 (B, T, H, W, 3) or prepared float (B, T, 3, H, W) -> (patch tokens
        (B, T, N, Dv), each frame's CLS token (B, T, Dv) or None when the tower has none)."""
        if frames.dtype == torch.uint8:
            frames = self.prepare_frames(frames)
        B, T = frames.shape[:2]
        all_tokens = self.vision(frames.flatten(0, 1)).tokens  # (B*T, [1+]N, Dv), CLS first
        patches = all_tokens[:, 1:] if self.has_cls else all_tokens
        cls = all_tokens[:, 0].reshape(B, T, -1) if self.has_cls else None
        return patches.reshape(B, T, *patches.shape[1:]), cls

    def visual_tokens(self, frames: torch.Tensor) -> torch.Tensor:
        """frames uint8 (B, T, H, W, 3) or prepared float (B, T, 3, H, W) -> (B, t*h*w, D_lm)."""
        tokens, cls = self.vision_features(frames)
        B, T, N = tokens.shape[:3]
        g = int(round(N**0.5))
        if g * g != N:
            raise ValueError(f"visual tokens: {N} patch tokens per frame do not form a square grid")
        grid = tokens.reshape(B, T, g, g, -1)
        if self.pooling_order == "project_then_pool":  # PLLaVA: MLP per patch token, then pool
            out = self.pool(self.projector(grid)).flatten(1, 3)  # (B, t*h*w, D_lm)
            if self.use_cls:
                out = torch.cat([out, self.projector(cls)], 1)  # + (B, T, D_lm)
        else:
            pooled = self.pool(grid).flatten(1, 3)  # (B, t*h*w, Dv)
            if self.use_cls:
                pooled = torch.cat([pooled, cls], 1)  # + (B, T, Dv)
            out = self.projector(pooled)
        if self.visual_pos is not None:
            if out.shape[1] != self.visual_pos.shape[1]:
                raise ValueError(
                    f"visual_pos_embed: {out.shape[1]} visual tokens, embeddings for "
                    f"{self.visual_pos.shape[1]} (frames != pool t with use_cls?)"
                )
            out = out + self.visual_pos.to(out.dtype)
        return out

    def _embed(self, ids: torch.Tensor) -> torch.Tensor:
        return self.lm.get_input_embeddings()(ids)

    def forward(self, batch: dict) -> dict:
        vis = self.visual_tokens(batch["frames"])
        B, V, _ = vis.shape
        text = self._embed(batch["input_ids"]).to(vis.dtype)
        mask = torch.cat(
            [torch.ones(B, V, dtype=batch["attention_mask"].dtype, device=vis.device), batch["attention_mask"]], 1
        )
        # Logits only for the text positions (the LM head over V visual positions is wasted
        # work); labels shift by one inside the text, as HF's causal-LM loss does.
        L = batch["input_ids"].shape[1]
        logits = self.lm(inputs_embeds=torch.cat([vis, text], 1), attention_mask=mask, logits_to_keep=L + 1).logits[
            :, :-1
        ]
        # logits[:, i] predicts text token i (position V-1+i predicts V+i)
        loss = torch.nn.functional.cross_entropy(
            logits.float().reshape(-1, logits.shape[-1]), batch["labels"].reshape(-1), ignore_index=-100
        )
        return {"loss": loss}

    # -- text side -------------------------------------------------------------------------
    def encode_prompt(self, prompt: str) -> list[int]:
        ids = self.tokenizer(prompt, add_special_tokens=False)["input_ids"] if prompt else []
        return ([self.bos_id] if self.bos_id is not None else []) + list(ids)

    def make_targets(
        self, prompts: Sequence[str], targets: Sequence[str], max_length: int = 64
    ) -> dict[str, torch.Tensor]:
        """Teacher-forcing inputs: ``[bos] prompt target [eos]`` right-padded; labels -100 on
        the prompt and padding."""
        rows, labs = [], []
        for p, t in zip(prompts, targets):
            pi = self.encode_prompt(p)
            ti = list(self.tokenizer(t, add_special_tokens=False)["input_ids"]) + (
                [self.eos_id] if self.eos_id is not None else []
            )
            ids = (pi + ti)[:max_length]
            lab = ([-100] * len(pi) + ti)[:max_length]
            rows.append(ids)
            labs.append(lab)
        L = max(map(len, rows))
        input_ids = torch.full((len(rows), L), self.pad_id, dtype=torch.long)
        labels = torch.full((len(rows), L), -100, dtype=torch.long)
        attn = torch.zeros((len(rows), L), dtype=torch.long)
        for i, (r, l) in enumerate(zip(rows, labs)):
            input_ids[i, : len(r)] = torch.tensor(r)
            labels[i, : len(l)] = torch.tensor(l)
            attn[i, : len(r)] = 1
        return {"input_ids": input_ids, "labels": labels, "attention_mask": attn}

    @torch.no_grad()
    def generate(self, frames: torch.Tensor, prompts: Sequence[str] | None = None, **overrides: Any) -> list[str]:
        """frames (B, T, H, W, 3) uint8 -> B strings. ``overrides`` replace fields of the
        GenerationConfig (max_new_tokens, num_beams, do_sample, temperature, top_p, top_k,
        repetition_penalty)."""
        vis = self.visual_tokens(frames)
        B, V, D = vis.shape
        prompts = list(prompts) if prompts is not None else [""] * B
        seqs = [
            torch.cat(
                [
                    vis[i],
                    self._embed(torch.tensor(self.encode_prompt(p), dtype=torch.long, device=vis.device)).to(vis.dtype),
                ]
            )
            for i, p in enumerate(prompts)
        ]
        L = max(s.shape[0] for s in seqs)
        embeds = vis.new_zeros(B, L, D)
        mask = torch.zeros(B, L, dtype=torch.long, device=vis.device)
        for i, s in enumerate(seqs):  # left padding: generation continues from the right end
            embeds[i, L - s.shape[0] :] = s
            mask[i, L - s.shape[0] :] = 1
        g = {k: getattr(self.generation, k) for k in GenerationConfig.__dataclass_fields__}
        g.update(overrides)
        if not g["do_sample"]:
            g.pop("temperature"), g.pop("top_p"), g.pop("top_k")
        out = self.lm.generate(
            inputs_embeds=embeds, attention_mask=mask, eos_token_id=self.eos_id, pad_token_id=self.pad_id, **g
        )
        return [t.strip() for t in self.tokenizer.batch_decode(out, skip_special_tokens=True)]


def load_vision_init(vision: nn.Module, path: str, prefix: str) -> None:
    """Loads the keys under ``prefix`` of a checkpoint into ``vision`` (all must fit)."""
    from safetensors.torch import load_file

    from vlx.data.errors import DataError
    from vlx.train.checkpoint import MODEL_FILE, find_checkpoint

    p = Path(path)
    file = p if p.suffix == ".safetensors" else find_checkpoint(p) / MODEL_FILE
    sd = {k[len(prefix) :]: v for k, v in load_file(str(file)).items() if k.startswith(prefix)}
    if not sd:
        raise DataError(f"{file}: no weights under the prefix {prefix!r} (model.vision_init_prefix)")
    try:
        vision.load_state_dict(sd, strict=True)
    except RuntimeError as e:
        raise DataError(
            f"{file}: vision weights under {prefix!r} do not fit model.vision ({str(e).splitlines()[0]})"
        ) from None


def build_video_captioner(cfg: VideoCaptionerConfig, corpus: Sequence[str] | None = None) -> VideoCaptioner:
    """``corpus``: training text, used only to build a tiny LM's word vocabulary."""
    if len(cfg.pool_size) != 3:
        raise ConfigError(f"model.pool_size must be [t, h, w], got {cfg.pool_size}")
    if cfg.vision_name_or_path:
        if cfg.vision_init:
            raise ConfigError("model.vision_init and model.vision_name_or_path both set; give one vision source")
        from video.models.vision_tower import load_vision_tower

        vision, pre = load_vision_tower(cfg.vision_name_or_path, cfg.vision_feature_layer)
    else:
        vision, pre = build_image_encoder(cfg.vision), None
    if cfg.vision_init:
        load_vision_init(vision, cfg.vision_init, cfg.vision_init_prefix)
    if cfg.freeze_vision:
        vision.requires_grad_(False)
    lm, tok = load_lm(cfg.lm, corpus)
    return VideoCaptioner(
        vision,
        lm,
        tok,
        cfg.pool_size,
        cfg.projector_layers,
        cfg.generation,
        cfg.use_cls,
        cfg.visual_pos_embed,
        pre,
        cfg.pooling_order,
    )
