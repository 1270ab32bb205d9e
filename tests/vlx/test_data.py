import hashlib
import json

import pytest
import torch
from PIL import Image

from vlx.data.errors import DataError
from vlx.data.image_text import ImageTextDataset, make_image_text_collate, read_caption_jsonl
from vlx.data.shapes import generate_shapes_world
from vlx.data.transforms import IMAGE_MEAN, load_image


def digest(root):
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file():
            h.update(p.name.encode() + p.read_bytes())
    return h.hexdigest()


def test_shapes_world_same_seed_same_files(tmp_path):
    a = generate_shapes_world(tmp_path / "a", 30, 10, 48, seed=3, progress=False)
    b = generate_shapes_world(tmp_path / "b", 30, 10, 48, seed=3, progress=False)
    c = generate_shapes_world(tmp_path / "c", 30, 10, 48, seed=4, progress=False)
    assert digest(a) == digest(b) != digest(c)


def test_shapes_world_captions_match_pixels(tmp_path):
    """The relation in the caption holds in the image: check centroids of the two colours."""
    root = generate_shapes_world(tmp_path, 60, 0, 64, seed=1, progress=False)
    from vlx.data.shapes import COLORS

    recs = [json.loads(l) for l in (root / "train.jsonl").read_text().splitlines()]
    checked = 0
    for r in recs:
        ca, cb = (o.split()[1] for o in r["objects"])
        if ca == cb:
            continue
        img = torch.tensor(list(Image.open(root / r["image"]).getdata())).view(64, 64, 3).float()

        def centroid(color):
            m = ((img - torch.tensor(COLORS[color]).float()).abs().sum(-1) < 30).nonzero().float()
            return m.mean(0)  # (row, col)

        a, b = centroid(ca), centroid(cb)
        rel = r["relation"]
        ok = {"left of": a[1] < b[1], "right of": a[1] > b[1], "above": a[0] < b[0], "below": a[0] > b[0]}[rel]
        assert ok, r
        # the negative has the same words, other order
        assert sorted(r["negative"].split()) == sorted(r["caption"].split()) and r["negative"] != r["caption"]
        checked += 1
    assert checked > 30


def test_load_image_errors(tmp_path):
    with pytest.raises(DataError, match=r"missing\.png: image file not found"):
        load_image(tmp_path / "missing.png", 32)
    bad = tmp_path / "corrupt.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\nthis is not a png")
    with pytest.raises(DataError, match=r"corrupt\.png: not a readable image"):
        load_image(bad, 32)


def test_load_image_normalises(tmp_path):
    p = tmp_path / "black.png"
    Image.new("RGB", (10, 20), (0, 0, 0)).save(p)
    x = load_image(p, 16)
    assert x.shape == (3, 16, 16)
    assert x[0, 0, 0].item() == pytest.approx(-IMAGE_MEAN[0] / 0.26862954, rel=1e-5)


@pytest.mark.parametrize(
    "content,match",
    [
        ("", r"caps\.jsonl: caption file is empty"),
        ('{"image": "a.png", "caption": ""}\n', r"caps\.jsonl:1: empty caption"),
        ('{"image": "a.png"}\n', r"caps\.jsonl:1: missing key 'caption'"),
        ('{"image": "nope.png", "caption": "x"}\n', r"caps\.jsonl:1: image file not found"),
        ('{"image": "a.png", "caption": "x"}\n{oops\n', r"caps\.jsonl:2: not valid JSON"),
    ],
)
def test_caption_file_errors(tmp_path, content, match):
    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    (tmp_path / "caps.jsonl").write_text(content)
    with pytest.raises(DataError, match=match):
        read_caption_jsonl(tmp_path / "caps.jsonl")


def test_dataset_and_collate(tmp_path):
    root = generate_shapes_world(tmp_path, 8, 0, 32, seed=0, progress=False)
    ds = ImageTextDataset(root / "train.jsonl", image_size=24, cache=True)

    def tok(texts):
        ids = torch.tensor([[len(w) for w in t.split()][:8] + [0] * (8 - min(8, len(t.split()))) for t in texts])
        return {"input_ids": ids, "attention_mask": (ids > 0).long()}

    batch = make_image_text_collate(tok)([ds[i] for i in range(4)])
    assert batch["images"].shape == (4, 3, 24, 24)
    assert batch["input_ids"].shape == batch["neg_input_ids"].shape == (4, 8)
    assert batch["index"].tolist() == [0, 1, 2, 3]
    assert ds.image(2) is ds.image(2)  # cached
