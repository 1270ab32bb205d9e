from pathlib import Path

from vlx.cli import main
from vlx.config import from_dict, read_yaml_with_extends, to_dict

ROOT = Path(__file__).resolve().parents[2]


def test_tiny_yaml_equals_quickstart_default(tmp_path):
    from vlx.quickstart import quickstart_config
    from vlx.recipes.clip_shapes import ClipShapesConfig

    q = to_dict(quickstart_config(tmp_path))
    y = to_dict(from_dict(ClipShapesConfig, read_yaml_with_extends(ROOT / "configs/vlx/clip_shapes_tiny.yaml")))
    for cfg in (q, y):
        cfg["data"].pop("root"), cfg["train"].pop("output_dir")
    assert q == y


def test_every_config_loads(capsys):
    """Every YAML in configs/ names a registered recipe and type-checks."""
    from vlx.train.recipe import load_recipe_config

    # accelerate_*.yaml are accelerate launcher configs (video/train_accelerate.py), not recipes
    files = sorted(f for f in (ROOT / "configs").rglob("*.yaml") if not f.name.startswith("accelerate_"))
    assert files
    for f in files:
        load_recipe_config(str(f), [])


def test_config_typo_is_one_line_error(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("extends: %s\ntrain: {epochz: 3}\n" % (ROOT / "configs/vlx/clip_shapes_tiny.yaml"))
    assert main(["train", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    assert "bad.yaml: unknown key 'train.epochz'" in err


def test_unknown_recipe(tmp_path, capsys):
    bad = tmp_path / "r.yaml"
    bad.write_text("recipe: nope\n")
    assert main(["train", str(bad)]) == 2
    assert "unknown recipe 'nope'" in capsys.readouterr().err


def test_minilm_configs_replace_the_base_text_section():
    """`text: !replace {...}` drops the tiny base's transformer preset/kwargs, so the MiniLM
    tower builds (it failed with "bad constructor arguments" when they were merged in)."""
    from vlx.encoders import build_text_encoder
    from vlx.train.recipe import load_recipe_config

    for name, frozen in (("clip_shapes_relation_tiny", True), ("clip_shapes_minilm_tiny", False)):
        _, cfg = load_recipe_config(str(ROOT / f"configs/vlx/{name}.yaml"))
        t = cfg.model.text
        assert (t.name, t.preset, t.kwargs, t.freeze) == ("minilm", None, {}, frozen)
        assert cfg.model.image.preset == "tiny"  # the rest still comes from the base
        enc = build_text_encoder(t)
        assert enc.output_dim == 384  # all-MiniLM-L6-v2's width
        assert all(not p.requires_grad for p in enc.parameters()) == frozen


def test_quickstart_data_goes_to_the_cache_named_by_size_and_seed(tmp_path):
    from vlx.quickstart import quickstart_config

    c = quickstart_config(tmp_path / "out", fast=True, seed=3, cache=tmp_path / "cache")
    assert c.data.root == str(tmp_path / "cache" / "shapes_world_n512_t64_r64_s3")
    assert c.train.output_dir == str(tmp_path / "out" / "run") and c.train.seed == 3 and c.data.data_seed == 3
    full = quickstart_config(tmp_path / "out", seed=0, cache=tmp_path / "cache")
    assert full.data.root == str(tmp_path / "cache" / "shapes_world_n4000_t200_r64_s0")  # never mixed with --fast
    assert quickstart_config(tmp_path / "out").data.root == str(tmp_path / "out" / "data")
