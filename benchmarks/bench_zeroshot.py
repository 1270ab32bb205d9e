"""Zero-shot evaluation throughput of vlx against the Hugging Face pipeline on the same
checkpoint, and training throughput from WebDataset shards against the folder dataset.

    .venv/bin/python benchmarks/bench_zeroshot.py [--sizes tiny,B-16] [--rounds 5] [--batch 32]
        [--skip-train] [--out runs/bench_zeroshot]

Zero-shot: a batch of non-square PIL images -> class logits against a precomputed text
classifier. vlx = ``preprocess.batch`` + ``model.encode_image(normalize=True)`` @ W; HF =
``CLIPImageProcessor(images)`` + ``CLIPModel.get_image_features`` normalised @ W. Both from
the same ``save_pretrained`` directory (tiny: 2 layers, width 32; B-16: CLIP ViT-B/16 shapes,
random weights), same images, same batch, under inference mode; the predictions are checked
to agree. Training: ``clip_shapes_tiny`` for a fixed number of steps from the JSONL folder
(images not cached, so both decode) and from the same data converted by ``vlx data shards``,
same workers; samples/s = the trainer's median log window. Rounds alternate which side goes
first; medians and the spread (min..max) are printed.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import vlx  # noqa: E402
from tests.vlx._hf_ckpt import save_tiny_clip  # noqa: E402


def save_b16(d: Path) -> Path:
    """CLIP ViT-B/16 shapes (random), with the tiny checkpoint's tokenizer files."""
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPTokenizer

    tiny = save_tiny_clip(d / "tok")
    tok = CLIPTokenizer.from_pretrained(str(tiny))
    tok.save_pretrained(str(d / "b16"))
    cfg = CLIPConfig(
        text_config=dict(vocab_size=len(tok), bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id),
        vision_config=dict(patch_size=16, image_size=224),
        projection_dim=512,
    )
    CLIPModel(cfg).eval().save_pretrained(str(d / "b16"))
    CLIPImageProcessor().save_pretrained(str(d / "b16"))  # OpenAI's: shortest 224, crop 224
    return d / "b16"


def images(n: int, seed: int = 0) -> list[Image.Image]:
    rs = np.random.RandomState(seed)
    sizes = [(480, 640), (640, 427), (375, 500), (512, 512)]
    return [Image.fromarray(rs.randint(0, 255, (*sizes[i % 4], 3), dtype=np.uint8)) for i in range(n)]


def spread(xs: list[float]) -> str:
    return f"{statistics.median(xs):.1f} ({min(xs):.1f}..{max(xs):.1f})"


@torch.inference_mode()
def bench_zeroshot(path: Path, batch: int, rounds: int) -> dict:
    from transformers import AutoImageProcessor, CLIPModel

    classes = ["cat", "dog", "car", "bird", "red circle", "blue square"]
    model, _, pre = vlx.create_model_and_transforms(path)
    tok = vlx.get_tokenizer(path)
    w = model.encode_text(tok([f"a photo of a {c}." for c in classes]), normalize=True).T
    hf = CLIPModel.from_pretrained(str(path)).eval()
    proc = AutoImageProcessor.from_pretrained(str(path))
    imgs = images(batch)

    def ours():
        return (model.encode_image(pre.batch(imgs), normalize=True) @ w).argmax(1)

    def theirs():
        f = hf.get_image_features(**proc(imgs, return_tensors="pt"))
        f = getattr(f, "pooler_output", f)
        return (f / f.norm(dim=-1, keepdim=True) @ w).argmax(1)

    assert torch.equal(ours(), theirs()), "vlx and HF predictions differ"
    t = {"vlx": [], "hf": []}
    for r in range(rounds):
        for name in ("vlx", "hf") if r % 2 == 0 else ("hf", "vlx"):
            fn = ours if name == "vlx" else theirs
            t0 = time.perf_counter()
            fn()
            t[name].append(batch / (time.perf_counter() - t0))
    ratios = [a / b for a, b in zip(t["vlx"], t["hf"])]
    return {"vlx_img_s": t["vlx"], "hf_img_s": t["hf"], "ratio": ratios}


def bench_train(work: Path, rounds: int, steps: int, workers: int) -> dict:
    from vlx.config import load_yaml_config
    from vlx.data.shapes import generate_shapes_world
    from vlx.data.shard_writer import write_shards
    from vlx.recipes.clip_shapes import ClipShapesConfig, build_clip_shapes
    from vlx.train.logging import read_jsonl
    from vlx.train.trainer import Trainer

    generate_shapes_world(work / "world", 2000, 50, 64, 0, progress=False)
    write_shards(work / "world" / "train.jsonl", work / "shards", 250)
    out = {"folder": [], "shards": []}
    for r in range(rounds):
        for name in ("folder", "shards") if r % 2 == 0 else ("shards", "folder"):
            extra = [f"data.shards={work / 'shards'}"] if name == "shards" else []
            run = work / f"run_{name}_{r}"
            sets = [f"data.root={work / 'world'}", "data.n_train=2000", "data.n_test=50", "data.cache_images=false",
                    f"train.max_steps={steps}", f"train.output_dir={run}", "train.progress=false",
                    "train.tensorboard=false", f"train.num_workers={workers}", "train.log_every=5", *extra]  # fmt: skip
            cfg = load_yaml_config(ClipShapesConfig, ROOT / "configs/vlx/clip_shapes_tiny.yaml", sets)
            Trainer(cfg.train, build_clip_shapes(cfg)).fit()
            sps = [x["samples_per_s"] for x in read_jsonl(run / "metrics.jsonl") if "samples_per_s" in x][1:]
            out[name].append(statistics.median(sps))
    out["ratio"] = [a / b for a, b in zip(out["shards"], out["folder"])]
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="tiny,B-16")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--skip-train", action="store_true")
    ap.add_argument("--train-steps", type=int, default=40)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--out", default="runs/bench_zeroshot")
    ap.add_argument("--threads", type=int, default=1, help="torch threads for both sides (1: a shared CPU box)")
    args = ap.parse_args()
    # On a loaded 2-core machine torch's OpenMP threads spin against each other (a 4 ms tiny
    # forward took 0.2-1 s with 2 threads); the same setting applies to vlx and HF alike.
    torch.set_num_threads(args.threads)
    results: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for size in args.sizes.split(","):
            path = save_tiny_clip(tmp / "tiny") if size == "tiny" else save_b16(tmp / "b16")
            r = bench_zeroshot(path, args.batch, args.rounds)
            results[f"zeroshot_{size}"] = r
            print(
                f"zero-shot {size:5s} batch {args.batch}: vlx {spread(r['vlx_img_s'])} img/s, "
                f"HF pipeline {spread(r['hf_img_s'])} img/s, ratio vlx/HF {spread(r['ratio'])}"
            )
        if not args.skip_train:
            r = bench_train(tmp / "train", max(2, args.rounds // 2), args.train_steps, args.workers)
            results["train"] = r
            print(
                f"train clip_shapes_tiny: shards {spread(r['shards'])} samples/s, folder {spread(r['folder'])} "
                f"samples/s, ratio shards/folder {spread(r['ratio'])}"
            )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
