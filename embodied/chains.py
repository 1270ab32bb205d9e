"""Long-horizon chain metrics: order-sensitive chain success and CALVIN-style average chain
length (Mees et al., 2022, "CALVIN": the number of consecutive instructed subtasks completed
from the start of the chain, averaged over chains; also reported as the fraction of chains
that got at least k subtasks in a row, k = 1..N).

``completions`` is the episode's log of every subtask the env can detect, in the order they
were first completed (Franka Kitchen: all seven, not only the instructed ones). The chain
advances while the next completion is the next instructed subtask; it stops for good at the
first completion that is anything else (an instructed subtask out of order, or a subtask
that was not instructed: a wrong step). A missing step simply leaves the chain short.
Completions after the whole chain is done do not matter.
"""

from __future__ import annotations

from collections.abc import Sequence


def chain_progress(instructed: Sequence[str], completions: Sequence[str]) -> int:
    """Number of instructed subtasks completed in order from the start, before any
    out-of-order or uninstructed completion."""
    k = 0
    for g in completions:
        if k == len(instructed):
            break
        if g != instructed[k]:
            break
        k += 1
    return k


def chain_success(instructed: Sequence[str], completions: Sequence[str]) -> bool:
    return chain_progress(instructed, completions) == len(instructed)


def average_chain_length(lengths: Sequence[int]) -> float | None:
    return sum(lengths) / len(lengths) if lengths else None


def chain_stats(instructed_lengths: Sequence[int], lengths: Sequence[int]) -> dict:
    """Over chains (instructed length N_i, completed length L_i): chains, successes (L_i =
    N_i), avg_chain_length, and ``at_least``: k -> fraction of chains with L_i >= k (CALVIN's
    "k tasks in a row"), for k = 1..max N_i."""
    if len(instructed_lengths) != len(lengths):
        raise ValueError(f"{len(instructed_lengths)} chains but {len(lengths)} chain lengths")
    for n, m in zip(instructed_lengths, lengths, strict=True):
        if not 0 <= m <= n:
            raise ValueError(f"chain length {m} outside 0..{n}")
    top = max(instructed_lengths, default=0)
    c = len(lengths)
    return dict(
        chains=c,
        successes=sum(m == n for n, m in zip(instructed_lengths, lengths, strict=True)),
        avg_chain_length=average_chain_length(lengths),
        at_least={k: sum(m >= k for m in lengths) / c for k in range(1, top + 1)} if c else {},
    )


def chain_summary(records: Sequence[dict]) -> dict:
    """``chain_stats`` over harness records (``subgoals``, ``chain_length``) plus chain
    success's 95% Wilson interval."""
    from embodied.report import wilson_interval

    n = [len(r.get("subgoals", [])) for r in records]
    m = [int(r.get("chain_length", 0)) for r in records]
    s = chain_stats(n, m)
    s["ci95"] = wilson_interval(s["successes"], s["chains"])
    return s


__all__ = ["average_chain_length", "chain_progress", "chain_stats", "chain_success", "chain_summary"]
