from __future__ import annotations

import json
import shutil

import pytest
import torch

from video.datasets import (
    AnnotationConfig,
    VideoDataset,
    collate_video,
    load_annotations,
    load_jsonl,
    load_msrvtt,
    load_msvd,
    load_video_qa,
    load_webvid_csv,
)
from video.io import SamplerConfig, VideoLoadConfig
from vlx.data.errors import DataError

LOAD = VideoLoadConfig(sampler=SamplerConfig("uniform", 4), size=32)


def test_msrvtt_generated_annotation(shapes_dir):
    train = load_msrvtt(shapes_dir / "annotation.json", shapes_dir / "videos", split="train")
    test = load_msrvtt(shapes_dir / "annotation.json", shapes_dir / "videos", split="test")
    assert len(train) == 6 and len(test) == 4
    assert all(len(r["captions"]) == 2 for r in train)
    assert train[0]["video"].endswith("videos/video0.mp4") and "then" in train[0]["captions"][0]
    ds = VideoDataset(test, LOAD, pairs=True)
    assert len(ds) == 8
    batch = collate_video([ds[0], ds[1], ds[2]])
    assert batch["frames"].shape == (3, 4, 32, 32, 3) and batch["ids"].tolist() == [0, 0, 1]


def test_msrvtt_errors(tmp_path):
    p = tmp_path / "a.json"
    p.write_text(json.dumps({"videos": [{"video_id": "v1"}]}))
    with pytest.raises(DataError, match=r"a.json: missing key 'sentences'"):
        load_msrvtt(p, tmp_path)
    p.write_text(json.dumps({"videos": [{"video_id": "v1"}], "sentences": [{"video_id": "v1"}]}))
    with pytest.raises(DataError, match=r"sentences\[0\]: missing key 'caption'"):
        load_msrvtt(p, tmp_path)
    p.write_text("{oops")
    with pytest.raises(DataError, match="invalid JSON"):
        load_msrvtt(p, tmp_path)


def test_msvd(tmp_path, shapes_dir):
    shutil.copy(shapes_dir / "videos/video0.mp4", tmp_path / "-4wsuPCjDBc_5_15.avi")
    (tmp_path / "AllVideoDescriptions.txt").write_text(
        "# MSVD descriptions\n-4wsuPCjDBc_5_15 a squirrel is eating a peanut\n-4wsuPCjDBc_5_15 a chipmunk "
        "eats\nabc_1_2 a man sings\n"
    )
    (tmp_path / "test_list.txt").write_text("-4wsuPCjDBc_5_15\n")
    recs = load_msvd(tmp_path / "AllVideoDescriptions.txt", tmp_path)
    assert [r["video_id"] for r in recs] == ["-4wsuPCjDBc_5_15", "abc_1_2"]
    assert recs[0]["captions"] == ["a squirrel is eating a peanut", "a chipmunk eats"]
    assert recs[0]["video"].endswith(".avi")  # found on disk
    recs = load_msvd(tmp_path / "AllVideoDescriptions.txt", tmp_path, split_file=tmp_path / "test_list.txt")
    assert len(recs) == 1
    (tmp_path / "bad.txt").write_text("lonely_id\n")
    with pytest.raises(DataError, match=r"bad.txt:1: expected"):
        load_msvd(tmp_path / "bad.txt", tmp_path)


def test_webvid_csv(tmp_path):
    (tmp_path / "results_2M_val.csv").write_text(
        "videoid,contentUrl,duration,page_dir,name\n"
        '31353427,https://x/1.mp4,PT00H00M15S,1066_1070,"Aerial shot of a lake, at dawn"\n'
        "1234,https://x/2.mp4,PT00H00M10S,,A dog runs\n"
    )
    recs = load_webvid_csv(tmp_path / "results_2M_val.csv", tmp_path)
    assert recs[0]["video"] == str(tmp_path / "1066_1070" / "31353427.mp4")
    assert recs[0]["captions"] == ["Aerial shot of a lake, at dawn"]
    assert recs[1]["video"] == str(tmp_path / "1234.mp4")
    (tmp_path / "bad.csv").write_text("id,text\n1,a\n")
    with pytest.raises(DataError, match="missing column 'videoid'"):
        load_webvid_csv(tmp_path / "bad.csv", tmp_path)


def test_video_qa_both_layouts(tmp_path, shapes_dir):
    recs = load_video_qa(shapes_dir / "qa_test.json", shapes_dir / "videos")  # Video-ChatGPT keys
    assert len(recs) == 8 and recs[0]["question"] == "which shape moves first?" and recs[0]["video"].endswith(".mp4")
    (tmp_path / "videoinstruct.json").write_text(
        json.dumps([{"video_id": "v_abc", "q": "What happens?", "a": "A man cooks."}])
    )
    recs = load_video_qa(tmp_path / "videoinstruct.json", tmp_path)
    assert recs[0]["answer"] == "A man cooks." and recs[0]["video"].endswith("v_abc.mp4")
    (tmp_path / "bad.json").write_text(json.dumps([{"video_id": "v", "q": "?"}]))
    with pytest.raises(DataError, match=r"entry 0: missing key a\|A\|answer"):
        load_video_qa(tmp_path / "bad.json", tmp_path)


def test_jsonl_and_dispatch(shapes_dir, tmp_path):
    recs = load_annotations(AnnotationConfig(format="jsonl", file=str(shapes_dir / "test.jsonl")))
    assert len(recs) == 4 and recs[0]["video"] == str(shapes_dir / "videos/video6.mp4")
    (tmp_path / "x.jsonl").write_text('{"video": "a.mp4", "caption": ["one", "two"]}\n{"video": "b.mp4"}\n')
    with pytest.raises(DataError, match=r"x.jsonl:2: missing key 'caption'"):
        load_jsonl(tmp_path / "x.jsonl")
    with pytest.raises(DataError, match="not found"):
        load_annotations(AnnotationConfig(format="msrvtt", file=str(tmp_path / "nope.json")))


def test_dataset_skips_and_counts_bad_videos(shapes_dir, bad_videos):
    good = load_jsonl(shapes_dir / "test.jsonl")
    bad = [
        {"video": str(bad_videos[k]), "video_id": k, "captions": ["x"]}
        for k in ("corrupt", "truncated", "zero", "missing")
    ]
    records = [good[0], bad[0], bad[1], good[1], bad[2], bad[3]]
    strict = VideoDataset(records, LOAD)
    with pytest.raises(DataError, match="corrupt.mp4"):
        strict[1]
    ds = VideoDataset(records, LOAD, skip_bad=True)
    loader = torch.utils.data.DataLoader(ds, batch_size=3, collate_fn=collate_video)
    seen = [vid for b in loader for vid in b["video_id"]]
    assert len(seen) == 6 and set(seen) <= {"video6", "video7"}
    assert ds.bad_report()["bad_videos"] == 4
    assert ds.on_epoch_end(0) == {"bad_videos": 4}
    assert ds.bad_report()["bad_videos"] == 0  # fresh count for the next epoch


def test_bad_videos_are_tried_once_per_epoch(shapes_dir, bad_videos, monkeypatch):
    """Many bad videos and one good one: each bad file is decoded once per epoch, not once
    per item that lands on it (1,000 bad + 1 good cost 501,501 attempts before)."""
    import video.datasets as vd

    calls: dict[str, int] = {}
    real = vd.load_video

    def counting(path, cfg, rng=None):
        calls[str(path)] = calls.get(str(path), 0) + 1
        return real(path, cfg, rng)

    monkeypatch.setattr(vd, "load_video", counting)
    good = load_jsonl(shapes_dir / "test.jsonl")[0]
    n_bad = 60
    records = [
        {"video": str(bad_videos["missing"]).replace("missing", f"missing{i}"), "video_id": f"b{i}"}
        for i in range(n_bad)
    ] + [good]
    for r in records[:n_bad]:
        r["captions"] = ["x"]
    ds = VideoDataset(records, LOAD, skip_bad=True)
    for epoch in range(2):
        got = [ds[i]["video_id"] for i in range(len(ds))]
        assert got == [good["video_id"]] * len(ds)
        assert all(calls[r["video"]] == epoch + 1 for r in records[:n_bad])  # once per epoch
        assert calls[good["video"]] == (epoch + 1) * len(ds)  # the good one per item (no cache)
        assert ds.on_epoch_end(epoch) == {"bad_videos": n_bad}
    assert sum(calls.values()) == 2 * (n_bad + len(ds))  # was n_bad^2 / 2 per epoch


@pytest.mark.parametrize("persistent", [False, True])
def test_bad_count_and_tsn_epochs_with_workers(shapes_dir, bad_videos, persistent):
    """With DataLoader workers the main process sees every worker's bad videos, and TSN
    draws new frames each epoch also in persistent workers."""
    good = load_jsonl(shapes_dir / "test.jsonl")
    bad = [{"video": str(bad_videos[k]), "video_id": k, "captions": ["x"]} for k in ("corrupt", "zero", "missing")]
    records = [good[0], bad[0], good[1], bad[1], good[2], bad[2]]
    tsn = VideoLoadConfig(sampler=SamplerConfig("tsn", 4), size=32)
    ds = VideoDataset(records, tsn, skip_bad=True, seed=0)
    loader = torch.utils.data.DataLoader(
        ds, batch_size=2, collate_fn=collate_video, num_workers=2, persistent_workers=persistent
    )
    stamps = []
    for epoch in range(2):
        batches = list(loader)
        stamps.append(torch.cat([b["timestamps"] for b in batches]))
        assert sum(len(b["video_id"]) for b in batches) == 6
        assert ds.on_epoch_end(epoch) == {"bad_videos": 3}  # counted in the workers, read here
    assert not torch.equal(stamps[0], stamps[1])  # epoch 1 drew other frames than epoch 0


def test_annotation_paths_must_stay_inside_the_root(tmp_path):
    (tmp_path / "a.jsonl").write_text('{"video": "/etc/passwd", "caption": "x"}\n')
    with pytest.raises(DataError) as e:
        load_jsonl(tmp_path / "a.jsonl")
    assert "a.jsonl:1" in str(e.value) and "outside the dataset root" in str(e.value) and "\n" not in str(e.value)
    (tmp_path / "b.jsonl").write_text('{"video": "../../etc/passwd", "caption": "x"}\n')
    with pytest.raises(DataError, match="outside the dataset root"):
        load_jsonl(tmp_path / "b.jsonl")
    (tmp_path / "qa.json").write_text('[{"video_name": "../secret", "Q": "q", "A": "a"}]')
    with pytest.raises(DataError, match="qa.json: entry 0: video path '../secret.mp4' is outside"):
        load_video_qa(tmp_path / "qa.json", tmp_path / "videos")
    ann = {"videos": [{"video_id": "/etc/passwd"}], "sentences": [{"video_id": "/etc/passwd", "caption": "c"}]}
    (tmp_path / "m.json").write_text(json.dumps(ann))
    with pytest.raises(DataError, match="outside the dataset root"):
        load_annotations(AnnotationConfig(format="msrvtt", file=str(tmp_path / "m.json"), ext=""))
    # inside the root, also spelled absolute or with a harmless '..', is fine
    (tmp_path / "ok.jsonl").write_text(
        json.dumps({"video": str(tmp_path / "v" / "a.mp4"), "caption": "x"})
        + "\n"
        + json.dumps({"video": "v/../w/b.mp4", "caption": "y"})
        + "\n"
    )
    assert [r["video"] for r in load_jsonl(tmp_path / "ok.jsonl")] == [
        str(tmp_path / "v" / "a.mp4"),
        str(tmp_path / "w" / "b.mp4"),
    ]


def test_index_carrying_its_epoch_seeds_tsn(shapes_dir):
    """An index with ``.epoch`` (the trainer's sampler indices) picks the TSN draw of that
    epoch, whatever epoch the dataset copy itself was told."""
    from video.datasets import _WithEpoch

    recs = load_jsonl(shapes_dir / "test.jsonl")
    ds = VideoDataset(recs, VideoLoadConfig(sampler=SamplerConfig("tsn", 4), size=32), seed=0)
    ds.set_epoch(5)
    at5 = ds[0]["timestamps"]
    ds.set_epoch(0)
    torch.testing.assert_close(ds[_WithEpoch(0, 5)]["timestamps"], at5)
    e5 = torch.stack([ds[_WithEpoch(k, 5)]["timestamps"] for k in range(len(ds))])
    e6 = torch.stack([ds[_WithEpoch(k, 6)]["timestamps"] for k in range(len(ds))])
    assert not torch.equal(e5, e6)  # another epoch, other frames
