"""A lint over the library's forward paths: tensor factories (``torch.zeros``, ``arange``,
``rand``, ...) must say ``device=``, or their result lands on the CPU while the model runs
on an accelerator (a device mismatch, or a host->device copy every step). Checked: every
function of the modules listed in FORWARD_MODULES (what runs inside a training/eval step),
and every ``forward`` method anywhere in the five packages. Allowed without ``device=``: a
factory whose result is moved at once (``torch.tensor(...).to(x)``), and the documented
cases in ALLOWED."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("vlx", "video", "pointcloud", "scene_graph", "embodied")
FACTORIES = {
    "zeros",
    "ones",
    "empty",
    "full",
    "arange",
    "rand",
    "randn",
    "randint",
    "randperm",
    "tensor",
    "eye",
    "linspace",
}
FORWARD_MODULES = (
    "vlx/losses/*.py",
    "vlx/encoders/*.py",
    "vlx/models/*.py",
    "pointcloud/ops.py",
    "pointcloud/projection.py",
    "pointcloud/encoders/*.py",
    "pointcloud/models/*.py",
    "video/models/*.py",
    "video/pooling.py",
    "video/merge.py",
    "scene_graph/models/*.py",
    "embodied/policy/model.py",
)
SKIP_FUNCTIONS = {"__init__", "reset_parameters"}  # construction, not the step
# (path, function) -> why a CPU tensor is right there
ALLOWED = {
    ("vlx/losses/clip.py", "host_all_reduce_max"): "host-side int exchange over the gloo host group",
    ("vlx/losses/clip.py", "shard_sizes"): "host-side int exchange over the gloo host group",
    ("pointcloud/projection.py", "view_matrices"): "python angle lists become a CPU table; callers .to() it",
    ("pointcloud/projection.py", "look_at_matrices"): "named view sets' angle lists -> a CPU table; callers .to() it",
    ("pointcloud/ops.py", "_fps_open3d"): "open3d runs on the host",
    ("pointcloud/ops.py", "_knn_per_cloud"): "the host backends' results, moved to the query's device",
    ("pointcloud/ops.py", "backend_parity_check"): "one seeded CPU draw, moved to the device under test",
    ("video/models/captioner.py", "make_targets"): "tokenisation in the collate function: a host batch",
}


def _is_factory(call: ast.Call) -> bool:
    f = call.func
    return (
        isinstance(f, ast.Attribute) and f.attr in FACTORIES and isinstance(f.value, ast.Name) and f.value.id == "torch"
    )


def _moved_at_once(call: ast.Call, parents: dict) -> bool:
    """``torch.x(...).to(...)``: the factory's value is the receiver of a called ``.to``."""
    attr = parents.get(call)
    return isinstance(attr, ast.Attribute) and attr.attr == "to" and isinstance(parents.get(attr), ast.Call)


def _forward_module(rel: str) -> bool:
    return any(Path(rel).match(pattern) for pattern in FORWARD_MODULES)


def offenders() -> list[str]:
    found = []
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            tree = ast.parse(path.read_text(), filename=rel)
            parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
            whole = _forward_module(rel)
            for fn in ast.walk(tree):
                if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)) or fn.name in SKIP_FUNCTIONS:
                    continue
                if not (whole or fn.name == "forward") or (rel, fn.name) in ALLOWED:
                    continue
                for node in ast.walk(fn):
                    if not isinstance(node, ast.Call) or not _is_factory(node):
                        continue
                    if any(kw.arg == "device" for kw in node.keywords) or _moved_at_once(node, parents):
                        continue
                    found.append(f"{rel}:{node.lineno} {fn.name}: torch.{node.func.attr} without device=")
    return sorted(set(found))


def test_forward_paths_create_tensors_on_the_inputs_device():
    bad = offenders()
    assert not bad, "tensor factories without device= in forward paths:\n" + "\n".join(bad)


def test_the_lint_catches_a_cpu_factory(tmp_path, monkeypatch):
    """The checker itself: a forward that builds a CPU tensor is reported, a moved one is not."""
    pkg = tmp_path / "vlx" / "losses"
    pkg.mkdir(parents=True)
    (pkg / "bad.py").write_text(
        "import torch\n"
        "def forward(x):\n"
        "    a = torch.arange(3)\n"
        "    b = torch.tensor([1.0]).to(x)\n"
        "    c = torch.zeros(2, device=x.device)\n"
        "    return a, b, c\n"
    )
    monkeypatch.setitem(globals(), "ROOT", tmp_path)
    assert offenders() == ["vlx/losses/bad.py:3 forward: torch.arange without device="]


@pytest.mark.parametrize("rel", ["vlx/losses/clip.py", "pointcloud/ops.py", "video/models/video_clip.py"])
def test_forward_module_patterns_match(rel):
    assert _forward_module(rel)
