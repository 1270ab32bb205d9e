"""Datasets pairing scene graphs with referring expressions or questions, and their collate.

Annotations are checked against their scenes when the dataset is built: an annotation that
names a missing scene or object id, or a scene that fails to load (empty, duplicate ids,
NaN boxes), is a DataError naming the file and id, or, with ``skip_bad=True``, a skipped
sample that is counted (``dataset.skipped``) and reported by the evaluation.
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Callable, Optional, Sequence

import torch
from torch.utils.data import Dataset
from torch_geometric.data import Batch, Data
from tqdm.auto import tqdm

from scene_graph.builder import GraphConfig, build_scene_graph
from scene_graph.data.annotations import Referral, is_view_dependent
from scene_graph.data.scannet import load_scannet_scene
from vlx.data.errors import DataError

CACHE_FORMAT = 2  # bump when the stored graph layout changes


class SceneStore:
    """Loads ScanNet-layout scenes under ``root`` and builds their graphs once (per instance)."""

    def __init__(self, root: str | Path, graph_cfg: GraphConfig, label_vocab: Optional[dict[str, int]] = None,
                 loader: Callable = load_scannet_scene):
        self.root = Path(root)
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

    def get(self, scene_id: str) -> Data:
        if scene_id not in self._graphs:
            try:
                objs = self.loader(self.root, scene_id)
                self._graphs[scene_id] = build_scene_graph(objs, self.graph_cfg, self.label_vocab, seed=0)
            except DataError as e:  # remember the failure: every annotation of the scene shares it
                self._graphs[scene_id] = e
        g = self._graphs[scene_id]
        if isinstance(g, DataError):
            raise g
        return g


class ReferralDataset(Dataset):
    """Items: ``{"graph": Data, "text", "target" (node index), "answer" (int, -1 if none),
    "unique", "hard", "view_dep"}``. ``answer_vocab`` maps answer strings to classes (QA)."""

    def __init__(self, referrals: Sequence[Referral], store: SceneStore,
                 answer_vocab: Optional[dict[str, int]] = None, skip_bad: bool = False, progress: bool = True):
        self.items: list[dict] = []
        self.skipped: list[str] = []
        for ref in tqdm(referrals, desc="annotations", disable=not progress, leave=False):
            try:
                self.items.append(self._make(ref, store, answer_vocab))
            except DataError as e:
                if not skip_bad:
                    raise
                self.skipped.append(str(e))
        if self.skipped:
            warnings.warn(f"skipped {len(self.skipped)} bad annotation(s); first: {self.skipped[0]}")

    @staticmethod
    def _make(ref: Referral, store: SceneStore, answer_vocab: Optional[dict[str, int]]) -> dict:
        if not (store.root / ref.scene_id).is_dir():
            raise DataError(f"{ref.where}: scene {ref.scene_id!r} not found under {store.root}")
        try:
            g = store.get(ref.scene_id)
        except DataError as e:
            raise DataError(f"{ref.where}: scene {ref.scene_id!r} failed to load: {e}") from None
        if not ref.object_ids:
            raise DataError(f"{ref.where}: no object id")
        ids = g.object_id.tolist()
        if ref.object_id not in ids:
            raise DataError(f"{ref.where}: object id {ref.object_id} not in scene {ref.scene_id!r}")
        t = ids.index(ref.object_id)
        labels = g.label_names
        same = sum(l == labels[t] for l in labels)
        answer = -1
        if answer_vocab is not None and ref.answers:
            answer = answer_vocab.get(ref.answers[0].lower(), -1)
        return {"graph": g, "text": ref.text, "target": t, "answer": answer,
                "unique": same == 1, "hard": same > 2, "view_dep": is_view_dependent(ref.text),
                "answers": list(ref.answers)}

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
        "box": batch.box[:, :6], "node_batch": batch.batch, "ptr": ptr,
        "edge_index": batch.edge_index, "edge_attr": batch.edge_attr, "label": batch.label,
        "target": torch.tensor([s["target"] for s in samples]) + ptr[:-1],
        "answer": torch.tensor([s["answer"] for s in samples]),
        "unique": torch.tensor([s["unique"] for s in samples]),
        "hard": torch.tensor([s["hard"] for s in samples]),
        "view_dep": torch.tensor([s["view_dep"] for s in samples]),
        "input_ids": tok["input_ids"], "attention_mask": tok["attention_mask"],
    }
    if "points" in batch:
        out["points"] = batch.points
    return out
