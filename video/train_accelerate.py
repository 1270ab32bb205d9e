"""``accelerate launch [--config_file configs/video/accelerate_zero{2,3}.yaml] -m
video.train_accelerate CONFIG [--set k=v ...]``: the ``video_llava`` recipe trained through
Hugging Face accelerate, for DeepSpeed ZeRO-2/3 on CUDA (vlx's own trainer does DDP and
FSDP2; DeepSpeed's sharded optimizers exist only on CUDA). Same Task, data, collate and
loss as ``vlx train``; writes the plain HF directory (LoRA merged) to
``<output_dir>/hf`` at the end. This loop is a minimal one: no resume, no evaluation (run
``vlx eval`` / ``vlx video merge-lora`` on the result).
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    import torch
    from accelerate import Accelerator

    from video.export import write_hf_dir
    from video.recipes_llava import build_video_llava
    from vlx.cli import load_recipe_config
    from vlx.train.schedule import warmup_cosine

    p = argparse.ArgumentParser(prog="video.train_accelerate")
    p.add_argument("config")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = p.parse_args(argv)
    _, cfg = load_recipe_config(args.config, args.set)
    t = cfg.train
    acc = Accelerator(gradient_accumulation_steps=t.grad_accum, cpu=t.device == "cpu")
    torch.manual_seed(t.seed)
    task = build_video_llava(cfg)
    model = task.model
    if t.gradient_checkpointing and task.gradient_checkpointing is not None:
        task.gradient_checkpointing(model)
    params = [q for q in model.parameters() if q.requires_grad]
    opt = torch.optim.AdamW(params, lr=t.lr, weight_decay=t.weight_decay)
    loader = torch.utils.data.DataLoader(
        task.train_dataset, batch_size=t.batch_size, shuffle=True, collate_fn=task.collate_fn, num_workers=t.num_workers
    )
    steps_per_epoch = math.ceil(len(loader) / max(1, acc.num_processes) / t.grad_accum)
    total = t.max_steps if t.max_steps is not None else t.epochs * steps_per_epoch
    sched = warmup_cosine(opt, t.warmup_steps, total, t.min_lr_ratio)
    model, opt, loader, sched = acc.prepare(model, opt, loader, sched)
    step = 0
    model.train()
    while step < total:
        for batch in loader:
            with acc.accumulate(model):
                loss = model(batch)["loss"]
                acc.backward(loss)
                if acc.sync_gradients and t.grad_clip:
                    acc.clip_grad_norm_(params, t.grad_clip)
                opt.step()
                sched.step()
                opt.zero_grad()
            if acc.sync_gradients:
                step += 1
                if acc.is_main_process and step % t.log_every == 0:
                    print(f"[video] step {step}/{total} loss {loss.item():.4f}")
                if step >= total:
                    break
    acc.wait_for_everyone()
    state = acc.get_state_dict(model)  # gathers ZeRO-3 shards
    if acc.is_main_process:
        plain = acc.unwrap_model(model)
        plain.load_state_dict(state)
        write_hf_dir(plain, Path(t.output_dir) / "hf", cfg.model.path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
