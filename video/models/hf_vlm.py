"""Released video/image LLMs as the captioner: a local Hugging Face directory of
``LlavaForConditionalGeneration`` (LLaVA-1.5), ``LlavaNextForConditionalGeneration``,
``LlavaNextVideoForConditionalGeneration``, ``LlavaOnevisionForConditionalGeneration``,
``Qwen2VLForConditionalGeneration`` or a PLLaVA release (``PllavaForConditionalGeneration``:
LLaVA weights in the pre-4.52 key layout plus ``pooling_shape``), with its vision tower,
projector, LM, tokenizer, image-processor settings and chat template.

Two visual paths (``pooling``):

- ``"native"``: the checkpoint's own visual tokens, computed by the checkpoint's own
  transformers functions (``get_image_features`` per frame for the image classes, with
  LLaVA-NeXT's any-resolution packing; ``get_video_features`` for LLaVA-NeXT-Video,
  OneVision and Qwen2-VL). With one frame this is the model's logits on that image/video.
- ``"pllava"`` (PLLaVA, Xu et al. 2024): vision tower hidden states at the config's
  ``vision_feature_layer`` (PLLaVA: -2, before the post-layernorm) with its
  ``vision_feature_select_strategy`` ("default" drops CLS), then
  :class:`video.pooling.PLLaVAPooling` (project then ``AdaptiveAvgPool3d`` to ``(t, h, w)``,
  PLLaVA's frame repetition); no any-resolution tiles, no newline tokens. Qwen2-VL: its
  tower and patch merger (its projector) on the repeated frames, then the same 3D pool, with
  M-RoPE positions over the pooled grid.

The ``<video>`` convention: the text given to :meth:`HFVideoLLM.encode_conversation` holds
the literal ``<video>`` once, where the clip goes (LLaVA-Video-178K / VideoChatGPT data);
it is replaced by the checkpoint's placeholder (``<image>`` for the image classes,
``<video>`` for the video classes, ``<|vision_start|><|video_pad|><|vision_end|>`` for
Qwen2-VL), and the placeholder token is expanded to the number of visual tokens, as the HF
processors do.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from video.models.hf_inputs import ARCHITECTURES, VisualInputs, load_media_settings
from video.pooling import PLLaVAPooling
from vlx.config import ConfigError
from vlx.data.errors import DataError


@dataclass
class VLMLoraConfig:
    enabled: bool = False
    r: int = 8
    alpha: int = 16
    dropout: float = 0.05
    # A regex over module names: LoRA on the LM's attention projections only.
    target_modules: str = r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj)"


@dataclass
class HFVideoLLMConfig:
    path: str = ""  # local HF dir of one of the supported classes
    pooling: Literal["pllava", "native"] = "pllava"
    # PLLaVA's order is project_then_pool; pool_then_project is vlx's earlier captioner order.
    pooling_order: Literal["project_then_pool", "pool_then_project"] = "project_then_pool"
    # (t, h, w); None: the checkpoint's pooling_shape (PLLaVA releases), else [16, 12, 12]
    # (PLLaVA's 7B/13B setting).
    pool_shape: list[int] | None = None
    # Frames to repeat short clips to (PLLaVA's num_frames); None: the checkpoint's
    # num_frames (PLLaVA releases), else pool t; 0: no repetition.
    repeat_to_frames: int | None = None
    freeze_vision: bool = True
    freeze_projector: bool = False
    freeze_lm: bool = False
    lora: VLMLoraConfig = field(default_factory=VLMLoraConfig)
    gradient_checkpointing: bool = False
    # "auto": bf16 weights for a frozen or LoRA LM on CUDA, fp32 otherwise.
    dtype: Literal["auto", "fp32", "bf16"] = "auto"
    max_new_tokens: int = 24
    # "token": mean over every answer token of the batch (HF's / LLaVA's loss); "sample":
    # mean over samples of each sample's token mean. Only "sample" is the same number
    # however a batch is split over ranks (each rank divides by its own token count).
    loss_reduction: Literal["token", "sample"] = "token"


def read_architecture(path: str | Path) -> str:
    """The ``architectures[0]`` of ``path/config.json``; unsupported: one-line DataError."""
    cfg_file = Path(path) / "config.json"
    if not cfg_file.is_file():
        raise DataError(f"{path}: not a Hugging Face model directory (no config.json)")
    arch = (json.loads(cfg_file.read_text()).get("architectures") or ["?"])[0]
    if arch not in ARCHITECTURES:
        raise DataError(
            f"{cfg_file}: architecture {arch!r} is not supported as a video captioner; "
            f"expected one of {', '.join(ARCHITECTURES)}"
        )
    return arch


class HFVideoLLM(nn.Module):
    """A loaded checkpoint as a vlx model: ``forward(batch) -> {"loss", "logits"}`` with batch
    frames uint8 (B, T, H, W, 3), input_ids (B, L) holding one placeholder id per row,
    attention_mask (B, L), labels (B, L) (-100 where no loss); ``generate(frames, prompts)``."""

    def __init__(self, hf: nn.Module, tokenizer, arch: str, path: Path, cfg: HFVideoLLMConfig):
        super().__init__()
        self.hf, self.tokenizer, self.arch, self.cfg = hf, tokenizer, arch, cfg
        self.family = ARCHITECTURES[arch]
        self.media = load_media_settings(path, hf.config, self.family, tokenizer)
        self.visual = VisualInputs(hf, self.family, self.media)
        self.pllava: PLLaVAPooling | None = None
        if cfg.pooling == "pllava":
            if self.family == "qwen2_vl":
                if cfg.pooling_order != "project_then_pool":
                    raise ConfigError("model.pooling_order: Qwen2-VL's merger projects; only project_then_pool applies")
            shape = cfg.pool_shape or list(getattr(hf.config, "pooling_shape", None) or [16, 12, 12])
            reps = cfg.repeat_to_frames
            if reps is None:
                reps = (
                    int(getattr(hf.config, "num_frames", 0) or shape[0])
                    if hasattr(hf.config, "pooling_shape")
                    else shape[0]
                )
            self.pllava = PLLaVAPooling(tuple(shape), cfg.pooling_order, reps)

    # -- visual tokens ---------------------------------------------------------------------
    def visual_tokens(self, frames: torch.Tensor) -> torch.Tensor:
        """frames uint8 (B, T, H, W, 3) -> (B, V, D_lm) in the LM's dtype."""
        if self.pllava is None:
            return self.visual.native(frames)
        if self.family == "qwen2_vl":
            return self._qwen_pllava(frames)
        feats = self.visual.select_features(frames)  # (B, T, N, Dv)
        return self.pllava(feats.to(self.hf.dtype), self.hf.model.multi_modal_projector)

    def _qwen_pllava(self, frames: torch.Tensor) -> torch.Tensor:
        """Qwen2-VL: its vision tower + patch merger (the projector) on PLLaVA-repeated
        frames, then the 3D pool over the merged (t, h, w) grid; the M-RoPE grid is set to
        the pooled one (in patch units: h and w times the merge size)."""
        from video.pooling import pllava_repeat_frames

        p = self.pllava
        if p.num_frames:
            frames = pllava_repeat_frames(frames, p.num_frames)
        vis = self.visual.native(frames)  # (B, t*h'*w', D), merged tokens in (t, h', w') order
        m = self.media.qwen["merge_size"]
        t, h, w = (int(v) for v in self.visual._grid_thw[0])
        pooled = p.pool(vis.reshape(vis.shape[0], t, h // m, w // m, -1)).flatten(1, 3)
        pt, ph, pw = p.pool.output_size
        self.visual._grid_thw = torch.tensor([[pt, ph * m, pw * m]] * vis.shape[0], device=vis.device)
        return pooled

    # -- text ------------------------------------------------------------------------------
    def render(self, messages: list[dict], add_generation_prompt: bool = False) -> str:
        return self.media.render(messages, add_generation_prompt)

    def encode_conversation(self, turns: Sequence[tuple[str, str]], where: str = "") -> tuple[list[int], list[int]]:
        """``turns``: [(user text, assistant text), ...]; the first user text holds ``<video>``.
        -> (input_ids with one placeholder id, labels: -100 except the assistant answers and
        the end-of-turn text after them)."""
        messages: list[dict] = []
        ids: list[int] = []
        labels: list[int] = []
        prev = ""
        for i, (q, a) in enumerate(turns):
            messages.append({"role": "user", "content": self.media.placeholder_text(q) if i == 0 else q})
            prompt = self.render(messages, add_generation_prompt=True)
            messages.append({"role": "assistant", "content": a})
            full = self.render(messages)
            if not prompt.startswith(prev) or not full.startswith(prompt):
                raise DataError(f"{where}: the chat template does not render turns as prefixes of each other")
            p = self._tok(prompt[len(prev) :])
            t = self._tok(full[len(prompt) :])
            ids += p + t
            labels += [-100] * len(p) + t
            prev = full
        n_ph = sum(1 for x in ids if x == self.media.placeholder_id)
        if n_ph != 1:
            raise DataError(f"{where}: expected one video placeholder after the chat template, found {n_ph}")
        return ids, labels

    def encode_prompt(self, question: str) -> list[int]:
        """Generation prompt for one user turn (``<video>`` added in front when missing)."""
        q = question if "<video>" in question else "<video>\n" + question
        text = self.render([{"role": "user", "content": self.media.placeholder_text(q)}], add_generation_prompt=True)
        return self._tok(text)

    def _tok(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"]) if text else []

    # -- model -----------------------------------------------------------------------------
    def _merge(self, vis: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor, labels=None):
        """Expands each row's placeholder to V copies and writes the visual tokens there."""
        B, V, _ = vis.shape
        ph = self.media.placeholder_id
        pos = (input_ids == ph).int().argmax(1)
        if not bool((input_ids == ph).sum(1).eq(1).all()):
            raise ValueError("each row of input_ids must hold exactly one video placeholder")
        ar = torch.arange(input_ids.shape[1] + V - 1, device=input_ids.device)
        src = torch.where(
            ar[None] <= pos[:, None], ar[None], torch.where(ar[None] < pos[:, None] + V, pos[:, None], ar[None] - V + 1)
        )
        ids = input_ids.gather(1, src)
        mask = attention_mask.gather(1, src)
        lab = None if labels is None else labels.gather(1, src).masked_fill(ids == ph, -100)
        embeds = self.hf.get_input_embeddings()(ids)
        vmask = (ids == ph).unsqueeze(-1).expand_as(embeds)
        embeds = embeds.masked_scatter(vmask, vis.to(embeds.dtype))
        return ids, embeds, mask, lab

    def _lm_kwargs(self, ids, mask) -> dict[str, Any]:
        return self.visual.position_kwargs(ids, mask)

    def logits(self, frames: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Logits over the expanded sequence (B, L + V - 1, vocab)."""
        vis = self.visual_tokens(frames)
        ids, embeds, mask, _ = self._merge(vis, input_ids, attention_mask)
        return self.hf(inputs_embeds=embeds, attention_mask=mask, **self._lm_kwargs(ids, mask)).logits

    def forward(self, batch: dict) -> dict:
        vis = self.visual_tokens(batch["frames"])
        ids, embeds, mask, labels = self._merge(vis, batch["input_ids"], batch["attention_mask"], batch["labels"])
        logits = self.hf(inputs_embeds=embeds, attention_mask=mask, **self._lm_kwargs(ids, mask)).logits
        tok = nn.functional.cross_entropy(
            logits[:, :-1].float().reshape(-1, logits.shape[-1]),
            labels[:, 1:].reshape(-1),
            ignore_index=-100,
            reduction="none",
        ).view(labels.shape[0], -1)
        n = (labels[:, 1:] != -100).sum(1)
        if self.cfg.loss_reduction == "sample":
            loss = (tok.sum(1) / n.clamp_min(1)).mean()
        else:
            loss = tok.sum() / n.sum().clamp_min(1)
        return {"loss": loss}

    @torch.no_grad()
    def generate_ids(
        self, frames: torch.Tensor, prompts: Sequence[str], max_new_tokens: int | None = None
    ) -> torch.Tensor:
        """Greedy new token ids (B, <= max_new_tokens) for clips uint8 (B, T, H, W, 3) and B questions."""
        rows = [self.encode_prompt(p) for p in prompts]
        L = max(map(len, rows))
        pad = self.tokenizer.pad_token_id or 0
        dev = frames.device
        ids = torch.tensor([[pad] * (L - len(r)) + r for r in rows], device=dev)  # left padding
        am = torch.tensor([[0] * (L - len(r)) + [1] * len(r) for r in rows], device=dev)
        vis = self.visual_tokens(frames)
        ids, embeds, mask, _ = self._merge(vis, ids, am)
        out = self.hf.generate(
            input_ids=ids if self.family == "qwen2_vl" else None,
            inputs_embeds=embeds,
            attention_mask=mask,
            max_new_tokens=max_new_tokens or self.cfg.max_new_tokens,
            do_sample=False,
            num_beams=1,
            eos_token_id=self.tokenizer.eos_token_id,
            pad_token_id=pad,
            **self.visual.generate_kwargs(ids),
        )
        return out[:, ids.shape[1] :] if self.family == "qwen2_vl" else out

    def generate(self, frames: torch.Tensor, prompts: Sequence[str], max_new_tokens: int | None = None) -> list[str]:
        """Greedy answers, one per clip (see :meth:`generate_ids`)."""
        out = self.generate_ids(frames, prompts, max_new_tokens)
        return [t.strip() for t in self.tokenizer.batch_decode(out, skip_special_tokens=True)]


def freeze_unused_vision(m: nn.Module, config) -> None:
    """Freezes what ``vision_feature_layer`` never reads (later encoder layers, the
    post-layernorm, a pooling head): parameters that would get no gradient (and no
    optimizer state, which FSDP's sharded resume requires)."""
    tower = getattr(m, "vision_tower", None)
    layer = getattr(config, "vision_feature_layer", None)
    vm = getattr(tower, "vision_model", tower)
    layers = getattr(getattr(vm, "encoder", None), "layers", None)
    if tower is None or layer is None or layers is None:
        return
    n = len(layers)
    used = max((i if i >= 0 else n + 1 + i) for i in ([layer] if isinstance(layer, int) else layer))
    for blk in list(layers)[used:]:  # hidden_states[i] is the output of layer i-1
        blk.requires_grad_(False)
    for name in ("post_layernorm", "head"):
        if hasattr(vm, name):
            getattr(vm, name).requires_grad_(False)


def _dtype(cfg: HFVideoLLMConfig, cuda: bool) -> torch.dtype:
    if cfg.dtype == "bf16" or (cfg.dtype == "auto" and cuda and (cfg.freeze_lm or cfg.lora.enabled)):
        return torch.bfloat16
    return torch.float32


def load_hf_video_llm(cfg: HFVideoLLMConfig, cuda: bool = False) -> HFVideoLLM:
    """Loads ``cfg.path`` (see module doc); freezes parts, applies LoRA (peft) to the LM,
    turns on gradient checkpointing as configured."""
    import transformers
    from transformers import AutoTokenizer

    if not cfg.path:
        raise ConfigError("model.path: a local Hugging Face checkpoint directory is required")
    path = Path(cfg.path)
    arch = read_architecture(path)
    cls_name = "LlavaForConditionalGeneration" if arch == "PllavaForConditionalGeneration" else arch
    hf = getattr(transformers, cls_name).from_pretrained(str(path), local_files_only=True, dtype=_dtype(cfg, cuda))
    tok = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    m = hf.model
    if cfg.freeze_vision:
        (m.visual if hasattr(m, "visual") else m.vision_tower).requires_grad_(False)
    if not cfg.freeze_vision:
        freeze_unused_vision(m, hf.config)
    if cfg.freeze_projector and hasattr(m, "multi_modal_projector"):
        m.multi_modal_projector.requires_grad_(False)
    if cfg.freeze_lm or cfg.lora.enabled:
        m.language_model.requires_grad_(False)
        hf.lm_head.requires_grad_(False)
    if cfg.gradient_checkpointing:
        hf.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        hf.config.use_cache = False
    if cfg.lora.enabled:
        from peft import LoraConfig, inject_adapter_in_model

        # Injected in place (not a PeftModel wrapper) so that the module tree and the
        # transformers calls stay the same; merge-lora folds the adapters back.
        lc = LoraConfig(
            r=cfg.lora.r,
            lora_alpha=cfg.lora.alpha,
            lora_dropout=cfg.lora.dropout,
            target_modules=cfg.lora.target_modules,
        )
        hf = inject_adapter_in_model(lc, hf)
        # peft leaves only the adapters trainable; the projector (and an unfrozen vision
        # tower) train beside them, as in PLLaVA.
        vision = hf.model.visual if hasattr(hf.model, "visual") else hf.model.vision_tower
        vision.requires_grad_(not cfg.freeze_vision)
        if hasattr(hf.model, "multi_modal_projector"):
            hf.model.multi_modal_projector.requires_grad_(not cfg.freeze_projector)
    return HFVideoLLM(hf, tok, arch, path, cfg)
