"""Markdown table of Franka Kitchen chain results from harness run folders:

    python benchmarks/embodied_kitchen_chains.py runs/embodied/chains/oracle ...

Per run: planner, instruction set, chains (episodes), order-sensitive chain success with its
95% Wilson interval, CALVIN average chain length, the fraction of chains with >= k
subtasks done in order, how many first plans equalled the ground truth, and how many chains
failed with a right plan (controller failures)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from embodied.chains import chain_summary
from embodied.records import load_all_records


def row(run: Path) -> str:
    recs = load_all_records(run)
    meta = json.loads((run / "run.json").read_text())["fields"] if (run / "run.json").is_file() else {}
    s = chain_summary(recs)
    lo, hi = s["ci95"]
    at = " / ".join(f"{v:.2f}" for v in s["at_least"].values())
    exact = [bool(r["plans"] and r["plans"][0].get("exact")) for r in recs]
    right_failed = sum(e and not r.get("success") for e, r in zip(exact, recs))
    instr = meta.get("instructions", {}) if isinstance(meta.get("instructions"), dict) else {}
    return (
        f"| {run.name} | {meta.get('planner', '?')} | {instr.get('name', meta.get('instructions', '?'))} | "
        f"{s['chains']} | {s['successes']}/{s['chains']} ({s['successes'] / max(s['chains'], 1):.0%}) | "
        f"{lo:.2f}-{hi:.2f} | {s['avg_chain_length']:.2f} | {at} | {sum(exact)}/{len(recs)} | {right_failed} |"
    )


def main(runs: list[str]) -> None:
    print(
        "| run | planner | instructions | chains | chain success | 95% CI | avg chain length | >=1 / >=2 / >=3 / >=4 "
        "| plan = ground truth | right plan, chain failed |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in runs:
        print(row(Path(r)))


if __name__ == "__main__":
    main(sys.argv[1:])
