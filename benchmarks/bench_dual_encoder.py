"""Training throughput of vlx's DualEncoder against Hugging Face ``transformers.CLIPModel``
(``return_loss=True``) at the same sizes and batch, measured side by side in one run.

    .venv/bin/python benchmarks/bench_dual_encoder.py [--sizes tiny,B-32] [--steps N]

One training step = forward + contrastive loss + backward + AdamW step. The two models get
identical architectures (same widths/depths/heads/patch/image size/vocab/context, GELU,
CLIP's pre-LN and bias-free patch conv and projections), hence identical parameter counts
(printed), and the same inputs. Warm-up steps are excluded; timing rounds alternate which
model goes first so that load on a shared machine hits both alike. Writes the table to
``--out`` (markdown + json) as well as printing it.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without install

from vlx.encoders import EncoderConfig  # noqa: E402
from vlx.models.dual_encoder import DualEncoderConfig, build_dual_encoder  # noqa: E402

# (vision: image, patch, width, layers, heads) (text: width, layers, heads, vocab, context)
# embed dim, default batch, default text length. "B-32" is CLIP ViT-B/32 (151M parameters).
SIZES = {
    "tiny": dict(
        image=32,
        patch=8,
        v_width=64,
        v_layers=2,
        v_heads=2,
        t_width=64,
        t_layers=2,
        t_heads=2,
        vocab=30522,
        context=64,
        embed=64,
        batch=128,
        text_len=24,
    ),
    "B-32": dict(
        image=224,
        patch=32,
        v_width=768,
        v_layers=12,
        v_heads=12,
        t_width=512,
        t_layers=12,
        t_heads=8,
        vocab=49408,
        context=77,
        embed=512,
        batch=8,
        text_len=32,
    ),
}


def ours_config(s: dict) -> DualEncoderConfig:
    return DualEncoderConfig(
        image=EncoderConfig(
            name="vit",
            kwargs=dict(
                image_size=s["image"],
                patch_size=s["patch"],
                width=s["v_width"],
                layers=s["v_layers"],
                heads=s["v_heads"],
                pre_norm=True,
                patch_bias=False,
            ),
        ),
        text=EncoderConfig(
            name="transformer",
            kwargs=dict(
                vocab_size=s["vocab"],
                context_length=s["context"],
                width=s["t_width"],
                layers=s["t_layers"],
                heads=s["t_heads"],
                causal=True,
                pool="eot",
            ),
        ),
        embed_dim=s["embed"],
    )


def hf_config(s: dict):
    from transformers import CLIPConfig

    return CLIPConfig(
        text_config=dict(
            vocab_size=s["vocab"],
            hidden_size=s["t_width"],
            intermediate_size=4 * s["t_width"],
            num_hidden_layers=s["t_layers"],
            num_attention_heads=s["t_heads"],
            max_position_embeddings=s["context"],
            hidden_act="gelu",
            # EOT = the highest id, as make_batch writes it (HF pools at eos_token_id).
            bos_token_id=s["vocab"] - 2,
            eos_token_id=s["vocab"] - 1,
            pad_token_id=0,
        ),
        vision_config=dict(
            hidden_size=s["v_width"],
            intermediate_size=4 * s["v_width"],
            num_hidden_layers=s["v_layers"],
            num_attention_heads=s["v_heads"],
            image_size=s["image"],
            patch_size=s["patch"],
            hidden_act="gelu",
        ),
        projection_dim=s["embed"],
    )


def build_pair(size: str):
    """(ours DualEncoder, HF CLIPModel) with matching architectures."""
    from transformers import CLIPModel

    s = SIZES[size]
    ours = build_dual_encoder(ours_config(s))
    hf = CLIPModel(hf_config(s))
    return ours, hf


def clip_loss_fn():
    """vlx.losses' ClipLoss when it exists; else the same symmetric InfoNCE written out."""
    try:
        from vlx.losses import build_loss

        return build_loss("clip"), "vlx.losses.ClipLoss"
    except (ImportError, KeyError, AttributeError):

        def loss(a, b, scale):
            logits = scale * a @ b.T
            labels = torch.arange(len(a), device=a.device)
            return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2

        return loss, "local symmetric cross-entropy"


def count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def make_batch(s: dict, batch: int, text_len: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """Images, and right-padded captions of random lengths ending in an EOT (highest id)."""
    g = torch.Generator().manual_seed(seed)
    images = torch.randn(batch, 3, s["image"], s["image"], generator=g)
    lengths = torch.randint(max(3, text_len // 3), text_len + 1, (batch,), generator=g)
    ids = torch.randint(1, s["vocab"] - 1, (batch, text_len), generator=g)
    mask = (torch.arange(text_len)[None] < lengths[:, None]).long()
    ids[torch.arange(batch), lengths - 1] = s["vocab"] - 1
    ids = ids * mask
    return {"images": images, "input_ids": ids, "attention_mask": mask}


def step_fns(ours, hf, loss_fn, batch):
    opt_o = torch.optim.AdamW(ours.parameters(), lr=1e-4)
    opt_h = torch.optim.AdamW(hf.parameters(), lr=1e-4)

    def step_ours() -> float:
        out = ours(batch["images"], batch["input_ids"], batch["attention_mask"])
        loss = loss_fn(out.image_embeds, out.text_embeds, out.logit_scale)
        loss.backward()
        opt_o.step()
        opt_o.zero_grad(set_to_none=True)
        return loss.item()

    def step_hf() -> float:
        out = hf(
            input_ids=batch["input_ids"],
            pixel_values=batch["images"],
            attention_mask=batch["attention_mask"],
            return_loss=True,
        )
        out.loss.backward()
        opt_h.step()
        opt_h.zero_grad(set_to_none=True)
        return out.loss.item()

    return step_ours, step_hf


def bench(size: str, batch: int, steps: int, warmup: int, text_len: int, loss_fn, device: torch.device) -> dict:
    s = SIZES[size]
    torch.manual_seed(0)
    ours, hf = build_pair(size)
    ours.to(device).train(), hf.to(device).train()
    n_ours, n_hf = count(ours), count(hf)
    data = {k: v.to(device) for k, v in make_batch(s, batch, text_len).items()}
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    step_ours, step_hf = step_fns(ours, hf, loss_fn, data)
    for _ in range(warmup):
        step_ours(), step_hf()
    times = {"ours": [], "hf": []}
    losses = {"ours": [], "hf": []}
    for r in tqdm(range(steps), desc=f"{size} (batch {batch})", leave=False):
        order = (("ours", step_ours), ("hf", step_hf)) if r % 2 == 0 else (("hf", step_hf), ("ours", step_ours))
        for name, fn in order:
            sync()
            t0 = time.perf_counter()
            losses[name].append(fn())  # .item() waits for the step to finish
            times[name].append(time.perf_counter() - t0)
    sps = {k: batch * len(v) / sum(v) for k, v in times.items()}
    return {
        "size": size,
        "batch": batch,
        "text_len": text_len,
        "steps": steps,
        "warmup": warmup,
        "params_ours": n_ours,
        "params_hf": n_hf,
        "ours_samples_per_s": sps["ours"],
        "hf_samples_per_s": sps["hf"],
        "ratio": sps["ours"] / sps["hf"],
        "ours_median_step_s": statistics.median(times["ours"]),
        "hf_median_step_s": statistics.median(times["hf"]),
        # Robust to a stall that hits one step on a shared machine: HF median step / ours.
        "median_ratio": statistics.median(times["hf"]) / statistics.median(times["ours"]),
        # The fastest step of each: the least disturbed by other processes (timeit's rule).
        "best_ratio": min(times["hf"]) / min(times["ours"]),
        "final_loss_ours": losses["ours"][-1],
        "final_loss_hf": losses["hf"][-1],
    }


def table(rows: list[dict], loss_name: str) -> str:
    lines = [
        f"DualEncoder (+ {loss_name}) vs transformers.CLIPModel(return_loss=True): training samples/s "
        f"(forward + loss + backward + AdamW step), fp32, torch {torch.__version__}, {torch.get_num_threads()} "
        "CPU threads",
        "",
        "| size | batch | text len | params ours | params HF | ours samples/s | HF samples/s | ratio ours/HF | "
        "ratio of median steps | ratio of fastest steps |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['size']} | {r['batch']} | {r['text_len']} | {r['params_ours']:,} | {r['params_hf']:,} | "
            f"{r['ours_samples_per_s']:.3g} | {r['hf_samples_per_s']:.3g} | {r['ratio']:.3f} | "
            f"{r['median_ratio']:.3f} | {r['best_ratio']:.3f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from vlx.runtime import configure_huggingface

    configure_huggingface()  # hub offline unless set: the towers load from local dirs
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="tiny,B-32", help=f"comma-separated, from {', '.join(SIZES)}")
    ap.add_argument("--steps", type=int, default=None, help="timed steps per model (default: tiny 20, B-32 3)")
    ap.add_argument("--warmup", type=int, default=None, help="untimed steps per model (default: tiny 3, B-32 1)")
    ap.add_argument("--batch", type=int, default=None, help="batch size (default: tiny 128, B-32 8)")
    ap.add_argument(
        "--text-len", type=int, default=None, help="caption length in tokens, padded (default: tiny 24, B-32 32)"
    )
    ap.add_argument("--device", default="cpu", help="cpu, cuda, auto (fp32 either way)")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    ap.add_argument("--out", default="runs/benchmarks/dual_encoder", help="writes OUT.md and OUT.json")
    args = ap.parse_args(argv)
    sizes = [x.strip() for x in args.sizes.split(",") if x.strip()]
    unknown = [x for x in sizes if x not in SIZES]
    if unknown:
        ap.error(f"unknown size {unknown[0]!r}; known: {', '.join(SIZES)}")
    from vlx.utils import pick_device

    device = pick_device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    loss_fn, loss_name = clip_loss_fn()
    rows = []
    for size in sizes:
        big = size != "tiny"
        steps = args.steps or (3 if big else 20)
        warmup = args.warmup if args.warmup is not None else (1 if big else 3)
        r = bench(
            size,
            args.batch or SIZES[size]["batch"],
            steps,
            warmup,
            args.text_len or SIZES[size]["text_len"],
            loss_fn,
            device,
        )
        if r["params_ours"] != r["params_hf"]:
            print(f"WARNING {size}: parameter counts differ ({r['params_ours']} vs {r['params_hf']})", file=sys.stderr)
        rows.append(r)
        print(
            f"{size}: ours {r['ours_samples_per_s']:.3g} samples/s, HF {r['hf_samples_per_s']:.3g} samples/s, "
            f"ratio {r['ratio']:.3f}",
            flush=True,
        )
    text = table(rows, loss_name)
    print()
    print(text)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".md").write_text(text + "\n")
    out.with_suffix(".json").write_text(json.dumps({"loss": loss_name, "rows": rows}, indent=2))
    print(f"\nwrote {out.with_suffix('.md')} and {out.with_suffix('.json')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
