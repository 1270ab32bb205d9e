"""Recipes: 3D visual grounding (``sg_grounding``), 3D QA (``sg_qa``) and scene-graph
pre-training (``sg_pretrain``) on ScanNet-layout scenes with ScanRefer / Sr3D / ScanQA
annotations; procedural rooms are generated into ``data.root`` when missing."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch
from torch.utils.data import DataLoader

from scene_graph.builder import GraphConfig
from scene_graph.data.annotations import read_referit3d_csv, read_scanqa, read_scanrefer
from scene_graph.data.dataset import ReferralDataset, SceneStore, collate_referrals
from scene_graph.data.rooms import RoomConfig, generate_rooms, rooms_ready
from scene_graph.losses import PretrainLossConfig, SceneGraphPretrainer
from scene_graph.metrics import box_iou_3d, candidate_accuracy, grounding_accuracy, qa_exact_match, qa_meteor
from scene_graph.models import SceneModelConfig, build_scene_model, predict_objects
from vlx.config import ConfigError
from vlx.data.errors import DataError
from vlx.tokenizers import TokenizerConfig, build_tokenizer
from vlx.train.build import freeze_unused
from vlx.train.recipe import RecipeConfig, Task, register_recipe
from vlx.utils import to_device

READERS = {"scanrefer": read_scanrefer, "referit3d": read_referit3d_csv, "scanqa": read_scanqa}


@dataclass
class SceneDataConfig:
    root: str = "data/scene_graph_rooms"
    scans: str = "scans"  # ScanNet-layout scenes, relative to root
    train_file: str = "scanrefer_train.json"
    val_file: str = "scanrefer_val.json"
    format: Literal["scanrefer", "referit3d", "scanqa"] = "scanrefer"
    generate: bool = True  # write procedural rooms into root when missing
    rooms: RoomConfig = field(default_factory=RoomConfig)
    graph: GraphConfig = field(default_factory=GraphConfig)
    skip_bad: bool = False  # skip (and count) bad annotations instead of failing
    cache_graphs: bool = True  # keep built graphs in <root>/graphs_<hash>.pt for later runs
    # Candidate objects: "gt" the annotated instances (ScanRefer's GT boxes), "pred" the boxes of
    # a predicted-proposal file (see scene_graph.data.proposals), matched to targets by IoU.
    proposals: Literal["gt", "pred"] = "gt"
    proposal_file: str | None = None  # relative to root; required when proposals is "pred"
    # ScanRefer's unique/multiple: "scanrefer" (the target's class once among the split's
    # annotated objects of the scene; classes are ScanRefer's 18 via label_map when given, else
    # the raw object_name) or "scene" (vlx's variant: its raw label once among all the scene's objects).
    unique_rule: Literal["scanrefer", "scene"] = "scanrefer"
    label_map: str | None = None  # scannetv2-labels.combined.tsv, relative to root
    # Object fronts for sr3d's left/right/front/behind: referit3d's Scan2CAD files, relative to
    # root (object_oriented_bboxes_aligned_scans.json and shapenet_has_front.csv); see
    # scene_graph.data.scan2cad. Without them no object has a front.
    scan2cad: str | None = None
    scan2cad_has_front: str | None = None
    # referit3d's bad_mappings.json (under root): listed (label, ShapeNet category) pairs keep
    # their front but not their oriented box, as referit3d's Sr3D generation reads them.
    scan2cad_bad_mappings: str | None = None
    # referit3d's default filters for Nr3D / Sr3D csv files (mentions_target_class, <= 24 tokens).
    referit3d_filters: bool = True
    max_tokens: int = 24
    max_train: int | None = None
    max_val: int | None = None


@dataclass
class SceneGraphRecipeConfig(RecipeConfig):
    model: SceneModelConfig = field(default_factory=SceneModelConfig)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    data: SceneDataConfig = field(default_factory=SceneDataConfig)
    init_from: str | None = None  # a checkpoint dir (e.g. of sg_pretrain) to start from
    eval_batch_size: int = 64
    meteor: bool = True  # QA: ScanQA's METEOR through pycocoevalcap when Java is on the PATH


@dataclass
class PretrainRecipeConfig(SceneGraphRecipeConfig):
    losses: PretrainLossConfig = field(default_factory=PretrainLossConfig)


def _prepare(cfg: SceneDataConfig) -> Path:
    root = Path(cfg.root)
    if cfg.generate and not rooms_ready(root, cfg.rooms):
        for stale in root.glob("graphs_*.pt"):  # graphs of the rooms being replaced
            stale.unlink()
        generate_rooms(root, cfg.rooms)
    if not (root / cfg.train_file).is_file():
        raise ConfigError(f"data.train_file: {root / cfg.train_file} not found (data.generate is {cfg.generate})")
    return root


def make_store(cfg: SceneDataConfig) -> SceneStore:
    """The scene store of ``cfg``: annotated instances, or predicted proposals (``proposals: pred``)."""
    scans = Path(cfg.root) / cfg.scans
    proposals = None
    if cfg.proposals == "pred":
        if not cfg.proposal_file:
            raise ConfigError("data.proposal_file: required when data.proposals is 'pred'")
        from scene_graph.data.proposals import read_proposals

        known = {d.name for d in scans.iterdir() if d.is_dir()} | {f.stem for f in scans.glob("*.npz")}
        proposals = read_proposals(Path(cfg.root) / cfg.proposal_file, known)
    elif cfg.proposals != "gt":
        raise ConfigError(f"data.proposals: expected 'gt' or 'pred', got {cfg.proposals!r}")
    scan2cad = bad = None
    if cfg.scan2cad:
        from scene_graph.data.scan2cad import read_bad_mappings, read_has_front, read_scan2cad_boxes

        front = read_has_front(Path(cfg.root) / cfg.scan2cad_has_front) if cfg.scan2cad_has_front else None
        scan2cad = read_scan2cad_boxes(Path(cfg.root) / cfg.scan2cad, front)
        if cfg.scan2cad_bad_mappings:
            bad = read_bad_mappings(Path(cfg.root) / cfg.scan2cad_bad_mappings)
    return SceneStore(scans, cfg.graph, proposals=proposals, scan2cad=scan2cad, scan2cad_bad_mappings=bad)


def _scans_fingerprint(scans: Path) -> list:
    """Names, sizes and modification times of the scene files: a changed scene changes the key."""
    if not scans.is_dir():
        return []
    return sorted(
        (str(f.relative_to(scans)), st.st_size, st.st_mtime_ns)
        for f in scans.glob("*/*")
        if f.is_file() and (st := f.stat())
    )


def _file_stamp(root: Path, name: str | None) -> list | None:
    if not name or not (root / name).is_file():
        return None
    st = (root / name).stat()
    return [name, st.st_size, st.st_mtime_ns]


def _cache_path(cfg: SceneDataConfig) -> Path:
    """``<root>/graphs_<md5>.pt``; the key covers everything that changes the graphs: the graph
    and relation settings, ``data.scans``, the proposals used, the room generator's settings
    when rooms are generated, the cache format and the scene files themselves."""
    import hashlib

    from scene_graph.data.dataset import CACHE_FORMAT
    from vlx.config import to_dict

    key = {
        "format": CACHE_FORMAT,
        "graph": to_dict(cfg.graph),
        "scans": cfg.scans,
        "proposals": cfg.proposals,
        "proposal_file": cfg.proposal_file,
        "rooms": to_dict(cfg.rooms) if cfg.generate else None,
        "files": _scans_fingerprint(Path(cfg.root) / cfg.scans),
    }
    if cfg.scan2cad:  # only when set, so the keys of existing caches stay as they were
        key["scan2cad"] = [_file_stamp(Path(cfg.root), f) for f in (cfg.scan2cad, cfg.scan2cad_has_front)]
        if cfg.scan2cad_bad_mappings:
            key["scan2cad"].append(_file_stamp(Path(cfg.root), cfg.scan2cad_bad_mappings))
    digest = hashlib.md5(json.dumps(key, sort_keys=True).encode()).hexdigest()[:10]
    return Path(cfg.root) / f"graphs_{digest}.pt"


def load_splits(cfg: SceneDataConfig, answer_vocab=None) -> tuple[ReferralDataset, ReferralDataset]:
    """Train and val datasets over one scene store (graphs cached under root when allowed)."""
    store = make_store(cfg)
    cached = cfg.cache_graphs and store.load(_cache_path(cfg))
    train = load_split(cfg, "train", store, answer_vocab)
    val = load_split(cfg, "val", store, answer_vocab)
    if cfg.cache_graphs and not cached:
        store.save(_cache_path(cfg))
    return train, val


def read_annotations(cfg: SceneDataConfig, path: Path):
    """The annotations of one file in ``cfg.format`` (referit3d's filters as configured)."""
    if cfg.format == "referit3d":
        return read_referit3d_csv(
            path,
            mentions_target_class_only=cfg.referit3d_filters,
            max_tokens=cfg.max_tokens if cfg.referit3d_filters else None,
        )
    return READERS[cfg.format](path)


def load_split(cfg: SceneDataConfig, which: str, store: SceneStore, answer_vocab=None) -> ReferralDataset:
    root = Path(cfg.root)
    refs = read_annotations(cfg, root / getattr(cfg, f"{which}_file"))
    limit = cfg.max_train if which == "train" else cfg.max_val
    if limit is not None:
        refs = refs[:limit]
    classify = None
    if cfg.label_map:
        from scene_graph.data.labels import read_label_map

        classify = read_label_map(root / cfg.label_map).scannet18
    return ReferralDataset(
        refs, store, answer_vocab=answer_vocab, skip_bad=cfg.skip_bad, unique_rule=cfg.unique_rule, classify=classify
    )


def _maybe_init(model: torch.nn.Module, path: str | None) -> None:
    """Start from another recipe's checkpoint (e.g. sg_pretrain's, whose weights sit under
    ``model.``): every tensor whose name and shape fit is loaded, heads that differ are not."""
    if not path:
        return
    from safetensors.torch import load_file

    from vlx.train.checkpoint import MODEL_FILE, find_checkpoint

    p = Path(path)
    file = p if p.suffix == ".safetensors" else find_checkpoint(p) / MODEL_FILE
    if not file.is_file():
        raise DataError(f"{file}: checkpoint weights not found (init_from)")
    sd = {k.removeprefix("model."): v for k, v in load_file(str(file)).items()}
    own = model.state_dict()
    keep = {k: v for k, v in sd.items() if k in own and own[k].shape == v.shape}
    if not keep:
        raise DataError(f"{file}: no weights fit this model (init_from)")
    model.load_state_dict(keep, strict=False)


def evaluate_grounding(
    model,
    dataset: ReferralDataset,
    collate,
    device,
    batch_size: int,
    answer_names: list[str] | None = None,
    meteor: bool = False,
) -> dict:
    """ScanRefer Acc@0.25/0.5 (Unique/Multiple/Overall), referit3d candidate accuracy
    (Easy/Hard/View-dep/View-indep), QA EM@1/EM@10 when the model answers, and the number
    of skipped bad samples."""
    model.eval()
    pred_box, gt_box, uniq, hard, vd, correct, topk, answers = [], [], [], [], [], [], [], []
    top1_gt = []  # QA answers read from the annotated object (grounding assumed right)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collate)
    with torch.no_grad():
        for batch in loader:
            batch = to_device(batch, device)
            out = model(batch)
            pred = predict_objects(out["scores"], batch["node_batch"])
            pred_box.append(batch["box"][pred].cpu())
            gt_box.append(batch["gt_box"].cpu())
            correct.append((pred == batch["target"]).cpu())
            uniq.append(batch["unique"].cpu()), hard.append(batch["hard"].cpu()), vd.append(batch["view_dep"].cpu())
            if "answer_logits" in out and answer_names:
                k = min(10, out["answer_logits"].shape[1])
                topk += [[answer_names[j] for j in row] for row in out["answer_logits"].topk(k, -1).indices.tolist()]
                if "answer_logits_gt_object" in out:
                    top1_gt += [[answer_names[j]] for j in out["answer_logits_gt_object"].argmax(-1).tolist()]
    model.train()
    res = {"n": len(dataset), "skipped": len(dataset.skipped), "proposals_pred": float(dataset.proposals == "pred")}
    if not len(dataset):
        return res
    # A uniform pick among the objects sharing the target's class (100% on "unique", 1/k on
    # "multiple"): the reference for a model that knows classes but neither relations nor
    # positions (absolute positions alone already beat it: "front"/"farthest" targets sit
    # near the room's edges).
    share = [it["same_class"] for it in dataset.items]
    res["class_oracle/overall"] = 100.0 * sum(1.0 / k for k in share) / len(share)
    res.update(grounding_accuracy(torch.cat(pred_box), torch.cat(gt_box), torch.cat(uniq)))
    if dataset.proposals == "pred":  # the best proposal of each target: the ceiling of Acc@k here
        known = [it for it in dataset.items if it["target"] >= 0]
        if known:
            best = torch.stack([it["graph"].box[it["target"], :6] for it in known]).float()
            iou = box_iou_3d(best, torch.stack([it["gt_box"] for it in known]).float())
            for thr in (0.25, 0.5):
                res[f"proposal_ceiling/Acc@{thr}"] = float((iou >= thr).float().mean() * 100)
    res.update(
        {f"candidate/{k}": v for k, v in candidate_accuracy(torch.cat(correct), torch.cat(hard), torch.cat(vd)).items()}
    )
    if topk:
        answers = [item["answers"] for item in dataset.items]
        res.update(qa_exact_match(topk, answers))
        res["EM@1_chance"] = 100.0 / len(answer_names)  # uniform guess over the answer vocabulary
        if top1_gt:
            res["EM@1_gt_object"] = qa_exact_match(top1_gt, answers)["EM@1"]
        try:
            from vlx.metrics import caption_metrics

            res.update(caption_metrics([t[0] for t in topk], answers))
        except ImportError:  # the core's caption metrics not installed: EM only
            pass
        if meteor:
            m = qa_meteor([t[0] for t in topk], answers)
            res.update({k: v for k, v in m.items() if k == "METEOR"})
            res["METEOR_available"] = float("METEOR" in m)  # the reason otherwise: qa_meteor's note
    return res


def answer_names(cfg: SceneDataConfig) -> list[str]:
    """The QA answer classes: the train file's first answers, lower-cased and sorted."""
    refs = read_annotations(cfg, Path(cfg.root) / cfg.train_file)
    return sorted({r.answers[0].lower() for r in refs if r.answers})


def _build(cfg: SceneGraphRecipeConfig, qa: bool) -> Task:
    _prepare(cfg.data)
    tok = build_tokenizer(cfg.tokenizer)
    answer_vocab, names = None, None
    if qa:
        names = answer_names(cfg.data)
        answer_vocab = {a: k for k, a in enumerate(names)}
        cfg.model.num_answers = len(names)
    train, val = load_splits(cfg.data, answer_vocab)
    model = build_scene_model(cfg.model)
    _maybe_init(model, cfg.init_from)
    # The pre-training heads get no gradient from grounding/QA (nor the relation head's
    # edge parts without edges): frozen, so DDP finds no parameter without a gradient.
    unused = ["mask_token", "logit_scale", "obj_proj.*", "rel_proj.*", "scene_proj.*", "sent_proj.*"]
    if not cfg.model.gnn.use_edges:
        unused += ["relation.anchor.*", "relation.edge.*"]
    freeze_unused(model, unused)
    collate = lambda samples: collate_referrals(samples, tok)  # noqa: E731
    return Task(
        model=model,
        train_dataset=train,
        collate_fn=collate,
        evaluate=lambda m, device: evaluate_grounding(m, val, collate, device, cfg.eval_batch_size, names, cfg.meteor),
    )


@register_recipe("sg_grounding", SceneGraphRecipeConfig)
def build_grounding(cfg: SceneGraphRecipeConfig) -> Task:
    """Ground ScanRefer / Sr3D expressions: score every object of the scene."""
    return _build(cfg, qa=False)


@register_recipe("sg_qa", SceneGraphRecipeConfig)
def build_qa(cfg: SceneGraphRecipeConfig) -> Task:
    """ScanQA: answer classification plus grounding of the answer's object."""
    return _build(cfg, qa=True)


@register_recipe("sg_pretrain", PretrainRecipeConfig)
def build_pretrain(cfg: PretrainRecipeConfig) -> Task:
    """Scene-graph-guided pre-training: object-, relation- and scene-text contrastive terms,
    masked objects from positions and relations, masked words, relation-swap negatives."""
    _prepare(cfg.data)
    tok = build_tokenizer(cfg.tokenizer)
    train, val = load_splits(cfg.data)
    labels = sorted({l for item in train.items for l in item["graph"].label_names})
    cfg.model.vocab_size = tok.vocab_size
    cfg.model.num_classes = len(labels)
    model = SceneGraphPretrainer(build_scene_model(cfg.model), tok, labels, cfg.losses)
    _maybe_init(model.model, cfg.init_from)
    # Parts only grounding/QA/captioning use (no text cross-attention or edge modulation in
    # the pre-training passes): frozen, so DDP finds no parameter without a gradient.
    freeze_unused(
        model,
        [
            "model.blocks.*.edge_film.*",
            "model.blocks.*.norm_x.*",
            "model.blocks.*.cross.*",
            "model.ground_head.*",
            "model.ground_query.*",
            "model.relation.*",
            "model.caption.*",
        ],
    )
    collate = lambda samples: model.collate(samples)  # noqa: E731
    return Task(
        model=model,
        train_dataset=train,
        collate_fn=collate,
        evaluate=lambda m, device: m.evaluate(val, device, cfg.eval_batch_size),
    )
