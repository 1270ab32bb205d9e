"""The project's import graph: no circles (also through imports inside functions), no module
imports the CLI, and ``vlx --help`` / ``vlx recipes`` import none of the heavy libraries."""

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("vlx", "video", "pointcloud", "scene_graph", "embodied")
HEAVY = ("torch_geometric", "mujoco", "open3d", "decord", "metaworld")


def project_modules() -> dict[str, Path]:
    mods = {}
    for pkg in PACKAGES:
        for f in sorted((ROOT / pkg).rglob("*.py")):
            parts = list(f.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            mods[".".join(parts)] = f
    return mods


def imported_names(name: str, path: Path, modules: dict | None = None) -> set[str]:
    """Every module ``path`` imports anywhere in its body (function-level imports too)."""
    modules = project_modules() if modules is None else modules
    is_pkg = path.name == "__init__.py"
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_pkg else name.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module
            # `from pkg import submodule` depends on the submodule (Python imports it even while
            # pkg/__init__ is still running); any other name depends on pkg itself
            subs = {f"{mod}.{a.name}" for a in node.names}
            found = {m for m in subs if m in modules}
            out.update(found)
            if len(found) < len(subs):
                out.add(mod)
    return out


def import_graph() -> dict[str, set[str]]:
    mods = project_modules()
    return {m: {t for t in imported_names(m, p, mods) if t in mods and t != m} for m, p in mods.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []
    sys.setrecursionlimit(max(10_000, sys.getrecursionlimit()))

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_graph_walker_sees_function_level_imports_and_finds_a_circle():
    g = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(g) == [["a", "b", "c"]]
    # vlx/encoders/hf.py imports vlx.runtime inside a function only
    assert "vlx.runtime" in import_graph()["vlx.encoders.hf"]


def test_no_import_circles():
    assert cycles(import_graph()) == []


def test_no_module_imports_the_cli():
    offenders = [m for m, deps in import_graph().items() if "vlx.cli" in deps]
    assert offenders == []
    # nor do the benchmarks and scripts (run by hand, so nothing else would notice)
    for f in sorted((ROOT / "benchmarks").glob("*.py")) + sorted((ROOT / "scripts").glob("*.py")):
        assert "vlx.cli" not in imported_names(f.stem, f), f


def test_tests_import_only_what_the_cli_defines():
    """Tests may drive ``vlx.cli.main``; a name moved out of the CLI must not linger there."""
    import vlx.cli

    for f in sorted((ROOT / "tests").rglob("*.py")):
        for node in ast.walk(ast.parse(f.read_text(), str(f))):
            if isinstance(node, ast.ImportFrom) and node.module == "vlx.cli":
                for a in node.names:
                    assert hasattr(vlx.cli, a.name), f"{f.relative_to(ROOT)}: vlx.cli has no {a.name}"


# `python -X importtime -m vlx.cli ARGS`, plus sys.modules at exit: importtime does not log
# modules loaded through importlib.import_module (how plugins and lazy entries load).
RUN_CLI = """
import atexit, json, runpy, sys
atexit.register(lambda: print("MODULES " + json.dumps(sorted(sys.modules))))
sys.argv = ["vlx", *sys.argv[1:]]
runpy.run_module("vlx.cli", run_name="__main__", alter_sys=True)
"""


def imported_modules(args: list[str]) -> set[str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    r = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", RUN_CLI, *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    timed = set()
    for line in r.stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            timed.add(line.rsplit("|", 1)[1].strip())
    assert "argparse" in timed  # the importtime trace is read
    final = [line for line in r.stdout.splitlines() if line.startswith("MODULES ")]
    assert len(final) == 1, r.stdout[-2000:]
    return timed | set(json.loads(final[0][len("MODULES ") :]))


@pytest.mark.parametrize("args", [["--help"], ["recipes"], ["embodied", "--help"]])
def test_cli_imports_only_what_it_uses(args):
    mods = imported_modules(args)
    heavy = {m for m in mods if m.split(".")[0] in HEAVY}
    assert not heavy, sorted(heavy)
    siblings = {m for m in mods if m.split(".")[0] in PACKAGES[1:]}
    if args == ["embodied", "--help"]:  # one sibling's command: its CLI module, not the others
        assert "embodied.cli" in siblings and not {m for m in siblings if m.split(".")[0] != "embodied"} - {
            f"{p}.plugin" for p in PACKAGES[1:]
        } - set(PACKAGES[1:])
    else:  # listing commands or recipes imports only the plugin declarations
        assert siblings <= {f"{p}.plugin" for p in PACKAGES[1:]} | set(PACKAGES[1:]), sorted(siblings)
