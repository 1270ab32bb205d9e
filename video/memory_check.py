"""Measured memory and time of one training step of a tiny LLaVA on the CPU, beside what
:func:`video.memory.estimate` predicts for the same shapes: the check behind
docs/results/video_memory.md (gradient checkpointing on and off, full fine-tune and LoRA).

    python -m video.memory_check [--hidden 128 --layers 2 --frames 4 --text 24 --batch 2 --rounds 5]

Memory: :class:`LiveBytes` follows every tensor storage that the step's operators create
(forward, backward, the recomputation under gradient checkpointing) until it is freed, and
keeps the peak. Written here because the CPU allocator keeps no statistics and torch's own
``torch.distributed._tools.mem_tracker.MemTracker`` registers gradient hooks on every
parameter, which fails on a frozen vision tower. Gradients exist before the measured step
(a step has run, ``zero_grad(set_to_none=False)``), so the peak is what the formula calls
activations + loss, plus operator temporaries.

Time: the process's CPU time per step (``time.process_time``, torch on one thread; robust on
a machine shared with other jobs, unlike wall time), configurations interleaved, median over
rounds. The formula's seconds scale with its FLOP count, so its ratios (checkpointing on /
off) are what can be checked here; the absolute rate of a tiny model on a CPU says nothing
about an A100.
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import replace
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from video.memory import LMShape, estimate, tiny_setup


class LiveBytes(TorchDispatchMode):
    """``with LiveBytes() as m: ...``; then ``m.peak``: the most bytes of storages created
    inside the block and alive at once (sampled after every operator, so a storage freed inside
    an operator that made it is not seen). Storages that alias an input (views, in-place ops)
    are not new memory and are not counted."""

    def __init__(self):
        super().__init__()
        self.live: dict[int, tuple[object, int]] = {}
        self.current = self.peak = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        from torch.multiprocessing.reductions import StorageWeakRef

        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        for ptr, (ref, n) in list(self.live.items()):  # storages freed since the last operator
            if ref.expired():
                del self.live[ptr]
                self.current -= n
        inputs = {
            t.untyped_storage().data_ptr() for t in tree_flatten((args, kwargs))[0] if isinstance(t, torch.Tensor)
        }
        for t in tree_flatten(out)[0]:
            if not isinstance(t, torch.Tensor):
                continue
            st = t.untyped_storage()
            ptr = st.data_ptr()
            if ptr in inputs or ptr in self.live or st.nbytes() == 0:
                continue
            self.live[ptr] = (StorageWeakRef(st), st.nbytes())
            self.current += st.nbytes()
        self.peak = max(self.peak, self.current)
        return out


def tiny_llava(path: Path, method: str, grad_ckpt: bool, hidden: int, layers: int, frames: int, text: int, batch: int):
    """(model, batch, Setup for video.memory.estimate) of a tiny random LLaVA (CLIP 32 wide +
    Llama ``hidden`` x ``layers``; PLLaVA pooling to (frames, 2, 2)); built under ``path``."""
    from video.models.hf_vlm import HFVideoLLMConfig, VLMLoraConfig, load_hf_video_llm
    from video.models.tiny_vlm import build_tiny_vlm

    ckpt = build_tiny_vlm(path, "llava", hidden=hidden, width=32, lm_layers=layers)
    lora = VLMLoraConfig(enabled=method == "lora", r=8, dropout=0.1)
    cfg = HFVideoLLMConfig(path=str(ckpt), pool_shape=[frames, 2, 2], gradient_checkpointing=grad_ckpt, lora=lora)
    torch.manual_seed(0)
    m = load_hf_video_llm(cfg).train()
    ids = torch.full((batch, text), 20)
    ids[:, 3] = m.media.placeholder_id
    b = dict(frames=torch.randint(0, 256, (batch, frames, 32, 32, 3), dtype=torch.uint8), input_ids=ids)
    b.update(attention_mask=torch.ones_like(ids), labels=ids.clone())
    c = m.hf.config.text_config
    lm = LMShape(c.num_hidden_layers, c.hidden_size, c.intermediate_size, c.num_attention_heads,
                 c.num_key_value_heads, c.vocab_size)  # fmt: skip
    vis = sum(p.numel() for p in m.hf.model.vision_tower.parameters())
    proj = sum(p.numel() for p in m.hf.model.multi_modal_projector.parameters())
    s = tiny_setup(lm=lm, vision_params=vis, projector_params=proj, vision_tokens_per_frame=16, vision_width=32)
    s = replace(s, tokens_per_frame=4, frames=frames, text_tokens=text - 1, batch=batch)
    return m, b, replace(s, method=method, lora_r=8, grad_ckpt=grad_ckpt)


def measure(model, batch, rounds: int = 0) -> dict[str, float]:
    """Peak bytes of one forward + backward (gradients already allocated) and, with
    ``rounds``, the median CPU seconds of a whole step (forward, backward, AdamW)."""
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)

    def step():
        model(batch)["loss"].backward()
        opt.step()
        opt.zero_grad(set_to_none=False)

    step()  # gradients and optimizer state exist from here on
    with LiveBytes() as mem:
        model(batch)["loss"].backward()
    out = {"peak_bytes": float(mem.peak)}
    times = []
    for _ in range(rounds):
        t = time.process_time()
        step()
        times.append(time.process_time() - t)
    if times:
        out["cpu_s"] = statistics.median(times)
    return out


def run(root: Path, hidden=128, layers=2, frames=4, text=24, batch=2, rounds=5) -> list[dict]:
    """Every (method, checkpointing) pair: measured peak and step CPU time beside the
    formula's activations + loss and FLOPs. Timing rounds are interleaved across the four."""
    torch.set_num_threads(1)
    rows, built = [], []
    for method in ("full", "lora"):
        for ck in (False, True):
            m, b, s = tiny_llava(root / f"h{hidden}_l{layers}", method, ck, hidden, layers, frames, text, batch)
            e = estimate(s)
            r = {"method": method, "grad_ckpt": ck, **measure(m, b)}
            r.update(predicted_bytes=e["activations"] + e["loss"], flops=e["flops"])
            rows.append(r)
            built.append((m, b))
    times: list[list[float]] = [[] for _ in rows]
    for _ in range(rounds):
        for i, (m, b) in enumerate(built):
            times[i].append(measure(m, b, rounds=1)["cpu_s"])
    for r, ts in zip(rows, times):
        if ts:
            r["cpu_s"] = statistics.median(ts)
            r["cpu_s_range"] = (min(ts), max(ts))
    return rows


def main() -> None:
    import tempfile

    ap = argparse.ArgumentParser()
    for k, v in dict(hidden=128, layers=2, frames=4, text=24, batch=2, rounds=5).items():
        ap.add_argument(f"--{k}", type=int, default=v)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        rows = run(Path(d), a.hidden, a.layers, a.frames, a.text, a.batch, a.rounds)
    print(
        f"tiny LLaVA: Llama h={a.hidden} x {a.layers} layers, {a.frames} frames, {a.text} text tokens, batch {a.batch}"
    )
    print(
        "| method | grad ckpt | measured peak (KiB) | formula act+loss (KiB) | measured/formula | CPU s/step | GFLOP |"
    )
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        lo, hi = r.get("cpu_s_range", (0, 0))
        print(
            f"| {r['method']} | {'yes' if r['grad_ckpt'] else 'no'} | {r['peak_bytes'] / 1024:.0f} | "
            f"{r['predicted_bytes'] / 1024:.0f} | {r['peak_bytes'] / r['predicted_bytes']:.2f} | "
            f"{r.get('cpu_s', 0):.3f} ({lo:.3f}-{hi:.3f}) | {r['flops'] / 1e9:.3f} |"
        )
    for method in ("full", "lora"):
        off, on = (next(r for r in rows if r["method"] == method and r["grad_ckpt"] == c) for c in (False, True))
        print(
            f"{method}: checkpointing on/off: memory measured {on['peak_bytes'] / off['peak_bytes']:.2f} vs formula "
            f"{on['predicted_bytes'] / off['predicted_bytes']:.2f}; time measured "
            f"{on.get('cpu_s', 0) / max(off.get('cpu_s', 1e-9), 1e-9):.2f} vs formula {on['flops'] / off['flops']:.2f}"
        )


if __name__ == "__main__":
    main()
