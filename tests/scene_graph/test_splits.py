"""Benchmark split definitions worked out by hand: ScanRefer unique/multiple (ScanNet18 via
the label map, annotated objects only), referit3d's tokens-based view-dependence, easy/hard
from the stimulus id and its default filters, ScanQA test questions for prediction only."""

import csv
import json

import numpy as np
import pytest

from scene_graph.builder import GraphConfig
from scene_graph.data.annotations import Referral, read_referit3d_csv, read_scanqa, scanrefer_unique
from scene_graph.data.dataset import ReferralDataset, SceneStore, collate_referrals
from scene_graph.data.labels import LabelMap
from vlx.data.errors import DataError
from vlx.io.scannet import write_scannet_scene

# raw label -> (nyu40 id, nyu40 class), as scannetv2-labels.combined.tsv has them
LABELS = LabelMap(
    {
        "office chair": (5, "chair"),
        "armchair": (5, "chair"),
        "chair": (5, "chair"),
        "trash can": (39, "otherfurniture"),
        "lamp": (35, "lamp"),
        "kitchen cabinets": (3, "cabinet"),
    }
)


def ref(scene, oid, name, k):
    return Referral(scene, [oid], f"the {name}", object_name=name, index=k)


def test_scanrefer_unique_uses_scannet18_and_annotated_objects_only():
    refs = [
        ref("s0", 1, "office_chair", 0),  # chair (ScanNet18) ...
        ref("s0", 2, "armchair", 1),  # ... and another chair: both "multiple", raw names differ
        ref("s0", 3, "trash can", 2),  # others
        ref("s0", 4, "lamp", 3),  # others as well (lamp is not one of the 18): "multiple"
        ref("s0", 5, "kitchen cabinets", 4),  # cabinet, the only annotated one: "unique"
        ref("s0", 5, "kitchen cabinets", 5),  # a second expression of the same object: still unique
        ref("s1", 1, "unicorn", 6),  # not in the map: "others", alone among s1's annotated objects
    ]
    assert scanrefer_unique(refs, LABELS.scannet18) == [False, False, False, False, True, True, True]
    # the raw names (no label map) give the opposite flags for the two chairs
    assert scanrefer_unique(refs)[:2] == [True, True]


def make_room(root):
    """Objects: 0 office chair, 1 armchair, 2 kitchen cabinets, 3 kitchen cabinets, 4 lamp."""
    centres = [(0, 0), (2, 0), (4, 0), (6, 0), (8, 0)]
    xyz = np.concatenate([np.random.default_rng(k).uniform(0, 0.5, (20, 3)) + [*c, 0] for k, c in enumerate(centres)])
    inst = np.repeat(np.arange(5), 20)
    labels = {0: "office chair", 1: "armchair", 2: "kitchen cabinets", 3: "kitchen cabinets", 4: "lamp"}
    write_scannet_scene(root / "scans", "scene0000_00", xyz, np.zeros_like(xyz), inst, labels)
    return SceneStore(root / "scans", GraphConfig(num_points=4, between=False))


def test_dataset_flags_where_raw_labels_and_scannet18_disagree(tmp_path):
    store = make_room(tmp_path)
    # Only objects 0, 1 and 2 are annotated: by ScanRefer's rule the two chairs are "multiple"
    # (ScanNet18 chair, though their raw labels differ) and cabinet 2 is "unique" (cabinet 3 is
    # in the scene but not annotated); the scene rule (raw labels, all objects) says the opposite.
    refs = [ref("scene0000_00", 0, "office chair", 0), ref("scene0000_00", 1, "armchair", 1),
            ref("scene0000_00", 2, "kitchen cabinets", 2)]  # fmt: skip
    ds = ReferralDataset(refs, store, progress=False, classify=LABELS.scannet18)
    assert [it["unique"] for it in ds.items] == [False, False, True]
    ds = ReferralDataset(refs, store, progress=False, unique_rule="scene")
    assert [it["unique"] for it in ds.items] == [True, True, False]


def write_csv(path, rows):
    cols = ["assignmentid", "stimulus_id", "utterance", "tokens", "mentions_target_class", "scan_id", "target_id",
            "instance_type"]  # fmt: skip
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=cols)
        w.writeheader()
        for k, (stim, utt, toks, mentions) in enumerate(rows):
            scan, cls, _, target = stim.split("-")[:4]
            row = dict(assignmentid=k, stimulus_id=stim, utterance=utt, tokens=str(toks))
            w.writerow(dict(row, mentions_target_class=mentions, scan_id=scan, target_id=target, instance_type=cls))


def test_referit3d_tokens_hardness_and_default_filters(tmp_path):
    p = tmp_path / "nr3d.csv"
    long = ["word"] * 25
    write_csv(p, [
        # "left-hand" is one token, not "left": view-independent by tokens (a text split agrees here)
        ("scene0000_00-chair-2-0-1", "The chair, left-hand one.", ["the", "chair", "left-hand", "one"], "True"),
        # the utterance says "facing," with a comma; its tokens hold "facing": view-dependent
        ("scene0000_00-chair-3-1-0-4", "chair facing,the door", ["chair", "facing", "the", "door"], "True"),
        ("scene0000_00-chair-2-0-1", "the seat near the door", ["the", "seat", "near", "the", "door"], "False"),
        ("scene0000_00-chair-2-0-1", "chair " * 25, long, "True"),
    ])  # fmt: skip
    refs = read_referit3d_csv(p)
    assert len(refs) == 2  # row 3 does not mention its class, row 4 has 25 > 24 tokens
    assert [r.view_dependent for r in refs] == [False, True]
    assert [r.n_objects for r in refs] == [2, 3]  # easy (<= 2) and hard
    assert len(read_referit3d_csv(p, mentions_target_class_only=False, max_tokens=None)) == 4
    # view-dependence comes from the tokens, not the raw text
    r = read_referit3d_csv(p)[0]
    r.tokens = ["the", "chair", "on", "the", "left"]
    assert r.view_dependent and "left" not in r.text.split()


def test_referit3d_bad_tokens_is_one_line_error(tmp_path):
    p = tmp_path / "bad.csv"
    write_csv(p, [("scene0000_00-chair-2-0-1", "the chair", "['the', 'chair'", "True")])
    with pytest.raises(DataError, match=r"bad.csv row 2: tokens must be a list literal"):
        read_referit3d_csv(p)


def test_hard_comes_from_the_stimulus(tmp_path):
    store = make_room(tmp_path)
    r = Referral("scene0000_00", [2], "the cabinet", n_objects=3)  # 3 per the stimulus, 2 in the scene
    ds = ReferralDataset([r], store, progress=False)
    assert ds.items[0]["hard"]


def test_scanqa_test_split_for_prediction_only(tmp_path, tokenizer):
    store = make_room(tmp_path)
    p = tmp_path / "ScanQA_v1.0_test_w_obj.json"
    p.write_text(
        json.dumps([{"scene_id": "scene0000_00", "question_id": "test-0", "question": "what is left of the lamp?"}])
    )
    qs = read_scanqa(p)
    with pytest.raises(DataError, match=r"ScanQA_v1.0_test_w_obj.json\[0\]: no object id"):
        ReferralDataset(qs, store, progress=False)
    ds = ReferralDataset(qs, store, progress=False, prediction_only=True)
    assert ds.items[0]["target"] == -1
    batch = collate_referrals(ds.items, tokenizer)
    assert batch["target"].tolist() == [-1]
