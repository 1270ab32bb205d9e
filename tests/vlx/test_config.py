from dataclasses import dataclass, field
from typing import Literal

import pytest

from vlx.config import ConfigError, load_yaml_config
from vlx.train.recipe import RecipeConfig


@dataclass
class ModelCfg:
    width: int = 64
    dropout: float = 0.0
    pool: Literal["cls", "mean"] = "cls"
    sizes: tuple[int, int] = (2, 2)


@dataclass
class Cfg(RecipeConfig):
    model: ModelCfg = field(default_factory=ModelCfg)
    names: list[str] = field(default_factory=list)
    path: str | None = None


@dataclass
class RecipeDefaults(RecipeConfig):
    model: ModelCfg = field(default_factory=lambda: ModelCfg(width=7))


def write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_loads_typed_values_and_overrides(tmp_path):
    p = write(tmp_path, "a.yaml", "recipe: r\nmodel: {width: 32, dropout: 1e-1, sizes: [3, 4]}\ntrain: {lr: 3e-4}\n")
    c = load_yaml_config(Cfg, p, ["model.pool=mean", "train.epochs=5", "names=[a, b]"])
    assert c.model.width == 32 and c.model.dropout == pytest.approx(0.1) and c.model.sizes == (3, 4)
    assert c.model.pool == "mean" and c.train.epochs == 5 and c.train.lr == pytest.approx(3e-4)
    assert c.names == ["a", "b"]


def test_extends_merges_base(tmp_path):
    write(tmp_path, "base.yaml", "recipe: r\nmodel: {width: 32, pool: mean}\ntrain: {epochs: 10}\n")
    p = write(tmp_path, "tiny.yaml", "extends: base.yaml\nmodel: {width: 8}\n")
    c = load_yaml_config(Cfg, p)
    assert (c.model.width, c.model.pool, c.train.epochs) == (8, "mean", 10)


def test_extends_deep_merges_and_replace_tag_replaces(tmp_path):
    """The merge rule both ways: a plain child mapping merges key by key (an empty mapping
    changes nothing), a ``!replace`` mapping drops every key of the base's it leaves out;
    lists always replace."""
    from vlx.config import read_yaml_with_extends

    write(tmp_path, "base.yaml", "recipe: r\nmodel: {width: 32, pool: mean, extra: {a: 1, b: 2}}\nnames: [x, y]\n")
    merged = read_yaml_with_extends(write(tmp_path, "m.yaml", "extends: base.yaml\nmodel: {extra: {}}\nnames: [z]\n"))
    assert merged["model"] == {"width": 32, "pool": "mean", "extra": {"a": 1, "b": 2}} and merged["names"] == ["z"]
    text = "extends: base.yaml\nmodel: {width: 8, extra: !replace {b: 3}}\nnames: !replace [z]\n"
    nested = read_yaml_with_extends(write(tmp_path, "n.yaml", text))
    assert nested["model"] == {"width": 8, "pool": "mean", "extra": {"b": 3}} and nested["names"] == ["z"]
    whole = read_yaml_with_extends(write(tmp_path, "w.yaml", "extends: base.yaml\nmodel: !replace {width: 8}\n"))
    assert whole["model"] == {"width": 8}
    c = load_yaml_config(Cfg, tmp_path / "w.yaml")
    assert (c.model.width, c.model.pool) == (8, "cls")  # pool: the field's default, not the base's
    # a replaced section also ignores the recipe's own default instance for it
    write(tmp_path, "r.yaml", "recipe: r\nmodel: !replace {pool: mean}\n")
    r = load_yaml_config(RecipeDefaults, tmp_path / "r.yaml")
    assert (r.model.width, r.model.pool) == (64, "mean")
    merged_onto_default = load_yaml_config(
        RecipeDefaults, write(tmp_path, "p.yaml", "recipe: r\nmodel: {pool: mean}\n")
    )
    assert (merged_onto_default.model.width, merged_onto_default.model.pool) == (7, "mean")
    with pytest.raises(ConfigError, match="!replace applies to a mapping or a list"):
        read_yaml_with_extends(write(tmp_path, "bad.yaml", "recipe: r\nmodel: {width: !replace 3}\n"))


@pytest.mark.parametrize(
    "text,overrides,match",
    [
        ("recipe: r\nmodel: {widht: 3}\n", [], r"a\.yaml: unknown key 'model\.widht' \(did you mean 'width'\?\)"),
        ("recipe: r\nmodel: {width: wide}\n", [], r"key 'model\.width': expected an integer, got 'wide'"),
        ("recipe: r\nmodel: {pool: max}\n", [], r"key 'model\.pool': expected one of \['cls', 'mean'\]"),
        ("recipe: r\nmodel: {sizes: [1, 2, 3]}\n", [], r"key 'model\.sizes': expected 2 items"),
        ("recipe: r\ntrain: {batch_size: 0}\n", [], r"train\.batch_size must be >= 1"),
        ("recipe: r\n", ["model.width"], r"expected KEY=VALUE"),
        ("recipe: r\nmodel: [1]\n", [], r"key 'model': expected a mapping"),
        ("recipe: r\nmodel: {width: 3\n", [], r"a\.yaml: line \d+ is not valid YAML"),
        ("", [], r"a\.yaml: config file is empty"),
    ],
)
def test_errors_name_file_and_key(tmp_path, text, overrides, match):
    p = write(tmp_path, "a.yaml", text)
    with pytest.raises(ConfigError, match=match) as e:
        load_yaml_config(Cfg, p, overrides)
    assert "\n" not in str(e.value)


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_yaml_config(Cfg, tmp_path / "nope.yaml")


@dataclass
class Outer(RecipeConfig):
    # a field whose default instance differs from the class defaults
    model: ModelCfg = field(default_factory=lambda: ModelCfg(width=128, pool="mean", sizes=(5, 6)))


def test_nested_keys_keep_the_fields_default_instance(tmp_path):
    p = write(tmp_path, "a.yaml", "recipe: r\nmodel: {dropout: 0.5}\n")
    c = load_yaml_config(Outer, p, ["model.sizes=[7, 8]"])
    assert (c.model.width, c.model.pool, c.model.dropout, c.model.sizes) == (128, "mean", 0.5, (7, 8))
    assert load_yaml_config(Outer, write(tmp_path, "b.yaml", "recipe: r\n")).model.width == 128
