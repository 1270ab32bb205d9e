"""Tiny random LLaVA-family checkpoints, saved as ordinary Hugging Face directories
(``save_pretrained`` of the model, its tokenizer, the image processor config and a chat
template), so that the loading code in :mod:`video.models.hf_vlm` runs against the same
files a released checkpoint has. Used by the tests and by the tiny fine-tuning recipe as an
offline stand-in for a downloaded model (no model hub here).

The tokenizer is word-level (``tokenizers`` WordLevel) over a small vocabulary plus the
placeholder and chat tokens the real checkpoints use (``<image>``, ``<video>``,
``<|im_start|>``, ``<|im_end|>``, Qwen2-VL's ``<|vision_start|>`` ...).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Sequence
from pathlib import Path

import torch

SPECIALS = [
    "<pad>",
    "<unk>",
    "<s>",
    "</s>",
    "<image>",
    "<video>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
]
BASE_WORDS = ["user", "assistant", "system", "describe", "the", "video", "what", "?", ".", "a", "is", "it"]

# ChatML, the template of LLaVA-OneVision / Qwen2-VL / LLaVA-Video checkpoints; list contents
# render the placeholder of each media item.
CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n"
    "{% if m['content'] is string %}{{ m['content'] }}{% else %}{% for c in m['content'] %}"
    "{% if c['type'] == 'video' %}<video>{% elif c['type'] == 'image' %}<image>{% else %}{{ c['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

KINDS = ("llava", "llava_next", "llava_next_video", "llava_onevision", "qwen2_vl", "pllava")


def tiny_tokenizer(words: Sequence[str] = ()):
    """A word-level ``PreTrainedTokenizerFast`` (lower-cased, punctuation split off) with the
    LLaVA/Qwen placeholder tokens as special tokens and :data:`CHAT_TEMPLATE`."""
    from tokenizers import AddedToken, Tokenizer, normalizers, pre_tokenizers
    from tokenizers.models import WordLevel
    from transformers import PreTrainedTokenizerFast

    pre = pre_tokenizers.Whitespace()
    found = sorted({w for text in list(words) + BASE_WORDS for w, _ in pre.pre_tokenize_str(text.lower())})
    vocab = {t: i for i, t in enumerate(SPECIALS + [w for w in found if w not in SPECIALS])}
    tok = Tokenizer(WordLevel(vocab, unk_token="<unk>"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre
    tok.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in SPECIALS])
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", unk_token="<unk>", bos_token="<s>", eos_token="<|im_end|>"
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


def _vision_config(kind: str, image_size: int, patch: int, width: int):
    from transformers import CLIPVisionConfig, SiglipVisionConfig

    common = dict(
        hidden_size=width,
        intermediate_size=2 * width,
        num_hidden_layers=3,
        num_attention_heads=4,
        image_size=image_size,
        patch_size=patch,
    )
    return SiglipVisionConfig(**common) if kind == "llava_onevision" else CLIPVisionConfig(**common)


def _text_kwargs(tok, hidden: int, layers: int = 2) -> dict:
    return dict(
        vocab_size=len(tok),
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )


def _build(kind: str, tok, image_size: int, patch: int, width: int, hidden: int, lm_layers: int = 2):
    import transformers as T

    ids = dict(image_token_index=tok.convert_tokens_to_ids("<image>"))
    if kind == "qwen2_vl":
        cfg = T.Qwen2VLConfig(
            text_config=dict(
                **_text_kwargs(tok, hidden, lm_layers),
                rope_parameters={"rope_type": "default", "mrope_section": [2, 3, 3], "rope_theta": 10000.0},
            ),
            vision_config=dict(
                depth=2, embed_dim=width, hidden_size=hidden, num_heads=4, patch_size=patch, spatial_merge_size=2
            ),
            image_token_id=tok.convert_tokens_to_ids("<|image_pad|>"),
            video_token_id=tok.convert_tokens_to_ids("<|video_pad|>"),
            vision_start_token_id=tok.convert_tokens_to_ids("<|vision_start|>"),
            vision_end_token_id=tok.convert_tokens_to_ids("<|vision_end|>"),
        )
        return T.Qwen2VLForConditionalGeneration(cfg)
    vision = _vision_config(kind, image_size, patch, width)
    text = T.Qwen2Config(**_text_kwargs(tok, hidden, lm_layers)) if kind == "llava_onevision" else None
    text = text or T.LlamaConfig(**_text_kwargs(tok, hidden, lm_layers))
    if kind in ("llava", "pllava"):
        return T.LlavaForConditionalGeneration(T.LlavaConfig(vision_config=vision, text_config=text, **ids))
    video = dict(video_token_index=tok.convert_tokens_to_ids("<video>"))
    pinpoints = [[image_size, image_size], [image_size, 2 * image_size]]
    if kind == "llava_next":
        return T.LlavaNextForConditionalGeneration(
            T.LlavaNextConfig(vision_config=vision, text_config=text, image_grid_pinpoints=pinpoints, **ids)
        )
    if kind == "llava_next_video":
        return T.LlavaNextVideoForConditionalGeneration(
            T.LlavaNextVideoConfig(
                vision_config=vision,
                text_config=text,
                image_grid_pinpoints=pinpoints,
                spatial_pool_stride=2,
                **ids,
                **video,
            )
        )
    if kind == "llava_onevision":
        return T.LlavaOnevisionForConditionalGeneration(
            T.LlavaOnevisionConfig(
                vision_config=vision,
                text_config=text,
                image_grid_pinpoints=pinpoints,
                vision_feature_select_strategy="full",
                vision_feature_layer=-1,
                **ids,
                **video,
            )
        )
    raise ValueError(f"unknown tiny checkpoint kind {kind!r}; expected one of {KINDS}")


def _processor_config(kind: str, image_size: int, patch: int) -> dict:
    clip_mean, clip_std = [0.48145466, 0.4578275, 0.40821073], [0.26862954, 0.26130258, 0.27577711]
    cfg = dict(do_resize=True, do_normalize=True, do_rescale=True, rescale_factor=1 / 255, resample=3)
    if kind == "qwen2_vl":
        px = (image_size // patch) ** 2 * patch * patch
        return dict(
            cfg,
            image_processor_type="Qwen2VLImageProcessor",
            image_mean=clip_mean,
            image_std=clip_std,
            patch_size=patch,
            merge_size=2,
            temporal_patch_size=2,
            size={"shortest_edge": px // 4, "longest_edge": px * 4},
        )
    if kind == "llava_onevision":
        return dict(
            cfg,
            image_processor_type="LlavaOnevisionImageProcessor",
            image_mean=[0.5] * 3,
            image_std=[0.5] * 3,
            size={"height": image_size, "width": image_size},
            image_grid_pinpoints=[[image_size, image_size], [image_size, 2 * image_size]],
        )
    base = dict(
        cfg,
        image_mean=clip_mean,
        image_std=clip_std,
        size={"shortest_edge": image_size},
        crop_size={"height": image_size, "width": image_size},
        do_center_crop=True,
    )
    if kind in ("llava_next", "llava_next_video"):
        base.update(
            image_processor_type="LlavaNextImageProcessor",
            image_grid_pinpoints=[[image_size, image_size], [image_size, 2 * image_size]],
        )
    else:
        base["image_processor_type"] = "CLIPImageProcessor"
    return base


def to_pllava_layout(out: Path, pooling_shape: Sequence[int], num_frames: int) -> None:
    """Rewrites a saved tiny LLaVA dir into PLLaVA's release layout: ``PllavaForConditionalGeneration``
    with ``pooling_shape``/``num_frames``/``frame_shape``/``use_pooling`` in config.json and the
    pre-4.52 LLaVA key names (``vision_tower.``, ``multi_modal_projector.``,
    ``language_model.model.``, ``language_model.lm_head.``)."""
    from safetensors.torch import load_file, save_file

    cfg = json.loads((out / "config.json").read_text())
    v = cfg["vision_config"]
    g = v["image_size"] // v["patch_size"]
    cfg.update(
        architectures=["PllavaForConditionalGeneration"],
        pooling_shape=list(pooling_shape),
        num_frames=num_frames,
        frame_shape=[g, g],
        use_pooling=True,
    )
    (out / "config.json").write_text(json.dumps(cfg, indent=2))
    renames = [
        ("model.vision_tower.", "vision_tower."),
        ("model.multi_modal_projector.", "multi_modal_projector."),
        ("model.language_model.", "language_model.model."),
        ("lm_head.", "language_model.lm_head."),
    ]
    sd = load_file(str(out / "model.safetensors"))
    new = {}
    for k, t in sd.items():
        for a, b in renames:
            if k.startswith(a):
                k = b + k[len(a) :]
                break
        new[k] = t.contiguous()
    save_file(new, str(out / "model.safetensors"), metadata={"format": "pt"})


def build_tiny_vlm(
    out_dir: str | Path,
    kind: str = "llava",
    words: Sequence[str] = (),
    image_size: int = 32,
    patch: int = 8,
    width: int = 32,
    hidden: int = 64,
    seed: int = 0,
    pooling_shape: Sequence[int] = (4, 2, 2),
    num_frames: int = 4,
    lm_layers: int = 2,
) -> Path:
    """A random tiny checkpoint of ``kind`` (one of :data:`KINDS`) saved to ``out_dir`` with its
    tokenizer (vocabulary: ``words``), ``preprocessor_config.json`` and ``chat_template.jinja``;
    the LM has ``lm_layers`` layers of width ``hidden``. Idempotent: an existing complete dir
    is reused."""
    out = Path(out_dir)
    if (out / "config.json").is_file() and (out / "chat_template.jinja").is_file():
        return out
    tok = tiny_tokenizer(words)
    torch.manual_seed(seed)
    model = _build("llava" if kind == "pllava" else kind, tok, image_size, patch, width, hidden, lm_layers)
    tmp = out.with_name(out.name + f".tmp{os.getpid()}")
    model.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    (tmp / "preprocessor_config.json").write_text(json.dumps(_processor_config(kind, image_size, patch), indent=2))
    (tmp / "chat_template.jinja").write_text(CHAT_TEMPLATE)
    if kind == "pllava":
        to_pllava_layout(tmp, pooling_shape, num_frames)
    if out.exists():  # another process (rank) built it meanwhile: keep theirs
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        tmp.replace(out)
    return out
