"""Structure-CLIP's relation hard negatives (Huang et al. 2024, "Structure-CLIP"): the
subject and object of a caption's relation swapped, so the words stay and the structure
changes ("a red circle left of a blue square" -> "a blue square left of a red circle").

Structure-CLIP finds the triple with a scene-graph parser; here the relation is the first
phrase from ``RELATIONS`` (longest match first, whole words) and its arguments are the text
before and after it. Captions with no listed relation get no negative (None)."""

from __future__ import annotations

import re

RELATIONS = (
    "to the left of",
    "to the right of",
    "in front of",
    "on top of",
    "next to",
    "left of",
    "right of",
    "above",
    "below",
    "under",
    "behind",
    "on",
    "in",
    "beside",
    "near",
    "holding",
    "riding",
    "wearing",
    "carrying",
    "eating",
    "watching",
)
_PATTERN = re.compile(r"\s(" + "|".join(re.escape(r) for r in sorted(RELATIONS, key=len, reverse=True)) + r")\s")


def swap_arguments(caption: str) -> str | None:
    """The caption with its relation's arguments swapped, or None when no relation is found."""
    m = _PATTERN.search(caption)
    if m is None:
        return None
    left, right = caption[: m.start()].strip(), caption[m.end() :].strip().rstrip(".")
    if not left or not right or left.lower() == right.lower():
        return None
    return f"{right} {m.group(1)} {left}"
