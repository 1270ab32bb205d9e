"""Memory and time of fine-tuning a LLaVA-style video LLM, from parameter, optimizer-state
and activation counts. ``python -m video.memory`` prints the table of
docs/results/video_memory.md (7B LLaVA-NeXT-Video / PLLaVA-style: Vicuna-7B + CLIP ViT-L/14-336,
144 visual tokens per frame).

Per GPU, bytes:

- weights: every parameter in the compute dtype (2 for bf16); FSDP/ZeRO-3 divides by N.
- trainable state, mixed-precision AdamW (ZeRO paper, Rajbhandari et al. 2020): 2 (bf16
  grad) + 4 (fp32 master) + 8 (m, v) = 14 bytes per trainable parameter on top of the bf16
  weight; sharded by N under FSDP/ZeRO. In fp32 (the CPU check): 4 (grad) + 8 (m, v).
- activations saved for backward, per LM token and layer, for a Llama decoder layer with
  SDPA/flash attention (counted tensor by tensor: layer input, RMS statistic, normed input,
  q, k, v, rotated q/k, attention output and log-sum-exp, second norm, gate/up/SiLU/product):
  ``8h + 2 kv + 4f + heads + 2`` elements; plus ``2h + head_dim + 1`` after the last
  layer. Gradient checkpointing keeps only each layer's input (``h``) plus one layer
  recomputed at a time. LoRA adds ``h + 4r`` per layer (net; see
  ``activation_elements_per_token``). The frozen vision tower saves nothing.
- loss: logits (compute dtype) + their fp32 copy (bf16 only) + fp32 log-softmax, per token.

Time: FLOPs = vision forward ``2 P_vit n_vit`` + LM forward ``2 P_lm S + 2 S^2 h L`` (causal),
backward 2x forward (full) or 1x (frozen/LoRA weights: only activation gradients), one
more forward with gradient checkpointing; seconds = FLOPs / (peak x MFU).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

GB = 1024**3


@dataclass(frozen=True)
class LMShape:
    layers: int = 32
    hidden: int = 4096
    ffn: int = 11008
    heads: int = 32
    kv_heads: int = 32
    vocab: int = 32064
    tied: bool = False

    @property
    def kv(self) -> int:
        return self.hidden // self.heads * self.kv_heads

    def params(self) -> int:
        h, f, kv = self.hidden, self.ffn, self.kv
        layer = h * (2 * h + 2 * kv) + 3 * h * f + 2 * h
        return self.layers * layer + self.vocab * h * (1 if self.tied else 2) + h

    def block_params(self) -> int:
        """Parameters touched per token in the matmuls (no embedding lookup)."""
        return self.params() - self.vocab * self.hidden * (0 if self.tied else 1)


@dataclass(frozen=True)
class Setup:
    """One fine-tuning configuration (micro-batch per GPU)."""

    lm: LMShape = LMShape()
    vision_params: int = 303_500_000  # CLIP ViT-L/14-336
    vision_tokens_per_frame: int = 576  # patch tokens the projector sees (CLS dropped)
    vision_width: int = 1024
    projector_params: int = 20_979_712  # 1024x4096 + 4096x4096 (+ biases)
    tokens_per_frame: int = 144  # 24x24 patches pooled 2x2 (LLaVA-NeXT-Video; PLLaVA (T, 12, 12))
    text_tokens: int = 256
    frames: int = 16
    batch: int = 1
    method: str = "lora"  # lora | full
    lora_r: int = 128
    lora_targets: int = 4  # q, k, v, o
    lora_dropout: bool = True
    gpus: int = 1
    shard: bool = False  # FSDP / ZeRO-3: weights, grads and optimizer states split over gpus
    grad_ckpt: bool = True
    bytes_per_el: int = 2  # bf16 compute
    fp32_master: bool = True  # mixed precision keeps an fp32 copy of trainable weights

    @property
    def seq(self) -> int:
        return self.frames * self.tokens_per_frame + self.text_tokens

    def lora_params(self) -> int:
        h, kv, L = self.lm.hidden, self.lm.kv, self.lm.layers
        dims = [(h, h), (h, kv), (h, kv), (h, h)][: self.lora_targets]
        return L * sum(self.lora_r * (i + o) for i, o in dims)

    def trainable(self) -> int:
        if self.method == "full":
            return self.lm.params() + self.projector_params
        return self.lora_params() + self.projector_params

    def total_params(self) -> int:
        return (
            self.lm.params() + self.vision_params + self.projector_params + (self.method == "lora") * self.lora_params()
        )


def activation_elements_per_token(lm: LMShape, grad_ckpt: bool, lora: Setup | None = None) -> float:
    """Saved-for-backward elements per LM token (see module doc), excluding the loss."""
    h, f, kv, hd = lm.hidden, lm.ffn, lm.kv, lm.hidden // lm.heads
    layer = 8 * h + 2 * kv + 4 * f + lm.heads + 2
    if lora is not None and lora.method == "lora":
        # Net of what LoRA adds (the dropped-out inputs, the rank-r hiddens) and what the
        # frozen base projections no longer keep for weight gradients: measured on the tiny
        # model as one h-sized tensor + r per adapted projection per layer (the only term
        # taken from the measurement; tests/video/test_memory.py).
        layer += h + lora.lora_targets * lora.lora_r
    if grad_ckpt:
        return lm.layers * h + layer + 2 * h + 1
    return lm.layers * layer + 2 * h + hd + 1


def estimate(s: Setup) -> dict[str, float]:
    """Bytes per GPU and seconds per sample (A100/H100-class bf16 peak 312 TFLOP/s at 40% MFU)."""
    n = s.gpus if s.shard else 1
    b = s.bytes_per_el
    weights = s.total_params() * b / n
    state_per_param = (b + 4 + 8) if (s.fp32_master and b == 2) else (b + 8)
    states = s.trainable() * state_per_param / n
    tokens = s.seq * s.batch
    act = activation_elements_per_token(s.lm, s.grad_ckpt, s) * tokens * b
    loss = s.lm.vocab * (b + 4 + (4 if b == 2 else 0)) * tokens  # logits (+ fp32 copy) + log-softmax
    # projector (trainable): saves its input, the GELU input and the second linear's input
    proj = s.frames * s.vision_tokens_per_frame * s.batch * (s.vision_width + 2 * s.lm.hidden) * b
    total = weights + states + act + loss + proj
    lm_fwd = 2 * s.lm.block_params() * tokens + 2 * s.seq**2 * s.lm.hidden * s.lm.layers * s.batch
    vis = 2 * s.vision_params * (s.vision_tokens_per_frame + 1) * s.frames * s.batch
    bwd = 2 * lm_fwd if s.method == "full" else lm_fwd
    flops = vis + lm_fwd + bwd + (lm_fwd if s.grad_ckpt else 0)
    return {
        "weights": weights,
        "grads_optimizer": states,
        "activations": act + proj,
        "loss": loss,
        "total": total,
        "seconds_per_sample": flops / (312e12 * 0.4) / s.batch,
        "flops": flops,
    }


def table(frames=(8, 16, 32)) -> str:
    rows = [
        "| frames | tokens | method | GPUs | sharding | grad ckpt | weights | grads+optim | activations+loss | "
        "total / GPU (GB) | fits 80 GB | s / sample / GPU |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    configs = [
        ("lora", 1, False, True),
        ("lora", 1, False, False),
        ("lora", 8, False, True),
        ("full", 1, False, True),
        ("full", 8, True, True),
        ("full", 8, True, False),
    ]
    for fr in frames:
        for method, gpus, shard, ck in configs:
            s = Setup(frames=fr, method=method, gpus=gpus, shard=shard, grad_ckpt=ck)
            e = estimate(s)
            rows.append(
                f"| {fr} | {s.seq} | {method} | {gpus} | {'FSDP full shard' if shard else 'none (DDP)'} | "
                f"{'yes' if ck else 'no'} | {e['weights'] / GB:.1f} | {e['grads_optimizer'] / GB:.1f} | "
                f"{(e['activations'] + e['loss']) / GB:.1f} | {e['total'] / GB:.1f} | "
                f"{'yes' if e['total'] < 80 * GB * 0.9 else 'no'} | {e['seconds_per_sample']:.2f} |"
            )
    return "\n".join(rows)


def tiny_setup(**kw) -> Setup:
    """The same counts for a tiny fp32 CPU model (no fp32 master copy: the weights are fp32)."""
    return replace(Setup(bytes_per_el=4, fp32_master=False), **kw)


if __name__ == "__main__":
    print(table())
