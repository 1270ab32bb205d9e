"""The training loop every recipe shares: AdamW, warm-up + cosine, gradient accumulation,
bf16 autocast on CUDA, DDP under torchrun, seeded data order, atomic checkpoints and exact
resume (same step, same data order, same RNG), JSONL/TensorBoard logs and a curve plot."""

from __future__ import annotations

import contextlib
import json
import math
import signal
import threading
import time
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import yaml
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from vlx.config import ConfigError
from vlx.train.checkpoint import (
    find_checkpoint,
    latest_checkpoint,
    load_model_weights,
    load_trainer_state,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from vlx.train.distributed import barrier, init_distributed, world_info
from vlx.train.logging import RunLogger, plot_training_curves
from vlx.train.recipe import Task, TrainConfig
from vlx.train.sampler import ResumableSampler
from vlx.train.schedule import warmup_cosine
from vlx.utils import autocast_context, pick_device, resolve_precision, seed_everything, to_device


def default_param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """No weight decay on biases, norms, embeddings of rank < 2 and temperatures."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim < 2 or "logit_scale" in name or "logit_bias" in name else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def _scalar(v: Any) -> float | None:
    if isinstance(v, torch.Tensor) and v.numel() == 1:
        return float(v.detach())
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return float(v)
    return None


class Trainer:
    def __init__(self, cfg: TrainConfig, task: Task, config_dict: dict[str, Any] | None = None):
        self.cfg = cfg
        self.task = task
        self.config_dict = config_dict
        self.out = Path(cfg.output_dir)
        self._stop = threading.Event()

    # -- signals: finish the current step, checkpoint, exit ------------------------------
    def _install_signal_handlers(self) -> dict:
        old = {}
        if threading.current_thread() is not threading.main_thread():
            return old

        def handler(signum, frame):
            if self._stop.is_set():  # second signal: stop now
                raise KeyboardInterrupt
            self._stop.set()

        for sig in (signal.SIGTERM, signal.SIGINT):
            old[sig] = signal.signal(sig, handler)
        return old

    def _map_loader(self, task: Task, sampler: ResumableSampler, device: torch.device, epoch: int) -> DataLoader:
        cfg = self.cfg
        return DataLoader(
            task.train_dataset,
            batch_size=cfg.batch_size,
            sampler=sampler,
            collate_fn=task.collate_fn,
            num_workers=cfg.num_workers,
            drop_last=cfg.drop_last,
            pin_memory=device.type == "cuda",
            # Its own generator, so making a loader never draws from the global RNG
            # (a resumed run creates its loader at a different moment).
            generator=torch.Generator().manual_seed(cfg.seed * 7919 + epoch),
        )

    def fit(self) -> dict[str, Any]:
        cfg, task = self.cfg, self.task
        device = pick_device(cfg.device)
        if cfg.num_threads is not None:
            torch.set_num_threads(cfg.num_threads)
        distributed = init_distributed(device)
        rank, world = world_info()
        main = rank == 0
        seed_everything(cfg.seed + rank)

        n = len(task.train_dataset)
        per_rank = n // world
        micro_per_epoch = per_rank // cfg.batch_size if cfg.drop_last else math.ceil(per_rank / cfg.batch_size)
        steps_per_epoch = micro_per_epoch // cfg.grad_accum
        if steps_per_epoch < 1:
            raise ConfigError(
                f"train.batch_size={cfg.batch_size} x train.grad_accum={cfg.grad_accum} x {world} process(es) "
                f"needs at least {cfg.batch_size * cfg.grad_accum * world} training samples; the dataset has {n}"
            )
        total_steps = cfg.max_steps if cfg.max_steps is not None else cfg.epochs * steps_per_epoch

        model = task.model.to(device)
        model.train()
        params = (
            task.optimizer_params(model) if task.optimizer_params else default_param_groups(model, cfg.weight_decay)
        )
        optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        scheduler = warmup_cosine(optimizer, cfg.warmup_steps, total_steps, cfg.min_lr_ratio)
        amp_dtype = resolve_precision(device, cfg.precision)
        scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16 and device.type == "cuda")

        step, epoch, micro_in_epoch = 0, 0, 0
        ckpt = None
        if cfg.resume == "auto":
            ckpt = latest_checkpoint(self.out / "checkpoints")
        elif cfg.resume != "none":
            ckpt = find_checkpoint(cfg.resume)
        if ckpt is not None:
            load_model_weights(model, ckpt)
            state = load_trainer_state(ckpt)
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            scaler.load_state_dict(state["scaler"])
            step, epoch, micro_in_epoch = state["step"], state["epoch"], state["micro_in_epoch"]
            rngs = state["rng"]
            set_rng_state(rngs[rank] if rank < len(rngs) else rngs[0])
            if main:
                print(f"[vlx] resumed from {ckpt} at step {step} (epoch {epoch})")

        ddp_model = model
        if distributed:
            ddp_model = nn.parallel.DistributedDataParallel(
                model, device_ids=[device.index] if device.type == "cuda" else None
            )

        logger = RunLogger(self.out, tensorboard=cfg.tensorboard, enabled=main)
        if main:
            self.out.mkdir(parents=True, exist_ok=True)
            if self.config_dict is not None:
                (self.out / "config.yaml").write_text(yaml.safe_dump(self.config_dict, sort_keys=False))

        def checkpoint(at_step: int, at_epoch: int, at_micro: int) -> None:
            rngs = [rng_state()]
            if distributed:
                rngs = [None] * world
                dist.all_gather_object(rngs, rng_state())
            if main:
                state = {
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "scaler": scaler.state_dict(),
                    "step": at_step,
                    "epoch": at_epoch,
                    "micro_in_epoch": at_micro,
                    "rng": rngs,
                }
                meta = {"step": at_step, "epoch": at_epoch, "world_size": world, "total_steps": total_steps}
                save_checkpoint(self.out / "checkpoints", at_step, model, state, meta, cfg.keep_last)
            barrier()

        def evaluate(at_step: int) -> dict[str, Any]:
            result: dict[str, Any] = {}
            if main and task.evaluate is not None:
                model.eval()
                with torch.no_grad(), autocast_context(device, cfg.precision):
                    result = task.evaluate(model, device)
                model.train()
                logger.log({"step": at_step, "eval": result}, at_step, prefix="eval")
                for k, v in result.items():
                    if _scalar(v) is not None and logger.tb is not None:
                        logger.tb.add_scalar(f"eval/{k}", _scalar(v), at_step)
                (self.out / "eval.json").write_text(json.dumps(result, indent=2, default=str))
            barrier()
            return result

        sampler = ResumableSampler(n, cfg.seed, shuffle=True, rank=rank, world_size=world)
        old_handlers = self._install_signal_handlers()
        bar = tqdm(
            total=total_steps, initial=step, disable=not (main and cfg.progress), desc="train", dynamic_ncols=True
        )
        window: dict[str, list[float]] = {}
        t_window, samples_window = time.perf_counter(), 0
        result: dict[str, Any] = {}
        try:
            while step < total_steps and not self._stop.is_set():
                sampler.set_epoch(epoch, start=micro_in_epoch * cfg.batch_size)
                if hasattr(task.train_dataset, "epoch_loader"):  # a stream (shards): it splits and resumes itself
                    loader = task.train_dataset.epoch_loader(
                        epoch,
                        cfg.batch_size,
                        task.collate_fn,
                        rank=rank,
                        world=world,
                        num_workers=cfg.num_workers,
                        skip_batches=micro_in_epoch,
                        pin_memory=device.type == "cuda",
                    )
                else:
                    loader = self._map_loader(task, sampler, device, epoch)
                it = iter(loader)
                epoch_done = True
                for _ in range(steps_per_epoch - micro_in_epoch // cfg.grad_accum):
                    for i in range(cfg.grad_accum):
                        batch = to_device(next(it), device)
                        sync = contextlib.nullcontext()
                        if distributed and i < cfg.grad_accum - 1:
                            sync = ddp_model.no_sync()
                        with sync:
                            with autocast_context(device, cfg.precision):
                                outputs = ddp_model(batch)
                            loss = outputs["loss"]
                            if not torch.isfinite(loss):
                                raise FloatingPointError(
                                    f"step {step}: loss is {float(loss)}; the last good checkpoint is in "
                                    f"{self.out / 'checkpoints'}"
                                )
                            scaler.scale(loss / cfg.grad_accum).backward()
                        for k, v in outputs.items():
                            s = _scalar(v)
                            if s is not None:
                                window.setdefault(k, []).append(s)
                        samples_window += cfg.batch_size * world
                    if cfg.grad_clip is not None:
                        scaler.unscale_(optimizer)
                        grad_norm = nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
                        window.setdefault("grad_norm", []).append(float(grad_norm))
                    scaler.step(optimizer)
                    scaler.update()
                    optimizer.zero_grad(set_to_none=True)
                    lr = optimizer.param_groups[0]["lr"]
                    scheduler.step()
                    step += 1
                    micro_in_epoch += cfg.grad_accum
                    bar.update(1)
                    if step % cfg.log_every == 0 or step == total_steps:
                        dt = time.perf_counter() - t_window
                        record = {"step": step, "epoch": epoch, "lr": lr}
                        record.update({k: sum(v) / len(v) for k, v in window.items()})
                        record["samples_per_s"] = samples_window / max(dt, 1e-9)
                        if hasattr(task.train_dataset, "stats"):  # skipped-sample counters (all ranks)
                            record.update(task.train_dataset.stats())
                        logger.log(record, step)
                        bar.set_postfix(loss=f"{record.get('loss', float('nan')):.4f}")
                        window, t_window, samples_window = {}, time.perf_counter(), 0
                    if cfg.save_every and step % cfg.save_every == 0:
                        checkpoint(step, epoch, micro_in_epoch)
                    if step >= total_steps or self._stop.is_set():
                        epoch_done = micro_in_epoch // cfg.grad_accum >= steps_per_epoch
                        break
                if epoch_done:
                    epoch, micro_in_epoch = epoch + 1, 0
                    if task.on_epoch_end is not None:
                        extra = task.on_epoch_end(epoch - 1)
                        if extra:
                            logger.log({"step": step, "epoch": epoch - 1, **extra}, step)
                    if cfg.save_every is None and step < total_steps:
                        checkpoint(step, epoch, micro_in_epoch)
                    if cfg.eval_every and epoch % cfg.eval_every == 0 and step < total_steps:
                        evaluate(step)
            checkpoint(step, epoch, micro_in_epoch)
            if self._stop.is_set() and step < total_steps:
                if main:
                    print(f"[vlx] stopped at step {step}; checkpoint saved, rerun the same command to resume")
            else:
                result = evaluate(step)
        finally:
            bar.close()
            logger.close()
            for sig, h in old_handlers.items():
                signal.signal(sig, h)
            if main and logger.path.is_file():
                plot_training_curves(logger.path, self.out / "train_curve.png")
        return result
