"""`vlx eval --model --data` and `vlx embed` on a user's checkpoint: zero-shot top-1 equals
Hugging Face's own zero-shot pipeline, template ensembling equals CLIP's recipe worked by hand
with the HF model, retrieval top-1 equals the HF model's, and killed embedding runs resume to
the same shards."""

import json

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from tests.vlx._hf_ckpt import save_tiny_clip, save_tiny_siglip
from vlx.cli import main
from vlx.data.errors import DataError
from vlx.eval.run import run_embed, run_eval

CLASSES = ["bird", "car", "cat", "dog"]  # sorted: the folders' order, as classnames.txt lists them


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("zs")
    rs = np.random.RandomState(1)
    folder = root / "folder"
    rows = []
    for c in CLASSES:
        (folder / f"the_{c}").mkdir(parents=True)
        for i in range(4):
            h, w = rs.randint(20, 80, size=2)
            a = rs.randint(0, 255, (h, w, 3), dtype=np.uint8)
            a[..., CLASSES.index(c) % 3] //= 3  # some class structure, so the scores are not all ties
            Image.fromarray(a).save(folder / f"the_{c}" / f"{i}.png")
            rows.append(
                {
                    "image": f"folder/the_{c}/{i}.png",
                    "caption": f"a photo of the {c} {['red', 'blue', 'green', 'small'][i]}",
                }
            )
    (root / "classnames.txt").write_text("\n".join(CLASSES) + "\n")  # sorted folder order
    (root / "pairs.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    (root / "pairs.csv").write_text("filepath,title\n" + "\n".join(f"{r['image']},{r['caption']}" for r in rows) + "\n")
    (root / "templates.txt").write_text("a photo of a {}.\na {c} on the left\nthe big {}\n")
    ck = {"clip": save_tiny_clip(root / "clip", seed=3), "siglip": save_tiny_siglip(root / "siglip", seed=4)}
    return root, ck


def hf_model(path):
    from transformers import AutoImageProcessor, AutoModel, AutoTokenizer

    return (
        AutoModel.from_pretrained(str(path)).eval(),
        AutoTokenizer.from_pretrained(str(path)),
        AutoImageProcessor.from_pretrained(str(path)),
    )


@pytest.mark.parametrize("kind", ["clip", "siglip"])
def test_zeroshot_top1_equals_hf_pipeline(world, kind, tmp_path):
    from transformers import pipeline

    root, ck = world
    out = tmp_path / "eval.json"
    rc = main(["eval", "--model", str(ck[kind]), "--data", str(root / "folder"), "--classnames",
               str(root / "classnames.txt"), "--workers", "0", "--out", str(out)])  # fmt: skip
    assert rc == 0
    res = json.loads(out.read_text())
    assert res["task"] == "zeroshot_classification" and res["n_images"] == 16 and res["classnames"] == CLASSES
    clf = pipeline("zero-shot-image-classification", model=str(ck[kind]), device="cpu")
    ref = []
    for f in res["files"]:
        scores = clf(Image.open(root / "folder" / f), candidate_labels=CLASSES, hypothesis_template="a photo of a {}.")
        ref.append(max(scores, key=lambda s: s["score"])["label"])
    assert res["predictions"] == ref
    labels = [CLASSES[["the_" + c for c in CLASSES].index(f.split("/")[0])] for f in res["files"]]
    assert res["top1"] == pytest.approx(100 * np.mean([p == y for p, y in zip(ref, labels)]))


@torch.no_grad()
def test_template_ensembling_equals_clips_recipe_by_hand(world):
    root, ck = world
    templates = ["a photo of a {}.", "a {} on the left", "the big {}"]
    res = run_eval(str(ck["clip"]), str(root / "folder"), classnames=str(root / "classnames.txt"),
                   templates=str(root / "templates.txt"), device="cpu", num_workers=0)  # fmt: skip
    model, tok, proc = hf_model(ck["clip"])
    w = []
    for c in CLASSES:
        e = model.get_text_features(**tok([t.format(c) for t in templates], padding=True, return_tensors="pt"))
        e = e.pooler_output if hasattr(e, "pooler_output") else e
        e = e / e.norm(dim=-1, keepdim=True)
        m = e.mean(0)
        w.append(m / m.norm())
    w = torch.stack(w, 1)
    imgs = [Image.open(root / "folder" / f) for f in res["files"]]
    f = model.get_image_features(**proc(imgs, return_tensors="pt"))
    f = f.pooler_output if hasattr(f, "pooler_output") else f
    pred = (f / f.norm(dim=-1, keepdim=True) @ w).argmax(1)
    assert res["predictions"] == [CLASSES[i] for i in pred] and res["templates"] == templates
    single = run_eval(str(ck["clip"]), str(root / "folder"), device="cpu", num_workers=0)
    assert single["classnames"] == ["the bird", "the car", "the cat", "the dog"]  # folder names, "_" -> " "


@pytest.mark.parametrize("kind", ["clip", "siglip"])
@torch.no_grad()
def test_retrieval_top1_equals_hf_model(world, kind):
    root, ck = world
    res = run_eval(str(ck[kind]), str(root / "pairs.jsonl"), device="cpu", num_workers=0)
    csv = run_eval(str(ck[kind]), str(root / "pairs.csv"), device="cpu", num_workers=0)
    assert res["task"] == "retrieval" and res["n_images"] == res["n_captions"] == 16
    assert {k: v for k, v in csv.items() if k != "data"} == {k: v for k, v in res.items() if k != "data"}
    model, tok, proc = hf_model(ck[kind])
    rows = [json.loads(ln) for ln in (root / "pairs.jsonl").read_text().splitlines()]
    pad = "max_length" if kind == "siglip" else True
    enc = tok([r["caption"] for r in rows], padding=pad, return_tensors="pt")
    px = proc([Image.open(root / r["image"]) for r in rows], return_tensors="pt")["pixel_values"]
    logits = model(**enc, pixel_values=px).logits_per_image
    assert res["i2t_top1"] == logits.argmax(1).tolist() and res["t2i_top1"] == logits.argmax(0).tolist()
    r1 = 100 * float((logits.argmax(1) == torch.arange(16)).float().mean())
    assert res["i2t_R@1"] == pytest.approx(r1)


def test_embed_resumes_to_the_same_shards(world, tmp_path):
    root, ck = world
    kw = dict(shard_size=5, device="cpu", num_workers=0)
    full = run_embed(str(ck["clip"]), str(root / "pairs.jsonl"), str(tmp_path / "a"), **kw)
    assert full["written"] == 4 and full["rows"] == 16
    # a killed run: shards 0 and 2 finished, shard 1 half-written to its temp file
    b = tmp_path / "b"
    b.mkdir()
    for name in ("manifest.json", "embeddings-00000.safetensors", "embeddings-00002.safetensors"):
        (b / name).write_bytes((tmp_path / "a" / name).read_bytes())
    (b / ".embeddings-00001.safetensors.tmp").write_bytes(b"partial")
    kept = (b / "embeddings-00000.safetensors").stat().st_mtime_ns
    again = run_embed(str(ck["clip"]), str(root / "pairs.jsonl"), str(b), **kw)
    assert (again["written"], again["skipped"]) == (2, 2)
    assert (b / "embeddings-00000.safetensors").stat().st_mtime_ns == kept
    assert not list(b.glob(".*.tmp"))
    for name in full["shards"]:
        x, y = load_file(str(tmp_path / "a" / name)), load_file(str(b / name))
        assert x.keys() == y.keys() == {"image_embeds", "text_embeds", "index"}
        assert all(torch.equal(x[k], y[k]) for k in x)
    last = load_file(str(b / "embeddings-00003.safetensors"))
    assert last["index"].tolist() == [15] and torch.allclose(last["image_embeds"].norm(dim=-1), torch.ones(1))
    # another model into the same directory is refused, not mixed
    with pytest.raises(DataError, match="written for another run"):
        run_embed(str(ck["siglip"]), str(root / "pairs.jsonl"), str(b), **kw)
    folder = run_embed("tiny", str(root / "folder"), str(tmp_path / "c"), **kw)
    assert load_file(str(tmp_path / "c" / folder["shards"][0]))["label"].tolist() == [0, 0, 0, 0, 1]


def test_eval_bad_input_is_one_line(world, tmp_path, capsys):
    root, ck = world
    assert main(["eval", "--model", str(ck["clip"]), "--data", str(tmp_path / "x.txt")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "cannot tell the task" in err and "\n" not in err
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"image": "nope.png", "caption": "a cat"}) + "\n")
    assert main(["eval", "--model", str(ck["clip"]), "--data", str(bad)]) == 2
    assert "image file not found" in capsys.readouterr().err
