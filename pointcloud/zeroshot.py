"""Zero-shot point-cloud classification through an image-text model's image tower.

``pointclip_v2``: PointCLIP V2 realistic projections (``projection.realistic_projection``);
``clip2point``: depth images from ``render``: ``"clip2point"`` (CLIP2Point's renderer,
``render_clip2point.clip2point_depth``; the default, except for a ``clip2point`` run trained on
vlx's images) or ``"vlx_depth"`` (``projection.depth_maps``). CLIP2Point's released
depth-encoder weights load into a CLIP checkpoint's image tower (``depth_weights``), as its
zeroshot.py loads them into a copy of CLIP's visual model. Each view is encoded by
the teacher's image tower, scored against prompt-ensembled class texts, and the per-view
logits are summed with ``view_weights`` (CLIP2Point sums views with equal weight).
Prompt templates live in ``pointcloud/data/zeroshot_prompts.json``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from pointcloud import projection
from pointcloud.models.clip2point import class_text_embeddings
from pointcloud.render_clip2point import check_render, depth_images
from vlx.config import ConfigError

PROMPTS_FILE = Path(__file__).resolve().parent / "data" / "zeroshot_prompts.json"
METHODS = {"pointclip_v2": "pointclip", "clip2point": "clip2point"}


def prompt_templates(name: str) -> list[str]:
    table = json.loads(PROMPTS_FILE.read_text())
    if name not in table:
        raise ConfigError(f"prompts: unknown template set {name!r} (have: {sorted(table)})")
    return [t.replace("{}", "{shape}") for t in table[name]["templates"]]


class DepthTower(nn.Module):
    """A ``clip2point`` run's pre-trained depth encoder as the image tower (it reads the first
    channel of the grey renders) beside its frozen teacher's text tower: CLIP2Point's own
    zero-shot, depth features against the image-text model's class texts. ``render``: the
    depth images the run was pre-trained on (its config's ``render``)."""

    def __init__(self, depth: nn.Module, teacher: nn.Module, render: str = "clip2point"):
        super().__init__()
        self.depth, self.teacher = depth, teacher
        self.render = check_render(render)

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        return self.depth(images[:, :1])

    def encode_text(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.teacher.encode_text(input_ids, attention_mask)


def load_run_teacher(path: str | Path):
    """(image tower + text tower, tokenizer, image_size) from a run directory (its
    ``config.yaml`` and checkpoint): a ``pc_image_text`` run (the teacher itself) or a
    ``clip2point`` run (its depth encoder beside its teacher's text tower, ``DepthTower``)."""
    from pointcloud.recipes import Clip2PointConfig, ImageTextConfig, load_teacher
    from vlx.config import from_dict, read_yaml
    from vlx.tokenizers import build_tokenizer

    p = Path(path)
    cfg_file = p / "config.yaml"
    if not cfg_file.is_file():
        raise ConfigError(f"{p}: no config.yaml (expected a pc_image_text or clip2point run directory)")
    raw = read_yaml(cfg_file)
    if raw.get("recipe") == "clip2point":
        from pointcloud.models.clip2point import Clip2PointPretrainer, DepthEncoder
        from vlx.models.dual_encoder import build_dual_encoder
        from vlx.train.checkpoint import load_model_weights

        # runs from before the ``render`` key existed were pre-trained on vlx's depth maps
        keep = {
            "render": "vlx_depth",
            **{k: raw[k] for k in ("teacher", "depth_encoder", "image_size", "render") if k in raw},
        }
        c = from_dict(Clip2PointConfig, keep, str(cfg_file))
        if c.teacher.model.name_or_path:
            raise ConfigError(f"{cfg_file}: a clip2point run on a checkpoint teacher; pass that checkpoint as --model")
        # the run's checkpoint holds the frozen teacher too: no need for teacher.ckpt's path
        teacher = build_dual_encoder(c.teacher.model)
        model = Clip2PointPretrainer(teacher, DepthEncoder(c.depth_encoder, teacher.embed_dim), c.image_size)
        load_model_weights(model, str(p))
        tower = DepthTower(model.depth, model.teacher, c.render).eval()
        return tower, build_tokenizer(c.teacher.tokenizer), c.image_size
    keep = {k: raw[k] for k in ("model", "tokenizer", "image_size") if k in raw}
    cfg = from_dict(ImageTextConfig, keep, str(cfg_file))
    return load_teacher(cfg.model, str(p)), build_tokenizer(cfg.tokenizer), cfg.image_size


def load_zeroshot_teacher(name_or_path: str | Path, depth_weights: str | Path | None = None):
    """(DualEncoder, tokenizer, image_size, mean, std) for zero-shot: a ``pc_image_text`` run
    directory (``config.yaml``; renders normalised with the mean/std its training images had)
    or a ``clip2point`` run directory (depth images fed in [0, 1], as in its pre-training),
    else a vlx preset or a local HF CLIP / SigLIP directory through
    ``vlx.create_model_and_transforms`` (its size, mean and std). ``depth_weights``: a
    CLIP2Point checkpoint loaded into that CLIP's image tower and projection (CLIP only)."""
    p = Path(name_or_path)
    is_run = (p / "config.yaml").is_file() and not (p / "config.json").is_file()
    if depth_weights and _hf_kind(p) != "clip":
        raise ConfigError(
            f"depth_weights: CLIP2Point's weights load into a local HF CLIP checkpoint's image tower; "
            f"--model {name_or_path} is not one"
        )
    if is_run:
        dual, tok, size = load_run_teacher(p)
        if isinstance(dual, DepthTower):  # its depth encoder was trained on depth_maps' [0, 1] images
            return dual, tok, size, None, None
        # a pc_image_text teacher was trained on renders CLIP-normalised by vlx's image loader
        from vlx.data.transforms import IMAGE_MEAN, IMAGE_STD

        return dual, tok, size, IMAGE_MEAN, IMAGE_STD
    from vlx.factory import create_model_and_transforms, get_tokenizer

    model, _, val = create_model_and_transforms(str(name_or_path))
    dual = model.dual.eval().requires_grad_(False)
    if depth_weights:
        from pointcloud.models.clip2point_weights import load_clip2point_depth_encoder

        # the checkpoint's keys are CLIPVisionModelWithProjection's: a view sharing the modules
        view = nn.Module()
        view.vision_model, view.visual_projection = dual.image_encoder.vision_model, dual.image_proj
        load_clip2point_depth_encoder(view, depth_weights)
    return dual, get_tokenizer(str(name_or_path)), val.output_size[0], val.mean, val.std


def _hf_kind(p: Path) -> str | None:
    """The ``model_type`` of a local HF checkpoint directory (``config.json``), else None."""
    if not (p / "config.json").is_file():
        return None
    try:
        return json.loads((p / "config.json").read_text()).get("model_type")
    except (json.JSONDecodeError, AttributeError):
        return None


def default_render(teacher) -> str:
    """The depth images a teacher gets for ``method="clip2point"`` unless told: a clip2point
    run's own (``DepthTower.render``), else CLIP2Point's renderer."""
    return getattr(teacher, "render", "clip2point")


def render_views(points: torch.Tensor, method: str, views, image_size: int, render: str = "clip2point") -> torch.Tensor:
    """points (B, N, 3) -> (B, V, 3, S, S) images in [0, 1] (grey replicated to RGB);
    ``render`` picks ``clip2point``'s depth images (``render_clip2point.depth_images``)."""
    if method == "pointclip_v2":
        img = projection.realistic_projection(points, views, image_size)
    elif method == "clip2point":
        img = depth_images(points, views, image_size, render)
    else:
        raise ConfigError(f"method: expected one of {sorted(METHODS)}, got {method!r}")
    return img.unsqueeze(2).expand(-1, -1, 3, -1, -1)


@torch.no_grad()
def zero_shot_logits(
    teacher,
    text: torch.Tensor,
    points: torch.Tensor,
    method: str,
    views="clip2point_6",
    image_size: int = 224,
    view_weights: list[float] | None = None,
    batch_size: int = 32,
    mean: tuple[float, ...] | None = None,
    std: tuple[float, ...] | None = None,
    render: str = "clip2point",
) -> torch.Tensor:
    """(n, C) summed weighted per-view logits for clouds (n, N, 3); rendered views in [0, 1]
    are normalised with the teacher's ``mean`` / ``std`` when given (CLIP2Point's renderer
    ends with OpenAI CLIP's mean/std, which OpenAI CLIP checkpoints carry)."""
    device = text.device
    out = []
    for s in range(0, len(points), batch_size):
        imgs = render_views(points[s : s + batch_size].to(device), method, views, image_size, render)
        b, V = imgs.shape[:2]
        if mean is not None:
            m = torch.tensor(mean, device=device).view(1, 1, 3, 1, 1)
            sd = torch.tensor(std, device=device).view(1, 1, 3, 1, 1)
            imgs = (imgs - m) / sd
        w = torch.ones(V, device=device) if view_weights is None else torch.tensor(view_weights, device=device)
        if len(w) != V:
            raise ConfigError(f"view_weights: {len(w)} weights for {V} views")
        feats = F.normalize(teacher.encode_image(imgs.reshape(b * V, 3, image_size, image_size)), dim=-1)
        logits = (feats @ text.T).view(b, V, -1)
        out.append((logits * w[None, :, None]).sum(1).float().cpu())
    return torch.cat(out)


def evaluate(logits: torch.Tensor, labels: np.ndarray, n_classes: int) -> dict:
    pred = logits.argmax(1).numpy()
    correct = pred == labels
    per_class = [float(correct[labels == c].mean() * 100) for c in range(n_classes) if (labels == c).any()]
    return {
        "top1": float(correct.mean() * 100),
        "mean_class_acc": float(np.mean(per_class)),
        "n": int(len(labels)),
        "chance": 100.0 / n_classes,
    }


def run_zeroshot(
    model: str,
    data: str,
    out: str,
    method: str = "pointclip_v2",
    split: str = "test",
    variant: str = "main_split",
    views: str = "clip2point_6",
    image_size: int | None = None,
    prompts: str | None = None,
    view_weights: list[float] | None = None,
    limit: int = 0,
    points: int = -1,
    render: str | None = None,
    depth_weights: str | None = None,
) -> dict:
    """Read the benchmark, classify zero-shot, write ``<out>/eval.json``; returns the report.

    ``render`` (``clip2point`` method only): ``"clip2point"`` or ``"vlx_depth"``; None takes
    ``default_render`` (CLIP2Point's, or a clip2point run's own). ``depth_weights``: a
    CLIP2Point checkpoint for the CLIP image tower (``load_zeroshot_teacher``).

    ``points``: subsample every cloud to this many by farthest point sampling (from point 0,
    as pointnet2's CUDA op); 0 keeps all; -1 (default) is CLIP2Point's choice: 1024 for
    ``clip2point`` on ScanObjectNN (its zeroshot.py), all points otherwise."""
    from pointcloud.data.benchmarks import read_benchmark

    if method not in METHODS:
        raise ConfigError(f"method: expected one of {sorted(METHODS)}, got {method!r}")
    if method != "clip2point" and render is not None:
        raise ConfigError(f"render: only for method 'clip2point' (method is {method!r})")
    if render is not None:
        check_render(render)
    bench = read_benchmark(data, split, variant)
    teacher, tok, teacher_size, mean, std = load_zeroshot_teacher(model, depth_weights)
    if method == "clip2point":
        render = render or default_render(teacher)
    size = image_size or teacher_size
    templates = prompt_templates(prompts or METHODS[method])
    names = [n.replace("_", " ") for n in bench.class_names]
    text = class_text_embeddings(teacher, tok, names, templates)
    pts, labels = bench.points, bench.labels
    if limit:
        pts, labels = pts[:limit], labels[:limit]
    if points < 0:
        points = 1024 if method == "clip2point" and bench.name == "scanobjectnn" else 0
    clouds = torch.from_numpy(pts)
    if 0 < points < clouds.shape[1]:
        from pointcloud.ops import farthest_point_sample, gather_points

        clouds = gather_points(clouds, farthest_point_sample(clouds, points))
    logits = zero_shot_logits(
        teacher, text, clouds, method, views, size, view_weights, mean=mean, std=std, render=render or "clip2point"
    )
    report = {
        "benchmark": bench.name,
        "method": method,
        "render": render,
        "model": str(model),
        "depth_weights": str(depth_weights) if depth_weights else None,
        "files": bench.files,
        "views": views,
        "view_weights": view_weights,
        "image_size": size,
        "points_per_cloud": int(clouds.shape[1]),
        "templates": templates,
        **evaluate(logits, labels, len(bench.class_names)),
    }
    o = Path(out)
    o.mkdir(parents=True, exist_ok=True)
    (o / "eval.json").write_text(json.dumps(report, indent=2))
    return report
