"""ToMe (video.merge.apply_patch) on the core's ViT: speed and accuracy cost.

Speed: ViT-B/16 forward at 224 px, no merging vs r=8, r=16 and ToMe's decreasing schedule
(8, -1.0). The configurations run interleaved (one forward of each per round, order rotated
every round) so that load on a shared machine hits all alike; medians over ``--rounds``,
min-max printed, and the speed-up as the median of per-round ratios. Target: r=16 >= 1.8x.

Accuracy: a trained tiny video retrieval model (``--ckpt RUN_DIR`` of a ``video_retrieval``
run; without it, ``configs/video/retrieval_tiny.yaml`` is trained here into ``--work``)
evaluated on its held-out set with its image tower unpatched and patched at several r.

Also the visual tokens that reach the LM with PLLaVA pooling vs none.

    python benchmarks/bench_video_tome.py [--batch 8 --rounds 9 --threads 1] [--ckpt RUN_DIR | --work DIR]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
from pathlib import Path

import torch


def interleaved_seconds(models: dict, x: torch.Tensor, rounds: int) -> dict[str, list[float]]:
    """Seconds per forward of each model, ``rounds`` times, order rotated per round."""
    names = list(models)
    out: dict[str, list[float]] = {k: [] for k in names}
    sync = torch.cuda.synchronize if x.is_cuda else (lambda: None)
    with torch.inference_mode():
        for m in models.values():
            m(x)  # warm-up
        for i in range(rounds):
            for k in names[i % len(names) :] + names[: i % len(names)]:
                sync()
                t = time.perf_counter()
                models[k](x)
                sync()
                out[k].append(time.perf_counter() - t)
    return out


def speed(batch: int, rounds: int, device: str) -> None:
    from video.merge import apply_patch
    from vlx.encoders.vit import VIT_PRESETS, VisionTransformer

    torch.manual_seed(0)
    dev = torch.device(device)
    x = torch.randn(batch, 3, 224, 224, device=dev)
    vit = VisionTransformer(**VIT_PRESETS["B/16"]).to(dev).eval()
    models = {"none": vit}
    for r in (8, 16, (8, -1.0)):
        models[f"r={r}"] = apply_patch(copy.deepcopy(vit), r=r)
    secs = interleaved_seconds(models, x, rounds)
    print(f"ViT-B/16 forward, batch {batch}, 224 px, {device}, {torch.get_num_threads()} thread(s), {rounds} rounds")
    print(f"{'ToMe':<14} {'tokens out':>10} {'img/s median':>13} {'min-max':>15} {'speed-up (per-round min-max)':>30}")
    for name, m in models.items():
        with torch.inference_mode():
            n_out = m(x[:1]).tokens.shape[1]
        ips = [batch / s for s in secs[name]]
        ratios = [b / s for b, s in zip(secs["none"], secs[name])]
        print(
            f"{name:<14} {n_out:>10} {statistics.median(ips):>13.2f} {min(ips):>7.2f}-{max(ips):<7.2f} "
            f"{statistics.median(ratios):>12.2f}x ({min(ratios):.2f}-{max(ratios):.2f})"
        )
    r16 = statistics.median([b / s for b, s in zip(secs["none"], secs["r=16"])])
    print(f"ToMe r=16 speed-up: {r16:.2f}x (target >= 1.8x)")


def _trained_retrieval(ckpt: str | None, work: Path):
    """(model, evaluate, frame size) of a trained video_retrieval run: ``ckpt`` or a fresh
    tiny run."""
    from vlx.cli import load_recipe_config
    from vlx.config import to_dict
    from vlx.train.checkpoint import load_model_weights
    from vlx.train.trainer import Trainer
    from vlx.utils import seed_everything

    if ckpt is None:
        cfg_path = str(Path(__file__).resolve().parents[1] / "configs" / "video" / "retrieval_tiny.yaml")
        over = [f"data.shapes_root={work}/moving_shapes", f"train.output_dir={work}/retrieval_tiny"]
        run = Path(f"{work}/retrieval_tiny")
        if not (run / "checkpoints").is_dir():
            recipe, cfg = load_recipe_config(cfg_path, over + ["train.resume=none"])
            seed_everything(cfg.train.seed)
            task = recipe.build(cfg)
            Trainer(cfg.train, task, config_dict=to_dict(cfg)).fit()
        ckpt = str(run)
    from video.cli import find_run_config

    recipe, cfg = load_recipe_config(str(find_run_config(ckpt)), [])
    task = recipe.build(cfg)
    load_model_weights(task.model, ckpt)
    return task.model.eval(), task.evaluate, cfg.data.load.size


def accuracy(ckpt: str | None, work: Path, rs: list) -> None:
    from video.merge import apply_patch, tome_modules

    model, evaluate, size = _trained_retrieval(ckpt, work)
    dev = torch.device("cpu")
    base = evaluate(model, dev)
    patched = apply_patch(copy.deepcopy(model), r=0)
    (tower,) = tome_modules(patched)
    with torch.no_grad():
        n_tokens = tower.forward_features(torch.zeros(1, 3, size, size)).shape[1]
    print(f"\nToMe accuracy cost: trained tiny video retrieval ({ckpt or work / 'retrieval_tiny'}), held-out set")
    print(f"image tower: {tower._tome_num_layers} layers, {n_tokens} tokens per frame")
    print(f"{'ToMe':<12} {'tokens out':>10} {'t2v R@1':>8} {'t2v R@5':>8} {'v2t R@1':>8} {'t2v MdR':>8}")
    print(
        f"{'none':<12} {n_tokens:>10} {base['t2v_R@1']:>8.1f} {base['t2v_R@5']:>8.1f} {base['v2t_R@1']:>8.1f} "
        f"{base['t2v_MdR']:>8.0f}"
    )
    for r in rs:
        tower.r = r
        m = evaluate(patched, dev)
        kept = tower._tome_info["size"].shape[1] if tower._tome_info["size"] is not None else n_tokens
        print(
            f"r={r!s:<10} {kept:>10} {m['t2v_R@1']:>8.1f} {m['t2v_R@5']:>8.1f} {m['v2t_R@1']:>8.1f} "
            f"{m['t2v_MdR']:>8.0f}"
        )
    print(f"chance t2v R@1: {base['chance_t2v_R@1']:.1f}")


def pooling_tokens() -> None:
    from video.pooling import AdaptiveGridPooling

    T, g, D = 16, 14, 768
    grid = torch.randn(1, T, g, g, D)
    print(f"\nvisual tokens reaching the LM, {T} frames x {g}x{g} patches:")
    print(f"{'pooling':<22} {'tokens':>7} {'reduction':>10}")
    print(f"{'none':<22} {T * g * g:>7} {1.0:>9.1f}x")
    for size in ((16, 7, 7), (8, 7, 7), (16, 4, 4)):
        n = AdaptiveGridPooling(size)(grid).flatten(1, 3).shape[1]
        print(f"{'PLLaVA ' + str(size):<22} {n:>7} {T * g * g / n:>9.1f}x")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads (CPU)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--ckpt", default=None, help="a trained video_retrieval run dir for the accuracy table")
    ap.add_argument("--work", default="runs/bench_tome", help="where to train the tiny retrieval model without --ckpt")
    ap.add_argument("--skip-accuracy", action="store_true")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    speed(a.batch, a.rounds, a.device)
    if not a.skip_accuracy:
        accuracy(a.ckpt, Path(a.work), [1, 2, 4, 8, (2, -1.0)])
    pooling_tokens()


if __name__ == "__main__":
    main()
