"""The graph cache (issue 19): plain tensors only, refused when crafted, atomic, keyed on
everything that changes the graphs."""

import pytest
import torch

from scene_graph.builder import GraphConfig
from scene_graph.data.dataset import SceneStore
from scene_graph.recipes import SceneDataConfig, _cache_path
from vlx.data.errors import DataError


class _Planted:
    """Unpickling this calls ``open(marker, "w")``: it creates the marker file."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_crafted_cache_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "pwned"
    cache = tmp_path / "graphs_0123456789.pt"
    torch.save({"format": 2, "graphs": {"scene0000_00": _Planted(marker)}}, cache)
    store = SceneStore(tmp_path / "scans", GraphConfig())
    with pytest.raises(DataError, match=r"graphs_0123456789\.pt: not a scene-graph cache of plain tensors"):
        store.load(cache)
    assert not marker.exists()


def test_cache_roundtrip_is_plain_tensors(rooms, tmp_path):
    store = SceneStore(rooms / "scans", GraphConfig(num_points=8, between=False))
    g = store.get("scene0000_00")
    path = tmp_path / "graphs_x.pt"
    store.save(path)
    assert torch.load(path, weights_only=True)["graphs"]["scene0000_00"]["scene_id"] == "scene0000_00"
    other = SceneStore(rooms / "scans", GraphConfig())
    assert other.load(path)
    h = other.get("scene0000_00")
    assert torch.equal(h.edge_index, g.edge_index) and torch.equal(h.edge_attr, g.edge_attr)
    assert h.label_names == g.label_names and torch.equal(h.points, g.points)
    assert not list(tmp_path.glob(".*tmp"))  # no temporary file left behind


def test_interrupted_save_keeps_the_old_cache(rooms, tmp_path, monkeypatch):
    store = SceneStore(rooms / "scans", GraphConfig(num_points=8, between=False))
    store.get("scene0000_00")
    path = tmp_path / "graphs_x.pt"
    store.save(path)
    before = path.read_bytes()
    store.get("scene0001_00")

    def torn_save(obj, f):  # writes half a file, then the process "dies"
        with open(f, "wb") as fh:
            fh.write(before[: len(before) // 2])
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", torn_save)
    with pytest.raises(KeyboardInterrupt):
        store.save(path)
    assert path.read_bytes() == before and not list(tmp_path.glob(".*tmp"))


def test_cache_key_covers_what_changes_graphs(rooms):
    base = SceneDataConfig(root=str(rooms), generate=False)
    k = _cache_path(base)
    assert _cache_path(SceneDataConfig(root=str(rooms), generate=False)) == k
    assert _cache_path(SceneDataConfig(root=str(rooms), generate=False, scans="other")) != k
    assert _cache_path(SceneDataConfig(root=str(rooms), generate=False, graph=GraphConfig(k=3))) != k
    assert _cache_path(SceneDataConfig(root=str(rooms), generate=False, proposals="pred")) != k
    # a scene file that changes (new size / mtime) changes the key
    f = next((rooms / "scans" / "scene0000_00").glob("*.aggregation.json"))
    text = f.read_text()
    f.write_text(text + " ")
    try:
        assert _cache_path(base) != k
    finally:
        f.write_text(text)
