"""The training loop every recipe shares: AdamW, warm-up + cosine, gradient accumulation,
bf16 autocast on CUDA, DDP under torchrun, seeded data order, atomic checkpoints and exact
resume (same step, same data order, same RNG), JSONL/TensorBoard logs and a curve plot.

``Trainer.fit`` reads top to bottom as: ``_setup`` (device, process group, model, optimizer),
``_resume`` (weights, optimizer and RNG state from the latest checkpoint), then per epoch
``_epoch`` -> ``_step`` (one optimizer step of ``grad_accum`` micro-batches) -> ``_log``,
``_checkpoint`` and ``_evaluate``."""

from __future__ import annotations

import contextlib
import math
import signal
import threading
import time
from dataclasses import dataclass, field
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
from vlx.utils import (
    atomic_write_json,
    atomic_write_text,
    autocast_context,
    pick_device,
    resolve_precision,
    seed_everything,
    to_device,
)


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


@dataclass
class _Run:
    """Everything one ``fit`` builds in ``_setup`` and changes as it goes."""

    device: torch.device
    distributed: bool
    rank: int
    world: int
    n: int
    steps_per_epoch: int
    total_steps: int
    model: nn.Module
    wrapped: nn.Module  # what the step calls: the DDP wrapper, or the model itself
    optimizer: torch.optim.Optimizer
    scheduler: Any
    scaler: torch.amp.GradScaler
    logger: RunLogger | None = None
    bar: Any = None
    step: int = 0
    epoch: int = 0
    micro_in_epoch: int = 0
    window: dict[str, list[float]] = field(default_factory=dict)
    t_window: float = 0.0
    samples_window: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


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

    # -- setup: device, process group, sizes, model, optimizer ---------------------------
    def _setup(self) -> _Run:
        cfg, task = self.cfg, self.task
        device = pick_device(cfg.device)
        if cfg.num_threads is not None:
            torch.set_num_threads(cfg.num_threads)
        distributed = init_distributed(device)
        rank, world = world_info()
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
        return _Run(
            device,
            distributed,
            rank,
            world,
            n,
            steps_per_epoch,
            total_steps,
            model,
            model,
            optimizer,
            scheduler,
            scaler,
        )

    def _wrap(self, run: _Run) -> None:
        if run.distributed:
            run.wrapped = nn.parallel.DistributedDataParallel(
                run.model, device_ids=[run.device.index] if run.device.type == "cuda" else None
            )

    # -- resume: weights, optimizer, scheduler, scaler, position, RNG --------------------
    def _resume(self, run: _Run) -> None:
        cfg = self.cfg
        ckpt = None
        if cfg.resume == "auto":
            ckpt = latest_checkpoint(self.out / "checkpoints")
        elif cfg.resume != "none":
            ckpt = find_checkpoint(cfg.resume)
        if ckpt is None:
            return
        load_model_weights(run.model, ckpt)
        state = load_trainer_state(ckpt)
        run.optimizer.load_state_dict(state["optimizer"])
        run.scheduler.load_state_dict(state["scheduler"])
        run.scaler.load_state_dict(state["scaler"])
        run.step, run.epoch, run.micro_in_epoch = state["step"], state["epoch"], state["micro_in_epoch"]
        rngs = state["rng"]
        set_rng_state(rngs[run.rank] if run.rank < len(rngs) else rngs[0])
        if run.main:
            print(f"[vlx] resumed from {ckpt} at step {run.step} (epoch {run.epoch})")

    # -- checkpoint and evaluation ---------------------------------------------------------
    def _checkpoint(self, run: _Run) -> None:
        cfg = self.cfg
        rngs = [rng_state()]
        if run.distributed:
            rngs = [None] * run.world
            dist.all_gather_object(rngs, rng_state())
        if run.main:
            state = {
                "optimizer": run.optimizer.state_dict(),
                "scheduler": run.scheduler.state_dict(),
                "scaler": run.scaler.state_dict(),
                "step": run.step,
                "epoch": run.epoch,
                "micro_in_epoch": run.micro_in_epoch,
                "rng": rngs,
            }
            meta = {"step": run.step, "epoch": run.epoch, "world_size": run.world, "total_steps": run.total_steps}
            save_checkpoint(self.out / "checkpoints", run.step, run.model, state, meta, cfg.keep_last)
        barrier()

    def _evaluate(self, run: _Run) -> dict[str, Any]:
        cfg, task, model, logger = self.cfg, self.task, run.model, run.logger
        result: dict[str, Any] = {}
        if run.main and task.evaluate is not None:
            model.eval()
            with torch.no_grad(), autocast_context(run.device, cfg.precision):
                result = task.evaluate(model, run.device)
            model.train()
            logger.log({"step": run.step, "eval": result}, run.step, prefix="eval")
            for k, v in result.items():
                if _scalar(v) is not None and logger.tb is not None:
                    logger.tb.add_scalar(f"eval/{k}", _scalar(v), run.step)
            atomic_write_json(self.out / "eval.json", result)
        barrier()
        return result

    # -- one optimizer step: grad_accum micro-batches, clip, step, schedule --------------
    def _step(self, run: _Run, it) -> None:
        cfg = self.cfg
        for i in range(cfg.grad_accum):
            batch = to_device(next(it), run.device)
            sync = contextlib.nullcontext()
            if run.distributed and i < cfg.grad_accum - 1:
                sync = run.wrapped.no_sync()
            with sync:
                with autocast_context(run.device, cfg.precision):
                    outputs = run.wrapped(batch)
                loss = outputs["loss"]
                if not torch.isfinite(loss):
                    raise FloatingPointError(
                        f"step {run.step}: loss is {float(loss)}; the last good checkpoint is in "
                        f"{self.out / 'checkpoints'}"
                    )
                run.scaler.scale(loss / cfg.grad_accum).backward()
            for k, v in outputs.items():
                s = _scalar(v)
                if s is not None:
                    run.window.setdefault(k, []).append(s)
            run.samples_window += cfg.batch_size * run.world
        if cfg.grad_clip is not None:
            run.scaler.unscale_(run.optimizer)
            grad_norm = nn.utils.clip_grad_norm_(run.model.parameters(), cfg.grad_clip)
            run.window.setdefault("grad_norm", []).append(float(grad_norm))
        run.scaler.step(run.optimizer)
        run.scaler.update()
        run.optimizer.zero_grad(set_to_none=True)
        self._lr = run.optimizer.param_groups[0]["lr"]
        run.scheduler.step()
        run.step += 1
        run.micro_in_epoch += cfg.grad_accum
        run.bar.update(1)

    def _log(self, run: _Run) -> None:
        dt = time.perf_counter() - run.t_window
        record = {"step": run.step, "epoch": run.epoch, "lr": self._lr}
        record.update({k: sum(v) / len(v) for k, v in run.window.items()})
        record["samples_per_s"] = run.samples_window / max(dt, 1e-9)
        run.logger.log(record, run.step)
        run.bar.set_postfix(loss=f"{record.get('loss', float('nan')):.4f}")
        run.window, run.t_window, run.samples_window = {}, time.perf_counter(), 0

    # -- one epoch (or the rest of it, after a resume) ------------------------------------
    def _epoch(self, run: _Run, sampler: ResumableSampler) -> None:
        cfg, task = self.cfg, self.task
        sampler.set_epoch(run.epoch, start=run.micro_in_epoch * cfg.batch_size)
        loader = DataLoader(
            task.train_dataset,
            batch_size=cfg.batch_size,
            sampler=sampler,
            collate_fn=task.collate_fn,
            num_workers=cfg.num_workers,
            drop_last=cfg.drop_last,
            pin_memory=run.device.type == "cuda",
            # Its own generator, so making a loader never draws from the global RNG
            # (a resumed run creates its loader at a different moment).
            generator=torch.Generator().manual_seed(cfg.seed * 7919 + run.epoch),
        )
        it = iter(loader)
        epoch_done = True
        for _ in range(run.steps_per_epoch - run.micro_in_epoch // cfg.grad_accum):
            self._step(run, it)
            if run.step % cfg.log_every == 0 or run.step == run.total_steps:
                self._log(run)
            if cfg.save_every and run.step % cfg.save_every == 0:
                self._checkpoint(run)
            if run.step >= run.total_steps or self._stop.is_set():
                epoch_done = run.micro_in_epoch // cfg.grad_accum >= run.steps_per_epoch
                break
        if epoch_done:
            run.epoch, run.micro_in_epoch = run.epoch + 1, 0
            if task.on_epoch_end is not None:
                extra = task.on_epoch_end(run.epoch - 1)
                if extra:
                    run.logger.log({"step": run.step, "epoch": run.epoch - 1, **extra}, run.step)
            if cfg.save_every is None and run.step < run.total_steps:
                self._checkpoint(run)
            if cfg.eval_every and run.epoch % cfg.eval_every == 0 and run.step < run.total_steps:
                self._evaluate(run)

    def fit(self) -> dict[str, Any]:
        cfg = self.cfg
        run = self._setup()
        self._resume(run)
        self._wrap(run)
        run.logger = RunLogger(self.out, tensorboard=cfg.tensorboard, enabled=run.main)
        if run.main:
            self.out.mkdir(parents=True, exist_ok=True)
            if self.config_dict is not None:
                atomic_write_text(self.out / "config.yaml", yaml.safe_dump(self.config_dict, sort_keys=False))
        sampler = ResumableSampler(run.n, cfg.seed, shuffle=True, rank=run.rank, world_size=run.world)
        old_handlers = self._install_signal_handlers()
        run.bar = tqdm(
            total=run.total_steps,
            initial=run.step,
            disable=not (run.main and cfg.progress),
            desc="train",
            dynamic_ncols=True,
        )
        run.t_window = time.perf_counter()
        result: dict[str, Any] = {}
        try:
            while run.step < run.total_steps and not self._stop.is_set():
                self._epoch(run, sampler)
            self._checkpoint(run)
            if self._stop.is_set() and run.step < run.total_steps:
                if run.main:
                    print(f"[vlx] stopped at step {run.step}; checkpoint saved, rerun the same command to resume")
            else:
                result = self._evaluate(run)
        finally:
            run.bar.close()
            run.logger.close()
            for sig, h in old_handlers.items():
                signal.signal(sig, h)
            if run.main and run.logger.path.is_file():
                plot_training_curves(run.logger.path, self.out / "train_curve.png")
        return result
