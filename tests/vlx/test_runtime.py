"""vlx.runtime: one rule per process-wide setting."""

import pytest

from vlx import runtime
from vlx.cli import main
from vlx.runtime import RuntimeSetupError, WorldInfo, configure_rendering, world_info

TORCHRUN = {"RANK": "3", "LOCAL_RANK": "1", "WORLD_SIZE": "4", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29500"}


def test_world_info_reads_torchrun_env():
    assert world_info(TORCHRUN) == WorldInfo(rank=3, local_rank=1, world_size=4)
    assert world_info({}) == WorldInfo(0, 0, 1) and world_info({}).is_main
    assert world_info({"RANK": "0", "WORLD_SIZE": "1"}).world_size == 1


def test_stray_world_size_is_one_line_not_a_hang():
    with pytest.raises(RuntimeSetupError) as e:
        world_info({"WORLD_SIZE": "2"})
    msg = str(e.value)
    assert "\n" not in msg and "WORLD_SIZE=2" in msg and "torchrun --nproc_per_node 2" in msg
    with pytest.raises(RuntimeSetupError, match="RANK=5 is outside WORLD_SIZE=4"):
        world_info(dict(TORCHRUN, RANK="5"))
    with pytest.raises(RuntimeSetupError, match="WORLD_SIZE='two'"):
        world_info({"WORLD_SIZE": "two"})


def test_cli_reports_stray_world_size(monkeypatch, capsys):
    for k in ("MASTER_ADDR", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert main(["recipes"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: WORLD_SIZE=2 is set but no process group was launched") and "\n" not in err


@pytest.fixture
def gl_env(monkeypatch):
    for k in ("MUJOCO_GL", "PYOPENGL_PLATFORM", "MUJOCO_EGL_DEVICE_ID", "WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setattr(runtime.ctypes.util, "find_library", lambda name: f"lib{name}.so")
    monkeypatch.setattr(runtime, "_RENDERING_SET_HERE", False)
    return monkeypatch


def _never(*a, **k):
    raise AssertionError("probed although no probe was needed")


def test_explicit_mujoco_gl_wins(gl_env):
    gl_env.setattr(runtime, "gpu_device_nodes", lambda: True)
    gl_env.setenv("MUJOCO_GL", "osmesa")
    assert configure_rendering(prober=_never) == "osmesa"
    assert runtime.os.environ["PYOPENGL_PLATFORM"] == "osmesa" and runtime.user_mujoco_gl() == "osmesa"


def test_egl_probe_failure_falls_back_to_osmesa(gl_env):
    gl_env.setattr(runtime, "gpu_device_nodes", lambda: True)
    assert configure_rendering(prober=lambda backend, device_id=None: "eglInitialize failed") == "osmesa"
    assert runtime.os.environ["MUJOCO_GL"] == "osmesa" and "MUJOCO_EGL_DEVICE_ID" not in runtime.os.environ
    assert runtime.user_mujoco_gl() is None  # vlx chose it; `vlx doctor` does not call it the user's


def test_egl_when_it_renders_on_the_local_ranks_gpu(gl_env):
    gl_env.setattr(runtime, "gpu_device_nodes", lambda: True)
    for k, v in dict(TORCHRUN, CUDA_VISIBLE_DEVICES="4,5").items():
        gl_env.setenv(k, v)
    asked = []
    assert configure_rendering(prober=lambda backend, device_id=None: asked.append((backend, device_id))) == "egl"
    assert asked == [("egl", "5")]  # local rank 1 -> the second visible GPU
    env = runtime.os.environ
    assert (env["MUJOCO_GL"], env["PYOPENGL_PLATFORM"], env["MUJOCO_EGL_DEVICE_ID"]) == ("egl", "egl", "5")
    assert configure_rendering(prober=_never) == "egl"  # decided once; children inherit it


def test_no_gpu_means_osmesa_without_a_probe(gl_env):
    gl_env.setattr(runtime, "gpu_device_nodes", lambda: False)
    assert configure_rendering(probe=False, prober=_never) == "osmesa"


def test_gpu_without_probe_stays_undecided(gl_env):
    gl_env.setattr(runtime, "gpu_device_nodes", lambda: True)
    assert configure_rendering(probe=False, prober=_never) is None and "MUJOCO_GL" not in runtime.os.environ


def test_egl_device_id_mapping():
    assert runtime.egl_device_id(1, {"CUDA_VISIBLE_DEVICES": "2,3"}) == "3"
    assert runtime.egl_device_id(1, {}) == "1"
    assert runtime.egl_device_id(0, {"CUDA_VISIBLE_DEVICES": "GPU-abc"}) == "0"


def test_probe_renders_a_frame_or_says_why():
    assert runtime.probe_renderer("osmesa", timeout=120) is None  # libosmesa6 is installed here
    why = runtime.probe_renderer("not-a-backend", timeout=120)
    assert why and "MUJOCO_GL" in why


def test_huggingface_defaults_respect_the_user(monkeypatch):
    for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_HUB_DISABLE_PROGRESS_BARS", "VLX_HF_PROGRESS"):
        monkeypatch.delenv(k, raising=False)
    runtime.configure_huggingface()
    env = runtime.os.environ
    assert env["HF_HUB_OFFLINE"] == "1" and env["HF_HUB_DISABLE_PROGRESS_BARS"] == "1"
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.delenv("TRANSFORMERS_OFFLINE")
    runtime.configure_huggingface()
    assert env["HF_HUB_OFFLINE"] == "0" and env["TRANSFORMERS_OFFLINE"] == "0"


@pytest.mark.slow  # two fresh interpreters that import transformers
def test_hf_loading_bars_are_off_by_default(tmp_path):
    """HF's own "Loading weights" bar interleaved with vlx's; off unless VLX_HF_PROGRESS=1."""
    import os
    import subprocess
    import sys

    from transformers import BertConfig, BertModel

    BertModel(BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2)).save_pretrained(
        tmp_path
    )
    code = (
        "from vlx.encoders import EncoderConfig, build_text_encoder;"
        f"build_text_encoder(EncoderConfig(name='hf_text', path={str(tmp_path)!r}))"
    )
    seen = {}
    for flag in ("0", "1"):
        env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_HUB_DISABLE", "TRANSFORMERS_VERB"))}
        env["VLX_HF_PROGRESS"] = flag
        r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr[-2000:]
        seen[flag] = "Loading weights" in r.stderr
    assert seen == {"0": False, "1": True}
