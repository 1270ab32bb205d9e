"""Franka Kitchen subtask table: how each subtask's controller acts, by family (hinged doors
and knobs followed along an arc, the slide cabinet along a line, the kettle grasped and
carried), keyed by the env's subtask name and by the skill name planners choose."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class SubtaskConfig:
    """How one subtask is done.

    subtask: the env's task name (``microwave``); skill: the skill name planners choose.
    site / joint: the handle site acted on and the object joint it moves.
    direction: sign of the joint motion that completes the subtask; release_at: joint value
        at which the controller lets go (beyond the env's completion threshold).
    pre_offset / contact_offset: world-frame offsets of the end effector from the site before
        contact and at contact. grasp: close the fingers at contact (else push, closed).
    roll: rotation (rad) of the hand about its approach axis before contact (the kettle's
        handle is horizontal, so the fingers must close vertically).
    lead: how far ahead along the joint (rad or m) each following target is.
    carry: for a free object (kettle), end-effector displacements after grasping, in order.
    regrasp_at: joint values (in the order reached) at which the hand lets go of the handle,
        backs off to ``pre_offset``, re-approaches to ``contact_offset`` and grasps again (both
        offsets in the object's moving frame), then follows on: the hinge cabinet's handle
        slips out of the parallel grip after about 0.6 rad of pulling, so its door is opened
        in two pulls. regrasp_yaw: rotation (rad) about the object frame's z axis of the
        regrasp (hand orientation relative to the handle and the offsets): the hinge door's
        second pull with the hand square to the door drives the wrist into its joint limits
        at about 1.2 rad, short of the 1.3 rad release.
    """

    subtask: str
    skill: str
    site: str
    joint: str
    direction: float = 1.0
    release_at: float = 0.0
    pre_offset: tuple[float, float, float] = (0.0, -0.12, 0.0)
    contact_offset: tuple[float, float, float] = (0.0, 0.0, 0.0)
    grasp: bool = False
    roll: float = 0.0
    lead: float = 0.15
    carry: tuple[tuple[float, float, float], ...] = ()
    retreat_offset: tuple[float, float, float] = (0.0, -0.12, 0.0)
    follow_steps: int = 120
    regrasp_at: tuple[float, ...] = ()
    regrasp_yaw: float = 0.0


SUBTASKS: dict[str, SubtaskConfig] = {
    c.subtask: c
    for c in (
        SubtaskConfig(
            "microwave",
            "open-microwave",
            "microhandle_site",
            "microwave",
            direction=-1.0,
            release_at=-0.6,
            pre_offset=(0.03, -0.12, 0.0),
            contact_offset=(0.0, 0.01, 0.0),
            grasp=True,
            lead=0.2,
        ),
        SubtaskConfig(
            "light switch",
            "flip-light-switch",
            "light_site",
            "light_switch",
            direction=-1.0,
            release_at=-0.6,
            pre_offset=(0.06, -0.12, 0.0),
            contact_offset=(0.035, 0.0, 0.0),
            lead=0.3,
        ),
        SubtaskConfig(
            "slide cabinet",
            "open-slide-cabinet",
            "slide_site",
            "slide_cabinet",
            direction=1.0,
            release_at=0.3,
            pre_offset=(-0.06, -0.12, 0.0),
            contact_offset=(-0.035, 0.0, 0.0),
            lead=0.1,
        ),
        SubtaskConfig(
            "bottom burner",
            "turn-on-bottom-burner",
            "knob2_site",
            "knob_Joint_2",
            direction=-1.0,
            release_at=-0.95,
            pre_offset=(0.0, -0.1, 0.0),
            contact_offset=(0.0, 0.015, 0.0),
            grasp=True,
            lead=0.3,
        ),
        SubtaskConfig(
            "top burner",
            "turn-on-top-burner",
            "knob4_site",
            "knob_Joint_4",
            direction=-1.0,
            release_at=-0.95,
            pre_offset=(0.0, -0.1, 0.0),
            contact_offset=(0.0, 0.015, 0.0),
            grasp=True,
            lead=0.3,
        ),
        SubtaskConfig(
            "hinge cabinet",
            "open-hinge-cabinet",
            "hinge_site2",
            "right_hinge_cabinet",
            direction=1.0,
            release_at=1.3,
            pre_offset=(0.0, -0.12, 0.0),
            contact_offset=(0.0, 0.01, 0.0),
            grasp=True,
            lead=0.2,
            follow_steps=200,
            regrasp_at=(0.55,),
            regrasp_yaw=-0.4,
        ),
        SubtaskConfig(
            "kettle",
            "move-kettle",
            "kettle_site",
            "kettle",
            grasp=True,
            roll=np.pi / 2,
            pre_offset=(0.0, -0.12, 0.0),
            contact_offset=(0.0, 0.01, 0.0),
            carry=((0.0, 0.0, 0.06), (0.04, 0.42, 0.06), (0.04, 0.42, 0.0)),
        ),
    )
}
SKILL_TO_SUBTASK = {c.skill: c.subtask for c in SUBTASKS.values()}


def subtask_config(name: str) -> SubtaskConfig:
    """The controller config of subtask ``name`` (env name, e.g. ``light switch``) or of its
    skill name (``flip-light-switch``); ``KeyError`` naming the known ones otherwise."""
    if name in SUBTASKS:
        return SUBTASKS[name]
    if name in SKILL_TO_SUBTASK:
        return SUBTASKS[SKILL_TO_SUBTASK[name]]
    raise KeyError(
        f"Franka Kitchen: unknown subtask {name!r}; known subtasks: {', '.join(SUBTASKS)} "
        f"(skills: {', '.join(SKILL_TO_SUBTASK)})"
    )
