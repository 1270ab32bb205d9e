"""Side-by-side timings of pointcloud's dispatched ops against the libraries they compete with.

    python benchmarks/bench_pointcloud_ops.py [--batch 16] [--points 8192] [--repeat 3] [--device cuda]
        [--ops fps,knn,depth,pcv2] [--rounds 9]

FPS (16 x 8192 -> 1024) and kNN (k=16, every point queries its cloud) against open3d's C++
(legacy ``farthest_point_down_sample``; ``core.nns.NearestNeighborSearch``), scipy's
``cKDTree`` and pytorch3d when installed; multi-view depth (10 views, 224 x 224) against
open3d's ``t.geometry.PointCloud.project_to_depth_image`` for the same cameras, with
PointCLIP V2's densify and smooth timed separately. Prints a table of seconds (best of
``--repeat``) and ratios (library time / ours: > 1 means ours is faster); the depth target is
also measured interleaved (open3d then ours in each of ``--rounds`` rounds; median ratio,
IQR, min and max printed).

The machines this runs on are shared, so next to wall-clock it prints each row's process CPU
seconds (all threads, best of ``--repeat``) and the load average before and after: on a busy
machine wall-clock ratios mostly measure the scheduler, and the CPU-time ratios are the ones
to read (a multi-threaded library spends more CPU than wall, so those ratios favour it).
``--threads`` sets torch's intra-op threads (default 1: with more threads than idle cores an
OpenMP team spins at every barrier; measured 30x slower steps here under load).
"""

from __future__ import annotations

import argparse
import json
import resource
import time

import numpy as np
import torch


def _sync() -> None:
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()  # GPU rows: time the kernels, not their queueing


def best_of(fn, repeat: int) -> tuple[float, float]:
    """(best wall seconds, best process CPU seconds) over ``repeat`` runs after a warm-up."""
    fn()  # warm-up (imports, allocator, thread pools)
    _sync()
    wall, cpu = [], []
    for _ in range(repeat):
        t, c = time.perf_counter(), time.process_time()
        fn()
        _sync()
        wall.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    return min(wall), min(cpu)


def interleaved(fns: dict, rounds: int, cpu: dict | None = None) -> dict[str, list[float]]:
    """Wall seconds of each function per round, the functions alternating inside each round
    (so load changes hit both alike); one warm-up call each first. ``cpu``: filled with each
    call's process CPU seconds, the same way."""
    for fn in fns.values():
        fn()
    _sync()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for k in fns:
        if cpu is not None:
            cpu[k] = []
            cpu[f"{k}_faults"] = []
    for _ in range(rounds):
        for k, fn in fns.items():
            f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            t, c = time.perf_counter(), time.process_time()
            fn()
            _sync()
            times[k].append(time.perf_counter() - t)
            if cpu is not None:
                cpu[k].append(time.process_time() - c)
                cpu[f"{k}_faults"].append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0)
    return times


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--points", type=int, default=8192)
    ap.add_argument("--samples", type=int, default=1024)
    ap.add_argument("--k", type=int, default=16)
    ap.add_argument("--views", type=int, default=10)
    ap.add_argument("--image-size", type=int, default=224)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    ap.add_argument("--rounds", type=int, default=9, help="interleaved open3d/ours depth rounds (median, spread)")
    ap.add_argument(
        "--ops",
        default="fps,knn,depth,pcv2",
        type=lambda v: set(v.split(",")),
        help="comma-separated subset of fps,knn,depth,pcv2 to time",
    )
    ap.add_argument("--out", default=None, help="also write the rows as JSON here")
    ap.add_argument(
        "--device", default="cpu", help="where vlx's ops and torch/pytorch3d rows run (cuda: the GPU rows of gpu_check)"
    )
    a = ap.parse_args()
    import os

    torch.set_num_threads(a.threads)
    load_before = os.getloadavg()

    import open3d as o3d
    import open3d.core as o3c
    from scipy.spatial import cKDTree

    from pointcloud import ops, projection

    torch.manual_seed(0)
    host = ops.normalize_points(torch.rand(a.batch, a.points, 3) * 2 - 1)
    arr = host.numpy()  # the host libraries' input
    pts = host.to(a.device)  # vlx's (and torch/pytorch3d's) input
    rows: list[tuple[str, str, tuple[float, float]]] = []

    if "fps" in a.ops:
        # ---- FPS
        legacy = [o3d.geometry.PointCloud(o3d.utility.Vector3dVector(c.astype(np.float64))) for c in arr]
        rows.append(
            (
                "fps",
                "open3d legacy C++ (points only, no indices)",
                best_of(lambda: [p.farthest_point_down_sample(a.samples) for p in legacy], a.repeat),
            )
        )
        rows.append(
            (
                "fps",
                "torch batched (4 kernels a step)",
                best_of(lambda: ops.farthest_point_sample(pts, a.samples, backend="torch"), a.repeat),
            )
        )
        fps_old_new = interleaved(
            {"old": lambda: ops._fps_loop(pts, a.samples), "new": lambda: ops._fps_torch(pts, a.samples)}, a.repeat
        )
        if ops.pytorch3d_problem(pts.device) is None:  # installed and working on this device
            from pytorch3d.ops import sample_farthest_points

            rows.append(("fps", "pytorch3d", best_of(lambda: sample_farthest_points(pts, K=a.samples), a.repeat)))
        rows.append(
            (
                "fps",
                "OURS farthest_point_sample(auto)",
                best_of(lambda: ops.farthest_point_sample(pts, a.samples), a.repeat),
            )
        )

    if "knn" in a.ops:
        # ---- kNN
        def o3d_knn():
            for c in arr:
                nns = o3c.nns.NearestNeighborSearch(o3c.Tensor(c))
                nns.knn_index()
                nns.knn_search(o3c.Tensor(c), a.k)

        rows.append(("knn", "open3d NearestNeighborSearch", best_of(o3d_knn, a.repeat)))
        rows.append(
            (
                "knn",
                "scipy cKDTree (workers=-1)",
                best_of(lambda: [cKDTree(c).query(c, a.k, workers=-1) for c in arr], a.repeat),
            )
        )
        rows.append(("knn", "torch cdist+topk", best_of(lambda: ops.knn(pts, pts, a.k, backend="torch"), a.repeat)))
        if ops.pytorch3d_problem(pts.device) is None:  # installed and working on this device
            from pytorch3d.ops import knn_points

            rows.append(("knn", "pytorch3d", best_of(lambda: knn_points(pts, pts, K=a.k), a.repeat)))
        rows.append(("knn", "OURS knn(auto)", best_of(lambda: ops.knn(pts, pts, a.k), a.repeat)))

    # ---- depth projection: the same 10 cameras for both (CLIP2Point's, y up)
    names = "clip2point_10" if a.views == 10 else "clip2point_6"
    mats = projection.view_matrices(names)
    S = a.image_size
    if "depth" in a.ops:
        # open3d is a pinhole camera; a long focal length from far away approximates the orthographic view.
        dist, f = 20.0, 20.0 * S / 2 / 1.1
        K = o3c.Tensor(np.array([[f, 0, S / 2], [0, f, S / 2], [0, 0, 1]], dtype=np.float64))
        # open3d's camera: x right, y down, z forward; ours: x right, y up, depth forward.
        flip = np.diag([1.0, -1.0, 1.0])
        extr = []
        for m in mats.cpu().numpy().astype(np.float64):
            E = np.eye(4)
            E[:3, :3] = flip @ m
            E[2, 3] = dist
            extr.append(o3c.Tensor(E))
        tclouds = [o3d.t.geometry.PointCloud(o3c.Tensor(c)) for c in arr]

        def o3d_depth():
            for pc in tclouds:
                for E in extr:
                    pc.project_to_depth_image(S, S, K, E, depth_scale=1.0, depth_max=dist + 2)

        rows.append(
            ("depth", f"open3d project_to_depth_image ({len(extr)} views, {S}px)", best_of(o3d_depth, a.repeat))
        )
        rows.append(
            (
                "depth",
                "OURS depth_maps (min-depth + fg normalise)",
                best_of(lambda: projection.depth_maps(pts, names, S, normalize=False), a.repeat),
            )
        )
        rows.append(
            (
                "depth",
                "  depth_maps, backend='torch' (eager kernel, no compiled op)",
                best_of(lambda: projection.depth_maps(pts, names, S, normalize=False, backend="torch"), a.repeat),
            )
        )
        # side by side: open3d then ours inside every round, so load changes hit both alike
        depth_cpu: dict[str, list[float]] = {}
        depth_rounds = interleaved(
            {
                "open3d": o3d_depth,
                "ours": lambda: projection.depth_maps(pts, names, S, normalize=False),
                "ours_torch": lambda: projection.depth_maps(pts, names, S, normalize=False, backend="torch"),
            },
            a.rounds,
            depth_cpu,
        )
        pix, dep = projection.project_points(pts, mats, S)
        rows.append(
            (
                "depth",
                "  (reference) bare z-buffer: zbuffer(), scatter_reduce amin",
                best_of(lambda: projection.zbuffer(pix, dep, S), a.repeat),
            )
        )
    if "pcv2" in a.ops:
        bins = 8
        grid = projection.quantize_grid(pts, mats, S, bins)
        rows.append(
            (
                "pcv2",
                f"realistic: quantise into {bins} depth bins",
                best_of(lambda: projection.quantize_grid(pts, mats, S, bins), a.repeat),
            )
        )
        rows.append(
            (
                "pcv2",
                "realistic: densify (3-D max-pool)",
                best_of(lambda: projection.densify_and_smooth(grid, 3, 0.0), a.repeat),
            )
        )
        pooled = projection.densify_and_smooth(grid, 3, 0.0)
        rows.append(
            (
                "pcv2",
                "realistic: Gaussian smooth (sigma=1)",
                best_of(lambda: projection.densify_and_smooth(pooled, 1, 1.0), a.repeat),
            )
        )

    load_after = os.getloadavg()
    print(
        f"\n{a.batch} clouds x {a.points} points; FPS -> {a.samples}; kNN k={a.k}; {a.views} views at {S}x{S}; "
        f"torch threads={torch.get_num_threads()}; cores={os.cpu_count()}; device={a.device}; "
        f"load average before {load_before[0]:.2f}, after {load_after[0]:.2f}"
    )
    print(f"{'op':6s} {'implementation':58s} {'wall s':>9s} {'cpu s':>9s}")
    for op, name, (wall, cpu) in rows:
        print(f"{op:6s} {name:58s} {wall:9.4f} {cpu:9.4f}")
    summary: dict = {}

    def ratio(op: str, lib_pick) -> None:
        ours = next(t for o, n, t in rows if o == op and n.startswith("OURS"))
        libs = [(n, t) for o, n, t in rows if lib_pick(o, n)]
        for col, label in ((0, "wall"), (1, "cpu")):
            best_name, best = min(libs, key=lambda x: x[1][col])
            summary[f"{op}_{label}"] = best[col] / ours[col]
            target = ">= 2x" if op == "depth" else ">= 0.9x"
            print(
                f"{op}: ours vs best library ({best_name}), {label} time: {best[col] / ours[col]:.2f}x speed "
                f"(target {target})"
            )

    for op in ("fps", "knn"):
        if op in a.ops:
            ratio(op, lambda o, n, op=op: o == op and not n.startswith("OURS") and not n.startswith("torch"))
    if "depth" in a.ops:
        ratio("depth", lambda o, n: o == "depth" and n.startswith("open3d"))
    if "depth" in a.ops:
        for what, per_call in (("wall", depth_rounds), ("process CPU", depth_cpu)):
            for mine in ("ours", "ours_torch"):
                r = sorted(o / n for o, n in zip(per_call["open3d"], per_call[mine]))
                q = lambda f, r=r: r[min(len(r) - 1, int(f * len(r)))]  # noqa: E731
                key = "depth_interleaved_median" + ("" if mine == "ours" else "_torch_kernel")
                summary[key + ("" if what == "wall" else "_cpu")] = r[len(r) // 2]
                print(
                    f"depth: open3d / {mine}, interleaved rounds, {what}: median {r[len(r) // 2]:.2f}x "
                    f"(IQR {q(0.25):.2f}-{q(0.75):.2f}, min {r[0]:.2f}, max {r[-1]:.2f}, {len(r)} rounds; "
                    f"median open3d {sorted(per_call['open3d'])[len(r) // 2]:.4f} s, "
                    f"{mine} {sorted(per_call[mine])[len(r) // 2]:.4f} s; target >= 2x)"
                )
        faults = {k: sorted(depth_cpu[f"{k}_faults"])[len(depth_cpu[k]) // 2] for k in ("open3d", "ours", "ours_torch")}
        print("depth: minor page faults per call, median: " + ", ".join(f"{k} {v}" for k, v in faults.items()))
    if "fps" in a.ops:
        per_round = sorted(o / n for o, n in zip(fps_old_new["old"], fps_old_new["new"]))
        summary["fps_torch_old_over_new"] = per_round[len(per_round) // 2]
        print(
            f"fps torch backend: previous loop / batched, interleaved rounds: "
            f"median {per_round[len(per_round) // 2]:.2f}x "
            f"(min {per_round[0]:.2f}, max {per_round[-1]:.2f}, {len(per_round)} rounds)"
        )
    if a.out:
        with open(a.out, "w") as fh:
            json.dump(
                {
                    "rows": rows,
                    "ratios": summary,
                    "args": vars(a),
                    "load_before": load_before,
                    "load_after": load_after,
                },
                fh,
                indent=2,
            )


if __name__ == "__main__":
    main()
