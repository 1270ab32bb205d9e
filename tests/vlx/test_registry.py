"""Registries: lazy entries import on first use, one-line errors, the plugin declarations,
and the quickstart flags the CLI hands to each quickstart."""

import sys
from argparse import Namespace

import pytest

from vlx.cli import main
from vlx.config import ConfigError
from vlx.registry import QUICKSTARTS, RECIPES, Registry, UnknownNameError, register_plugin


def _module(tmp_path, monkeypatch, name, text):
    (tmp_path / f"{name}.py").write_text(text)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, name, raising=False)


def test_lazy_attr_entry_imports_on_get_only(tmp_path, monkeypatch):
    _module(tmp_path, monkeypatch, "vlx_lazy_a", "OBJ = object()\n")
    reg = Registry("widget")
    reg.register_lazy("a", "vlx_lazy_a:OBJ")
    assert reg.names() == ["a"] and "a" in reg
    assert "vlx_lazy_a" not in sys.modules
    obj = reg.get("a")
    assert obj is sys.modules["vlx_lazy_a"].OBJ and reg.get("a") is obj


def test_lazy_module_entry_must_register_itself(tmp_path, monkeypatch):
    reg = Registry("widget")
    monkeypatch.setitem(sys.modules, "vlx_test_reg", Namespace(REG=reg))
    _module(tmp_path, monkeypatch, "vlx_lazy_b", "import vlx_test_reg\nvlx_test_reg.REG.register('b', 42)\n")
    _module(tmp_path, monkeypatch, "vlx_lazy_c", "X = 1\n")
    reg.register_lazy("b", "vlx_lazy_b")
    reg.register_lazy("c", "vlx_lazy_c")
    assert reg.get("b") == 42
    with pytest.raises(UnknownNameError, match="widget 'c': module vlx_lazy_c was imported but did not register it"):
        reg.get("c")


def test_unknown_name_is_a_one_line_config_error_that_old_callers_catch():
    reg = Registry("widget")
    reg.register("x", 1)
    with pytest.raises(ConfigError) as e:
        reg.get("y")
    assert str(e.value) == "unknown widget 'y'; known: x"
    assert isinstance(e.value, KeyError) and e.value.args[0] == "unknown widget 'y'; known: x"


def test_every_declared_recipe_resolves_to_its_name():
    for name in RECIPES.names():
        assert RECIPES.get(name).name == name


def test_plugin_declarations_are_checked():
    mod = Namespace(QUICKSTARTS={"qs-bad": ("x:run", 0, "help", ("out", "verbose"))})
    with pytest.raises(ConfigError, match="qs-bad.*unknown flags \\['verbose'\\]"):
        register_plugin(mod, "fake.plugin")


def test_quickstart_gets_the_common_flags_resolved(tmp_path, monkeypatch, capsys):
    _module(
        tmp_path,
        monkeypatch,
        "vlx_qs_probe",
        "SEEN = []\ndef run(args):\n    SEEN.append(vars(args).copy())\n    return 0\n",
    )
    register_plugin(
        Namespace(QUICKSTARTS={"qs-probe": ("vlx_qs_probe:run", -100, "probe", ("out", "seed", "cache"))}), "t"
    )
    try:
        monkeypatch.delenv("VLX_CACHE", raising=False)
        monkeypatch.chdir(tmp_path)
        assert main(["quickstart", "qs-probe", "--seed", "3"]) == 0
        seen = sys.modules["vlx_qs_probe"].SEEN[-1]
        assert (seen["out"], seen["seed"], seen["cache"]) == (
            "runs/quickstart/qs-probe",
            3,
            "runs/quickstart/qs-probe/cache",
        )
        monkeypatch.setenv("VLX_CACHE", str(tmp_path / "c"))
        assert main(["quickstart", "qs-probe", "--out", "o"]) == 0
        seen = sys.modules["vlx_qs_probe"].SEEN[-1]
        assert (seen["out"], seen["seed"], seen["cache"]) == ("o", 0, str(tmp_path / "c"))
        out = capsys.readouterr().out
        assert f"outputs under o, generated data in {tmp_path / 'c'}" in out
        # a flag the quickstart does not honour is refused in one line, before it runs
        n = len(sys.modules["vlx_qs_probe"].SEEN)
        assert main(["quickstart", "qs-probe", "--fast"]) == 2
        err = capsys.readouterr().err.strip()
        assert err == "error: quickstart 'qs-probe' does not take --fast (it takes --out, --seed, --cache)"
        assert len(sys.modules["vlx_qs_probe"].SEEN) == n
    finally:
        QUICKSTARTS._items.pop("qs-probe", None)


def test_recipes_command_lists_every_plugin_recipe(capsys):
    assert main(["recipes"]) == 0
    names = capsys.readouterr().out.split()
    for n in ("clip_shapes", "video_retrieval", "pc_classify", "sg_grounding", "embodied_policy"):
        assert n in names


def test_every_declared_command_builds_its_parser():
    from vlx.cli import build_parser
    from vlx.registry import COMMANDS

    assert set(COMMANDS.names()) >= {"doctor", "caption", "video-features", "pointcloud", "scene-graph", "embodied"}
    parser = build_parser()  # imports every command module: each "module:add_parser" resolves
    assert parser.parse_args(["scene-graph", "graph", "scans", "scene0000_00"]).scene_id == "scene0000_00"
    assert parser.parse_args(["pointcloud", "render", "x.ply"]).input == "x.ply"
    assert parser.parse_args(["caption", "v.mp4", "--ckpt", "run"]).ckpt == "run"
    assert parser.parse_args(["doctor", "--timeout", "5"]).timeout == 5.0


def test_a_missing_dependency_is_one_line(tmp_path, monkeypatch, capsys):
    _module(tmp_path, monkeypatch, "vlx_needs_dep", "import vlx_no_such_dependency\ndef add(sub):\n    pass\n")
    reg = Registry("recipe")
    reg.register_lazy("r", "vlx_needs_dep")
    with pytest.raises(ConfigError, match="recipe 'r': its module vlx_needs_dep does not import .*vlx doctor"):
        reg.get("r")
    register_plugin(Namespace(COMMANDS={"needs-dep": ("vlx_needs_dep:add", "help")}), "t")
    from vlx.registry import COMMANDS

    try:
        assert main(["needs-dep"]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: vlx needs-dep: its module does not import") and "\n" not in err
    finally:
        COMMANDS._items.pop("needs-dep", None)
