"""The training loop every recipe shares: AdamW (fused on CUDA), warm-up + cosine, gradient
accumulation, bf16 autocast on CUDA, DDP or FSDP2 under torchrun, seeded data order, atomic
checkpoints and exact resume (same step, same data order, same RNG), JSONL/TensorBoard logs
and a curve plot.

``Trainer.fit`` reads top to bottom as: ``_setup`` (device, process group, model, optimizer,
loader), ``_resume`` (weights, optimizer and RNG state from the latest checkpoint), ``_wrap``
(DDP / FSDP2 / compile), then per epoch ``_epoch`` -> ``_step`` (one optimizer step of
``grad_accum`` micro-batches) -> ``_log``, ``_checkpoint`` and ``_evaluate``.

Host syncs: a step keeps its numbers on the device (loss and metric sums, grad norm, a
non-finite flag); they are read once every ``log_every`` steps and before every checkpoint.
A non-finite loss is therefore reported at the next log step or checkpoint, whichever comes
first, and a checkpoint is never written after one: the last checkpoint is always good.
"""

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

from vlx import runtime
from vlx.config import ConfigError
from vlx.train import build
from vlx.train.build import GradientCheck, default_param_groups
from vlx.train.checkpoint import (
    META_FILE,
    STATE_FILE,
    begin_checkpoint,
    commit_checkpoint,
    find_checkpoint,
    latest_checkpoint,
    load_model_weights,
    load_trainer_state,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from vlx.train.distributed import barrier, init_distributed, world_info
from vlx.train.evaluate import evaluate_task
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

__all__ = ["Trainer", "default_param_groups"]


def _scalar(v: Any) -> float | None:
    if isinstance(v, torch.Tensor) and v.numel() == 1:
        return float(v.detach())
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return float(v)
    return None


def _local(t: torch.Tensor) -> torch.Tensor:
    return t.full_tensor() if hasattr(t, "full_tensor") else t  # an FSDP2 DTensor norm


@dataclass
class _Run:
    """Everything one ``fit`` builds in ``_setup`` and changes as it goes."""

    device: torch.device
    distributed: bool
    fsdp: bool
    rank: int
    world: int
    n: int
    steps_per_epoch: int
    total_steps: int
    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Any
    scaler: torch.amp.GradScaler
    sampler: ResumableSampler
    loader: DataLoader | None  # None for a stream (shards): it builds its loader per epoch
    wrapped: nn.Module | None = None  # what the step calls: DDP / FSDP / compiled model
    eval_model: nn.Module | None = None  # FSDP: rank 0's unsharded copy for evaluation
    logger: RunLogger | None = None
    bar: Any = None
    step: int = 0
    epoch: int = 0
    micro_in_epoch: int = 0
    lr: float = 0.0
    # the log window, kept on the device: sums of scalar outputs, their count, non-finite flag
    sums: dict[str, torch.Tensor] = field(default_factory=dict)
    host: dict[str, list[float]] = field(default_factory=dict)  # outputs that are Python numbers
    count: int = 0
    clip_count: int = 0
    nonfinite: torch.Tensor | None = None
    t_window: float = 0.0
    samples_window: int = 0
    grad_check: GradientCheck | None = None

    @property
    def main(self) -> bool:
        return self.rank == 0


class Trainer:
    def __init__(self, cfg: TrainConfig, task: Task, config_dict: dict[str, Any] | None = None):
        self.cfg = cfg
        self.task = task
        self.config_dict = config_dict
        self.out = Path(cfg.output_dir)
        self.name = self.out.name or "run"
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

    # -- setup: device, process group, sizes, model, optimizer, loader -------------------
    def _setup(self) -> _Run:
        cfg, task = self.cfg, self.task
        device = pick_device(cfg.device)
        runtime.set_threads(cfg.num_threads)
        build.cuda_math(device)
        distributed = init_distributed(device, cfg.dist_timeout_min)
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
        if cfg.gradient_checkpointing:
            if task.gradient_checkpointing is None:
                raise ConfigError("train.gradient_checkpointing: this recipe's Task has no gradient_checkpointing hook")
            task.gradient_checkpointing(task.model)

        fsdp = distributed and cfg.strategy == "fsdp"
        model = task.model.to(device)
        model.train()
        eval_model = None
        if fsdp:
            from vlx.train import fsdp as fs

            eval_model = fs.unsharded_copy(model) if rank == 0 else None
            fs.shard_model(task, model, device)  # before the optimizer: it must see the shards
        optimizer = build.make_optimizer(task, model, cfg, device)
        scheduler = warmup_cosine(optimizer, cfg.warmup_steps, total_steps, cfg.min_lr_ratio)
        amp_dtype = resolve_precision(device, cfg.precision)
        scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16 and device.type == "cuda")
        sampler = ResumableSampler(n, cfg.seed, shuffle=True, rank=rank, world_size=world)
        stream = hasattr(task.train_dataset, "epoch_loader")  # shards split and resume themselves
        loader = None if stream else build.make_loader(task, cfg, sampler, device)
        run = _Run(device, distributed, fsdp, rank, world, n, steps_per_epoch, total_steps, model, optimizer,
                   scheduler, scaler, sampler, loader, eval_model=eval_model)  # fmt: skip
        run.nonfinite = torch.zeros((), dtype=torch.bool, device=device)
        return run

    def _wrap(self, run: _Run) -> None:
        run.wrapped = run.model
        if run.distributed and not run.fsdp:
            run.wrapped = build.wrap_ddp(run.model, run.device, self.task.find_unused_parameters)
        if not run.fsdp:  # FSDP2 sets gradients by reduce-scatter, not by autograd accumulation
            run.grad_check = GradientCheck(run.model)
        if self.cfg.compile:
            run.wrapped = torch.compile(run.wrapped)

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
        state = load_trainer_state(ckpt)
        if run.fsdp:
            from vlx.train import fsdp as fs

            fs.load_sharded(run.model, run.optimizer, ckpt)
        else:
            load_model_weights(run.model, ckpt)
            run.optimizer.load_state_dict(state["optimizer"])
        run.scheduler.load_state_dict(state["scheduler"])
        self._load_scaler(run, state["scaler"])
        run.step, run.epoch, run.micro_in_epoch = state["step"], state["epoch"], state["micro_in_epoch"]
        rngs = state["rng"]
        set_rng_state(rngs[run.rank] if run.rank < len(rngs) else rngs[0])
        if run.main:
            print(f"[vlx] resumed from {ckpt} at step {run.step} (epoch {run.epoch})")

    @staticmethod
    def _load_scaler(run: _Run, saved: dict) -> None:
        # A bf16/fp32 or CPU run saves a disabled scaler's empty state; an fp16 resume of it
        # starts the loss scale afresh (GradScaler.load_state_dict raises on an empty dict).
        if saved and run.scaler.is_enabled():
            run.scaler.load_state_dict(saved)
        elif run.scaler.is_enabled() and run.main:
            print("[vlx] the checkpoint has no fp16 loss-scale state; starting the scale afresh")

    # -- checkpoint and evaluation ---------------------------------------------------------
    def _check_finite(self, run: _Run) -> None:
        flag = run.nonfinite.to(torch.uint8)
        if run.distributed:  # every rank raises together, or none does (no rank left waiting)
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        if bool(flag):  # one host sync, every log_every steps and before each save
            raise FloatingPointError(
                f"the loss became non-finite at or before step {run.step} (checked every train.log_every="
                f"{self.cfg.log_every} steps and before each checkpoint); the last good checkpoint is in "
                f"{self.out / 'checkpoints'}"
            )

    def _checkpoint(self, run: _Run) -> None:
        self._check_finite(run)
        root = self.out / "checkpoints"
        rngs = [rng_state()]
        if run.distributed:
            rngs = [None] * run.world
            dist.all_gather_object(rngs, rng_state())
        state = {
            "scheduler": run.scheduler.state_dict(),
            "scaler": run.scaler.state_dict(),
            "step": run.step,
            "epoch": run.epoch,
            "micro_in_epoch": run.micro_in_epoch,
            "rng": rngs,
        }
        meta = {"step": run.step, "epoch": run.epoch, "world_size": run.world, "total_steps": run.total_steps}
        if run.fsdp:
            self._checkpoint_sharded(run, root, state, meta)
        elif run.main:
            state["optimizer"] = run.optimizer.state_dict()
            save_checkpoint(root, run.step, run.model, state, meta, self.cfg.keep_last)
        barrier()

    def _checkpoint_sharded(self, run: _Run, root: Path, state: dict, meta: dict) -> None:
        from vlx.train import fsdp as fs

        tmp = [str(begin_checkpoint(root, run.step)) if run.main else None]
        dist.broadcast_object_list(tmp, src=0)
        tmp_dir = Path(tmp[0])
        fs.save_sharded(run.model, run.optimizer, tmp_dir)
        barrier()
        if run.main:
            import json

            torch.save(state, tmp_dir / STATE_FILE)
            (tmp_dir / META_FILE).write_text(json.dumps(meta, indent=2))
            commit_checkpoint(root, tmp_dir, run.step, self.cfg.keep_last)

    def _evaluate(self, run: _Run) -> dict[str, Any]:
        """Rank 0 evaluates (``evaluate_task``: eval mode, training precision, no collective
        can start on one rank) while the others wait at a barrier."""
        cfg, task, logger = self.cfg, self.task, run.logger
        model = run.model
        if run.fsdp and task.evaluate is not None:
            from vlx.train import fsdp as fs

            sd = fs.full_state_dict(run.model)  # collective
            if run.main:
                model = run.eval_model
                model.load_state_dict(sd)
                model.to(run.device)
        result: dict[str, Any] = {}
        if run.main and task.evaluate is not None:
            with tqdm(total=1, desc=f"eval[{self.name}]", disable=not cfg.progress, dynamic_ncols=True) as bar:
                result = evaluate_task(task, model, run.device, cfg.precision)
                bar.update(1)
            if run.fsdp:
                model.to("cpu")
            logger.log({"step": run.step, "eval": result}, run.step, prefix="eval")
            for k, v in result.items():
                if _scalar(v) is not None and logger.tb is not None:
                    logger.tb.add_scalar(f"eval/{k}", _scalar(v), run.step)
            atomic_write_json(self.out / "eval.json", result)
        barrier()
        return result

    # -- one optimizer step: grad_accum micro-batches, clip, step, schedule --------------
    def _micro_sync(self, run: _Run, last: bool):
        if run.fsdp:
            from vlx.train import fsdp as fs

            fs.set_gradient_sync(run.model, last)
            return contextlib.nullcontext()
        if run.distributed and not last:
            return run.wrapped.no_sync()
        return contextlib.nullcontext()

    def _step(self, run: _Run, it) -> None:
        cfg = self.cfg
        for i in range(cfg.grad_accum):
            batch = to_device(next(it), run.device)
            with self._micro_sync(run, i == cfg.grad_accum - 1):
                with autocast_context(run.device, cfg.precision):
                    outputs = run.wrapped(batch)
                loss = outputs["loss"]
                run.nonfinite |= ~torch.isfinite(loss.detach())
                run.scaler.scale(loss / cfg.grad_accum).backward()
            if run.grad_check is not None:
                run.grad_check.report(run.distributed, self.task.find_unused_parameters)
                run.grad_check = None
            for k, v in outputs.items():
                if isinstance(v, torch.Tensor) and v.numel() == 1:
                    d = v.detach().float().reshape(())
                    run.sums[k] = run.sums[k] + d if k in run.sums else d
                elif _scalar(v) is not None:
                    run.host.setdefault(k, []).append(float(v))
            run.count += 1
            run.samples_window += cfg.batch_size * run.world
        if cfg.grad_clip is not None:
            run.scaler.unscale_(run.optimizer)
            norm = _local(nn.utils.clip_grad_norm_(run.model.parameters(), cfg.grad_clip)).detach().float()
            run.sums["grad_norm"] = run.sums["grad_norm"] + norm if "grad_norm" in run.sums else norm
            run.clip_count += 1
        run.scaler.step(run.optimizer)
        run.scaler.update()
        run.optimizer.zero_grad(set_to_none=True)
        run.lr = run.optimizer.param_groups[0]["lr"]
        run.scheduler.step()
        run.step += 1
        run.micro_in_epoch += cfg.grad_accum
        run.bar.update(1)

    def _log(self, run: _Run) -> None:
        """The window's means, read from the device in one transfer (averaged over ranks)."""
        self._check_finite(run)
        keys = list(run.sums)
        values: list[float] = []
        if keys:
            stacked = torch.stack([run.sums[k] for k in keys])
            if run.distributed:
                dist.all_reduce(stacked)
                stacked = stacked / run.world
            values = stacked.tolist()
        dt = time.perf_counter() - run.t_window
        record: dict[str, Any] = {"step": run.step, "epoch": run.epoch, "lr": run.lr}
        for k, v in zip(keys, values):
            record[k] = v / max(1, run.clip_count if k == "grad_norm" else run.count)
        record.update({k: sum(v) / len(v) for k, v in run.host.items()})
        record["samples_per_s"] = run.samples_window / max(dt, 1e-9)
        if hasattr(self.task.train_dataset, "stats"):  # skipped-sample counters (all ranks)
            record.update(self.task.train_dataset.stats())
        run.logger.log(record, run.step)
        if "loss" in record:
            run.bar.set_postfix(loss=f"{record['loss']:.4f}")
        run.sums, run.host, run.count, run.clip_count = {}, {}, 0, 0
        run.t_window, run.samples_window = time.perf_counter(), 0

    # -- one epoch (or the rest of it, after a resume) ------------------------------------
    def _epoch(self, run: _Run) -> None:
        cfg, task = self.cfg, self.task
        run.sampler.set_epoch(run.epoch, start=run.micro_in_epoch * cfg.batch_size)
        # The epoch reaches the dataset through the sampler's indices (EpochIndex), in the
        # main process and in every (persistent) worker alike; no set_epoch call is needed.
        if run.loader is None:  # a stream (shards): split by rank/worker, skips what this epoch trained on
            it = iter(
                task.train_dataset.epoch_loader(
                    run.epoch,
                    cfg.batch_size,
                    task.collate_fn,
                    rank=run.rank,
                    world=run.world,
                    num_workers=cfg.num_workers,
                    skip_batches=run.micro_in_epoch,
                    pin_memory=run.device.type == "cuda",
                )
            )
        else:
            run.loader.generator.manual_seed(cfg.seed * 7919 + run.epoch)
            it = iter(run.loader)
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

    def _finish(self, run: _Run) -> None:
        """FSDP: the full weights, once, beside the last checkpoint's shards."""
        if run.fsdp:
            from vlx.train import fsdp as fs

            fs.export_full(self.task, run.model, find_checkpoint(self.out / "checkpoints"), run.main)
            barrier()

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
        old_handlers = self._install_signal_handlers()
        run.bar = tqdm(
            total=run.total_steps,
            initial=run.step,
            disable=not (run.main and cfg.progress),
            desc=f"train[{self.name}]",
            dynamic_ncols=True,
        )
        run.t_window = time.perf_counter()
        result: dict[str, Any] = {}
        try:
            while run.step < run.total_steps and not self._stop.is_set():
                self._epoch(run)
            self._checkpoint(run)
            self._finish(run)
            if self._stop.is_set() and run.step < run.total_steps:
                if run.main:
                    print(f"[vlx] stopped at step {run.step}; checkpoint saved, rerun the same command to resume")
            else:
                # The train bar ends (its last line printed) before the eval bar starts, so a
                # terminal shows them in order; closing again in `finally` is a no-op.
                run.bar.close()
                result = self._evaluate(run)
        finally:
            run.bar.close()
            run.logger.close()
            for sig, h in old_handlers.items():
                signal.signal(sig, h)
            if run.main and run.logger.path.is_file():
                plot_training_curves(run.logger.path, self.out / "train_curve.png")
        return result
