"""Frames/s from video files into a model-ready batch: video/'s reader (decord get_batch with
seeking and decoder-side resize) vs a naive PyAV loop (decode every frame to RGB, keep the
sampled ones, resize with PIL), on the same generated mp4 files. Target: >= 2x.

    python benchmarks/bench_video_reader.py [--videos 16 --frames 240 --gop 24 --res 256 --size 224]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def make_videos(root: Path, n: int, frames: int, res: int, gop: int = 24) -> list[Path]:
    from video.synthetic import all_event_pairs, render_clip, write_mp4

    pairs = all_event_pairs()
    paths = []
    for i in range(n):
        clip = render_clip(pairs[i % len(pairs)], frames // 2, res)
        noise = np.random.default_rng(i).integers(
            0, 24, clip.shape, dtype=np.uint8
        )  # texture, so frames cost real bits
        p = root / f"v{i}.mp4"
        write_mp4(p, clip + noise, fps=24, gop=gop)
        paths.append(p)
    return paths


def naive_batch(paths, num_frames: int, size: int) -> torch.Tensor:
    import av
    from PIL import Image

    from vlx.data.transforms import IMAGE_MEAN, IMAGE_STD

    clips = []
    for p in paths:
        with av.open(str(p)) as c:
            all_frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
        idx = ((np.arange(num_frames) + 0.5) * len(all_frames) / num_frames).astype(int)
        clips.append(
            np.stack([np.asarray(Image.fromarray(all_frames[i]).resize((size, size), Image.BILINEAR)) for i in idx])
        )
    x = torch.from_numpy(np.stack(clips)).permute(0, 1, 4, 2, 3).float() / 255
    m, s = torch.tensor(IMAGE_MEAN).view(3, 1, 1), torch.tensor(IMAGE_STD).view(3, 1, 1)
    return (x - m) / s


def our_batch(paths, num_frames: int, size: int) -> torch.Tensor:
    from video.io import SamplerConfig, VideoLoadConfig, frames_to_model, load_video
    from vlx.data.transforms import IMAGE_MEAN, IMAGE_STD

    cfg = VideoLoadConfig(sampler=SamplerConfig("uniform", num_frames), size=size)
    frames = torch.stack([load_video(p, cfg)[0] for p in paths])
    return frames_to_model(frames, IMAGE_MEAN, IMAGE_STD)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--videos", type=int, default=16)
    ap.add_argument(
        "--frames", type=int, default=240, help="frames per video file (240 = a 10 s clip at 24 fps, MSR-VTT-like)"
    )
    ap.add_argument("--gop", type=int, default=24, help="keyframe interval in frames (24 = 1 s)")
    ap.add_argument("--res", type=int, default=256, help="video resolution")
    ap.add_argument("--num-frames", type=int, default=8, help="frames sampled per clip")
    ap.add_argument("--size", type=int, default=224, help="model input size")
    ap.add_argument("--repeats", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as d:
        paths = make_videos(Path(d), a.videos, a.frames, a.res, a.gop)
        results = {}
        for name, fn in (("naive PyAV loop", naive_batch), ("video.io (decord)", our_batch)):
            fn(paths[:2], a.num_frames, a.size)  # warm-up
            best = float("inf")
            for _ in range(a.repeats):
                t = time.perf_counter()
                batch = fn(paths, a.num_frames, a.size)
                best = min(best, time.perf_counter() - t)
            assert batch.shape == (a.videos, a.num_frames, 3, a.size, a.size)
            results[name] = a.videos * a.num_frames / best
        print(
            f"{a.videos} videos of {a.frames} frames (keyframe every {a.gop}) at {a.res}px, {a.num_frames} "
            f"frames/clip -> {a.size}px batch"
        )
        print(f"{'reader':<20} {'frames/s':>10}")
        for k, v in results.items():
            print(f"{k:<20} {v:>10.1f}")
        ratio = results["video.io (decord)"] / results["naive PyAV loop"]
        print(f"ratio video.io / naive: {ratio:.2f}x (target >= 2x)")


if __name__ == "__main__":
    main()
