"""JSON plan parsing, step validation and the Embodied-Agent-Interface error taxonomy."""

import pytest

from embodied.planners import (
    build_plan_prompt,
    build_score_prompt,
    classify_plan_errors,
    coerce_step,
    count_errors,
    enumerate_groundings,
    executable_steps,
    parse_plan_text,
    plan_from_text,
    step_text,
    validate_step,
)
from embodied.types import Plan, PlanStep, SkillSpec
from embodied.types import PlanErrorKind as K

SKILLS = [
    SkillSpec("open", "open an articulated object", (("object", ("microwave", "slide_cabinet")),)),
    SkillSpec("toggle", "flip a switch", (("object", ("light",)), ("state", ("on", "off")))),
    SkillSpec("reach", "reach the goal position"),
]


def S(name, **args):
    return PlanStep(skill=name, args=tuple(sorted(args.items())))


def kinds(errors):
    return sorted(e.kind.value for e in errors)


def test_parse_plain_json():
    p = parse_plan_text(
        '{"steps": [{"skill": "open", "args": {"object": "microwave"}}, {"skill": "reach", "args": {}}]}'
    )
    assert p.errors == []
    assert [(s.skill, s.arg_dict) for s in p.steps] == [("open", {"object": "microwave"}), ("reach", {})]
    assert p.steps[0].raw == '{"args": {"object": "microwave"}, "skill": "open"}'


def test_parse_prose_fences_and_cot_takes_last_plan():
    text = (
        'Reasoning: the schema is {"steps": [{"skill": "x"}]} and I must open first.\n'
        '```json\n{"steps": [{"skill": "open", "args": {"object": "slide_cabinet"}}, "reach"]}\n```\nDone.'
    )
    p = parse_plan_text(text)
    assert [step_text(s) for s in p.steps] == ["open(object=slide_cabinet)", "reach"]
    assert p.reasoning.startswith("Reasoning: the schema is") and "```" not in p.reasoning
    assert p.errors == []


def test_parse_bare_list_and_non_string_args():
    p = parse_plan_text('[{"action": "toggle", "arguments": {"object": "light", "state": 1}}]')
    assert p.steps == [PlanStep("toggle", (("object", "light"), ("state", "1")), p.steps[0].raw)]


@pytest.mark.parametrize(
    "text", ["", "   ", "I would open the microwave.", "{steps: [open]}", '{"steps": "open"}', "[1, 2]"]
)
def test_unparseable_answers_are_one_parse_error(text):
    p = parse_plan_text(text)
    assert p.steps == [] and kinds(p.errors) == ["parse_error"]


def test_bad_items_are_parse_errors_while_good_items_stay():
    p = parse_plan_text('{"steps": [{"skill": "reach"}, 42, {"args": {}}, {"skill": "open", "args": "microwave"}]}')
    assert [s.skill for s in p.steps] == ["reach", "open"]
    assert [(e.kind, e.step_index) for e in p.errors] == [(K.PARSE, 1), (K.PARSE, 2)]
    # The non-dict args stay visible, and validation rejects them.
    assert kinds(validate_step(p.steps[1], SKILLS)) == ["bad_arguments", "bad_arguments"]


def test_code_in_answers_is_never_executed(tmp_path):
    sentinel = tmp_path / "pwned"
    payload = f"__import__('pathlib').Path({str(sentinel)!r}).touch()"
    plan = plan_from_text('{"steps": [{"skill": "%s", "args": {}}]}' % payload.replace('"', '\\"'))
    plan2 = plan_from_text(payload)
    errs = classify_plan_errors(plan, SKILLS) + classify_plan_errors(plan2, SKILLS)
    assert kinds(errs) == ["hallucinated_skill", "parse_error"]
    assert executable_steps(plan, SKILLS) == []
    assert not sentinel.exists()


def test_validate_step_taxonomy():
    assert validate_step(S("open", object="microwave"), SKILLS) == []
    assert kinds(validate_step(S("fly"), SKILLS)) == ["hallucinated_skill"]
    assert kinds(validate_step(S("microwave"), SKILLS)) == ["hallucinated_object"]  # an object named as an action
    assert kinds(validate_step(S("open", object="fridge"), SKILLS)) == ["hallucinated_object"]
    assert kinds(validate_step(S("open"), SKILLS)) == ["bad_arguments"]  # missing
    assert kinds(validate_step(S("open", object="microwave", speed="fast"), SKILLS)) == ["bad_arguments"]
    assert kinds(validate_step(S("toggle", object="light"), SKILLS)) == ["bad_arguments"]


def test_classify_against_ground_truth():
    gt = [S("open", object="microwave"), S("toggle", object="light", state="on"), S("open", object="slide_cabinet")]
    perfect = Plan(steps=list(gt))
    assert classify_plan_errors(perfect, SKILLS, gt) == []
    # swapped first two, dropped the last, added a reach, one hallucination
    plan = Plan(steps=[S("toggle", object="light", state="on"), S("open", object="microwave"), S("reach"), S("fly")])
    c = count_errors(classify_plan_errors(plan, SKILLS, gt))
    assert c == {
        "parse_error": 0,
        "hallucinated_skill": 1,
        "hallucinated_object": 0,
        "bad_arguments": 0,
        "missing_step": 1,
        "extra_step": 1,
        "wrong_order": 1,
        "affordance_failure": 0,
    }
    # a repeated step is extra only beyond the truth's count; order is fine
    rep = Plan(
        steps=[
            S("open", object="microwave"),
            S("open", object="microwave"),
            S("toggle", object="light", state="on"),
            S("open", object="slide_cabinet"),
        ]
    )
    errs = classify_plan_errors(rep, SKILLS, gt)
    assert [(e.kind, e.step_index) for e in errs] == [(K.EXTRA_STEP, 1)]
    # full reversal of three steps: two of them out of the LCS order
    rev = Plan(steps=list(reversed(gt)))
    assert kinds(classify_plan_errors(rev, SKILLS, gt)) == ["wrong_order", "wrong_order"]


def test_classify_carries_parse_errors_and_affordances():
    plan = plan_from_text('{"steps": [{"skill": "reach"}, 7, {"skill": "open", "args": {"object": "microwave"}}]}')
    errs = classify_plan_errors(plan, SKILLS, ground_truth=[S("reach")], affordances={"open": 0.0})
    assert kinds(errs) == ["affordance_failure", "extra_step", "parse_error"]


def test_groundings_and_prompts():
    g = enumerate_groundings(SKILLS)
    assert [step_text(s) for s in g] == [
        "open(object=microwave)",
        "open(object=slide_cabinet)",
        "toggle(object=light, state=on)",
        "toggle(object=light, state=off)",
        "reach",
    ]
    assert all(validate_step(s, SKILLS) == [] for s in g)
    p = build_plan_prompt("open the microwave", SKILLS, chain_of_thought=True)
    assert "Instruction: open the microwave" in p and "Reasoning:" in p and '"steps"' in p
    assert "- toggle(object: light, state: on|off): flip a switch" in p
    assert build_score_prompt("x", SKILLS).endswith("Plan, one skill per line:")


def test_coerce_step_forms():
    want = S("open", object="microwave")
    for x in (want, {"skill": "open", "args": {"object": "microwave"}}, ("open", {"object": "microwave"})):
        got = coerce_step(x)
        assert (got.skill, got.args) == (want.skill, want.args)
    assert coerce_step("reach").skill == "reach"
    with pytest.raises(ValueError, match="cannot read a plan step"):
        coerce_step(3)
