"""SayCan-MiniLM's skill choice on MT10 instructions it was not tuned on: the repo's
paraphrases, the tuning split and the held-out split of the new instruction set (the
held-out split was never used for tuning; see embodied/data/instructions/README.md), and
the built-in exemplars' matching rule."""

from __future__ import annotations

import json

import pytest
import torch

from embodied.planners.saycan import EXEMPLARS_FILE, SayCanPlanner
from embodied.planners.skill_choice import instruction_queries, skill_choice_accuracy
from embodied.types import PlanStep, SkillSpec
from vlx.config import ConfigError

DATA = EXEMPLARS_FILE.parent / "instructions"


def _zeros(texts):
    return torch.zeros(len(texts), 4)


def test_builtin_exemplars_apply_only_to_the_matching_skill():
    p = SayCanPlanner(embedder=_zeros)
    same = SkillSpec("reach", "Reach a goal position.")
    other = SkillSpec("reach", "Reach for the kettle handle.")  # another benchmark's "reach"
    texts = p.grounding_texts(PlanStep("reach"), same)
    assert len(texts) > 5 and "bring the end effector to the target" in texts
    assert p.grounding_texts(PlanStep("reach"), other) == ["Reach for the kettle handle.", "reach"]
    assert SayCanPlanner(embedder=_zeros, exemplars=None).grounding_texts(PlanStep("reach"), same) == [
        "Reach a goal position.",
        "reach",
    ]


def test_exemplars_never_copy_an_evaluation_instruction():
    ex = json.loads(EXEMPLARS_FILE.read_text())
    texts = {t.lower() for k, v in ex.items() if not k.startswith("_") for t in v["exemplars"]}
    evals = set()
    for name in ("mt10_new_tune.json", "mt10_new_heldout.json"):
        evals |= {t.lower() for v in json.loads((DATA / name).read_text()).values() for t in v}
    evals |= {t.lower() for e in json.loads((DATA / "metaworld.json").read_text()).values() for t in e["paraphrases"]}
    assert len(evals) >= 150 and not texts & evals


def test_bad_exemplars_file_is_a_config_error(tmp_path):
    bad = tmp_path / "ex.json"
    bad.write_text(json.dumps({"reach": {"description": "x", "exemplars": "not a list"}}))
    with pytest.raises(ConfigError, match=r"ex.json: key 'reach': expected"):
        SayCanPlanner(embedder=_zeros, exemplars=str(bad))
    with pytest.raises(ConfigError, match=r"key 'exemplars': cannot read"):
        SayCanPlanner(embedder=_zeros, exemplars=str(tmp_path / "missing.json"))


@pytest.mark.slow  # MiniLM over 150 instructions: ~20 s on 2 busy cores
def test_skill_choice_at_least_90_percent_on_unseen_mt10_instructions():
    from embodied.envs import build_benchmark

    bench = build_benchmark("metaworld-mt10")
    expected = {t.name: t.ground_truth[0].skill for t in bench.tasks()}
    planner = SayCanPlanner(max_steps=1)
    for source in ("paraphrases", str(DATA / "mt10_new_tune.json"), str(DATA / "mt10_new_heldout.json")):
        r = skill_choice_accuracy(planner, instruction_queries(bench, source), bench.skill_specs(), expected)
        assert r["n"] == 50 and r["accuracy"] >= 0.9, (source, r["mistakes"])
