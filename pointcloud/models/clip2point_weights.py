"""Load CLIP2Point's released depth-encoder checkpoints into a Hugging Face CLIP vision tower.

CLIP2Point (tyhuang0428/CLIP2Point) trains ``point_model = deepcopy(clip.visual)`` (OpenAI CLIP's
VisionTransformer) and saves the whole model's state dict, usually from DataParallel, so keys
read ``module.point_model.<openai visual key>`` (its ``utils.read_state_dict`` strips
``module.`` and keeps the ``point_model.`` entries). The OpenAI visual keys are renamed here to
``transformers.CLIPVisionModelWithProjection``'s; written by hand because transformers ships the
OpenAI -> HF mapping only as a conversion script, not as a library function.
"""

from __future__ import annotations

from pathlib import Path

import torch

from vlx.data.errors import DataError

_LAYER = {
    "attn.out_proj.weight": "self_attn.out_proj.weight",
    "attn.out_proj.bias": "self_attn.out_proj.bias",
    "ln_1.weight": "layer_norm1.weight",
    "ln_1.bias": "layer_norm1.bias",
    "ln_2.weight": "layer_norm2.weight",
    "ln_2.bias": "layer_norm2.bias",
    "mlp.c_fc.weight": "mlp.fc1.weight",
    "mlp.c_fc.bias": "mlp.fc1.bias",
    "mlp.c_proj.weight": "mlp.fc2.weight",
    "mlp.c_proj.bias": "mlp.fc2.bias",
}
_TOP = {
    "conv1.weight": "vision_model.embeddings.patch_embedding.weight",
    "class_embedding": "vision_model.embeddings.class_embedding",
    "positional_embedding": "vision_model.embeddings.position_embedding.weight",
    "ln_pre.weight": "vision_model.pre_layrnorm.weight",  # sic: transformers' spelling
    "ln_pre.bias": "vision_model.pre_layrnorm.bias",
    "ln_post.weight": "vision_model.post_layernorm.weight",
    "ln_post.bias": "vision_model.post_layernorm.bias",
}


def clip2point_depth_state_dict(ckpt: dict | str | Path, prefix: str = "point_model.") -> dict[str, torch.Tensor]:
    """The OpenAI-layout visual state dict of a CLIP2Point checkpoint (file or loaded dict):
    ``module.`` dropped, only ``prefix`` keys kept (prefix removed). A dict that already holds
    bare visual keys (``conv1.weight`` ...) is returned as is."""
    where = str(ckpt) if not isinstance(ckpt, dict) else "<state dict>"
    if not isinstance(ckpt, dict):
        if not Path(ckpt).is_file():
            raise DataError(f"{ckpt}: CLIP2Point checkpoint not found")
        ckpt = torch.load(ckpt, map_location="cpu", weights_only=True)
    sd = {k.removeprefix("module."): v for k, v in ckpt.items()}
    if "conv1.weight" in sd:
        return sd
    out = {k[len(prefix) :]: v for k, v in sd.items() if k.startswith(prefix)}
    if "conv1.weight" not in out:
        raise DataError(f"{where}: no '{prefix}conv1.weight' key: not a CLIP2Point depth-encoder checkpoint")
    return out


def openai_visual_to_hf(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """OpenAI CLIP ``visual.*`` keys -> ``CLIPVisionModelWithProjection`` keys (q/k/v split
    from ``in_proj``, ``proj`` (width, embed) transposed into ``visual_projection.weight``)."""
    out = {}
    for k, v in sd.items():
        if k in _TOP:
            out[_TOP[k]] = v
        elif k == "proj":
            out["visual_projection.weight"] = v.T.contiguous()
        elif k.startswith("transformer.resblocks."):
            i, rest = k[len("transformer.resblocks.") :].split(".", 1)
            base = f"vision_model.encoder.layers.{i}."
            if rest in ("attn.in_proj_weight", "attn.in_proj_bias"):
                kind = rest.rsplit("_", 1)[1]
                for name, part in zip(("q", "k", "v"), v.chunk(3, dim=0)):
                    out[f"{base}self_attn.{name}_proj.{kind}"] = part.contiguous()
            elif rest in _LAYER:
                out[base + _LAYER[rest]] = v
            else:
                raise DataError(f"CLIP2Point checkpoint: unexpected visual key {k!r}")
        else:
            raise DataError(f"CLIP2Point checkpoint: unexpected visual key {k!r}")
    return out


def load_clip2point_depth_encoder(model, ckpt: dict | str | Path) -> None:
    """Load a CLIP2Point checkpoint into a ``CLIPVisionModelWithProjection`` of the same size
    (every weight must fit: one DataError naming the first missing or unexpected key)."""
    hf = openai_visual_to_hf(clip2point_depth_state_dict(ckpt))
    own = model.state_dict()
    missing = [k for k in own if k not in hf and not k.endswith("position_ids")]
    unexpected = [k for k in hf if k not in own]
    if missing or unexpected:
        raise DataError(
            f"CLIP2Point checkpoint does not fit the model: missing {missing[:3]}, unexpected {unexpected[:3]}"
        )
    for k, v in hf.items():
        if own[k].shape != v.shape:
            raise DataError(
                f"CLIP2Point checkpoint: {k} has shape {tuple(v.shape)}, model expects {tuple(own[k].shape)}"
            )
    model.load_state_dict(hf, strict=False)
