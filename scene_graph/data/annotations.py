"""Readers of 3D language annotations: ScanRefer json, Nr3D / Sr3D csv (referit3d), ScanQA
json, and 3DSSG / 3RScan ``objects.json`` + ``relationships.json``. Every reader raises a
one-line DataError naming the file and the entry's index or id."""

from __future__ import annotations

import ast
import csv
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch_geometric.data import Data

from vlx.data.errors import DataError, read_json_file

# referit3d's list of words that make an utterance view-dependent (is_explicitly_view_dependent).
VIEW_DEPENDENT_WORDS = (
    "front",
    "behind",
    "back",
    "right",
    "left",
    "facing",
    "leftmost",
    "rightmost",
    "looking",
    "across",
)


@dataclass
class Referral:
    """One referring expression (ScanRefer / Nr3D / Sr3D) or question (ScanQA)."""

    scene_id: str
    object_ids: list[int]  # target (grounding) or answer objects (QA)
    text: str
    object_name: str = ""
    ann_id: str = ""
    answers: list[str] = field(default_factory=list)  # QA only
    distractor_ids: list[int] = field(default_factory=list)  # Nr3D/Sr3D stimulus
    source: str = ""
    index: int = 0
    tokens: list[str] | None = None  # referit3d's ``tokens`` column (Nr3D / Sr3D)
    mentions_target_class: bool | None = None  # referit3d's ``mentions_target_class`` column
    n_objects: int | None = None  # target + distractors, from referit3d's stimulus id

    @property
    def view_dependent(self) -> bool:
        """referit3d's tagging: a view-dependent word among the tokens (the CSV's ``tokens``
        when present, else the text split on spaces, commas and full stops)."""
        return is_view_dependent(self.tokens if self.tokens is not None else self.text)

    @property
    def object_id(self) -> int:
        return self.object_ids[0]

    @property
    def where(self) -> str:
        return f"{self.source}[{self.index}]"


def _load_json_list(path: str | Path) -> list:
    p = Path(path)
    data = read_json_file(p)
    if not isinstance(data, list):
        raise DataError(f"{p}: expected a JSON list of annotations, got {type(data).__name__}")
    return data


def _need(entry: Any, keys: tuple[str, ...], where: str) -> None:
    if not isinstance(entry, dict):
        raise DataError(f"{where}: expected an object, got {type(entry).__name__}")
    missing = [k for k in keys if k not in entry]
    if missing:
        raise DataError(f"{where}: missing key(s) {', '.join(missing)}")


def _int(v: Any, where: str, key: str) -> int:
    try:
        return int(v)
    except (TypeError, ValueError):
        raise DataError(f"{where}: {key} must be an integer, got {v!r}") from None


def read_scanrefer(path: str | Path) -> list[Referral]:
    """ScanRefer json: ``[{scene_id, object_id, object_name, ann_id, description, ...}]``."""
    out = []
    for k, e in enumerate(_load_json_list(path)):
        where = f"{path}[{k}]"
        _need(e, ("scene_id", "object_id", "description"), where)
        out.append(
            Referral(
                str(e["scene_id"]),
                [_int(e["object_id"], where, "object_id")],
                str(e["description"]),
                object_name=str(e.get("object_name", "")),
                ann_id=str(e.get("ann_id", k)),
                source=str(path),
                index=k,
            )
        )
    return out


def read_scanqa(path: str | Path) -> list[Referral]:
    """ScanQA json: ``[{scene_id, question_id, question, answers, object_ids, object_names}]``
    (the test splits have no answers / object ids)."""
    out = []
    for k, e in enumerate(_load_json_list(path)):
        where = f"{path}[{k}]"
        _need(e, ("scene_id", "question"), where)
        ids = [_int(v, where, "object_ids") for v in e.get("object_ids", [])]
        names = e.get("object_names", [])
        out.append(
            Referral(
                str(e["scene_id"]),
                ids,
                str(e["question"]),
                object_name=str(names[0]) if names else "",
                ann_id=str(e.get("question_id", k)),
                answers=[str(a) for a in e.get("answers", [])],
                source=str(path),
                index=k,
            )
        )
    return out


def decode_stimulus(stimulus_id: str, where: str) -> tuple[str, str, int, int, list[int]]:
    """referit3d's stimulus id ``scene-class-n_objects-target[-distractor...]``."""
    parts = stimulus_id.split("-", maxsplit=4)
    if len(parts) < 4:
        raise DataError(f"{where}: malformed stimulus_id {stimulus_id!r} (scene-class-n-target-distractors)")
    scene, cls, n, target = parts[:4]
    distractors = [_int(x, where, "stimulus_id") for x in parts[4].split("-")] if len(parts) == 5 else []
    return scene, cls, _int(n, where, "stimulus_id"), _int(target, where, "stimulus_id"), distractors


def read_referit3d_csv(
    path: str | Path, mentions_target_class_only: bool = True, max_tokens: int | None = 24
) -> list[Referral]:
    """Nr3D / Sr3D csv with columns ``scan_id, target_id, utterance`` (+ ``stimulus_id``,
    ``instance_type``, ``tokens``, ``mentions_target_class``); distractors and the number of
    same-class objects come from the stimulus id.

    referit3d's default filters, on unless switched off: drop rows whose
    ``mentions_target_class`` is False (``--mentions-target-class-only``) and rows with more
    than ``max_tokens`` tokens (``--max-seq-len 24``); each applies only where its column exists.
    """
    p = Path(path)
    if not p.is_file():
        raise DataError(f"{p}: file not found")
    out = []
    with p.open(newline="") as f:
        reader = csv.DictReader(f)
        missing = [c for c in ("scan_id", "target_id", "utterance") if c not in (reader.fieldnames or [])]
        if missing:
            raise DataError(f"{p}: missing column(s) {', '.join(missing)}")
        for k, row in enumerate(reader):
            where = f"{p} row {k + 2}"
            target = _int(row["target_id"], where, "target_id")
            distractors: list[int] = []
            n_objects = None
            if row.get("stimulus_id"):
                _, _, n_objects, t, distractors = decode_stimulus(row["stimulus_id"], where)
                if t != target:
                    raise DataError(f"{where}: stimulus_id target {t} != target_id {target}")
            tokens = _tokens(row["tokens"], where) if row.get("tokens") else None
            mentions = _bool(row["mentions_target_class"], where) if row.get("mentions_target_class") else None
            if mentions_target_class_only and mentions is False:
                continue
            if max_tokens is not None and tokens is not None and len(tokens) > max_tokens:
                continue
            out.append(
                Referral(
                    row["scan_id"], [target], row["utterance"], object_name=row.get("instance_type", ""),
                    ann_id=row.get("assignmentid", str(k)), distractor_ids=distractors, source=str(p), index=k,
                    tokens=tokens, mentions_target_class=mentions, n_objects=n_objects,
                )
            )  # fmt: skip
    return out


def _tokens(v: str, where: str) -> list[str]:
    """referit3d stores ``tokens`` as a Python list literal, e.g. ``['the', 'chair']``."""
    try:
        toks = ast.literal_eval(v)
    except (ValueError, SyntaxError):
        raise DataError(f"{where}: tokens must be a list literal like ['the', 'chair'], got {v[:40]!r}") from None
    if not isinstance(toks, list):
        raise DataError(f"{where}: tokens must be a list, got {type(toks).__name__}")
    return [str(t) for t in toks]


def _bool(v: str, where: str) -> bool:
    if v.strip().lower() in ("true", "1"):
        return True
    if v.strip().lower() in ("false", "0"):
        return False
    raise DataError(f"{where}: mentions_target_class must be True or False, got {v!r}")


def is_view_dependent(text: str | Sequence[str]) -> bool:
    """A view-dependent word among the tokens (a list), or among the words of a string."""
    words = set(text.lower().replace(",", " ").replace(".", " ").split()) if isinstance(text, str) else set(text)
    return any(w in words for w in VIEW_DEPENDENT_WORDS)


def scanrefer_unique(referrals: Sequence[Referral], classify=None) -> list[bool]:
    """ScanRefer's unique/multiple flag of each expression: per scene, the distinct annotated
    objects (object ids named by the annotations of this split) are classed by their
    ``object_name`` through ``classify`` (ScanRefer: the label map's 18 classes,
    :meth:`~scene_graph.data.labels.LabelMap.scannet18`; default: the raw name); an
    expression is "unique" when its target's class occurs once among them."""
    classify = classify or (lambda name: " ".join(name.split("_")))
    objects: dict[str, dict[int, object]] = {}
    for r in referrals:
        objects.setdefault(r.scene_id, {}).setdefault(r.object_id, classify(r.object_name))
    counts = {s: Counter(objs.values()) for s, objs in objects.items()}
    return [counts[r.scene_id][objects[r.scene_id][r.object_id]] == 1 for r in referrals]


# --------------------------------------------------------------------------- 3DSSG / 3RScan
@dataclass
class SSGScan:
    scan_id: str
    objects: dict[int, str]  # object id -> label
    relationships: list[tuple[int, int, int, str]]  # (subject, object, predicate id, name)


def read_3dssg(objects_path: str | Path, relationships_path: str | Path) -> dict[str, SSGScan]:
    """3DSSG's ``objects.json`` (``{"scans": [{"scan", "objects": [{"id", "label"}]}]}``) and
    ``relationships.json`` (``{"scans": [{"scan", "relationships": [[s, o, pid, name]]}]}``).
    A relationship naming an object id the scan lacks is an error naming file and ids."""

    def load(path: str | Path) -> list:
        p = Path(path)
        d = read_json_file(p)
        if not isinstance(d, dict) or not isinstance(d.get("scans"), list):
            raise DataError(f'{p}: expected {{"scans": [...]}}')
        return d["scans"]

    scans: dict[str, SSGScan] = {}
    for k, s in enumerate(load(objects_path)):
        where = f"{objects_path} scans[{k}]"
        _need(s, ("scan", "objects"), where)
        objs: dict[int, str] = {}
        for o in s["objects"]:
            _need(o, ("id", "label"), where)
            oid = _int(o["id"], where, "id")
            if oid in objs:
                raise DataError(f"{where}: scan {s['scan']!r} duplicate object id {oid}")
            objs[oid] = str(o["label"])
        scans[str(s["scan"])] = SSGScan(str(s["scan"]), objs, [])
    for k, s in enumerate(load(relationships_path)):
        where = f"{relationships_path} scans[{k}]"
        _need(s, ("scan", "relationships"), where)
        sid = str(s["scan"])
        if sid not in scans:
            raise DataError(f"{where}: scan {sid!r} not in {objects_path}")
        scan = scans[sid]
        for r in s["relationships"]:
            if not isinstance(r, (list, tuple)) or len(r) != 4:
                raise DataError(
                    f"{where}: scan {sid!r} relationship {r!r} must be [subject, object, predicate_id, name]"
                )
            a, b, pid = (_int(v, where, "relationship") for v in r[:3])
            for oid in (a, b):
                if oid not in scan.objects:
                    raise DataError(f"{where}: scan {sid!r} relationship names missing object id {oid}")
            scan.relationships.append((a, b, pid, str(r[3])))
    return scans


def ssg_to_graph(scan: SSGScan, num_predicates: int | None = None) -> Data:
    """A 3DSSG scan as a graph: nodes in sorted id order, ``edge_index (2, E)`` subject->object,
    ``edge_attr (E, P)`` multi-hot over predicate ids (pairs with several predicates merge)."""
    ids = sorted(scan.objects)
    pos = {oid: k for k, oid in enumerate(ids)}
    p = num_predicates or (max((r[2] for r in scan.relationships), default=-1) + 1)
    pairs: dict[tuple[int, int], torch.Tensor] = {}
    for a, b, pid, _ in scan.relationships:
        v = pairs.setdefault((pos[a], pos[b]), torch.zeros(p))
        v[pid] = 1.0
    ei = torch.tensor(list(pairs), dtype=torch.long).t().reshape(2, -1)
    ea = torch.stack(list(pairs.values())) if pairs else torch.zeros(0, p)
    d = Data(edge_index=ei, edge_attr=ea, object_id=torch.tensor(ids), num_nodes=len(ids))
    d.scene_id, d.label_names = scan.scan_id, [scan.objects[i] for i in ids]
    return d
