"""The all-gather path (and the local-rows paths: ClipLoss(local_loss=True), FILIP) with 2
processes (gloo on the CPU): each rank's loss equals the
single-process loss on the concatenated batch, each rank's local features get world_size x the
matching slice of the single-process gradient, and DDP-style gradient averaging of a shared
layer reproduces the single-process parameter gradient (the convention in vlx/losses/clip.py)."""

import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

WORLD = 2
SIZES = (5, 3)  # uneven shards: a last partial batch must work too


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def global_batch():
    """The full batch every process can rebuild: inputs z (N, 6) for two towers, ids, tokens."""
    g = torch.Generator().manual_seed(0)
    n = sum(SIZES)
    return {
        "za": torch.randn(n, 6, generator=g, dtype=torch.float64),
        "zb": torch.randn(n, 6, generator=g, dtype=torch.float64),
        "ids": torch.tensor([0, 1, 2, 0, 3, 4, 1, 5]),
        "ta": F.normalize(torch.randn(n, 3, 4, generator=g, dtype=torch.float64), dim=-1),
        "tb": F.normalize(torch.randn(n, 2, 4, generator=g, dtype=torch.float64), dim=-1),
        # rank 1's rows (5..7) use one token: its batch comes padded to length 1, rank 0's to 2
        "tb_mask": torch.tensor([[1, 1], [1, 0], [1, 1], [1, 0], [1, 1], [1, 0], [1, 0], [1, 0]], dtype=torch.bool),
    }


def towers():
    torch.manual_seed(1)
    return torch.nn.Linear(6, 4).double(), torch.nn.Linear(6, 4).double()


CASES = {
    "clip": lambda L, a, b, sl, d: L.ClipLoss()(a, b, 5.0),
    "clip_ids": lambda L, a, b, sl, d: L.ClipLoss()(a, b, 5.0, ids=d["ids"][sl]),
    "siglip": lambda L, a, b, sl, d: L.SigLipLoss()(a, b, 5.0, -2.0),
    "soft_clip": lambda L, a, b, sl, d: L.SoftLabelClipLoss(0.2)(a, b, 5.0, ids=d["ids"][sl]),
    "intra": lambda L, a, b, sl, d: L.IntraModalLoss()(a, b, 5.0),
    "nt_xent": lambda L, a, b, sl, d: L.nt_xent(a, b, 0.3),
    # token features that depend on the towers' outputs, so gradients reach a and b
    "filip": lambda L, a, b, sl, d: filip_case(L, a, b, sl, d),
    # local-rows FILIP in column chunks of one similarity row (checkpointed in the backward)
    "filip_chunked": lambda L, a, b, sl, d: filip_case(L, a, b, sl, d, max_elements=1),
    # open_clip's local_loss: own rows against gathered columns; same value and gradients
    "clip_local": lambda L, a, b, sl, d: L.ClipLoss(local_loss=True)(a, b, 5.0),
    "clip_local_ids": lambda L, a, b, sl, d: L.ClipLoss(local_loss=True)(a, b, 5.0, ids=d["ids"][sl]),
    # ids unique only within a rank's batch (Text4Point's row offsets, per-batch phrase numbers)
    "clip_batch_ids": lambda L, a, b, sl, d: batch_ids_case(L.ClipLoss, a, b, sl, d),
    "clip_local_batch_ids": lambda L, a, b, sl, d: batch_ids_case(L.ClipLoss, a, b, sl, d, local_loss=True),
    "soft_clip_batch_ids": lambda L, a, b, sl, d: batch_ids_case(L.SoftLabelClipLoss, a, b, sl, d, smoothing=0.2),
    "siglip_batch_ids": lambda L, a, b, sl, d: batch_ids_case(L.SigLipLoss, a, b, sl, d, bias=-2.0),
}

# Per-rank ids numbered within each rank's batch; the single-process equivalent numbers them
# apart. Read with one global numbering, rank 1's 0s and 1 would falsely match rank 0's.
BATCH_IDS = ([0, 1, 0, 2, 1], [0, 0, 1])
GLOBAL_IDS = [0, 1, 0, 2, 1, 10, 10, 11]


def batch_ids_case(cls, a, b, sl, d, bias=None, **kw):
    if sl.stop - sl.start == sum(SIZES):  # the single-process reference on the whole batch
        ids, scope = torch.tensor(GLOBAL_IDS), "global"
    else:
        ids, scope = torch.tensor(BATCH_IDS[0 if sl.start == 0 else 1]), "local"
    loss = cls(id_scope=scope, **kw)
    return loss(a, b, 5.0, bias, ids=ids) if bias is not None else loss(a, b, 5.0, ids=ids)


def trim(tokens, mask):
    """Dynamic padding, as the tokenizer does: cut to the longest real sequence of the batch."""
    n = int(mask.sum(1).max())
    return tokens[:, :n], mask[:, :n]


def filip_case(L, a, b, sl, d, **kw):
    tb, tb_mask = trim(d["tb"][sl] + b[:, None, :], d["tb_mask"][sl])
    return L.FilipLoss(**kw)(d["ta"][sl] + a[:, None, :], tb, None, tb_mask, 3.0)


def run_case(name, sl):
    """Loss on the rows ``sl`` of the global batch; returns (loss, grad wrt the rows' features,
    grads of the two towers' weights)."""
    import vlx.losses as L

    d = global_batch()
    fa, fb = towers()
    a = F.normalize(fa(d["za"][sl]), dim=-1)
    b = F.normalize(fb(d["zb"][sl]), dim=-1)
    a.retain_grad()
    loss = CASES[name](L, a, b, sl, d)
    loss.backward()
    return loss.detach(), a.grad.clone(), torch.cat([fa.weight.grad.flatten(), fb.weight.grad.flatten()])


def worker(rank, port, queue):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=WORLD)
    start = sum(SIZES[:rank])
    sl = slice(start, start + SIZES[rank])
    out = {}
    for name in CASES:
        loss, ga, gw = run_case(name, sl)
        dist.all_reduce(gw)  # what DDP does: average the parameter gradients over ranks
        # plain lists: torch would share tensors through file descriptors that die with this process
        out[name] = (float(loss), ga.tolist(), (gw / WORLD).tolist())
    # As under NCCL (no CPU tensors on the default group): sizes and token lengths travel over
    # a separate gloo group created on first use; same numbers.
    import vlx.losses.clip as C

    real_backend = dist.get_backend
    dist.get_backend = lambda group=None: "nccl"
    try:
        for name in ("clip_local_ids", "filip"):
            loss, ga, _ = run_case(name, sl)
            out[name + "_host_group"] = (float(loss), ga.tolist(), len(C._HOST_GROUPS))
    finally:
        dist.get_backend = real_backend
    queue.put((rank, out))
    dist.barrier()
    dist.destroy_process_group()


@pytest.mark.slow
def test_all_gather_two_processes_match_single_process():
    ctx = mp.get_context("spawn")
    queue = ctx.SimpleQueue()
    procs = mp.spawn(worker, args=(free_port(), queue), nprocs=WORLD, join=False)
    results = dict(queue.get() for _ in range(WORLD))
    procs.join()
    full = slice(0, sum(SIZES))
    d = global_batch()  # the FILIP case really has ragged token lengths across the ranks
    assert [trim(d["tb"][s], d["tb_mask"][s])[0].shape[1] for s in (slice(0, 5), slice(5, 8))] == [2, 1]
    # the batch-local ids really collide when read as global ones
    import vlx.losses as L

    a, b = F.normalize(d["za"][:, :4], dim=-1), F.normalize(d["zb"][:, :4], dim=-1)
    collided = torch.tensor(BATCH_IDS[0] + BATCH_IDS[1])
    assert float(L.ClipLoss()(a, b, 5.0, ids=collided)) != pytest.approx(
        float(L.ClipLoss()(a, b, 5.0, ids=torch.tensor(GLOBAL_IDS))), abs=1e-3
    )
    for name in CASES:
        loss, ga, gw = run_case(name, full)
        for rank in range(WORLD):
            r_loss, r_ga, r_gw = results[rank][name]
            r_ga, r_gw = torch.tensor(r_ga, dtype=torch.float64), torch.tensor(r_gw, dtype=torch.float64)
            start = sum(SIZES[:rank])
            assert r_loss == pytest.approx(float(loss), abs=1e-12), (name, rank)
            # the local shard's gradient: world_size x the single-process slice
            assert torch.allclose(r_ga, WORLD * ga[start : start + SIZES[rank]], atol=1e-12), (name, rank)
            # after DDP averaging, the parameter gradient is the single-process one
            assert torch.allclose(r_gw, gw, atol=1e-12), (name, rank)
    for rank in range(WORLD):
        for name in ("clip_local_ids", "filip"):
            h_loss, h_ga, n_groups = results[rank][name + "_host_group"]
            assert n_groups == 1 and h_loss == results[rank][name][0] and h_ga == results[rank][name][1]


def test_single_process_is_not_distributed():
    """Without an initialised group the gather is the identity (same objects back)."""
    from vlx.losses import gather_batch

    x, y = torch.randn(3, 2, requires_grad=True), torch.arange(3)
    gx, gy, gn = gather_batch(x, y, None)
    assert gx is x and gy is y and gn is None
