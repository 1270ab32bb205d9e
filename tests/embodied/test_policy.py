"""The plan-conditioned policy: ops against naive references, text conditioning that actually
steers actions, the harness skill modes, and `vlx train` of the tiny config end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from embodied.policy.model import FormerLayer, PlanConditionedPolicy, PolicyModelConfig, StateTokenizer


def test_state_tokenizer_matches_naive_loop():
    torch.manual_seed(0)
    tok = StateTokenizer(state_dim=7, size=3, width=5)
    x = torch.randn(4, 7)
    out = tok(x)
    padded = torch.cat([x, torch.zeros(4, 2)], 1)
    for n in range(3):
        ref = padded[:, 3 * n : 3 * n + 3] @ tok.weight[n] + tok.bias[n]
        torch.testing.assert_close(out[:, n], ref)


def test_former_layer_ignores_padded_text():
    torch.manual_seed(0)
    layer = FormerLayer(16, 4, 0.0).eval()
    q, obs = torch.randn(2, 3, 16), torch.randn(2, 5, 16)
    text = torch.randn(2, 6, 16)
    mask = torch.tensor([[1, 1, 1, 0, 0, 0], [1, 1, 1, 1, 1, 0]], dtype=torch.bool)
    text2 = text.clone()
    text2[~mask] = 100.0  # garbage in the padding
    torch.testing.assert_close(layer(q, obs, text, mask), layer(q, obs, text2, mask))
    text3 = text.clone()
    text3[0, 0] += 1.0  # a real token changes the output
    assert not torch.allclose(layer(q, obs, text, mask)[0], layer(q, obs, text3, mask)[0])


def _model(chunk: int = 1, text_dropout: float = 0.0) -> PlanConditionedPolicy:
    cfg = PolicyModelConfig(
        width=32, num_queries=2, heads=2, layers=1, head_hidden=64, chunk=chunk, text_dropout=text_dropout
    )
    return PlanConditionedPolicy(cfg, state_dim=10, action_dim=4, text_dim=8, text_len=5)


def test_text_steers_actions_through_the_former():
    """Same states, two texts, opposite target actions: only the text can tell them apart, so
    a trained policy must route it through the cross-attention (loss far below the 1.0 of
    predicting the mean)."""
    torch.manual_seed(0)
    m = _model()
    B = 64
    state = torch.randn(B, 10)
    texts = torch.randn(2, 5, 8)
    which = torch.arange(B) % 2
    batch = {
        "state": state,
        "text_tokens": texts[which],
        "text_mask": torch.ones(B, 5, dtype=torch.bool),
        "actions": torch.where(which[:, None, None] == 0, 1.0, -1.0).expand(B, 1, 4).clone(),
        "action_mask": torch.ones(B, 1, dtype=torch.bool),
    }
    opt = torch.optim.Adam(m.parameters(), lr=3e-3)
    for _ in range(150):
        loss = m(batch)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.05
    m.eval()
    pred = m.predict(state[:4], texts[[0, 1, 0, 1]], torch.ones(4, 5, dtype=torch.bool))[:, 0]
    assert (pred[[0, 2]] > 0.5).all() and (pred[[1, 3]] < -0.5).all()


def test_chunk_loss_masks_past_episode_end():
    torch.manual_seed(0)
    m = _model(chunk=3)
    B = 2
    batch = {
        "state": torch.randn(B, 10),
        "text_tokens": torch.randn(B, 5, 8),
        "text_mask": torch.ones(B, 5, dtype=torch.bool),
        "actions": torch.zeros(B, 3, 4),
        "action_mask": torch.tensor([[1, 1, 0], [1, 0, 0]], dtype=torch.bool),
    }
    pred = m.predict(batch["state"], batch["text_tokens"], batch["text_mask"])
    err = (pred**2).mean(-1)
    expected = (err[0, 0] + err[0, 1] + err[1, 0]) / 3  # naive: mean over the valid (sample, k) only
    torch.testing.assert_close(m(batch)["loss"], expected)
    batch["actions"][0, 2] = 50.0  # a target past the end must not matter
    torch.testing.assert_close(m(batch)["loss"], expected)


def test_text_dropout_swaps_in_the_empty_text():
    m = _model(text_dropout=1.0)
    m.set_null_text(torch.zeros(5, 8), torch.tensor([1, 1, 0, 0, 0], dtype=torch.bool))
    B = 3
    state, text = torch.randn(B, 10), torch.randn(B, 5, 8)
    batch = {
        "state": state,
        "text_tokens": text,
        "text_mask": torch.ones(B, 5, dtype=torch.bool),
        "actions": torch.zeros(B, 1, 4),
        "action_mask": torch.ones(B, 1, dtype=torch.bool),
    }
    m.train()
    loss = m(batch)["loss"]
    null = m.predict(state, torch.zeros(B, 5, 8), m.null_text_mask.expand(B, 5))
    torch.testing.assert_close(loss, (null**2).mean())


class _RecordingPolicy:
    """Stands in for the trained policy: records the text each step is conditioned on."""

    def __init__(self):
        self.texts: list[str] = []

    def reset(self, env=None):
        pass

    def act(self, obs, text):
        self.texts.append(text)
        return np.zeros(4, np.float32)


@pytest.mark.parametrize("mode", ["plan", "instruction", "none"])
def test_skill_modes_through_the_harness(mode, tmp_path):
    from embodied.envs import build_benchmark
    from embodied.harness import HarnessConfig, evaluate
    from embodied.planners import build_planner
    from embodied.policy.skill import InstructionRecorder, policy_skills

    bench = build_benchmark("metaworld-mt10")
    pol = _RecordingPolicy()
    rec = InstructionRecorder(build_planner("oracle"))
    skills = policy_skills(bench, pol, mode, rec)
    cfg = HarnessConfig(
        benchmark=bench.name,
        planner="oracle",
        episodes=2,
        tasks=["pick-place-v3"],
        max_steps=2,
        out=str(tmp_path),
        progress=False,
        instructions="paraphrases",
    )
    summary = evaluate(cfg, benchmark=bench, planner=rec, skills=skills)
    assert summary["overall"]["episodes"] == 2 and len(pol.texts) == 4
    phr = bench.instructions("pick-place-v3")
    expected = {
        "plan": ["pick-place: " + phr[0]] * 4,
        "instruction": [phr[0], phr[0], phr[1], phr[1]],
        "none": [""] * 4,
    }[mode]
    assert pol.texts == expected


@pytest.mark.slow
def test_train_tiny_config_end_to_end(tmp_path):
    """`vlx train configs/embodied/policy_tiny.yaml`: collects demos, trains, checkpoints,
    writes the curve and rolls the policy out in every mode; the run reloads as a skill."""
    import embodied.policy.recipe  # noqa: F401  registers the recipe (the plugin does this for `vlx`)
    from vlx.cli import main

    out, demos = tmp_path / "run", tmp_path / "demos"
    rc = main(
        [
            "train",
            "configs/embodied/policy_tiny.yaml",
            "--set",
            f"train.output_dir={out}",
            "--set",
            f"data.demos={demos}",
            "--set",
            "train.progress=false",
            "--set",
            "eval.max_steps=5",
        ]
    )
    assert rc == 0
    assert (out / "train_curve.png").is_file() and (out / "checkpoints" / "latest").is_file()
    ev = json.loads((out / "eval.json").read_text())
    assert ev["train_episodes"] == 4 and ev["plan_texts"] == 2
    assert {"success_plan", "success_instruction", "success_none"} <= set(ev)
    report = (out / "rollouts" / "policy_report.md").read_text()
    assert "train_curve.png" in report and "| pick-place-v3 |" in report
    from embodied.policy.skill import PolicyRunner

    runner = PolicyRunner.from_run(out)
    a = runner.act(np.zeros(39, np.float32), "reach: Reach a goal position.")
    assert a.shape == (4,) and np.all(np.abs(a) <= 1.0)
    # chunk = 2 in the tiny config: the second action comes from the same prediction
    runner.execute = 2
    runner.reset()
    first = runner.act(np.zeros(39, np.float32), "")
    with torch.no_grad():
        tok, mask = runner.text.features([""])
        chunk = runner.model.predict(torch.zeros(1, 39), tok, mask)[0].numpy()
    np.testing.assert_allclose(first, np.clip(chunk[0], -1, 1), atol=1e-5)
    np.testing.assert_allclose(runner.act(np.ones(39, np.float32), ""), np.clip(chunk[1], -1, 1), atol=1e-5)
