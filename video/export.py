"""A fine-tuned video LLM as one plain Hugging Face directory (``vlx video merge-lora``, the
FSDP export of ``video_llava``): LoRA adapters folded into the weights (peft's ``merge``),
saved with ``save_pretrained`` beside the base checkpoint's tokenizer, image processor
settings and chat template, so that ``<Class>.from_pretrained(DIR)`` reloads it without
peft or vlx."""

from __future__ import annotations

import shutil
from pathlib import Path

from torch import nn

# Files of the base checkpoint that describe its inputs (copied as they are).
INPUT_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "tokenizer.model",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.json",
    "merges.txt",
    "preprocessor_config.json",
    "video_preprocessor_config.json",
    "processor_config.json",
    "chat_template.jinja",
    "chat_template.json",
)


def merge_lora_modules(model: nn.Module) -> int:
    """Folds every peft LoRA layer into its base layer and puts the base layer back in its
    place. Returns how many layers were merged."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    n = 0
    for name, mod in list(model.named_modules()):
        if isinstance(mod, BaseTunerLayer):
            mod.merge()
            parent_name, _, child = name.rpartition(".")
            parent = model.get_submodule(parent_name) if parent_name else model
            setattr(parent, child, mod.get_base_layer())
            n += 1
    return n


def write_hf_dir(model, out: str | Path, base: str | Path) -> Path:
    """Merges ``model.hf``'s LoRA layers (in place) and writes it with ``save_pretrained``
    plus the base checkpoint's input files."""
    merged = merge_lora_modules(model.hf)
    out = Path(out)
    model.hf.save_pretrained(out)
    for f in INPUT_FILES:
        if (Path(base) / f).is_file():
            shutil.copy2(Path(base) / f, out / f)
    print(f"[video] merged {merged} LoRA layer(s); wrote {out} ({type(model.hf).__name__})")
    return out
