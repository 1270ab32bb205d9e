"""Franka Kitchen arm model for the subtask controllers: a private copy of the kitchen MuJoCo
model whose state is set from observations (end-effector pose, Jacobian, site poses), and the
operational-space joint step (damped least squares with a nullspace pull toward home) that
every controller family in ``embodied.skills.kitchen`` uses. See that module's docstring for
the control law and why the model is private."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np

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

    def ee_pose_at(self, q_arm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """End-effector pose with the arm joints at ``q_arm`` (the model's state is restored)."""
        saved = self.data.qpos[:ARM].copy()
        self.data.qpos[:ARM] = np.asarray(q_arm, dtype=np.float64)[:ARM]
        self.mj.mj_kinematics(self.model, self.data)
        out = self.ee_pose()
        self.data.qpos[:ARM] = saved
        self.mj.mj_kinematics(self.model, self.data)
        self.mj.mj_comPos(self.model, self.data)
        return out

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
