"""Scene-graph building and batched GCN forward, sparse (torch-geometric, k-NN candidate
pairs) against dense (all N^2 pairs, DenseGCNConv on padded adjacency), for scenes of 20,
100 and 500 objects, measured side by side in one run. The sparse GCN runs twice: on
``edge_index`` (scatter) and on a CSR adjacency (spmm); both adjacency formats are built
once outside the timed forward, as a training loop would.

    python benchmarks/bench_scene_graph.py [--batch 8] [--repeats 3] [--out bench_scene_graph.json]
"""

from __future__ import annotations

import argparse
import json
import time
import warnings

import torch
from torch_geometric.nn import DenseGCNConv, GCNConv
from torch_geometric.utils import to_dense_adj, to_dense_batch, to_torch_csr_tensor

from scene_graph.builder import GraphConfig, SceneObjects, batch_graphs, build_scene_graph


def random_scene(n: int, seed: int) -> SceneObjects:
    g = torch.Generator().manual_seed(seed)
    side = (n / 4) ** 0.5 * 2.0  # keep density roughly constant as rooms grow
    centre = torch.rand(n, 3, generator=g) * torch.tensor([side, side, 2.0])
    size = 0.2 + torch.rand(n, 3, generator=g) * 0.6
    labels = [f"c{int(k)}" for k in torch.randint(0, 20, (n,), generator=g)]
    return SceneObjects(f"s{seed}", list(range(n)), labels, torch.cat([centre, size], 1))


def timeit(fn, repeats: int) -> float:
    fn()  # warm-up
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--k", type=int, default=16)
    ap.add_argument("--out", default="bench_scene_graph.json")
    args = ap.parse_args()
    torch.manual_seed(0)
    sparse_cfg = GraphConfig(edges="knn", k=args.k, between=False)
    dense_cfg = GraphConfig(edges="all", between=False)
    gcn = [GCNConv(args.dim, args.dim) for _ in range(2)]
    dgcn = [DenseGCNConv(args.dim, args.dim) for _ in range(2)]
    for a, b in zip(gcn, dgcn):  # same weights, so both paths compute the same function
        b.lin.weight.data.copy_(a.lin.weight.data)
        b.bias.data.copy_(a.bias.data)
    rows = []
    for n in (20, 100, 500):
        scenes = [random_scene(n, s) for s in range(args.batch)]
        t_build_sparse = timeit(lambda: [build_scene_graph(s, sparse_cfg) for s in scenes], args.repeats)
        t_build_dense = timeit(lambda: [build_scene_graph(s, dense_cfg) for s in scenes], args.repeats)
        batch = batch_graphs([build_scene_graph(s, sparse_cfg) for s in scenes])
        x = torch.randn(batch.num_nodes, args.dim)

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch's "sparse CSR is beta" notice
            csr = to_torch_csr_tensor(batch.edge_index.flip(0), size=(batch.num_nodes, batch.num_nodes))
        adj = to_dense_adj(batch.edge_index, batch.batch)  # (B, N, N)
        xd, mask = to_dense_batch(x, batch.batch)  # (B, N, D)

        def sparse_fwd(a=batch.edge_index):
            h = x
            with torch.no_grad():
                for layer in gcn:
                    h = layer(h, a).relu()
            return h

        def dense_fwd():
            h = xd
            with torch.no_grad():
                for layer in dgcn:
                    h = layer(h, adj, mask).relu()
            return h[mask]

        assert torch.allclose(sparse_fwd(), dense_fwd(), atol=1e-4), "sparse and dense GCN disagree"
        assert torch.allclose(sparse_fwd(csr), dense_fwd(), atol=1e-4), "CSR and dense GCN disagree"
        t_gcn_sparse = timeit(sparse_fwd, args.repeats)
        t_gcn_csr = timeit(lambda: sparse_fwd(csr), args.repeats)
        t_gcn_dense = timeit(dense_fwd, args.repeats)
        rows.append(
            dict(
                objects=n,
                edges_per_scene=batch.num_edges / args.batch,
                build_sparse_ms=t_build_sparse * 1e3,
                build_dense_ms=t_build_dense * 1e3,
                gcn_sparse_ms=t_gcn_sparse * 1e3,
                gcn_csr_ms=t_gcn_csr * 1e3,
                gcn_dense_ms=t_gcn_dense * 1e3,
            )
        )
    base = rows[0]
    print(f"batch of {args.batch} scenes, k={args.k}, dim={args.dim}; best of {args.repeats} (ms)")
    hdr = (
        f"{'objects':>7} {'edges':>7} | {'build sparse':>12} {'build dense':>12} {'dense/sparse':>12} | "
        f"{'GCN scatter':>11} {'GCN CSR':>8} {'GCN dense':>10} {'dense/CSR':>10} | "
        "growth vs 20: build sp/de, GCN CSR/de"
    )
    print(hdr)
    for r in rows:
        r["build_ratio"] = r["build_dense_ms"] / r["build_sparse_ms"]
        r["gcn_ratio"] = r["gcn_dense_ms"] / r["gcn_csr_ms"]
        g = [r[k] / base[k] for k in ("build_sparse_ms", "build_dense_ms", "gcn_csr_ms", "gcn_dense_ms")]
        r["growth_vs_20"] = g
        print(
            f"{r['objects']:>7} {r['edges_per_scene']:>7.0f} | {r['build_sparse_ms']:>12.2f} "
            f"{r['build_dense_ms']:>12.2f} "
            f"{r['build_ratio']:>11.2f}x | {r['gcn_sparse_ms']:>11.2f} {r['gcn_csr_ms']:>8.2f} "
            f"{r['gcn_dense_ms']:>10.2f} {r['gcn_ratio']:>9.2f}x | " + " ".join(f"{v:.1f}x" for v in g)
        )
    with open(args.out, "w") as f:
        json.dump(rows, f, indent=1)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
