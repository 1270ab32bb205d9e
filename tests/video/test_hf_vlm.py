"""Released LLaVA-family / Qwen2-VL checkpoints as the captioner (tiny random checkpoints
saved with save_pretrained), PLLaVA pooling and frame repetition."""

import json

import pytest
import torch
import torch.nn.functional as F

from video.models.hf_inputs import preprocess_frames
from video.models.hf_vlm import HFVideoLLMConfig, load_hf_video_llm
from video.models.tiny_vlm import build_tiny_vlm
from video.pooling import PLLaVAPooling, pllava_frame_repeats, pllava_repeat_frames
from vlx.data.errors import DataError

FIVE = ["llava", "llava_next", "llava_next_video", "llava_onevision", "qwen2_vl"]


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
    root = tmp_path_factory.mktemp("vlm")
    return {k: build_tiny_vlm(root / k, k) for k in FIVE + ["pllava"]}


def _reference_logits(kind, m, path, frames, ids, V):
    """The HF model's own forward on the processor's pixels and an expanded prompt."""
    from transformers import AutoImageProcessor

    ph = m.media.placeholder_id
    p = ids.index(ph)
    ref_ids = torch.tensor([ids[:p] + [ph] * V + ids[p + 1 :]])
    am = torch.ones_like(ref_ids)
    img = frames[0, 0].numpy()
    if kind in ("llava", "llava_next", "qwen2_vl"):
        proc = AutoImageProcessor.from_pretrained(str(path), local_files_only=True)(images=[img], return_tensors="pt")
    if kind == "llava":
        return m.hf(input_ids=ref_ids, pixel_values=proc["pixel_values"], attention_mask=am).logits
    if kind == "llava_next":
        kw = dict(pixel_values=proc["pixel_values"], image_sizes=proc["image_sizes"])
        return m.hf(input_ids=ref_ids, attention_mask=am, **kw).logits
    if kind == "qwen2_vl":  # a one-frame video is the image repeated over the temporal patch
        types = (ref_ids == m.hf.config.video_token_id).int() * 2
        kw = dict(
            pixel_values_videos=proc["pixel_values"], video_grid_thw=proc["image_grid_thw"], mm_token_type_ids=types
        )
        return m.hf(input_ids=ref_ids, attention_mask=am, **kw).logits
    pp = json.loads((path / "preprocessor_config.json").read_text())
    mean, std = torch.tensor(pp["image_mean"]).view(3, 1, 1), torch.tensor(pp["image_std"]).view(3, 1, 1)
    px = ((torch.from_numpy(img).permute(2, 0, 1).float() / 255 - mean) / std)[None, None]
    return m.hf(input_ids=ref_ids, attention_mask=am, pixel_values_videos=px).logits


@pytest.mark.parametrize("kind", FIVE)
def test_native_one_frame_equals_hf_logits(ckpts, kind):
    m = load_hf_video_llm(HFVideoLLMConfig(path=str(ckpts[kind]), pooling="native")).eval()
    torch.manual_seed(0)
    frames = torch.randint(0, 256, (1, 1, 32, 32, 3), dtype=torch.uint8)
    ids, _ = m.encode_conversation([("<video>\ndescribe the video", "a video")])
    with torch.no_grad():
        ours = m.logits(frames, torch.tensor([ids]), torch.ones(1, len(ids), dtype=torch.long))
        V = ours.shape[1] - len(ids) + 1
        ref = _reference_logits(kind, m, ckpts[kind], frames, ids, V)
    assert V > 1 and ours.shape == ref.shape
    assert (ours - ref).abs().max().item() < 1e-4


def test_pllava_frame_repetition_matches_pllava_rule():
    # PllavaMultiModalProjector: repeat_interleave(int(num_frames / total) + 1)[:num_frames]
    assert pllava_frame_repeats(4, 16) == [5, 5, 5, 1]
    assert pllava_frame_repeats(3, 16) == [6, 6, 4]
    assert pllava_frame_repeats(8, 16) == [3, 3, 3, 3, 3, 1, 0, 0]
    assert pllava_frame_repeats(16, 16) == [1] * 16
    x = torch.arange(5.0).view(1, 5, 1)
    ref = x.repeat_interleave(int(16 / 5) + 1, dim=1)[:, :16]
    assert torch.equal(pllava_repeat_frames(x, 16), ref)


def test_pllava_pooling_orders():
    torch.manual_seed(0)
    proj = torch.nn.Sequential(torch.nn.Linear(8, 6), torch.nn.GELU(), torch.nn.Linear(6, 6))
    x = torch.randn(2, 4, 16, 8)  # (B, T, 4x4, Dv)
    out = PLLaVAPooling((2, 2, 2), "project_then_pool")(x, proj)
    # PLLaVA: project every token, (b t) (h w) d -> b d t h w, AdaptiveAvgPool3d, -> b (t h w) d
    y = proj(x).reshape(2, 4, 4, 4, 6).permute(0, 4, 1, 2, 3)
    ref = torch.nn.AdaptiveAvgPool3d((2, 2, 2))(y).permute(0, 2, 3, 4, 1).reshape(2, 8, 6)
    assert torch.allclose(out, ref, atol=1e-6)
    other = PLLaVAPooling((2, 2, 2), "pool_then_project")(x, proj)
    pooled = F.adaptive_avg_pool3d(x.reshape(2, 4, 4, 4, 8).permute(0, 4, 1, 2, 3), (2, 2, 2))
    assert torch.allclose(other, proj(pooled.permute(0, 2, 3, 4, 1).reshape(2, 8, 8)), atol=1e-6)
    assert (out - other).abs().max() > 1e-3  # the two orders are different models


def test_pllava_identity_pool_equals_native_llava(ckpts):
    """Layer -2 without post-layernorm, CLS dropped: with a (1, g, g) pool and one frame the
    PLLaVA path is LLaVA-1.5's own image path."""
    cfg = dict(path=str(ckpts["llava"]))
    native = load_hf_video_llm(HFVideoLLMConfig(**cfg, pooling="native")).eval()
    pl = load_hf_video_llm(HFVideoLLMConfig(**cfg, pooling="pllava", pool_shape=[1, 4, 4], repeat_to_frames=0)).eval()
    frames = torch.randint(0, 256, (2, 1, 32, 32, 3), dtype=torch.uint8)
    with torch.no_grad():
        assert torch.allclose(native.visual_tokens(frames), pl.visual_tokens(frames), atol=1e-5)


def test_pllava_checkpoint_dir_loads(ckpts):
    m = load_hf_video_llm(HFVideoLLMConfig(path=str(ckpts["pllava"]))).eval()
    assert m.pllava.pool.output_size == (4, 2, 2) and m.pllava.num_frames == 4  # from its config.json
    ref = load_hf_video_llm(HFVideoLLMConfig(path=str(ckpts["llava"]))).eval()  # same seed, new key layout
    for k, v in ref.hf.state_dict().items():
        assert torch.equal(m.hf.state_dict()[k], v), k
    frames = torch.randint(0, 256, (1, 2, 32, 32, 3), dtype=torch.uint8)  # 2 frames -> repeated to 4
    with torch.no_grad():
        vis = m.visual_tokens(frames)
    assert vis.shape == (1, 16, 64)
    x = preprocess_frames(frames, m.media)
    assert x.shape == (1, 2, 3, 32, 32)


@pytest.mark.parametrize("kind", FIVE)
def test_pllava_pooling_trains_and_generates(ckpts, kind):
    torch.manual_seed(0)
    shape = [1, 1, 1] if kind == "qwen2_vl" else [2, 2, 2]  # Qwen2-VL: 4 frames = 2 temporal patches, 2x2 merged
    m = load_hf_video_llm(HFVideoLLMConfig(path=str(ckpts[kind]), pool_shape=shape, freeze_vision=True))
    rows = [m.encode_conversation([("<video>\nwhat is it?", ans)]) for ans in ("a video", "the system")]
    L = max(len(r[0]) for r in rows)
    ids = torch.tensor([r[0] + [0] * (L - len(r[0])) for r in rows])
    labels = torch.tensor([r[1] + [-100] * (L - len(r[1])) for r in rows])
    am = torch.tensor([[1] * len(r[0]) + [0] * (L - len(r[0])) for r in rows])
    batch = dict(frames=torch.randint(0, 256, (2, 4, 32, 32, 3), dtype=torch.uint8), input_ids=ids, labels=labels)
    batch["attention_mask"] = am
    opt = torch.optim.AdamW([p for p in m.parameters() if p.requires_grad], lr=3e-3)
    losses = []
    for _ in range(30 if kind == "qwen2_vl" else 12):  # one pooled token per clip: slower to separate
        loss = m(batch)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
    out = m.eval().generate(batch["frames"], ["what is it?"] * 2, max_new_tokens=4)
    assert len(out) == 2 and all(isinstance(s, str) for s in out)
    assert out[0].split()[:2] == ["a", "video"]


def test_unsupported_checkpoint_one_line_error(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"architectures": ["BertModel"]}))
    with pytest.raises(DataError) as e:
        load_hf_video_llm(HFVideoLLMConfig(path=str(tmp_path)))
    assert "BertModel" in str(e.value) and "\n" not in str(e.value)
