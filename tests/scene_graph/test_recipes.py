import json
import shutil

import pytest
import torch

import scene_graph.recipes  # noqa: F401
from vlx.config import from_dict
from vlx.data.errors import DataError
from vlx.train.recipe import RECIPES
from vlx.train.trainer import Trainer

ROOMS = {"n_train": 8, "n_val": 3, "points_per_object": 24, "seed": 1}
GRAPH = {"num_points": 16, "between": False, "relations": {"set": "viewer"}}


def config(name, root, out, **extra):
    d = {
        "recipe": name,
        "train": {
            "output_dir": str(out),
            "max_steps": 3,
            "batch_size": 4,
            "progress": False,
            "tensorboard": False,
            "resume": "none",
            "log_every": 1,
        },
        "model": {"dim": 32, "fusion_heads": 2, "gnn": {"heads": 2, "layers": 1}},
        "tokenizer": {"max_length": 24},
        # as the tiny configs: the rooms' text comes from the viewer relations, unique by the scene rule
        "data": {"root": str(root), "rooms": ROOMS, "graph": GRAPH, "unique_rule": "scene"},
        "eval_batch_size": 8,
    }
    for k, v in extra.items():
        d.setdefault(k, {}).update(v) if isinstance(v, dict) else d.__setitem__(k, v)
    recipe = RECIPES.get(name)
    return recipe, from_dict(recipe.config_cls, d, where="test")


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return tmp_path_factory.mktemp("sg_recipes")


def fit(recipe, cfg):
    return Trainer(cfg.train, recipe.build(cfg)).fit()


def test_grounding_recipe_trains_and_reports(root, tmp_path):
    recipe, cfg = config("sg_grounding", root, tmp_path / "g")
    res = fit(recipe, cfg)
    for k in ("overall/Acc@0.25", "unique/Acc@0.5", "multiple/Acc@0.25", "candidate/hard", "candidate/view_dep"):
        assert 0.0 <= res[k] <= 100.0 or res[k] != res[k]  # NaN only for an empty split
    assert res["skipped"] == 0 and res["n"] > 0
    assert res["overall/Acc@0.25"] <= 100.0 and 0.0 < res["class_oracle/overall"] <= 100.0
    assert (tmp_path / "g" / "eval.json").is_file()


def test_bad_val_sample_fails_or_is_skipped(root, tmp_path):
    recipe, cfg = config("sg_grounding", root, tmp_path / "g")
    data = tmp_path / "data"
    shutil.copytree(root, data)
    val = json.loads((data / "scanrefer_val.json").read_text())
    val.append(dict(val[0], object_id="77"))
    val.append(dict(val[0], scene_id="scene9999_00"))
    (data / "scanrefer_val.json").write_text(json.dumps(val))
    n = len(val)
    recipe, cfg = config("sg_grounding", data, tmp_path / "g", data={"generate": False})
    with pytest.raises(DataError, match=rf"scanrefer_val.json\[{n - 2}\]: object id 77 not in scene"):
        recipe.build(cfg)
    recipe, cfg = config("sg_grounding", data, tmp_path / "g", data={"generate": False, "skip_bad": True})
    with pytest.warns(UserWarning, match="skipped 2"):
        task = recipe.build(cfg)
    res = task.evaluate(task.model, torch.device("cpu"))
    assert res["skipped"] == 2 and res["n"] == n - 2


def test_qa_recipe_reports_exact_match(root, tmp_path):
    recipe, cfg = config(
        "sg_qa",
        root,
        tmp_path / "qa",
        data={"format": "scanqa", "train_file": "scanqa_train.json", "val_file": "scanqa_val.json"},
    )
    res = fit(recipe, cfg)
    assert 0.0 <= res["EM@1"] <= res["EM@10"] <= 100.0 and "CIDEr-D" in res
    assert res["EM@1_chance"] == pytest.approx(25.0)  # four colour answers
    assert 0.0 <= res["EM@1_gt_object"] <= 100.0


@pytest.mark.slow
def test_qa_answer_head_learns_colour_of_the_asked_object(root, tmp_path):
    # Before the answer head read one object (it pooled all objects by grounding score) it
    # stayed at chance; reading the annotated object it learns the colour in a few dozen steps.
    recipe, cfg = config(
        "sg_qa",
        root,
        tmp_path / "qa",
        data={"format": "scanqa", "train_file": "scanqa_train.json", "val_file": "scanqa_val.json"},
        train={"max_steps": 60, "lr": 3e-3, "batch_size": 8},
    )
    res = fit(recipe, cfg)
    assert res["EM@1_gt_object"] >= 60.0 and res["EM@1_chance"] == pytest.approx(25.0)


@pytest.mark.slow
def test_pretrain_then_finetune_loads_weights(root, tmp_path):
    recipe, cfg = config("sg_pretrain", root, tmp_path / "pre")
    res = fit(recipe, cfg)
    assert 0.0 <= res["relation_swap_acc"] <= 100.0 and "val_masked_words" in res
    recipe, cfg = config("sg_grounding", root, tmp_path / "ft", init_from=str(tmp_path / "pre"))
    task = recipe.build(cfg)
    from safetensors.torch import load_file

    sd = load_file(str(next((tmp_path / "pre" / "checkpoints").glob("step_*")) / "model.safetensors"))
    w = task.model.state_dict()["objects.box.0.weight"]
    assert torch.equal(w, sd["model.objects.box.0.weight"])


@pytest.mark.slow
def test_tiny_relation_model_grounds_through_the_edges(tmp_path_factory, tmp_path):
    """The claim of the scene_graph report at CI size: the same tiny model, data and budget,
    with and without relation edges; the graph must win on same-class distractors by a wide
    margin (the report measures +40.8 points at its larger budget). Rooms from the builtin
    surface sampler: this size measured +41 and +43 on two room seeds (54-57 s for both runs
    on one idle core). With pointcloud's primitives (random proportions, what the report uses)
    shapes are harder and this budget is too small to be stable: +31 and +18 on the same two
    seeds, +32 and +18 at 800 rooms x 10 epochs (3 min)."""
    root = tmp_path_factory.mktemp("sg_rooms_e2e")
    res = {}
    for use_edges in (True, False):
        recipe, cfg = config(
            "sg_grounding",
            root,
            tmp_path / f"edges_{use_edges}",
            train={
                "max_steps": None,
                "epochs": E2E_EPOCHS,
                "batch_size": 32,
                "lr": 2e-3,
                "warmup_steps": 20,
                "num_threads": 1,
                "log_every": 50,
            },
            model={
                "dim": 64,
                "fusion_heads": 4,
                "relation_head": True,
                "text": {"name": "minilm", "preset": None, "freeze": True},
                "gnn": {"heads": 4, "layers": 1, "use_edges": use_edges},
            },
            data={"rooms": E2E_ROOMS, "graph": GRAPH, "unique_rule": "scene"},
        )
        res[use_edges] = fit(recipe, cfg)
    graph, bare = res[True]["multiple/Acc@0.25"], res[False]["multiple/Acc@0.25"]
    assert graph > bare + 20, (graph, bare)
    assert graph > res[True]["class_oracle/overall"] + 15


E2E_ROOMS = {"n_train": 600, "n_val": 60, "points_per_object": 32, "seed": 3}  # builtin primitives (see docstring)
E2E_EPOCHS = 8
