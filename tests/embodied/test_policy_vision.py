"""The vision policy: the embodied-former reads the plan text and the image and ignores text
padding (with the real MiniLM features), the concat baseline's size, the image-size and
pretrained-tower paths, frame history and the random-shift augmentation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from embodied.policy.model import PolicyModelConfig
from embodied.policy.vision import VisionPolicy, random_shift
from vlx.config import ConfigError
from vlx.encoders import EncoderConfig

TEXTS = ["reach-v3: Reach a goal position.", "pick-place-v3: Pick the puck and place it at the goal."]


def _cfg(**kw) -> PolicyModelConfig:
    base = dict(
        obs="image",
        image_size=32,
        image_encoder=EncoderConfig(name="vit", kwargs=dict(patch_size=8, width=32, layers=1, heads=2, pool="mean")),
        width=32,
        num_queries=3,
        heads=2,
        layers=2,
        head_hidden=64,
    )
    return PolicyModelConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def minilm():
    """The policy's own text features (frozen MiniLM) at two padded lengths."""
    from embodied.policy.text import TextFeatureCache
    from vlx.tokenizers import TokenizerConfig

    short = TextFeatureCache(tokenizer=TokenizerConfig(name="minilm", max_length=24))
    long = TextFeatureCache(tokenizer=TokenizerConfig(name="minilm", max_length=40))
    return short, long


def test_former_reads_text_and_image_and_ignores_padding(minilm):
    short, long = minilm
    torch.manual_seed(0)
    m = VisionPolicy(_cfg(), state_dim=39, action_dim=4, text_dim=short.dim, text_len=24).eval()
    tok, mask = short.features(TEXTS)
    tok40, mask40 = long.features(TEXTS)
    assert tok40.shape[1] == 40 and int(mask40.sum()) == int(mask.sum())  # 16 more padded positions
    images = torch.rand(2, 3, 32, 32)
    state = torch.randn(2, 39)
    with torch.no_grad():
        f = m.former_features(images, tok, mask)
        assert f.shape == (2, 3, 32)
        # more padding, and garbage in the padded positions: the same output
        torch.testing.assert_close(m.former_features(images, tok40, mask40), f, atol=1e-5, rtol=0)
        garbage = tok40.clone()
        garbage[~mask40] = 50.0
        torch.testing.assert_close(m.former_features(images, garbage, mask40), f, atol=1e-5, rtol=0)
        torch.testing.assert_close(m.predict(state, garbage, mask40, images), m.predict(state, tok, mask, images))
        # another plan text: other outputs
        swapped = m.former_features(images, tok.flip(0), mask.flip(0))
        assert (swapped - f).abs().amax(dim=(1, 2)).min() > 1e-3
        # another image (one patch changed): other outputs
        img2 = images.clone()
        img2[:, :, 8:16, 8:16] = 1.0 - img2[:, :, 8:16, 8:16]
        assert (m.former_features(img2, tok, mask) - f).abs().amax(dim=(1, 2)).min() > 1e-3


def test_concat_baseline_has_the_formers_size_and_ignores_padding(minilm):
    short, long = minilm
    torch.manual_seed(0)
    former = VisionPolicy(_cfg(), 39, 4, short.dim, 24)
    concat = VisionPolicy(_cfg(arch="concat"), 39, 4, short.dim, 24).eval()
    nf, nc = former.parameter_counts()["total"], concat.parameter_counts()["total"]
    print(f"parameters: former {nf:,}, concat {nc:,}")
    assert abs(nf - nc) / nf < 0.005
    assert not any("queries" in n or "layers" in n for n, _ in concat.named_parameters())
    tok, mask = short.features(TEXTS)
    tok40, mask40 = long.features(TEXTS)
    x, s = torch.rand(2, 3, 32, 32), torch.randn(2, 39)
    with torch.no_grad():
        a = concat.predict(s, tok, mask, x)
        torch.testing.assert_close(concat.predict(s, tok40, mask40, x), a, atol=1e-5, rtol=0)
        assert (concat.predict(s, tok.flip(0), mask.flip(0), x) - a).abs().max() > 1e-4


def test_image_size_the_encoder_cannot_take_is_one_line_error():
    with pytest.raises(ConfigError, match=r"model\.image_size: 60 is not a multiple of the vit encoder's patch size 8"):
        VisionPolicy(_cfg(image_size=60), 39, 4, 8, 4)
    with pytest.raises(ConfigError) as e:
        VisionPolicy(_cfg(image_size=4, image_encoder=EncoderConfig(name="cnn")), 39, 4, 8, 4)
    assert "\n" not in str(e.value) and "model.image_size: 4" in str(e.value)
    with pytest.raises(ConfigError, match="model.arch"):
        VisionPolicy(_cfg(arch="film"), 39, 4, 8, 4)


def test_pretrained_clip_tower_frozen_and_trainable(tmp_path):
    """``image_encoder: {name: pretrained, path: <HF CLIP dir>}`` goes through
    ``vlx.create_model_and_transforms``: the checkpoint's tower, frames resized to its input
    size and normalised with its mean/std; ``freeze`` keeps its weights fixed."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "vlx"))
    from _hf_ckpt import save_tiny_clip

    from vlx.factory import create_model_and_transforms

    d = save_tiny_clip(tmp_path / "clip")
    _, _, val = create_model_and_transforms(str(d))
    for freeze in (True, False):
        cfg = _cfg(image_size=64, image_encoder=EncoderConfig(name="pretrained", path=str(d), freeze=freeze))
        torch.manual_seed(0)
        m = VisionPolicy(cfg, 39, 4, 8, 4)
        tower = m.image_encoder
        assert tower.resize == tuple(val.output_size) and tower.output_dim == 32
        torch.testing.assert_close(tower.mean.flatten(), torch.tensor(val.mean, dtype=torch.float32))
        before = {k: v.clone() for k, v in tower.encoder.state_dict().items()}
        batch = {
            "state": torch.randn(4, 39),
            "images": torch.rand(4, 3, 64, 64),
            "text_tokens": torch.randn(4, 4, 8),
            "text_mask": torch.ones(4, 4, dtype=torch.bool),
            "actions": torch.randn(4, 1, 4),
            "action_mask": torch.ones(4, 1, dtype=torch.bool),
        }
        m.train()
        assert tower.encoder.training is not freeze
        opt = torch.optim.SGD([p for p in m.parameters() if p.requires_grad], lr=0.1)
        m(batch)["loss"].backward()
        opt.step()
        changed = any(not torch.equal(before[k], v) for k, v in tower.encoder.state_dict().items())
        assert changed is not freeze
        assert all(p.requires_grad is not freeze for p in tower.encoder.parameters())


def test_frame_history_in_data_and_model():
    from embodied.policy.data import DemoFrames

    T = 6
    rgb = np.stack([np.full((8, 8, 3), 10 * t, np.uint8) for t in range(T + 1)])
    ep = _episode(T, {"cam": rgb})
    data = DemoFrames([ep], camera="cam", frames=3)
    first = data[0]["image"]
    assert first.shape == (3, 3, 8, 8)
    assert [round(float(first[i].mean()) * 255) for i in range(3)] == [0, 0, 0]
    assert [round(float(data[4]["image"][i].mean()) * 255) for i in range(3)] == [20, 30, 40]
    torch.manual_seed(0)
    m = VisionPolicy(_cfg(frames=3), 5, 4, 8, 4).eval()
    x = torch.rand(1, 3, 3, 32, 32)
    tok, mask = torch.randn(1, 4, 8), torch.ones(1, 4, dtype=torch.bool)
    with torch.no_grad():
        f = m.former_features(x, tok, mask)
        x2 = x.clone()
        x2[:, 0] = torch.rand(3, 32, 32)  # the oldest frame matters too
        assert (m.former_features(x2, tok, mask) - f).abs().max() > 1e-4
    with pytest.raises(ValueError, match="expected 3 frame"):
        m.former_features(x[:, :2], tok, mask)


def test_random_shift_is_a_crop_of_the_edge_padded_frames():
    torch.manual_seed(0)
    x = torch.rand(5, 2, 3, 10, 12)
    torch.testing.assert_close(random_shift(x, 0), x)
    y = random_shift(x, 3)
    assert y.shape == x.shape
    p = torch.nn.functional.pad(x.flatten(1, 2), (3, 3, 3, 3), mode="replicate").unflatten(1, (2, 3))
    for b in range(5):  # some offset reproduces it, the same for both frames of a sample
        hits = [(i, j) for i in range(7) for j in range(7) if torch.equal(p[b, :, :, i : i + 10, j : j + 12], y[b])]
        assert hits


def test_spatial_softmax_keypoints_are_the_bright_spots_coordinates():
    """``cnn_spatial_softmax``: with the trunk replaced by the identity and one keypoint map per
    colour channel at a low temperature, each keypoint is the (x, y) in [-1, 1] of its colour's
    dot, and it moves by one grid step when the dot moves by one pixel."""
    from embodied.policy.model import SpatialSoftmaxCNN

    m = SpatialSoftmaxCNN(width=8, keypoints=2, channels=3)
    m.net = torch.nn.Identity()
    with torch.no_grad():
        m.to_maps.weight.zero_()
        m.to_maps.bias.zero_()
        m.to_maps.weight[0, 0] = m.to_maps.weight[1, 1] = 1.0  # keypoint 0: red, keypoint 1: green
        m.log_temperature.fill_(float(np.log(0.01)))
    x = torch.zeros(1, 3, 16, 16)
    x[0, 0, 4, 12] = 1.0  # red at row 4, column 12
    x[0, 1, 10, 2] = 1.0  # green at row 10, column 2
    grid = torch.linspace(-1, 1, 16)
    kp, feat = m.keypoints(x)
    torch.testing.assert_close(kp[0], torch.stack([grid[[12, 4]], grid[[2, 10]]]), atol=1e-4, rtol=0)
    torch.testing.assert_close(feat[0, 0], torch.tensor([1.0, 0.0, 0.0]), atol=1e-4, rtol=0)
    x2 = torch.roll(x, shifts=1, dims=3)  # both dots one column to the right
    kp2, _ = m.keypoints(x2)
    torch.testing.assert_close(kp2[0, :, 0] - kp[0, :, 0], torch.full((2,), 2 / 15), atol=1e-4, rtol=0)
    torch.testing.assert_close(kp2[0, :, 1], kp[0, :, 1], atol=1e-4, rtol=0)
    out = m(x)
    assert out.pooled.shape == (1, 8) and out.tokens.shape == (1, 2, 8)


def test_two_cameras_as_views_in_data_model_and_size_match():
    """``model.cameras``: DemoFrames stacks each time step's views in order (frame-major with a
    history), the policy reads every view, and the concat baseline still matches the former's
    size; the spatial-softmax CNN is the image encoder of both."""
    from embodied.policy.data import DemoFrames

    T = 4
    rgb = {c: np.stack([np.full((8, 8, 3), 10 * t + k, np.uint8) for t in range(T + 1)]) for k, c in enumerate("ab")}
    ep = _episode(T, rgb)
    img = DemoFrames([ep], camera=["a", "b"], frames=2)[2]["image"]
    assert img.shape == (4, 3, 8, 8)
    assert [round(float(img[i].mean()) * 255) for i in range(4)] == [10, 11, 20, 21]  # (t-1: a, b), (t: a, b)
    assert DemoFrames([ep], camera=["b", "a"])[3]["image"].shape == (2, 3, 8, 8)
    enc = EncoderConfig(name="cnn_spatial_softmax", kwargs=dict(width=32, keypoints=8, channels=8))
    cfg = dict(image_encoder=enc, cameras=["a", "b"])
    torch.manual_seed(0)
    former = VisionPolicy(_cfg(**cfg), 5, 4, 8, 4).eval()
    concat = VisionPolicy(_cfg(arch="concat", **cfg), 5, 4, 8, 4).eval()
    nf, nc = former.parameter_counts()["total"], concat.parameter_counts()["total"]
    assert abs(nf - nc) / nf < 0.005
    x = torch.rand(2, 2, 3, 32, 32)
    s, tok, mask = torch.randn(2, 5), torch.randn(2, 4, 8), torch.ones(2, 4, dtype=torch.bool)
    x2 = x.clone()
    x2[:, 1, :, 8:16, 8:16] = 1.0  # a bright square in the second view only
    with torch.no_grad():
        for m in (former, concat):
            m.image_encoder.encoder.log_temperature.fill_(-4.0)  # sharp maps: keypoints follow the image
            a = m.predict(s, tok, mask, x)
            assert a.shape == (2, 1, 4)
            assert (m.predict(s, tok, mask, x2) - a).abs().amax() > 1e-4
    with pytest.raises(ValueError, match="expected 2 frame"):
        former.predict(s, tok, mask, x[:, :1])
    # every trained parameter of either arch gets a gradient (DDP needs it); concat never reads
    # the keypoint tokens, so their projection is not trained (and not counted as trainable)
    tokens = sum(p.numel() for n, p in concat.named_parameters() if ".token_" in n)
    assert concat.parameter_counts()["trainable"] == nc - tokens and former.parameter_counts()["trainable"] == nf
    for m in (former, concat):
        m.train()
        batch = dict(state=s, text_tokens=tok, text_mask=mask, images=x)
        batch.update(actions=torch.randn(2, 1, 4), action_mask=torch.ones(2, 1, dtype=torch.bool))
        m(batch)["loss"].backward()
        assert [n for n, p in m.named_parameters() if p.requires_grad and p.grad is None] == []


def test_aux_state_loss_is_bc_plus_weighted_regression_of_the_chosen_dims():
    """``model.aux_state``: training loss = BC + aux_weight * MSE of a linear head on the current
    frame's pooled views against the chosen (normalised) state dims; predictions do not use it;
    dims outside the state are a one-line ConfigError."""
    from embodied.policy.model import bc_loss

    enc = EncoderConfig(name="cnn_spatial_softmax", kwargs=dict(width=16, keypoints=4, channels=8, temperature=0.1))
    cfg = _cfg(image_encoder=enc, cameras=["a", "b"], frames=2, aux_state=[0, 3], aux_weight=0.5, text_dropout=0.0)
    torch.manual_seed(0)
    m = VisionPolicy(cfg, 5, 4, 8, 4)
    m.set_normalization(torch.arange(5.0), torch.full((5,), 2.0))
    B = 3
    batch = {
        "state": torch.randn(B, 5),
        "images": torch.rand(B, 4, 3, 32, 32),
        "text_tokens": torch.randn(B, 4, 8),
        "text_mask": torch.ones(B, 4, dtype=torch.bool),
        "actions": torch.randn(B, 1, 4),
        "action_mask": torch.ones(B, 1, dtype=torch.bool),
    }
    m.train()
    out = m(batch)
    with torch.no_grad():
        bc = bc_loss(m, batch)["loss"]
        pooled = m.encode_images(batch["images"])[1][:, -2:].flatten(1)  # the current frame's two views
        target = ((batch["state"] - torch.arange(5.0)) / 2.0)[:, [0, 3]]
        aux = ((m.aux_head(pooled) - target) ** 2).mean()
    torch.testing.assert_close(out["aux_mse"], aux)
    torch.testing.assert_close(out["loss"].detach(), bc + 0.5 * aux)
    assert float(aux) > 0.01  # an untrained head: the term is not negligible
    out["loss"].backward()
    assert m.aux_head.weight.grad.abs().sum() > 0
    with pytest.raises(ConfigError, match=r"model\.aux_state: dims \[7\] outside the state's 0\.\.4"):
        VisionPolicy(_cfg(image_encoder=enc, aux_state=[1, 7]), 5, 4, 8, 4)


def _episode(T, rgb):
    """A T-step demo with zero state/actions and the given camera frames (T + 1 each)."""
    from embodied.episode import Episode

    return Episode(
        path=None,
        meta={"plan_texts": ["reach: go"]},
        obs=np.zeros((T + 1, 5), np.float32),
        actions=np.zeros((T, 4), np.float32),
        rewards=np.zeros(T, np.float32),
        success=np.zeros(T, bool),
        step_index=np.zeros(T, np.int16),
        rgb=rgb,
    )
