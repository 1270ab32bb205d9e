"""Summaries of harness runs: success per task with Wilson 95% intervals, sub-goal success,
CALVIN-style average completed chain length (Mees et al., 2022), plan executability and the
Embodied Agent Interface error taxonomy, plan length, planner latency and tokens; written as
``summary.json``, ``summary.md``, ``per_task.csv``, a bar plot ``success.png`` and rollout
mp4s replayed from recorded actions (``videos/``).
"""

from __future__ import annotations

import csv
import json
import re
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from embodied.records import EpisodeIds, episode_chosen
from embodied.types import PLANNER_ERROR_KINDS, PlanErrorKind
from vlx.io.mp4 import Mp4Writer

TAXONOMY = [k.value for k in PlanErrorKind]
_HALLUCINATED = {PlanErrorKind.HALLUCINATED_SKILL.value, PlanErrorKind.HALLUCINATED_OBJECT.value}


def recorded_error_kind(p: dict) -> str | None:
    """A recorded plan's failure column (``error_kind``; derived for records written before
    the harness stored it)."""
    if "error_kind" in p:
        return p["error_kind"]
    if p.get("status") == "timeout":
        return "timeout"
    if p.get("status") in ("exception", "garbage"):
        return "parse_error"
    kinds = {e.get("kind") for e in p.get("errors", [])}
    if kinds & _HALLUCINATED:
        return "hallucination"
    return "parse_error" if PlanErrorKind.PARSE.value in kinds else None


def planner_errors(plans: Sequence[dict]) -> dict[str, int]:
    c = Counter(recorded_error_kind(p) for p in plans)
    return {k: int(c.get(k, 0)) for k in PLANNER_ERROR_KINDS}


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion (scipy's ``binomtest``)."""
    if n == 0:
        return (0.0, 1.0)
    from scipy.stats import binomtest

    ci = binomtest(int(successes), int(n)).proportion_ci(confidence_level=confidence, method="wilson")
    return float(ci.low), float(ci.high)


def _mean(xs: Sequence[float]) -> float | None:
    return float(np.mean(xs)) if len(xs) else None


def _group_stats(records: Sequence[dict]) -> dict[str, Any]:
    n = len(records)
    k = sum(bool(r.get("success")) for r in records)
    lo, hi = wilson_interval(k, n)
    plans = [p for r in records for p in r.get("plans", [])]
    first = [r["plans"][0] for r in records if r.get("plans")]
    n_sub = sum(len(r.get("subgoals", [])) for r in records)
    multi = [r for r in records if len(r.get("subgoals", [])) > 1]
    return dict(
        episodes=n,
        successes=k,
        success_rate=k / n if n else None,
        ci95_low=lo,
        ci95_high=hi,
        errored=sum(r.get("status") != "ok" for r in records),
        subgoal_success=(sum(len(r.get("completed_subgoals", [])) for r in records) / n_sub) if n_sub else None,
        avg_chain_length=_mean([r.get("chain_length", 0) for r in records]),
        avg_chain_length_multistep=_mean([r.get("chain_length", 0) for r in multi]),
        plan_executability=_mean([float(p["executable"]) for p in plans]),
        skill_choice_accuracy=_mean([float(p["exact"]) for p in first]),
        plan_length=_mean([len(p["steps"]) for p in plans]),
        replans=_mean([r.get("replans", 0) for r in records]),
        # executed plan steps that are not in the ground truth (repeats included); the ones
        # that could not succeed were stopped early (executed[].stop) and the plan went on
        extra_steps_executed=sum(bool(e.get("extra")) for r in records for e in r.get("executed", [])),
        env_steps=_mean([r.get("env_steps", 0) for r in records]),
        **{f"planner_{k}": v for k, v in planner_errors(plans).items()},
    )


def summarize(records: Sequence[dict], meta: dict | None = None) -> dict[str, Any]:
    """The report's numbers (see module docstring) over ``records``, overall and per task."""
    tasks: dict[str, list[dict]] = {}
    for r in records:
        tasks.setdefault(r["task"], []).append(r)
    plans = [p for r in records for p in r.get("plans", [])]
    errors = Counter(e["kind"] for p in plans for e in p.get("errors", []))
    lat = [p["latency_s"] for p in plans]
    overall = _group_stats(records)
    overall.update(
        tasks=len(tasks),
        mean_task_success=_mean([_group_stats(v)["success_rate"] for v in tasks.values()]),
        plans=len(plans),
        error_taxonomy={k: int(errors.get(k, 0)) for k in TAXONOMY},
        planner_errors=planner_errors(plans),
        planner_status=dict(Counter(p.get("status", "ok") for p in plans)),
        planner_latency_s=dict(
            mean=_mean(lat),
            p50=float(np.percentile(lat, 50)) if lat else None,
            p95=float(np.percentile(lat, 95)) if lat else None,
        ),
        prompt_tokens=int(sum(p.get("prompt_tokens", 0) for p in plans)),
        completion_tokens=int(sum(p.get("completion_tokens", 0) for p in plans)),
        env_errors=[dict(episode_id=r["episode_id"], error=r.get("error")) for r in records if r.get("status") != "ok"],
    )
    return dict(meta=meta or {}, overall=overall, per_task={t: _group_stats(v) for t, v in tasks.items()})


def _fmt(x: Any, pct: bool = False) -> str:
    if x is None:
        return "-"
    if pct:
        return f"{100 * x:.1f}"
    return f"{x:.3g}" if isinstance(x, float) else str(x)


PER_TASK_COLUMNS = [
    "task",
    "episodes",
    "successes",
    "success_rate",
    "ci95_low",
    "ci95_high",
    "subgoal_success",
    "avg_chain_length",
    "plan_executability",
    "skill_choice_accuracy",
    "plan_length",
    "replans",
    "errored",
    "env_steps",
    *[f"planner_{k}" for k in PLANNER_ERROR_KINDS],
]


SUCCESS_IS_NOT_PLANNING = (
    "Success alone is not a planning metric here: a wrong skill often still succeeds (the push "
    "expert also completes reach and pick-place), so the plan is judged by skill choice and plan "
    "errors against the ground truth; success follows."
)


def _run_lines(m: dict) -> list[str]:
    """What makes this run this run: planner options, instruction set, caps, fingerprint."""
    cfg, caps, ins = m.get("config", {}), m.get("caps", {}), m.get("instruction_set") or {}
    opts = cfg.get("planner_args") or {}
    opt_text = ", ".join(f"{k}={json.dumps(v, default=str)}" for k, v in sorted(opts.items())) or "none"
    ins_text = f"`{ins.get('name', cfg.get('instructions', '?'))}`"
    if ins.get("sha256"):
        ins_text += f" (sha256 {ins['sha256'][:12]})"
    cap_text = ", ".join(f"{k} {'-' if v is None else v}" for k, v in caps.items()) or "-"
    return [
        f"planner `{cfg.get('planner', '?')}` (options: {opt_text}), skills `{cfg.get('skills', '?')}`, "
        f"{cfg.get('episodes', '?')} episodes per task, seed {cfg.get('seed', '?')}, {m.get('world_size', 1)} rank(s).",
        "",
        f"Instructions: {ins_text}. Caps: {cap_text}. Fingerprint: `{str(m.get('fingerprint', '-'))[:16]}`.",
    ]


def _planning_lines(o: dict) -> list[str]:
    pe = o.get("planner_errors", {})
    return [
        f"**Skill choice accuracy (first plan = ground truth): {_fmt(o['skill_choice_accuracy'], True)}%**; "
        f"plan executability {_fmt(o['plan_executability'], True)}%.",
        "",
        "| planner failures | " + " | ".join(PLANNER_ERROR_KINDS) + " |",
        "|---|" + "---|" * len(PLANNER_ERROR_KINDS),
        "| plans | " + " | ".join(str(pe.get(k, 0)) for k in PLANNER_ERROR_KINDS) + " |",
    ]


def to_markdown(summary: dict) -> str:
    m, o = summary["meta"], summary["overall"]
    lines = [f"# Embodied evaluation: {m.get('benchmark', '?')}", "", *_run_lines(m), ""]
    lines += [f"Protocol: {m.get('protocol') or 'success by the benchmark signal'}", ""]
    success = (
        f"Success: {_fmt(o['success_rate'], True)}% (95% Wilson CI {_fmt(o['ci95_low'], True)}-"
        f"{_fmt(o['ci95_high'], True)}) over {o['episodes']} episodes, {o['tasks']} tasks; "
        f"mean per-task success {_fmt(o['mean_task_success'], True)}%; errored episodes {o['errored']}."
    )
    if m.get("success_measures_planning", True):
        lines += [f"**{success}**", "", *_planning_lines(o)]
    else:  # lead with what measures the plan
        lines += [*_planning_lines(o), "", SUCCESS_IS_NOT_PLANNING, "", success]
    lines += [
        "",
        "| metric | value |",
        "|---|---|",
        f"| sub-goal success | {_fmt(o['subgoal_success'], True)}% |",
        f"| avg completed chain length (all / multi-step) | {_fmt(o['avg_chain_length'])} / "
        f"{_fmt(o['avg_chain_length_multistep'])} |",
        f"| plan length (mean) | {_fmt(o['plan_length'])} |",
        f"| re-plans per episode | {_fmt(o['replans'])} |",
        f"| extra plan steps executed (not in the ground truth) | {o.get('extra_steps_executed', 0)} |",
        f"| planner latency mean / p50 / p95 (s) | {_fmt(o['planner_latency_s']['mean'])} / "
        f"{_fmt(o['planner_latency_s']['p50'])} / {_fmt(o['planner_latency_s']['p95'])} |",
        f"| tokens prompt / completion | {o['prompt_tokens']} / {o['completion_tokens']} |",
        f"| planner status | {', '.join(f'{k}: {v}' for k, v in sorted(o['planner_status'].items())) or '-'} |",
        "",
        "## Plan errors (Embodied Agent Interface taxonomy)",
        "",
        "| " + " | ".join(TAXONOMY) + " |",
        "|" + "---|" * len(TAXONOMY),
        "| " + " | ".join(str(o["error_taxonomy"][k]) for k in TAXONOMY) + " |",
        "",
        "## Per task",
        "",
        "| task | n | success % | 95% CI | sub-goal % | chain | executable % | skill acc % | errored |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for t, s in summary["per_task"].items():
        lines.append(
            f"| {t} | {s['episodes']} | {_fmt(s['success_rate'], True)} | "
            f"{_fmt(s['ci95_low'], True)}-{_fmt(s['ci95_high'], True)} "
            f"| {_fmt(s['subgoal_success'], True)} | {_fmt(s['avg_chain_length'])} | "
            f"{_fmt(s['plan_executability'], True)} "
            f"| {_fmt(s['skill_choice_accuracy'], True)} | {s['errored']} |"
        )
    if o["env_errors"]:
        lines += ["", "## Errored episodes", ""] + [
            f"- `{e['episode_id']}`: {e['error']}" for e in o["env_errors"][:50]
        ]
    return "\n".join(lines) + "\n"


def plot_success(summary: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    per = summary["per_task"]
    names = list(per)
    rates = np.array([per[t]["success_rate"] or 0.0 for t in names])
    lo = rates - np.array([per[t]["ci95_low"] for t in names])
    hi = np.array([per[t]["ci95_high"] for t in names]) - rates
    fig, ax = plt.subplots(figsize=(max(4, 0.5 * len(names) + 2), 3.5))
    ax.bar(range(len(names)), 100 * rates, yerr=100 * np.stack([lo, hi]), capsize=3, color="tab:blue")
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels(names, rotation=60, ha="right", fontsize=7)
    ax.set_ylim(0, 105)
    ax.set_ylabel("success % (95% Wilson CI)")
    ax.set_title(
        f"{summary['meta'].get('benchmark', '')} - planner {summary['meta'].get('config', {}).get('planner', '')}"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def replay_episode(
    benchmark: Any,
    record: dict,
    size: int = 128,
    camera: str | None = None,
    shadows: bool = True,
    writer: Mp4Writer | None = None,
) -> tuple[list[np.ndarray], bool]:
    """Frames of ``record`` re-run from its seed and recorded actions, and whether the
    replay reached the benchmark's success (it must match the record: episodes are seeded).
    With ``writer``, each frame goes to it as soon as it is rendered (encoded in the writer's
    thread while the next one renders) and the returned list is empty."""
    env = benchmark.make_env(record["task"], render=True, camera=camera, width=size, height=size)
    if hasattr(env, "shadows"):
        env.shadows = shadows
    frames: list[np.ndarray] = []
    emit = writer.write if writer is not None else frames.append
    try:
        env.reset(seed=record["seed"])
        emit(env.render())
        ok = False
        for a in record["actions"]:
            _, _, _, _, info = env.step(np.asarray(a, dtype=np.float32))
            ok = ok or env.success(info)
            emit(env.render())
    finally:
        env.close()
    return frames, ok


def video_path(out: Path, record: dict, ok: bool) -> Path:
    """``<out>/videos/<task>_ep<N>_<success|fail>.mp4``, the task name reduced to a safe file
    name; a path that would leave ``<out>/videos`` is a ValueError."""
    safe = re.sub(r"[^A-Za-z0-9_.+-]+", "_", str(record["task"])).lstrip(".") or "task"
    root = (Path(out) / "videos").resolve()
    p = (root / f"{safe}_ep{int(record['episode'])}_{'success' if ok else 'fail'}.mp4").resolve()
    if p.parent != root:
        raise ValueError(f"video path {p} is outside {root}")
    return p


def write_videos(
    out: Path,
    records: Sequence[dict],
    benchmark: Any,
    limit: int,
    size: int = 128,
    ids: EpisodeIds | None = None,
    shadows: bool = False,
    fps: int = 30,
) -> list[str]:
    """mp4s of the first ``limit`` records that kept their actions, plus every record chosen
    by ``ids`` ((episode numbers, full episode ids), see ``records.parse_episode_ids``).
    Frames are streamed to the encoder thread while the episode is replayed; the file is
    renamed to its success/fail name once the replay has finished."""
    from tqdm import tqdm

    with_actions = [r for r in records if r.get("actions")]
    chosen = with_actions[:limit]
    if ids is not None:
        chosen += [r for r in with_actions if episode_chosen(r["episode_id"], ids) and r not in chosen]
    (Path(out) / "videos").mkdir(exist_ok=True)
    paths = []
    for r in tqdm(chosen, desc="videos", unit="ep"):
        tmp = video_path(out, r, False).with_suffix(".partial.mp4")
        with Mp4Writer(tmp, fps=fps, preset="veryfast") as w:
            _, ok = replay_episode(benchmark, r, size=size, shadows=shadows, writer=w)
        p = video_path(out, r, ok)
        tmp.replace(p)
        paths.append(str(p))
    return paths


def write_report(
    out: Path,
    records: Sequence[dict],
    meta: dict,
    benchmark: Any = None,
    videos: int = 0,
    video_ids: EpisodeIds | None = None,
    video_size: int = 128,
    video_shadows: bool = False,
) -> dict:
    """Write the report files into ``out``; returns the summary dict. Chosen video episodes
    recorded without actions (an earlier run without videos) are listed under
    ``videos_missing``: rerun them in a fresh output dir to film them."""
    out = Path(out)
    summary = summarize(records, meta)
    if (videos or video_ids) and benchmark is not None:
        summary["videos"] = write_videos(
            out, records, benchmark, videos, size=video_size, ids=video_ids, shadows=video_shadows
        )
        if video_ids is not None:
            summary["videos_missing"] = [
                r["episode_id"] for r in records if episode_chosen(r["episode_id"], video_ids) and not r.get("actions")
            ]
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    (out / "summary.md").write_text(to_markdown(summary))
    with open(out / "per_task.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(PER_TASK_COLUMNS)
        for t, s in summary["per_task"].items():
            w.writerow([t] + [s[c] for c in PER_TASK_COLUMNS[1:]])
    if summary["per_task"]:
        plot_success(summary, out / "success.png")
    return summary
