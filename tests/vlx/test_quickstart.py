import json
from argparse import Namespace

import pytest

from vlx.quickstart import run


@pytest.mark.slow
def test_quickstart_fast_writes_report(tmp_path):
    """The smoke-sized quickstart runs end to end and writes what a person opens."""
    run(Namespace(out=str(tmp_path), fast=True, seed=0))
    report = json.loads((tmp_path / "report.json").read_text())
    m = report["metrics"]
    for k in ("t2i_R@1", "i2t_R@1", "t2i_R@10", "relation_swap_acc", "chance_R@1"):
        assert 0.0 <= m[k] <= 100.0, k
    assert m["n_test"] == 64
    assert len(m["t2i_recall_curve"]) == 50 and m["t2i_recall_curve"][-1] >= m["t2i_R@10"]
    assert set(report["checks"]) == {"t2i_R@1 >= 3x chance", "i2t_R@1 >= 3x chance"}
    assert (tmp_path / "retrieval_curve.png").stat().st_size > 1000
    assert "| text -> image" in (tmp_path / "report.md").read_text()
    # trained: the median rank beats chance (N/2 = 32) by a clear margin
    assert m["t2i_MdR"] < 24
