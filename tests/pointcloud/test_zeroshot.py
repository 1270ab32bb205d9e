"""ModelNet40 (modelnet40_ply_hdf5_2048) and ScanObjectNN (h5_files) readers on files written in
the published layouts; zero-shot end to end through ``vlx pointcloud zeroshot``."""

import json
import subprocess
import sys

import h5py
import numpy as np
import pytest
import torch
import yaml

from pointcloud.data.benchmarks import SCANOBJECTNN_CLASSES, read_benchmark, read_modelnet40_h5, read_scanobjectnn_h5
from vlx.data.errors import DataError

MN40 = [f"class{i}" for i in range(38)] + ["flower_pot", "night_stand"]


def write_modelnet40(root, sizes=(3, 2), seed=0):
    """Published layout: ply_data_test{i}.h5 (data float32 (n, 2048, 3), label uint8 (n, 1),
    normal, faceId), test_files.txt naming them by PointNet's repo-relative path, shape_names.txt."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True)
    clouds, labels = [], []
    for i, n in enumerate(sizes):
        d = rng.normal(size=(n, 2048, 3)).astype(np.float32)
        lab = rng.integers(0, 40, size=(n, 1)).astype(np.uint8)
        with h5py.File(root / f"ply_data_test{i}.h5", "w") as f:
            f["data"], f["label"] = d, lab
            f["normal"] = rng.normal(size=(n, 2048, 3)).astype(np.float32)
            f["faceId"] = np.zeros((n, 2048), np.int32)
        clouds.append(d)
        labels.append(lab)
    (root / "test_files.txt").write_text(
        "".join(f"data/modelnet40_ply_hdf5_2048/ply_data_test{i}.h5\n" for i in range(len(sizes)))
    )
    (root / "shape_names.txt").write_text("\n".join(MN40) + "\n")
    return np.concatenate(clouds), np.concatenate(labels)


def write_scanobjectnn(root, n=4, seed=1):
    """h5_files/main_split{,_nobg}/test_objectdataset.h5: data (n, 2048, 3), label (n,), mask (n, 2048)."""
    rng = np.random.default_rng(seed)
    out = {}
    for variant in ("main_split", "main_split_nobg"):
        (root / variant).mkdir(parents=True)
        d = rng.normal(size=(n, 2048, 3)).astype(np.float32)
        mask = (rng.random((n, 2048)) < 0.6).astype(np.int64)
        lab = rng.integers(0, 15, size=n).astype(np.int64)
        with h5py.File(root / variant / "test_objectdataset.h5", "w") as f:
            f["data"], f["label"], f["mask"] = d, lab, mask
        out[variant] = (d, lab, mask)
    return out


def test_modelnet40_reader_matches_published_layout(tmp_path):
    pts, lab = write_modelnet40(tmp_path / "modelnet40_ply_hdf5_2048")
    b = read_modelnet40_h5(tmp_path / "modelnet40_ply_hdf5_2048", "test")
    assert b.points.shape == (5, 2048, 3) and b.points.dtype == np.float32
    np.testing.assert_array_equal(b.points, pts)  # files concatenated in test_files.txt order
    assert b.labels.shape == (5,) and b.labels.dtype == np.int64
    np.testing.assert_array_equal(b.labels, lab[:, 0])
    assert b.class_names == MN40 and b.name == "modelnet40"
    assert read_benchmark(tmp_path / "modelnet40_ply_hdf5_2048").name == "modelnet40"


def test_modelnet40_reader_errors(tmp_path):
    root = tmp_path / "mn"
    write_modelnet40(root)
    (root / "ply_data_test1.h5").unlink()
    with pytest.raises(DataError, match=r"test_files.txt:2: listed file ply_data_test1.h5 not found"):
        read_modelnet40_h5(root)
    with pytest.raises(DataError, match="train_files.txt: file list not found"):
        read_modelnet40_h5(root, "train")


def test_scanobjectnn_reader_with_and_without_background(tmp_path):
    written = write_scanobjectnn(tmp_path / "h5_files")
    bg = read_benchmark(tmp_path / "h5_files")  # default variant main_split, test split
    d, lab, mask = written["main_split"]
    np.testing.assert_array_equal(bg.points, d)
    np.testing.assert_array_equal(bg.labels, lab)
    assert bg.class_names == SCANOBJECTNN_CLASSES and len(bg.class_names) == 15 and bg.class_names[14] == "toilet"
    nobg = read_benchmark(tmp_path / "h5_files", variant="main_split_nobg")
    np.testing.assert_array_equal(nobg.points, written["main_split_nobg"][0])
    # background=False: every point is one of the cloud's object points, object points kept
    masked = read_scanobjectnn_h5(tmp_path / "h5_files" / "main_split" / "test_objectdataset.h5", background=False)
    for i in range(len(d)):
        obj = d[i][mask[i] > 0]
        np.testing.assert_array_equal(masked.points[i][mask[i] > 0], obj)
        assert set(map(tuple, masked.points[i])) <= set(map(tuple, obj))


def test_scanobjectnn_label_out_of_range(tmp_path):
    f = tmp_path / "x.h5"
    with h5py.File(f, "w") as h:
        h["data"], h["label"] = np.zeros((2, 16, 3), np.float32), np.array([3, 15])
    with pytest.raises(DataError, match=r"label 15 at cloud 1 is outside \[0, 15\)"):
        read_scanobjectnn_h5(f)


def tiny_teacher_run(path):
    """A pc_image_text run directory (config.yaml + model.safetensors) with random weights."""
    from safetensors.torch import save_model

    from pointcloud.recipes import ImageTextModel, _default_dual
    from vlx.config import to_dict
    from vlx.models.dual_encoder import build_dual_encoder
    from vlx.tokenizers import TokenizerConfig

    torch.manual_seed(0)
    path.mkdir()
    save_model(ImageTextModel(build_dual_encoder(_default_dual()), None), str(path / "model.safetensors"))
    cfg = {"model": to_dict(_default_dual()), "tokenizer": to_dict(TokenizerConfig()), "image_size": 32}
    (path / "config.yaml").write_text(yaml.safe_dump(cfg))
    return path


def run_cli(*args):
    r = subprocess.run(
        [sys.executable, "-c", "from vlx.cli import main; raise SystemExit(main())", "pointcloud", "zeroshot", *args],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    return r


@pytest.mark.slow  # three CLI subprocesses per method (~40 s each on a loaded 2-core machine)
@pytest.mark.parametrize("method", ["pointclip_v2", "clip2point"])
def test_zeroshot_cli_end_to_end(tmp_path, method):
    from pointcloud.models.clip2point import class_text_embeddings
    from pointcloud.zeroshot import load_zeroshot_teacher, prompt_templates, zero_shot_logits

    teacher_dir = tiny_teacher_run(tmp_path / "teacher")
    _, mn_lab = write_modelnet40(tmp_path / "mn", sizes=(3, 2))
    write_scanobjectnn(tmp_path / "h5_files", n=3)
    for data, extra, n, bench in [
        (tmp_path / "mn", [], 5, "modelnet40"),
        (tmp_path / "h5_files", [], 3, "scanobjectnn"),
        (tmp_path / "h5_files", ["--variant", "main_split_nobg"], 3, "scanobjectnn"),
    ]:
        out = tmp_path / f"out_{bench}_{len(extra)}"
        run_cli("--model", str(teacher_dir), "--data", str(data), "--method", method, "--out", str(out), *extra)
        rep = json.loads((out / "eval.json").read_text())
        assert rep["benchmark"] == bench and rep["n"] == n and rep["method"] == method
        assert 0 <= rep["top1"] <= 100 and rep["image_size"] == 32
    # the ModelNet40 number equals the argmax of the logits recomputed in-process
    teacher, tok, size, mean, std = load_zeroshot_teacher(teacher_dir)
    b = read_modelnet40_h5(tmp_path / "mn")
    tmpl = prompt_templates("pointclip" if method == "pointclip_v2" else "clip2point")
    text = class_text_embeddings(teacher, tok, [c.replace("_", " ") for c in b.class_names], tmpl)
    pts = torch.from_numpy(b.points)
    logits = zero_shot_logits(teacher, text, pts, method, "clip2point_6", size, mean=mean, std=std)
    rep = json.loads((tmp_path / "out_modelnet40_0" / "eval.json").read_text())
    assert rep["top1"] == pytest.approx(float((logits.argmax(1).numpy() == mn_lab[:, 0]).mean() * 100))


def test_view_weights_select_views(tmp_path):
    from pointcloud.zeroshot import load_run_teacher, zero_shot_logits

    teacher, _, size = load_run_teacher(tiny_teacher_run(tmp_path / "t"))
    text = torch.nn.functional.normalize(torch.randn(4, teacher.embed_dim), dim=-1)
    pts = torch.randn(2, 256, 3)
    views = [(0, 0), (90, 0)]
    both = zero_shot_logits(teacher, text, pts, "pointclip_v2", views, size, [1.0, 2.0])
    a = zero_shot_logits(teacher, text, pts, "pointclip_v2", views[:1], size)
    b = zero_shot_logits(teacher, text, pts, "pointclip_v2", views[1:], size)
    torch.testing.assert_close(both, a + 2 * b, rtol=1e-4, atol=1e-5)
    assert not torch.allclose(a, b)


def test_clip2point_prompt_template_is_published():
    from pointcloud.zeroshot import prompt_templates

    assert prompt_templates("clip2point") == ["image of a {shape}"]


def test_zeroshot_on_saved_hf_clip_checkpoint(tmp_path):
    """name_or_path to a tiny random CLIPModel saved with save_pretrained: its crop size and
    mean/std reach the renders, and eval.json matches the in-process computation."""
    from pointcloud.models.clip2point import class_text_embeddings
    from pointcloud.zeroshot import load_zeroshot_teacher, prompt_templates, run_zeroshot, zero_shot_logits
    from tests.vlx._hf_ckpt import save_tiny_clip

    ckpt = save_tiny_clip(tmp_path / "clip")
    _, lab = write_modelnet40(tmp_path / "mn", sizes=(2, 2))
    rep = run_zeroshot(str(ckpt), str(tmp_path / "mn"), str(tmp_path / "out"), method="clip2point")
    assert json.loads((tmp_path / "out" / "eval.json").read_text())["top1"] == rep["top1"]
    dual, tok, size, mean, std = load_zeroshot_teacher(ckpt)
    assert rep["image_size"] == size and mean is not None and tuple(mean) != (0.0, 0.0, 0.0)
    b = read_modelnet40_h5(tmp_path / "mn")
    text = class_text_embeddings(
        dual, tok, [c.replace("_", " ") for c in b.class_names], prompt_templates("clip2point")
    )
    pts = torch.from_numpy(b.points)
    logits = zero_shot_logits(dual, text, pts, "clip2point", "clip2point_6", size, mean=mean, std=std)
    assert rep["top1"] == pytest.approx(float((logits.argmax(1).numpy() == lab[:, 0]).mean() * 100))
    raw = zero_shot_logits(dual, text, pts, "clip2point", "clip2point_6", size)
    assert not torch.allclose(raw, logits)  # the normalisation is applied
