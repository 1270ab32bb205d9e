"""SugarCrepe and ARO (VG-Relation / VG-Attribution) on files written in their published
layouts: per-category accuracy = the image's true caption scores strictly higher, checked
against the scores of the HF model fed by its own processor (on the cropped box for ARO)."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from tests.vlx._hf_ckpt import save_tiny_clip
from vlx.cli import main
from vlx.data.errors import DataError
from vlx.eval.compositional import read_aro
from vlx.eval.run import run_eval


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    root = tmp_path_factory.mktemp("comp")
    rs = np.random.RandomState(2)
    coco = root / "val2017"
    coco.mkdir()
    for i in range(6):
        Image.fromarray(rs.randint(0, 255, (40 + 3 * i, 60, 3), dtype=np.uint8)).save(coco / f"00000000{i:04d}.jpg")
    sc = root / "sugarcrepe" / "data"
    sc.mkdir(parents=True)
    caps = [
        ("a red circle", "a blue circle"),
        ("a cat on the car", "a car on the cat"),
        ("the big dog", "the small dog"),
    ]
    for cat, n in (("replace_att", 4), ("swap_obj", 3)):
        recs = {
            str(k): {"filename": f"00000000{k:04d}.jpg", "caption": caps[k % 3][0], "negative_caption": caps[k % 3][1]}
            for k in range(n)
        }
        (sc / f"{cat}.json").write_text(json.dumps(recs, indent=4))
    aro = root / "aro"
    (aro / "images").mkdir(parents=True)
    for i in range(3):
        Image.fromarray(rs.randint(0, 255, (80, 100, 3), dtype=np.uint8)).save(aro / "images" / f"{2300 + i}.jpg")
    rel = [
        {"image_id": "2300", "image_path": "2300.jpg", "bbox_x": 10, "bbox_y": 5, "bbox_w": 60, "bbox_h": 50,
         "true_caption": "the cat is on the car", "false_caption": "the car is on the cat", "relation_name": "on"},
        {"image_id": "2301", "image_path": "2301.jpg", "bbox_x": 0, "bbox_y": 0, "bbox_w": 100, "bbox_h": 80,
         "true_caption": "the dog is left of the bird", "false_caption": "the bird is left of the dog",
         "relation_name": "left of"},
        {"image_id": "2302", "image_path": "2302.jpg", "bbox_x": 30, "bbox_y": 20, "bbox_w": 40, "bbox_h": 30,
         "true_caption": "the bird is on the dog", "false_caption": "the dog is on the bird", "relation_name": "on"},
    ]  # fmt: skip
    (aro / "visual_genome_relation.json").write_text(json.dumps(rel))
    swap = {"true_caption": "the red cat and the big car", "false_caption": "the big cat and the red car"}
    att = [{**{k: v for k, v in r.items() if k != "relation_name"}, "attributes": ["red", "big"], **swap} for r in rel]
    (aro / "visual_genome_attribution.json").write_text(json.dumps(att))
    return root, save_tiny_clip(root / "clip", seed=7)


@torch.no_grad()
def hf_correct(ckpt, cases):
    from transformers import AutoImageProcessor, AutoModel, AutoTokenizer

    m, tok, proc = (c.from_pretrained(str(ckpt)) for c in (AutoModel, AutoTokenizer, AutoImageProcessor))
    out = []
    for image, box, pos, neg in cases:
        img = Image.open(image).convert("RGB")
        img = img.crop(box) if box else img
        logits = m(
            **tok([neg, pos], padding=True, return_tensors="pt"), **proc([img], return_tensors="pt")
        ).logits_per_image
        out.append(bool(logits[0].argmax() == 1 and logits[0, 1] > logits[0, 0]))
    return out


def test_sugarcrepe_accuracy_per_category(bench, tmp_path):
    root, ck = bench
    out = tmp_path / "eval.json"
    args = ["eval", "--model", str(ck), "--task", "sugarcrepe", "--data", str(root / "sugarcrepe" / "data")]
    assert main([*args, "--images", str(root / "val2017"), "--workers", "0", "--out", str(out)]) == 0
    res = json.loads(out.read_text())
    assert set(res["per_category"]) == {"replace_att", "swap_obj"} and res["n"] == 7
    cases = []
    for cat in ("replace_att", "swap_obj"):  # files in sorted order, ids in file order
        for rec in json.loads((root / "sugarcrepe" / "data" / f"{cat}.json").read_text()).values():
            cases.append((root / "val2017" / rec["filename"], None, rec["caption"], rec["negative_caption"]))
    ref = hf_correct(ck, cases)
    assert res["correct"] == ref
    assert res["per_category"]["replace_att"]["accuracy"] == pytest.approx(100 * np.mean(ref[:4]))
    assert res["per_category"]["swap_obj"]["accuracy"] == pytest.approx(100 * np.mean(ref[4:]))
    assert res["accuracy"] == pytest.approx(100 * np.mean(ref))


@pytest.mark.parametrize("name", ["relation", "attribution"])
def test_aro_accuracy_on_the_cropped_box(bench, name):
    root, ck = bench
    f = root / "aro" / f"visual_genome_{name}.json"
    res = run_eval(str(ck), str(f), task="aro", device="cpu", num_workers=0)
    recs = json.loads(f.read_text())
    cases = [(root / "aro" / "images" / r["image_path"], (r["bbox_x"], r["bbox_y"], r["bbox_x"] + r["bbox_w"],
              r["bbox_y"] + r["bbox_h"]), r["true_caption"], r["false_caption"]) for r in recs]  # fmt: skip
    ref = hf_correct(ck, cases)
    assert res["correct"] == ref and res["task"] == f"aro_vg_{name}"
    if name == "relation":
        assert set(res["per_category"]) == {"on", "left of"}
        assert res["per_category"]["on"] == {"accuracy": pytest.approx(50 * (ref[0] + ref[2])), "count": 2}
        assert res["macro_accuracy"] == pytest.approx((50 * (ref[0] + ref[2]) + 100 * ref[1]) / 2)
    else:
        assert set(res["per_category"]) == {"red_big"}
        assert np.isnan(res["macro_accuracy"])  # fewer than ARO's 25 cases per attribute pair: not averaged


def test_compositional_bad_files_are_one_line(bench, tmp_path):
    root, _ = bench
    bad = tmp_path / "visual_genome_relation.json"
    bad.write_text(json.dumps([{"image_path": "2300.jpg", "true_caption": "x"}]))
    with pytest.raises(DataError, match="item 0: missing key 'bbox_x'"):
        read_aro(bad, root / "aro" / "images")
