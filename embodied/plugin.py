"""Registers embodied's CLI command (`vlx embodied eval|quickstart`) and its quickstart (the
embedded default planner evaluation, priority 10) with the vlx core (entry point
`vlx.plugins`). Imports stay light: the command modules load on use."""

from __future__ import annotations

import argparse

import embodied.policy.recipe  # noqa: F401  registers the embodied_policy recipe for `vlx train`
from vlx.cli import register_command, register_quickstart


@register_command("embodied")
def add_embodied_parser(subparsers) -> None:
    from embodied.cli import add_parser

    add_parser(subparsers)


def _quickstart(args: argparse.Namespace) -> int:
    from embodied.cli import run_quickstart

    return run_quickstart(args)


register_quickstart(
    "embodied",
    _quickstart,
    priority=10,
    help="SayCan-MiniLM planner + scripted skills on Meta-World MT10, report in runs/embodied/quickstart",
)
