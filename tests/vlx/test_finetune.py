"""Fine-tuning a user's checkpoint from config: FLYP's choice of loss (the checkpoint's own),
LiT's locked image tower, partial unlocking and freezing by name, Structure-CLIP swaps; a
short fine-tune of a tiny random CLIP lowers the held-out loss."""

import pytest
import torch

from tests.vlx._hf_ckpt import save_tiny_clip, save_tiny_siglip
from vlx.config import ConfigError, load_yaml_config
from vlx.data.negatives import swap_arguments
from vlx.models import DualEncoderConfig, build_dual_encoder
from vlx.models.finetune import FinetuneConfig, apply_finetune
from vlx.recipes.clip_shapes import ClipShapesConfig, ContrastiveConfig, ContrastiveImageText, build_clip_shapes
from vlx.train.trainer import Trainer


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
    root = tmp_path_factory.mktemp("ft")
    return {"clip": save_tiny_clip(root / "clip", seed=5), "siglip": save_tiny_siglip(root / "siglip", seed=6)}


def trainable(dual):
    return {n for n, p in dual.named_parameters() if p.requires_grad}


def test_lit_locks_the_image_tower_and_unlocked_layers_reopen_the_top(ckpts):
    dual = build_dual_encoder(DualEncoderConfig(name_or_path=str(ckpts["clip"])))
    everything = trainable(dual)
    apply_finetune(dual, FinetuneConfig(lock_image=True))
    t = trainable(dual)
    assert not any(n.startswith(("image_encoder.", "image_proj.")) for n in t)
    assert {n for n in everything if n.startswith("text_")} <= t and "log_logit_scale" in t
    assert dual.image_encoder.is_frozen  # runs in eval mode without autograd
    dual.train()
    assert not dual.image_encoder.training and dual.text_encoder.training

    dual = build_dual_encoder(DualEncoderConfig(name_or_path=str(ckpts["clip"])))
    apply_finetune(dual, FinetuneConfig(lock_image=True, unlocked_layers=1, freeze=["text_encoder.*.embeddings.*"]))
    img = {n for n in trainable(dual) if n.startswith(("image_encoder.", "image_proj."))}
    assert img and all(
        n.startswith(("image_encoder.vision_model.encoder.layers.1.", "image_encoder.vision_model.post_layernorm."))
        or n == "image_proj.weight"
        for n in img
    )
    assert "image_encoder.vision_model.post_layernorm.weight" in img and "image_proj.weight" in img
    assert not any("embeddings" in n for n in trainable(dual))
    with pytest.raises(ConfigError, match="matches no parameter"):
        apply_finetune(dual, FinetuneConfig(freeze=["image_encodr.*"]))


def test_locked_tower_does_not_move_in_a_step(ckpts):
    dual = build_dual_encoder(DualEncoderConfig(name_or_path=str(ckpts["siglip"])))
    apply_finetune(dual, FinetuneConfig(lock_image=True))
    model = ContrastiveImageText(dual, ContrastiveConfig(loss="auto", hard_negative_weight=0))
    assert model.loss_name == "siglip" and model.bias is dual.logit_bias  # the checkpoint's bias, not a new one
    before = {n: p.detach().clone() for n, p in dual.named_parameters()}
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    batch = {
        "images": torch.randn(4, 3, 32, 32),
        "input_ids": torch.randint(3, 20, (4, 64)),
        "attention_mask": torch.ones(4, 64, dtype=torch.long),
    }
    model.train()
    model(batch)["loss"].backward()
    opt.step()
    moved = {n for n, p in dual.named_parameters() if not torch.equal(p, before[n])}
    assert moved and not any(n.startswith("image_") for n in moved)
    assert "logit_bias" in moved and any(n.startswith("text_encoder.") for n in moved)


def test_structure_clip_swaps_relation_arguments():
    assert swap_arguments("a red circle left of a blue square") == "a blue square left of a red circle"
    assert swap_arguments("a man riding a horse.") == "a horse riding a man"
    assert swap_arguments("the cat to the left of the dog") == "the dog to the left of the cat"
    assert swap_arguments("a sunny beach") is None


def finetune_cfg(ckpt, tmp_path, **extra):
    sets = {
        "model.name_or_path": str(ckpt),
        "data.root": str(tmp_path / "world"),
        "data.n_train": 256,
        "data.n_test": 64,
        "data.render_size": 40,
        "train.output_dir": str(tmp_path / "run"),
        "train.max_steps": 40,
        "train.progress": False,
        "train.tensorboard": False,
        "train.device": "cpu",
        **extra,
    }
    return load_yaml_config(
        ClipShapesConfig, "configs/vlx/clip_finetune_tiny.yaml", [f"{k}={v}" for k, v in sets.items()]
    )


@pytest.mark.slow
def test_finetune_from_a_checkpoint_lowers_held_out_loss(ckpts, tmp_path):
    cfg = finetune_cfg(ckpts["clip"], tmp_path)
    assert cfg.finetune.lock_image and cfg.objective.loss == "auto" and cfg.objective.swap_negatives
    task = build_clip_shapes(cfg)
    assert task.model.loss_name == "clip"
    before = task.evaluate(task.model.eval(), torch.device("cpu"))
    image_w = task.model.dual.image_encoder.vision_model.embeddings.patch_embedding.weight.detach().clone()
    result = Trainer(cfg.train, task).fit()
    after = result["test_loss"]
    assert after < before["test_loss"] - 0.05, (before["test_loss"], after)
    # LiT with the last block unlocked: the patch embedding is the checkpoint's still
    assert torch.equal(task.model.dual.image_encoder.vision_model.embeddings.patch_embedding.weight, image_w)
