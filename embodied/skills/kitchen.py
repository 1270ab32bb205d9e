"""Franka Kitchen subtask controllers: state-based operational-space control on top of the
env's 9-dim joint-velocity actions, one skill per subtask, done by the env's own completion
signal (``info['episode_task_completions']``), as Meta-World's scripted experts are.

Each controller reads the robot and object joint positions from the observation, writes them
into a private copy of the kitchen MuJoCo model, and reads from it the end-effector pose
and Jacobian (``mujoco.mj_jacSite``) and the pose of the handle/knob site it acts on. It
moves through phases: approach with a pre-contact offset, contact (and grasp), then follow
the articulation (the target is the handle site with the object's joint advanced a little,
the grasp kept rigid: an arc for the microwave door and the knobs, a line for the slide
cabinet), release, retreat and return to the home posture, so the next skill of a
multi-subtask episode starts where every skill was tuned. A skill's ``success`` is the
subtask's completion in the env's info once the skill has returned home.

Why a private model rather than the env's: vector rollouts run the env in a worker
(``reset(env=None, ...)``), and the observation holds the full joint state (robot qpos at
[0:9], object qpos at [18:39]), so the controllers need nothing but the observation.

Joint-space step from a Cartesian error (damped least squares, with a nullspace term that
pulls toward the home posture): dq = J^T (J J^T + lambda^2 I)^-1 v + (I - J^+ J) k (q_home - q).
The env turns an action a in [-1, 1] into a joint position target q_obs + 2 a dt (dt = 0.08 s),
so a = dq / 0.16 for a per-step joint displacement dq.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from embodied.skills import register_skills
from embodied.types import SkillSpec

ARM = 7  # arm joints; 7 and 8 are the fingers
STEP_PER_ACTION = 0.16  # joint displacement (rad or m) per step for action 1.0: 2 rad/s * 0.08 s
FINGER_OPEN, FINGER_CLOSED = 0.04, 0.0
OBJ_QPOS = slice(18, 39)  # object joint positions in obs['observation'] (qpos[9:30])

# The env's initial robot posture (FrankaKitchen-v1's init_qpos[:9]); home for every skill.
HOME_Q = np.array([0.148388, -1.768486, 1.843903, -2.476858, 0.260252, 0.712533, 1.595154, 0.04, 0.04])


def kitchen_model_path() -> str:
    import gymnasium_robotics

    return os.path.join(
        os.path.dirname(gymnasium_robotics.__file__),
        "envs",
        "assets",
        "kitchen_franka",
        "kitchen_assets",
        "kitchen_env_model.xml",
    )


class KitchenKinematics:
    """A private copy of the kitchen model whose state is set from observations; gives the
    end-effector pose, its Jacobian and site poses with an object joint set to any value."""

    def __init__(self, model_path: str | None = None, ee_site: str = "end_effector"):
        import mujoco

        self.mj = mujoco
        self._args = (model_path, ee_site)
        self.model = mujoco.MjModel.from_xml_path(model_path or kitchen_model_path())
        self.data = mujoco.MjData(self.model)
        self.ee = self._site_id(ee_site)
        self._jp = np.zeros((3, self.model.nv))
        self._jr = np.zeros((3, self.model.nv))
        self._bias = np.zeros(self.model.nv)
        self._kp = self.model.actuator_gainprm[:9, 0].copy()
        margin = 0.02  # rad kept from each limit
        self.arm_limits = (self.model.jnt_range[:ARM, 0] + margin, self.model.jnt_range[:ARM, 1] - margin)

    def __deepcopy__(self, memo: dict) -> KitchenKinematics:
        # A fresh model (the state is re-synced from every observation anyway): parallel
        # episodes' skill copies (harness vector slots) must not share MjData.
        new = KitchenKinematics(*self._args)
        memo[id(self)] = new
        return new

    def _site_id(self, name: str) -> int:
        i = self.mj.mj_name2id(self.model, self.mj.mjtObj.mjOBJ_SITE, name)
        if i < 0:
            raise KeyError(f"kitchen model: no site {name!r}")
        return i

    def joint_qpos_adr(self, name: str) -> int:
        i = self.mj.mj_name2id(self.model, self.mj.mjtObj.mjOBJ_JOINT, name)
        if i < 0:
            raise KeyError(f"kitchen model: no joint {name!r}")
        return int(self.model.jnt_qposadr[i])

    def sync(self, obs: Any) -> None:
        """Set the model's joint positions from a Franka Kitchen observation (dict or array)."""
        o = np.asarray(obs["observation"] if isinstance(obs, dict) else obs, dtype=np.float64)
        if o.shape[-1] != 59:
            raise ValueError(f"kitchen observation: expected 59 values, got shape {o.shape}")
        self.data.qpos[:9] = o[:9]
        self.data.qpos[9:30] = o[OBJ_QPOS]
        self.mj.mj_kinematics(self.model, self.data)
        self.mj.mj_comPos(self.model, self.data)
        # Static joint torques (gravity; qvel stays 0 here) the arm's position servos must hold.
        self.mj.mj_rne(self.model, self.data, 0, self._bias)

    def servo_offset(self) -> np.ndarray:
        """(9,) joint position offsets the env's position servos (force = kp (ctrl - q)) need
        to hold the current posture against gravity: without it a pure proportional command
        stalls a few centimetres short of every target."""
        return self._bias[:9] / self._kp

    @property
    def q(self) -> np.ndarray:
        return self.data.qpos[:9].copy()

    def ee_pose(self) -> tuple[np.ndarray, np.ndarray]:
        return self.data.site_xpos[self.ee].copy(), self.data.site_xmat[self.ee].reshape(3, 3).copy()

    def ee_jacobian(self) -> np.ndarray:
        """(6, 7): linear then angular velocity of the end-effector site per arm joint."""
        self.mj.mj_jacSite(self.model, self.data, self._jp, self._jr, self.ee)
        return np.vstack([self._jp[:, :ARM], self._jr[:, :ARM]])

    def site_pose(self, site: str, joint: str | None = None, value: float | np.ndarray | None = None):
        """(pos (3,), rot (3, 3)) of ``site``, with ``joint`` set to ``value`` if given (the
        model's state is restored afterwards)."""
        sid = self._site_id(site)
        if joint is None:
            return self.data.site_xpos[sid].copy(), self.data.site_xmat[sid].reshape(3, 3).copy()
        adr = self.joint_qpos_adr(joint)
        v = np.atleast_1d(np.asarray(value, dtype=np.float64))
        saved = self.data.qpos[adr : adr + len(v)].copy()
        self.data.qpos[adr : adr + len(v)] = v
        self.mj.mj_kinematics(self.model, self.data)
        out = self.data.site_xpos[sid].copy(), self.data.site_xmat[sid].reshape(3, 3).copy()
        self.data.qpos[adr : adr + len(v)] = saved
        self.mj.mj_kinematics(self.model, self.data)
        self.mj.mj_comPos(self.model, self.data)
        return out


def orientation_error(R: np.ndarray, R_target: np.ndarray) -> np.ndarray:
    """(3,) rotation vector (world frame) taking ``R`` to ``R_target`` (axis * angle)."""
    from scipy.spatial.transform import Rotation

    return Rotation.from_matrix(R_target @ R.T).as_rotvec()


def rot_about(axis: np.ndarray, angle: float) -> np.ndarray:
    from scipy.spatial.transform import Rotation

    return Rotation.from_rotvec(np.asarray(axis, dtype=np.float64) / np.linalg.norm(axis) * angle).as_matrix()


@dataclass(frozen=True)
class OSCGains:
    """Per-step gains and limits of the operational-space controller (units per env step)."""

    kp: float = 0.6  # fraction of the position error corrected per step
    ko: float = 0.5  # fraction of the orientation error corrected per step
    max_lin: float = 0.03  # m per step (0.375 m/s at 12.5 steps/s)
    max_ang: float = 0.12  # rad per step
    damping: float = 0.05  # lambda of damped least squares
    k_null: float = 0.05  # pull toward home posture in the nullspace, per step


def osc_joint_step(
    kin: KitchenKinematics, p_target: np.ndarray, R_target: np.ndarray, gains: OSCGains, q_home: np.ndarray = HOME_Q
) -> tuple[np.ndarray, float, float]:
    """Arm joint displacement (7,) for one step toward (p_target, R_target) and the position
    (m) and orientation (rad) errors before the step."""
    p, R = kin.ee_pose()
    ep = np.asarray(p_target) - p
    eo = orientation_error(R, R_target)
    dist, ang = float(np.linalg.norm(ep)), float(np.linalg.norm(eo))
    v_lin = gains.kp * ep
    n = np.linalg.norm(v_lin)
    if n > gains.max_lin:
        v_lin *= gains.max_lin / n
    v_ang = gains.ko * eo
    n = np.linalg.norm(v_ang)
    if n > gains.max_ang:
        v_ang *= gains.max_ang / n
    J = kin.ee_jacobian()
    q = kin.q[:ARM]
    lo, hi = kin.arm_limits
    # Joint-limit clamping: a joint that would cross its limit (the home posture sits at
    # joint 2's lower limit) is taken out of the solution and the rest re-solved, so the
    # arm finds another configuration instead of stalling against the limit.
    w = np.ones(ARM)
    for _ in range(3):
        JW = J * w
        JJt = JW @ J.T + gains.damping**2 * np.eye(6)
        dq = JW.T @ np.linalg.solve(JJt, np.concatenate([v_lin, v_ang]))
        # Nullspace of the (damped) task: posture correction that does not move the hand.
        N = np.eye(ARM) - JW.T @ np.linalg.solve(JJt, J)
        dq += w * (N @ (gains.k_null * (q_home[:ARM] - q)))
        blocked = ((q + dq < lo) | (q + dq > hi)) & (w > 0)
        if not blocked.any():
            break
        w[blocked] = 0.0
    dq = np.clip(q + dq, lo, hi) - q
    return dq, dist, ang


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


@dataclass
class _Phase:
    name: str
    target: Callable[[], tuple[np.ndarray, np.ndarray]] | None  # (p, R) in world; None: joint-space home
    finger: float
    tol: float = 0.012
    max_steps: int = 80
    hold_steps: int = 0  # steps to stay (gripper closing/opening) once at the target
    until: Callable[[], bool] | None = None  # phase ends when this holds (instead of at target)


class KitchenSubtaskSkill:
    """One subtask's controller as a ``Skill``: ``reset(env, args)``, ``act(obs)`` (9-dim action
    in [-1, 1]), ``success(info)`` (subtask completed by the env's signal and the hand home).

    If the articulation stalls (the grasp slipped), the controller starts over from the
    approach, up to ``retries`` times.
    """

    def __init__(
        self,
        spec: SkillSpec,
        config: SubtaskConfig,
        kin: KitchenKinematics | None = None,
        gains: OSCGains = OSCGains(),
        retries: int = 2,
    ):
        self.spec = spec
        self.config = config
        self.kin = kin or KitchenKinematics()
        self.gains = gains
        self.retries = retries
        self._adr = self.kin.joint_qpos_adr(config.joint)
        self._phases: list[_Phase] = []
        self._i = 0
        self._n = 0
        self._tries = 0
        self.finished = False
        self.released_at_goal = False
        self.tracked = True
        self.trace: list[str] = []

    # -- Skill protocol
    def reset(self, env: Any, args: dict[str, str]) -> None:
        if args:
            raise ValueError(f"skill {self.spec.name!r} takes no arguments, got {sorted(args)}")
        # A skill whose subtask the env does not track (an extra plan step) still runs, but
        # can never succeed: the env reports completions only for its own goals. Its
        # ``finished`` (set once back home) tells the harness to stop it there.
        tasks = _env_subtasks(env)
        self.tracked = tasks is None or self.config.subtask in tasks
        self._phases, self._i, self._n, self._tries = [], 0, 0, 0
        self.finished, self.released_at_goal = False, False
        self.trace = []

    def success(self, info: dict) -> bool:
        """The env lists the subtask as completed and the hand is back home (so the next
        skill starts from the posture it was tuned for); when the env has no subtask left
        (it terminates the episode), completion alone counts."""
        if not self.tracked or self.config.subtask not in _completed(info):
            return False
        return self.finished or ("tasks_to_complete" in info and len(info["tasks_to_complete"]) == 0)

    def act(self, obs: Any) -> np.ndarray:
        self.kin.sync(obs)
        if not self._phases:
            self._plan()
        while True:
            if self._i >= len(self._phases):
                self.finished = True
                return np.zeros(9)
            ph = self._phases[self._i]
            action, done = self._run(ph)
            if not done:
                self._n += 1
                return action
            self.trace.append(f"{ph.name}:{self._n}")
            self._i, self._n = self._i + 1, 0

    # -- phases
    def _obj_q(self) -> np.ndarray:
        c = self.config
        n = 7 if c.joint == "kettle" else 1
        return self.kin.data.qpos[self._adr : self._adr + n].copy()

    def _plan(self) -> None:
        """Build the phase list from the current state (handle pose, hand orientation)."""
        c, kin = self.config, self.kin
        p_site, R_site = kin.site_pose(c.site)
        _, R_ee = kin.ee_pose()
        R_grip = rot_about(R_ee[:, 2], c.roll) @ R_ee if c.roll else R_ee
        pre = p_site + np.array(c.pre_offset)
        contact = p_site + np.array(c.contact_offset)
        fingers_at_contact = FINGER_OPEN if c.grasp else FINGER_CLOSED
        fixed = lambda p, R=R_grip: lambda: (p, R)  # noqa: E731
        phases = [
            _Phase("approach", fixed(pre), fingers_at_contact, tol=0.02, max_steps=120),
            _Phase("contact", fixed(contact), fingers_at_contact, tol=0.015, max_steps=40),
        ]
        if c.grasp:
            phases.append(_Phase("grasp", fixed(contact), FINGER_CLOSED, tol=1.0, max_steps=10, hold_steps=8))
        hold = FINGER_CLOSED
        if c.carry:
            for k, d in enumerate(c.carry):
                phases.append(_Phase(f"carry{k}", fixed(contact + np.array(d)), hold, tol=0.015, max_steps=120))
            end = contact + np.array(c.carry[-1])
        elif c.regrasp_at:
            # Pull in stages (regrasp points not yet passed, e.g. after a retry), letting go and
            # grasping the handle again between them; the last stage ends at ``release_at``.
            q0 = float(self._obj_q()[0])
            stops = [v for v in c.regrasp_at if (v - q0) * c.direction > 0]
            for k, stop in enumerate(stops):
                phases.append(
                    _Phase(
                        f"follow{k}",
                        self._follow_target(R_grip, contact),
                        hold,
                        tol=-1.0,
                        max_steps=c.follow_steps,
                        until=self._passed(stop),
                    )
                )
                phases.append(
                    _Phase(
                        f"let-go{k}",
                        self._retreat_target((0.0, 0.0, 0.0)),
                        FINGER_OPEN,
                        tol=1.0,
                        max_steps=8,
                        hold_steps=6,
                    )
                )
                back, again = self._regrasp_targets()
                phases.append(_Phase(f"back{k}", back, FINGER_OPEN, tol=0.02, max_steps=40))
                phases.append(_Phase(f"recontact{k}", again, FINGER_OPEN, tol=0.015, max_steps=40))
                phases.append(_Phase(f"regrasp{k}", again, FINGER_CLOSED, tol=1.0, max_steps=10, hold_steps=8))
            phases.append(
                _Phase(
                    "follow",
                    self._follow_target(R_grip, contact),
                    hold,
                    tol=-1.0,
                    max_steps=c.follow_steps,
                    until=self._released_ok,
                )
            )
            end = None
        else:
            phases.append(
                _Phase(
                    "follow",
                    self._follow_target(R_grip, contact),
                    hold,
                    tol=-1.0,
                    max_steps=c.follow_steps,
                    until=self._released_ok,
                )
            )
            end = None
        phases.append(
            _Phase("release", None if end is None else fixed(end), FINGER_OPEN, tol=1.0, max_steps=8, hold_steps=6)
        )
        phases.append(_Phase("retreat", self._retreat_target(), FINGER_OPEN, tol=0.02, max_steps=60))
        phases.append(_Phase("home", None, FINGER_OPEN, tol=0.05, max_steps=120))
        self._phases = phases

    def _follow_target(self, R_grip: np.ndarray, contact: np.ndarray):
        """Target that keeps the grasp rigid with the handle while its joint advances by ``lead``."""
        c, kin = self.config, self.kin
        state: dict[str, Any] = {}

        def target():
            q = float(self._obj_q()[0])
            if "grasp" not in state:  # the hand-to-handle transform, fixed at the first follow step
                p_s, R_s = kin.site_pose(c.site)
                p_e, R_e = kin.ee_pose()
                state["grasp"] = (R_s.T @ (p_e - p_s), R_s.T @ R_e)
            rel_p, rel_R = state["grasp"]
            p_s, R_s = kin.site_pose(c.site, c.joint, q + c.direction * c.lead)
            return p_s + R_s @ rel_p, R_s @ rel_R

        return target

    def _regrasp_targets(self):
        """(back-off, contact) targets for grasping the handle again where it is now:
        ``pre_offset`` and ``contact_offset`` taken in the handle's moving frame (as they are in
        the world frame with the object at 0), the hand's orientation relative to the handle
        as it was when it let go (read at the first call)."""
        c, kin = self.config, self.kin
        _, R0 = kin.site_pose(c.site, c.joint, 0.0)
        turn = rot_about(np.array([0.0, 0.0, 1.0]), c.regrasp_yaw)
        state: dict[str, Any] = {}

        def make(offset):
            off = turn @ R0.T @ np.asarray(offset, dtype=np.float64)

            def target():
                p_s, R_s = kin.site_pose(c.site)
                if "R" not in state:
                    state["R"] = turn @ R_s.T @ kin.ee_pose()[1]
                return p_s + R_s @ off, R_s @ state["R"]

            return target

        return make(c.pre_offset), make(c.contact_offset)

    def _passed(self, value: float) -> Callable[[], bool]:
        c = self.config
        return lambda: (float(self._obj_q()[0]) - value) * c.direction >= 0

    def _retreat_target(self, offset: tuple[float, float, float] | None = None):
        c, kin = self.config, self.kin
        state: dict[str, Any] = {}
        offset = c.retreat_offset if offset is None else offset

        def target():
            if "p" not in state:
                p, R = kin.ee_pose()
                state["p"], state["R"] = p + np.array(offset), R
            return state["p"], state["R"]

        return target

    def _released_ok(self) -> bool:
        c = self.config
        q = float(self._obj_q()[0])
        ok = (q - c.release_at) * c.direction >= 0
        self.released_at_goal |= ok
        return ok

    def _run(self, ph: _Phase) -> tuple[np.ndarray, bool]:
        kin = self.kin
        q = kin.q
        fingers = np.clip((ph.finger - q[7:9]) / STEP_PER_ACTION, -1.0, 1.0)
        if ph.target is None:  # joint-space return to the home posture
            err = HOME_Q[:ARM] - q[:ARM]
            if np.max(np.abs(err)) < ph.tol or self._n >= ph.max_steps:
                return np.zeros(9), True
            dq = np.clip(0.3 * err, -0.08, 0.08) + kin.servo_offset()[:ARM]
            return np.concatenate([np.clip(dq / STEP_PER_ACTION, -1, 1), fingers]), False
        p_t, R_t = ph.target()
        dq, dist, ang = osc_joint_step(kin, p_t, R_t, self.gains)
        arrived = dist < ph.tol and ang < 0.1
        if ph.until is not None:
            if ph.until():
                return np.zeros(9), True
            if self._n >= ph.max_steps:  # stalled: start over from the approach
                if self._tries < self.retries:
                    self._tries += 1
                    self.trace.append(f"retry{self._tries}")
                    self._phases = []
                    self._plan()
                    self._i, self._n = 0, 0
                    return np.concatenate([np.zeros(ARM), np.full(2, 1.0)]), False
                return np.zeros(9), True
        elif (arrived and self._n >= ph.hold_steps) or self._n >= ph.max_steps:
            return np.zeros(9), True
        dq = dq + kin.servo_offset()[:ARM]
        action = np.concatenate([np.clip(dq / STEP_PER_ACTION, -1.0, 1.0), fingers])
        return action, False


def _completed(info: dict) -> set[str]:
    done = info.get("episode_task_completions")
    if done is None:
        done = info.get("vlx_subgoals", ())
    if isinstance(done, str):
        done = [g for g in done.split("|") if g]
    return set(done)


def _env_subtasks(env: Any) -> set[str] | None:
    """The subtasks the env reports completions for (None when unknown, e.g. a vector worker)."""
    if env is None:
        return None
    task = getattr(env, "task", None)
    if task is not None and getattr(task, "subgoals", None) is not None:
        return set(task.subgoals)
    return None


@register_skills("kitchen", "scripted")
def scripted_skills(benchmark: Any, subtasks: tuple[str, ...] | None = None) -> dict[str, KitchenSubtaskSkill]:
    """One controller per subtask skill of ``benchmark`` (sharing one private model)."""
    kin = KitchenKinematics()
    out = {}
    for spec in benchmark.skill_specs():
        cfg = subtask_config(spec.name)
        if subtasks is None or cfg.subtask in subtasks:
            out[spec.name] = KitchenSubtaskSkill(spec, cfg, kin)
    return out


__all__ = [
    "HOME_Q",
    "KitchenKinematics",
    "KitchenSubtaskSkill",
    "OSCGains",
    "SUBTASKS",
    "SubtaskConfig",
    "osc_joint_step",
    "scripted_skills",
    "subtask_config",
]


def measure_success(subtasks: list[str], episodes: int, seed: int = 0, init_noise: float = 0.0) -> list[dict]:
    """Per subtask: success rate of its controller over ``episodes`` single-subtask episodes
    (env's completion signal), from the env's start (``init_noise`` = 0) or perturbed arm starts."""
    from tqdm import tqdm

    from embodied.envs import build_benchmark, seeds_for
    from embodied.envs.kitchen import KitchenEnv

    bench = build_benchmark("kitchen-single")
    lib = scripted_skills(bench)
    rows = []
    for ti, name in enumerate(subtasks):
        cfg = subtask_config(name)
        task = bench.task(cfg.subtask.replace(" ", "-"))
        env = KitchenEnv(task, init_noise=init_noise)
        skill = lib[cfg.skill]
        ok, steps = 0, []
        for e in tqdm(range(episodes), desc=cfg.subtask, leave=False):
            obs, info = env.reset(seed=seeds_for(ti, e, seed))
            skill.reset(env, {})
            for t in range(env.max_episode_steps):
                obs, _, term, trunc, info = env.step(skill.act(obs))
                if env.success(info):
                    ok += 1
                    steps.append(t + 1)
                    break
                if term or trunc:
                    break
        env.close()
        rows.append(
            dict(
                subtask=cfg.subtask,
                skill=cfg.skill,
                episodes=episodes,
                successes=ok,
                rate=ok / episodes,
                mean_steps=float(np.mean(steps)) if steps else None,
            )
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    """``python -m embodied.skills.kitchen --episodes 10 --init-noise 0.1 --out "
    "runs/embodied/kitchen_controllers.md``"""
    import argparse
    from pathlib import Path

    ap = argparse.ArgumentParser(description="Franka Kitchen controller success rates")
    ap.add_argument("--subtasks", default=",".join(SUBTASKS))
    ap.add_argument("--episodes", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--init-noise", type=float, default=0.0, help="arm joint start perturbation (rad)")
    ap.add_argument("--out", default="runs/embodied/kitchen_controllers.md")
    a = ap.parse_args(argv)
    rows = measure_success([s.strip() for s in a.subtasks.split(",")], a.episodes, a.seed, a.init_noise)
    lines = [
        f"Franka Kitchen controllers: {a.episodes} episodes each, seed {a.seed}, arm start noise "
        f"±{a.init_noise} rad; success = the env's completion signal within 400 steps.",
        "",
        "| subtask | skill | success | rate | mean steps to success |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        ms = f"{r['mean_steps']:.0f}" if r["mean_steps"] is not None else "-"
        lines.append(f"| {r['subtask']} | {r['skill']} | {r['successes']}/{r['episodes']} | {r['rate']:.0%} | {ms} |")
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
