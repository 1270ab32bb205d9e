"""``vlx caption VIDEO --ckpt DIR`` and ``vlx video-features ANNOTATION --out DIR``. Heavy
imports live inside the command functions so that ``vlx --help`` stays fast."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def find_run_config(ckpt: str) -> Path:
    """The ``config.yaml`` the trainer wrote next to a checkpoint (ckpt, its checkpoints dir,
    or the run dir)."""
    p = Path(ckpt).resolve()
    for cand in (p, *p.parents[:3]):
        if (cand / "config.yaml").is_file():
            return cand / "config.yaml"
    from vlx.data.errors import DataError

    raise DataError(f"{ckpt}: no config.yaml found in it or its parent folders (pass --config)")


def add_caption_parser(subparsers) -> None:
    p = subparsers.add_parser("caption", help="caption a video (or answer --prompt) with a trained video captioner")
    p.add_argument("video", nargs="+", help="video file(s) (mp4, avi, webm, ...); several are captioned in batches")
    p.add_argument(
        "--ckpt", required=True, help="checkpoint dir, checkpoints dir or run dir of a video_captioning/video_qa run"
    )
    p.add_argument("--config", default=None, help="the run's config (default: config.yaml next to the checkpoint)")
    p.add_argument("--prompt", default=None, help="question for QA models (default: the recipe's caption prompt)")
    p.add_argument("--max-new-tokens", type=int, default=None)
    p.add_argument("--num-beams", type=int, default=None)
    p.add_argument("--do-sample", action="store_true")
    p.add_argument("--temperature", type=float, default=None)
    p.add_argument("--top-p", type=float, default=None)
    p.add_argument("--top-k", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=8, help="videos per generate call")
    p.add_argument("--device", default="auto", help="auto (cuda when present), cpu, cuda, cuda:1, ...")
    p.set_defaults(func=run_caption)


def run_caption(args: argparse.Namespace) -> int:
    import torch

    from video.io import load_video
    from video.models.captioner import build_video_captioner
    from video.recipes import _eval_load
    from vlx.cli import load_recipe_config
    from vlx.train.checkpoint import load_model_weights
    from vlx.utils import pick_device

    config = args.config or str(find_run_config(args.ckpt))
    _, cfg = load_recipe_config(config, [])
    if not hasattr(cfg.model, "lm"):
        print(f"{config}: recipe {cfg.recipe!r} is not a captioner (video_captioning / video_qa)", file=sys.stderr)
        return 2
    model = build_video_captioner(cfg.model)
    load_model_weights(model, args.ckpt)
    device = pick_device(args.device)
    model.to(device).eval()
    load = _eval_load(cfg.data.load)
    gen = {
        k: v
        for k, v in dict(
            max_new_tokens=args.max_new_tokens,
            num_beams=args.num_beams,
            temperature=args.temperature,
            top_p=args.top_p,
            top_k=args.top_k,
        ).items()
        if v is not None
    }
    if args.do_sample:
        gen["do_sample"] = True
    prompt = args.prompt if args.prompt is not None else cfg.prompt
    for s in range(0, len(args.video), args.batch_size):
        paths = args.video[s : s + args.batch_size]
        # uint8 frames go to the device as they are; the model normalises them there
        frames = torch.stack([load_video(p, load)[0] for p in paths]).to(device)
        with torch.no_grad():
            out = model.generate(frames, [prompt] * len(paths), **gen)
        for p, caption in zip(paths, out):
            print(caption if len(args.video) == 1 else f"{p}\t{caption}")
    return 0


def add_features_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "video-features", help="decode videos once and cache frame features (sharded safetensors, resumable)"
    )
    p.add_argument("annotation", help="annotation file (see --format)")
    p.add_argument("--format", default="jsonl", choices=["msrvtt", "msvd", "webvid", "qa", "jsonl"])
    p.add_argument("--video-root", default=None)
    p.add_argument("--split", default=None)
    p.add_argument("--out", required=True, help="output folder for shard-*.safetensors")
    p.add_argument("--encoder", default="vit", help="registered image encoder (vit, hf_clip_vision, ...)")
    p.add_argument("--preset", default="tiny")
    p.add_argument("--path", default=None, help="local model dir for HF encoders")
    p.add_argument(
        "--weights", default=None, help="optional .safetensors with trained encoder weights (e.g. from a checkpoint)"
    )
    p.add_argument("--weights-prefix", default="dual.image_encoder.", help="key prefix of the encoder inside --weights")
    p.add_argument("--num-frames", type=int, default=8)
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--shard-size", type=int, default=256)
    p.add_argument("--batch-size", type=int, default=16, help="videos per encoder call (all their frames at once)")
    p.add_argument("--num-workers", type=int, default=2, help="DataLoader workers decoding ahead")
    p.add_argument("--device", default="auto", help="auto (cuda when present), cpu, cuda, cuda:1, ...")
    p.set_defaults(func=run_features)


def run_features(args: argparse.Namespace) -> int:
    import json

    import torch

    from video.datasets import AnnotationConfig, load_annotations
    from video.features import extract_features
    from video.io import SamplerConfig, VideoLoadConfig, frames_to_model
    from vlx.data.transforms import IMAGE_MEAN, IMAGE_STD
    from vlx.encoders import EncoderConfig, build_image_encoder
    from vlx.utils import pick_device

    records = load_annotations(AnnotationConfig(args.format, args.annotation, args.video_root, args.split))
    enc = build_image_encoder(EncoderConfig(name=args.encoder, preset=args.preset, path=args.path))
    if args.weights:
        from safetensors.torch import load_file

        sd = {
            k[len(args.weights_prefix) :]: v
            for k, v in load_file(args.weights).items()
            if k.startswith(args.weights_prefix)
        }
        enc.load_state_dict(sd)
    device = pick_device(args.device)
    enc.to(device).eval()

    def encode(frames: torch.Tensor) -> torch.Tensor:  # uint8 (N, H, W, 3) already on the device
        x = frames_to_model(frames, IMAGE_MEAN, IMAGE_STD)  # normalised on the device
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            return enc(x).pooled

    load = VideoLoadConfig(sampler=SamplerConfig("uniform", args.num_frames), size=args.size)
    res = extract_features(
        records,
        load,
        encode,
        args.out,
        args.shard_size,
        batch_size=args.batch_size,
        num_workers=args.num_workers,
        device=device,
    )
    print(json.dumps(res))
    return 0


def add_merge_lora_parser(sub) -> None:
    """``vlx video merge-lora RUN --out DIR`` (``sub``: the ``vlx video`` sub-commands)."""
    m = sub.add_parser("merge-lora", help="a video_llava run (LoRA folded in) as one plain Hugging Face directory")
    m.add_argument("run", help="run dir, checkpoints dir or checkpoint dir of a video_llava run")
    m.add_argument("--out", required=True, help="output directory (loads with <Class>.from_pretrained)")
    m.add_argument("--config", default=None, help="the run's config (default: config.yaml next to the checkpoint)")
    m.set_defaults(func=run_merge_lora)


def run_merge_lora(args: argparse.Namespace) -> int:
    from video.recipes_llava import merge_lora_run

    merge_lora_run(args.run, args.out, args.config or str(find_run_config(args.run)))
    return 0
