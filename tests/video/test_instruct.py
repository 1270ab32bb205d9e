"""Video instruction data: LLaVA-Video-178K conversations and VideoInstruct-100K entries,
labels on answers only, bad videos skipped and counted."""

import json

import pytest
import torch

from video.instruct import InstructDataset, _stack_frames, instruct_collate, load_instructions
from video.io import SamplerConfig, VideoLoadConfig
from video.models.hf_vlm import HFVideoLLMConfig, load_hf_video_llm
from video.models.tiny_vlm import build_tiny_vlm
from vlx.data.errors import DataError

LOAD = VideoLoadConfig(SamplerConfig("uniform", 4), size=32)


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    words = ["which shape moves first", "the red circle", "where does it move", "left", "up"]
    path = build_tiny_vlm(tmp_path_factory.mktemp("vlm") / "llava", "llava", words=words)
    return load_hf_video_llm(HFVideoLLMConfig(path=str(path), pool_shape=[2, 2, 2]))


def _write(tmp_path, shapes_dir, name, entries):
    f = tmp_path / name
    text = "".join(json.dumps(e) + "\n" for e in entries) if name.endswith(".jsonl") else json.dumps(entries)
    f.write_text(text)
    return f


CONV = {
    "id": "x",
    "video": "video0.mp4",
    "conversations": [
        {"from": "human", "value": "<video>\nwhich shape moves first?"},
        {"from": "gpt", "value": "the red circle"},
        {"from": "human", "value": "where does it move?"},
        {"from": "gpt", "value": "left"},
    ],
}


def test_both_formats_and_jsonl(tmp_path, shapes_dir):
    llava = dict(CONV, conversations=[dict(CONV["conversations"][0], value="<image>\nwhich shape moves first?")])
    llava["conversations"].append(CONV["conversations"][1])
    f = _write(tmp_path, shapes_dir, "a.jsonl", [CONV, llava, {"video_id": "video1", "q": "where?", "a": "up"}])
    recs = load_instructions(f, video_root=shapes_dir)
    assert [len(r["turns"]) for r in recs] == [2, 1, 1]
    assert recs[1]["turns"][0][0] == "<video>\nwhich shape moves first?"  # LLaVA-NeXT's <image> read as <video>
    assert recs[2]["turns"] == [("<video>\nwhere?", "up")]
    assert recs[2]["video"] == str(shapes_dir / "video1.mp4")  # VideoInstruct ids resolve under video_root


def test_labels_only_on_answers(tmp_path, shapes_dir, model):
    f = _write(tmp_path, shapes_dir, "a.json", [CONV, {"video_id": "video1", "q": "where does it move?", "a": "up"}])
    ds = InstructDataset(load_instructions(f, shapes_dir / "videos"), LOAD)
    batch = instruct_collate(model)([ds[0], ds[1]])
    tok = model.tokenizer
    eos = tok.convert_tokens_to_ids("<|im_end|>")
    for b, answers in enumerate([["the red circle", "left"], ["up"]]):
        ids, lab = batch["input_ids"][b], batch["labels"][b]
        want = torch.full_like(lab, -100)
        # every answer (and its end-of-turn token) is labelled where it sits in input_ids
        pos = 0
        for a in answers:
            a_ids = tok(a, add_special_tokens=False)["input_ids"] + [eos]
            while ids[pos : pos + len(a_ids)].tolist() != a_ids:
                pos += 1
            want[pos : pos + len(a_ids)] = torch.tensor(a_ids)
            pos += len(a_ids)
        assert torch.equal(lab, want)
        assert int((ids == model.media.placeholder_id).sum()) == 1
    assert batch["frames"].shape == (2, 4, 32, 32, 3)
    assert model(batch)["loss"].isfinite()


def test_conversation_without_video_one_line_error(tmp_path, shapes_dir):
    bad = dict(CONV, conversations=[{"from": "human", "value": "hi"}, {"from": "gpt", "value": "left"}])
    f = _write(tmp_path, shapes_dir, "b.json", [CONV, bad])
    with pytest.raises(DataError) as e:
        load_instructions(f)
    msg = str(e.value)
    assert "b.json: entry 1" in msg and "<video>" in msg and "\n" not in msg


def test_missing_and_corrupt_videos_skipped_and_counted(tmp_path, shapes_dir, bad_videos, model):
    entries = [
        {"video_id": str(shapes_dir / "videos" / "video0.mp4"), "q": "where?", "a": "up"},
        {"video_id": str(bad_videos["missing"]), "q": "where?", "a": "up"},
        {"video_id": str(bad_videos["corrupt"]), "q": "where?", "a": "up"},
        {"video_id": str(shapes_dir / "videos" / "video1.mp4"), "q": "where?", "a": "left"},
    ]
    ds = InstructDataset(load_instructions(_write(tmp_path, shapes_dir, "c.json", entries)), LOAD)
    loader = torch.utils.data.DataLoader(ds, batch_size=2, collate_fn=instruct_collate(model))
    n = sum(b["frames"].shape[0] for b in loader)  # a whole epoch, no exception
    assert n == 4
    assert ds.on_epoch_end(0) == {"bad_videos": 2}


def test_unequal_clip_lengths_stack():
    a, b = torch.zeros(2, 4, 4, 3, dtype=torch.uint8), torch.ones(3, 4, 4, 3, dtype=torch.uint8)
    out = _stack_frames([a, b])
    assert out.shape == (2, 3, 4, 4, 3) and torch.equal(out[0, 2], a[-1])
