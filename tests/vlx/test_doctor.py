"""`vlx doctor` reports what imports and which renderer renders, with install hints."""

import pytest

from vlx import doctor, runtime
from vlx.cli import main


def test_doctor_reports_working_and_missing_pieces(monkeypatch, capsys):
    monkeypatch.setenv("MUJOCO_GL", "osmesa")
    monkeypatch.setattr(runtime, "_RENDERING_SET_HERE", False)  # as the user set it
    monkeypatch.setattr(
        doctor,
        "OPTIONAL",
        {
            "PyAV": doctor.OPTIONAL["PyAV"],
            "nothing-here": ("import vlx_no_such_module", "a missing piece", "pip install vlx-no-such-module"),
        },
    )
    checks = doctor.run_checks(timeout=120, renderers=("osmesa",))
    by = {c.name: c for c in checks}
    assert by["torch"].ok and "no CUDA device" in by["torch"].detail  # this machine has no GPU
    assert by["MuJoCo OSMESA"].ok and by["MuJoCo OSMESA"].detail == "renders a frame"
    assert by["PyAV"].ok and by["PyAV"].detail[0].isdigit()
    assert not by["nothing-here"].ok and "No module named 'vlx_no_such_module'" in by["nothing-here"].detail
    text = doctor.format_checks(checks)
    assert "  nothing-here: pip install vlx-no-such-module" in text
    assert "rendering: vlx will use osmesa (set by MUJOCO_GL)" in text


@pytest.mark.slow
def test_doctor_command_runs(capsys):
    assert main(["doctor", "--timeout", "120"]) == 0
    out = capsys.readouterr().out
    for name in ("torch", "MuJoCo EGL", "MuJoCo OSMESA", "decord", "PyAV", "torchcodec", "open3d", "pytorch3d"):
        assert f" {name} " in out
    assert "torch-geometric" in out and "MiniLM (packaged)" in out
    assert "NO  pytorch3d" in out and "pytorch3d: build from source" in out  # no wheel for this platform
