"""Datasets pairing scene graphs with referring expressions or questions, and their collate.

Annotations are checked against their scenes when the dataset is built: an annotation that
names a missing scene or object id, or a scene that fails to load (empty, duplicate ids,
NaN boxes), is a DataError naming the file and id, or, with ``skip_bad=True``, a skipped
sample that is counted (``dataset.skipped``) and reported by the evaluation.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from torch.utils.data import Dataset
from torch_geometric.data import Batch, Data
from tqdm.auto import tqdm

from scene_graph.builder import GraphConfig, build_scene_graph
from scene_graph.data.annotations import Referral, scanrefer_unique
from scene_graph.data.proposals import proposal_objects
from scene_graph.metrics import box_iou_3d
from scene_graph.data.scannet import load_scannet_scene
from vlx.data.errors import DataError

CACHE_FORMAT = 2  # bump when the stored graph layout changes


class SceneStore:
    """Loads ScanNet-layout scenes under ``root`` and builds their graphs once (per instance)."""

    def __init__(
        self,
        root: str | Path,
        graph_cfg: GraphConfig,
        label_vocab: dict[str, int] | None = None,
        loader: Callable = load_scannet_scene,
        proposals: dict[str, dict] | None = None,
        scan2cad: dict[str, dict] | None = None,
        scan2cad_bad_mappings: set[tuple[str, str]] | None = None,
    ):
        self.root = Path(root)
        # Scan2CAD's oriented boxes and fronts per scene (scene_graph.data.scan2cad), for sr3d's
        # left/right/front/behind; scenes it does not list have no fronts.
        self.scan2cad = scan2cad
        self.scan2cad_bad_mappings = scan2cad_bad_mappings  # referit3d's bad_mappings.json pairs
        # data.proposals "pred": graphs over predicted proposals (scene_graph.data.proposals);
        # the annotated boxes ride along as gt_box / gt_object_id / gt_label_names.
        self.proposals = proposals
        self.graph_cfg = graph_cfg
        self.label_vocab = label_vocab
        self.loader = loader
        self._graphs: dict[str, Data | DataError] = {}

    def save(self, path: str | Path) -> None:
        """Write the built graphs (not the failures) to ``path`` so later runs skip the building.

        Only plain tensors, strings and lists are stored (``Data.to_dict()``), so :meth:`load`
        can read the file with ``weights_only=True``; written to a temporary file and renamed,
        so a kill mid-write leaves either the old file or none.
        """
        p = Path(path)
        graphs = {k: dict(g.to_dict()) for k, g in self._graphs.items() if isinstance(g, Data)}
        tmp = p.with_name(f".{p.name}.{os.getpid()}.tmp")
        try:
            torch.save({"format": CACHE_FORMAT, "graphs": graphs}, tmp)
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
            os.replace(tmp, p)
        finally:
            tmp.unlink(missing_ok=True)

    def load(self, path: str | Path) -> bool:
        """Read graphs saved by :meth:`save`; False when ``path`` does not exist.

        The file is read with ``weights_only=True``: a file that needs arbitrary unpickling
        (e.g. one planted in a shared dataset folder) is refused with a DataError, never run.
        """
        p = Path(path)
        if not p.is_file():
            return False
        try:
            blob = torch.load(p, weights_only=True)
        except Exception as e:  # pickle.UnpicklingError for disallowed globals, RuntimeError for torn files
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise DataError(
                f"{p}: not a scene-graph cache of plain tensors (refused to unpickle: {first}); delete it to rebuild"
            ) from None
        if not isinstance(blob, dict) or blob.get("format") != CACHE_FORMAT or not isinstance(blob.get("graphs"), dict):
            raise DataError(f"{p}: not a scene-graph cache (format {CACHE_FORMAT}); delete it to rebuild")
        self._graphs.update({k: Data.from_dict(d) for k, d in blob["graphs"].items()})
        return True

    def _build(self, objs) -> Data:
        if self.proposals is None:
            return build_scene_graph(objs, self.graph_cfg, self.label_vocab, seed=0)
        if objs.scene_id not in self.proposals:
            raise DataError(f"scene {objs.scene_id!r}: no proposals in the proposal file")
        prop = self.proposals[objs.scene_id]
        g = build_scene_graph(proposal_objects(objs, prop), self.graph_cfg, self.label_vocab, seed=0)
        g.gt_box = objs.boxes[:, :6].float()
        g.gt_object_id = torch.tensor(objs.object_ids, dtype=torch.long)
        g.gt_label_names = list(objs.labels)
        g.proposal_score = torch.as_tensor(prop["scores"], dtype=torch.float32)
        if "features" in prop:
            g.proposal_features = torch.as_tensor(prop["features"], dtype=torch.float32)
        return g

    def get(self, scene_id: str) -> Data:
        if scene_id not in self._graphs:
            try:
                objs = self.loader(self.root, scene_id)
                if self.scan2cad is not None and scene_id in self.scan2cad:
                    from scene_graph.data.scan2cad import scan2cad_fronts

                    objs.fronts, objs.oriented = scan2cad_fronts(
                        objs.object_ids, self.scan2cad[scene_id], objs.labels, self.scan2cad_bad_mappings
                    )
                self._graphs[scene_id] = self._build(objs)
            except DataError as e:  # remember the failure: every annotation of the scene shares it
                self._graphs[scene_id] = e
        g = self._graphs[scene_id]
        if isinstance(g, DataError):
            raise g
        return g


class ReferralDataset(Dataset):
    """Items: ``{"graph": Data, "text", "target" (node index, -1 when the annotation names no
    object), "answer" (int, -1 if none), "unique", "hard", "view_dep"}``.

    ``answer_vocab`` maps answer strings to classes (QA). The splits follow the benchmarks:
    ``unique`` by ScanRefer's rule (``unique_rule="scanrefer"``: the target's class occurs once
    among the split's annotated objects of the scene, classes from ``classify``, e.g. the label
    map's ScanNet18; see :func:`~scene_graph.data.annotations.scanrefer_unique`) or vlx's
    ``"scene"`` variant (the target's raw label occurs once among all the scene's objects);
    ``hard``: more than 2 objects of the target's class (from referit3d's stimulus id when
    present, else counted in the scene); ``view_dep``: referit3d's words among the tokens.
    ``prediction_only``: annotations without object ids (e.g. ScanQA's test splits) are kept
    with target -1, for runs that only predict.
    """

    def __init__(
        self,
        referrals: Sequence[Referral],
        store: SceneStore,
        answer_vocab: dict[str, int] | None = None,
        skip_bad: bool = False,
        progress: bool = True,
        unique_rule: str = "scanrefer",
        classify: Callable[[str], object] | None = None,
        prediction_only: bool = False,
    ):
        if unique_rule not in ("scanrefer", "scene"):
            raise ValueError(f"unique_rule must be 'scanrefer' or 'scene', got {unique_rule!r}")
        self.items: list[dict] = []
        self.skipped: list[str] = []
        self.prediction_only = prediction_only
        self.proposals = "pred" if store.proposals is not None else "gt"
        with_ids = [r for r in referrals if r.object_ids]
        flags = (
            dict(zip(map(id, with_ids), scanrefer_unique(with_ids, classify))) if unique_rule == "scanrefer" else None
        )
        for ref in tqdm(referrals, desc="annotations", disable=not progress, leave=False):
            try:
                item = self._make(ref, store, answer_vocab, prediction_only)
                if flags is not None and item["target"] >= 0:
                    item["unique"] = flags[id(ref)]
                self.items.append(item)
            except DataError as e:
                if not skip_bad:
                    raise
                self.skipped.append(str(e))
        if self.skipped:
            warnings.warn(f"skipped {len(self.skipped)} bad annotation(s); first: {self.skipped[0]}", stacklevel=2)

    @staticmethod
    def _make(
        ref: Referral, store: SceneStore, answer_vocab: dict[str, int] | None, prediction_only: bool = False
    ) -> dict:
        if not (store.root / ref.scene_id).is_dir() and not (store.root / f"{ref.scene_id}.npz").is_file():
            raise DataError(f"{ref.where}: scene {ref.scene_id!r} not found under {store.root}")
        try:
            g = store.get(ref.scene_id)
        except DataError as e:
            raise DataError(f"{ref.where}: scene {ref.scene_id!r} failed to load: {e}") from None
        answer = -1
        if answer_vocab is not None and ref.answers:
            answer = answer_vocab.get(ref.answers[0].lower(), -1)
        base = {"graph": g, "text": ref.text, "answer": answer, "answers": list(ref.answers),
                "view_dep": ref.view_dependent, "scene_id": ref.scene_id, "ann_id": ref.ann_id}  # fmt: skip
        if not ref.object_ids:
            if prediction_only:
                return {**base, "target": -1, "gt_box": torch.zeros(6), "unique": False, "hard": False, "same_class": 0}
            raise DataError(f"{ref.where}: no object id (a test split? use it for prediction only)")
        if "gt_object_id" in g:  # predicted proposals: the target is the best-overlapping one
            ids, labels = g.gt_object_id.tolist(), g.gt_label_names
        else:
            ids, labels = g.object_id.tolist(), g.label_names
        if ref.object_id not in ids:
            raise DataError(f"{ref.where}: object id {ref.object_id} not in scene {ref.scene_id!r}")
        k = ids.index(ref.object_id)
        same = sum(l == labels[k] for l in labels)
        hard = ref.n_objects > 2 if ref.n_objects is not None else same > 2
        if "gt_object_id" in g:
            gt_box = g.gt_box[k]
            t = int(box_iou_3d(g.box[:, :6], gt_box.expand(g.num_nodes, 6)).argmax())
        else:
            gt_box, t = g.box[k, :6], k
        return {**base, "target": t, "gt_box": gt_box, "unique": same == 1, "hard": hard, "same_class": same}

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, k: int) -> dict:
        return self.items[k]


def collate_referrals(samples: list[dict], tokenizer: Callable[[list[str]], dict]) -> dict:
    """A batch as a flat dict of tensors (the trainer moves those to the device):
    ``points (N, P, 6)``, ``box (N, 6)``, ``node_batch (N,)``, ``edge_index (2, E)``,
    ``edge_attr (E, F)``, ``label (N,)``, ``target (B,)`` global node index, ``answer (B,)``,
    ``unique/hard/view_dep (B,)``, ``input_ids, attention_mask (B, L)``, ``ptr (B+1,)``."""
    batch = Batch.from_data_list([s["graph"] for s in samples])
    tok = tokenizer([s["text"] for s in samples])
    ptr = batch.ptr
    out = {
        "box": batch.box[:, :6],
        "node_batch": batch.batch,
        "ptr": ptr,
        "edge_index": batch.edge_index,
        "edge_attr": batch.edge_attr,
        "label": batch.label,
        "gt_box": torch.stack([s["gt_box"] for s in samples]),
        "target": _global_targets(torch.tensor([s["target"] for s in samples]), ptr),
        "answer": torch.tensor([s["answer"] for s in samples]),
        "unique": torch.tensor([s["unique"] for s in samples]),
        "hard": torch.tensor([s["hard"] for s in samples]),
        "view_dep": torch.tensor([s["view_dep"] for s in samples]),
        "input_ids": tok["input_ids"],
        "attention_mask": tok["attention_mask"],
    }
    if "points" in batch:
        out["points"] = batch.points
    return out


def _global_targets(target: torch.Tensor, ptr: torch.Tensor) -> torch.Tensor:
    """Per-sample node index -> index into the batch's nodes; -1 (no target) stays -1."""
    return torch.where(target >= 0, target + ptr[:-1], target)
