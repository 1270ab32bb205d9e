"""ToMe: ViT-B/16-sized forward throughput with r=8 and r=16 vs none (the core's
VisionTransformer, patched by video.merge.apply_patch), and the visual tokens that reach the
LM with PLLaVA pooling vs none. Target: r=16 >= 1.8x.

    python benchmarks/bench_video_tome.py [--batch 8 --iters 3]
"""

from __future__ import annotations

import argparse
import copy
import time

import torch


def interleaved_throughput(models: dict, x, iters: int) -> dict:
    """Best-of-``iters`` images/s per model, measured round-robin so that load changes on a
    shared machine hit every configuration alike."""
    best = {k: float("inf") for k in models}
    with torch.inference_mode():
        for m in models.values():
            m(x)  # warm-up
        for _ in range(iters):
            for k, m in models.items():
                t = time.perf_counter()
                m(x)
                best[k] = min(best[k], time.perf_counter() - t)
    return {k: x.shape[0] / v for k, v in best.items()}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--iters", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    a = ap.parse_args()
    from video.merge import apply_patch
    from video.pooling import AdaptiveGridPooling
    from vlx.encoders.vit import VIT_PRESETS, VisionTransformer

    torch.manual_seed(0)
    dev = torch.device(a.device)
    x = torch.randn(a.batch, 3, 224, 224, device=dev)
    vit = VisionTransformer(**VIT_PRESETS["B/16"]).to(dev).eval()
    models = {"none": vit}
    for r in (8, 16):
        m = apply_patch(copy.deepcopy(vit), r=r)
        models[f"r={r}"] = m
    ips = interleaved_throughput(models, x, a.iters)
    rows = []
    for name, m in models.items():
        with torch.inference_mode():
            n_out = m(x[:1]).tokens.shape[1]
        rows.append((name, n_out, ips[name]))
    base = ips["none"]
    print(f"ViT-B/16 forward, batch {a.batch}, 224px, {a.device}")
    print(f"{'ToMe':<8} {'tokens out':>10} {'img/s':>8} {'speed-up':>9}")
    for name, n, ips in rows:
        print(f"{name:<8} {n:>10} {ips:>8.2f} {ips / base:>8.2f}x")
    print(f"ToMe r=16 speed-up: {rows[2][2] / base:.2f}x (target >= 1.8x)")

    # Visual tokens into the LM for a 16-frame clip of ViT-B/16 patch grids (14 x 14).
    T, g, D = 16, 14, 768
    grid = torch.randn(1, T, g, g, D)
    print(f"\nvisual tokens reaching the LM, {T} frames x {g}x{g} patches:")
    print(f"{'pooling':<22} {'tokens':>7} {'reduction':>10}")
    print(f"{'none':<22} {T * g * g:>7} {1.0:>9.1f}x")
    for size in ((16, 7, 7), (8, 7, 7), (16, 4, 4)):
        n = AdaptiveGridPooling(size)(grid).flatten(1, 3).shape[1]
        print(f"{'PLLaVA ' + str(size):<22} {n:>7} {T * g * g / n:>9.1f}x")


if __name__ == "__main__":
    main()
