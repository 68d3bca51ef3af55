"""A screw-motion planner for ManiSkill's motion-planning solvers that works with numpy 2.

ManiSkill 3.0.1's solvers build `mplib.Planner` (mplib 0.1.1, pinned by
mani-skill). mplib's compiled extension predates numpy 2 and crashes the
interpreter (segfault, no traceback) as soon as a planner is constructed under
numpy >= 2, which this project needs (LeRobot, zarr, rerun); mplib 0.2.1 crashes
the same way (ManiSkill issues #1100 and #1359). The solvers we use only ever
call `move_to_pose_with_screw`, i.e. `Planner.plan_screw`, so this module
re-implements exactly that planner on top of SAPIEN's own Pinocchio model
(`PhysxArticulation.create_pinocchio_model`, built for numpy 2) and toppra,
following mplib 0.1.1's algorithm step for step: the same exponential-coordinate
screw, the same Jacobian-pseudo-inverse stepping, the same joint-limit check and
the same time-optimal parameterisation. What it leaves out is mplib's
self-collision check along the path: a screw motion that would make the arm
collide with itself is executed instead of refused (the demonstrations are
still judged by the simulator's success flag, so such an episode is discarded).

`screw_planner_installed()` swaps it into ManiSkill's
`BaseMotionPlanningSolver.setup_planner` for the duration of a `with` block.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np
from transforms3d.quaternions import quat2mat

logger = logging.getLogger(__name__)


def _pose7_to_mat(pose: np.ndarray) -> np.ndarray:
    mat = np.eye(4)
    mat[:3, 3] = pose[:3]
    mat[:3, :3] = quat2mat(pose[3:7])
    return mat


def _skew(v: np.ndarray) -> np.ndarray:
    return np.array([[0, -v[2], v[1]], [v[2], 0, -v[0]], [-v[1], v[0], 0]])


def _exp_coordinates(transform: np.ndarray) -> tuple[np.ndarray, float]:
    """Screw axis (v, w) and angle of a rigid transform, as in mplib 0.1.1.

    A pure translation gets theta = 1 and w = 0, so that v * theta is the
    displacement; a rotation by pi is reported as theta = -1e6 (not plannable).
    """
    rotation = transform[:3, :3]
    trace = rotation.trace()
    if np.isclose(trace, 3):
        omega, theta = np.zeros(3), 1.0
    elif np.isclose(trace, -1):
        return np.zeros(6), -1e6
    else:
        theta = float(np.arccos((trace - 1) / 2))
        omega = np.array(
            [rotation[2, 1] - rotation[1, 2], rotation[0, 2] - rotation[2, 0], rotation[1, 0] - rotation[0, 1]]
        ) / (2 * np.sin(theta))
    ss = _skew(omega)
    inv_left_jacobian = np.eye(3) / theta - 0.5 * ss + (1.0 / theta - 0.5 / np.tan(theta / 2)) * ss @ ss
    v = inv_left_jacobian @ transform[:3, 3]
    return np.concatenate([v, omega]), theta


class ScrewPlanner:
    """The subset of `mplib.Planner` (0.1.1) that ManiSkill's screw-motion solvers use.

    Attributes the solvers read or write: `joint_vel_limits`, `joint_acc_limits`
    (one per move-group joint, scaled by the solver). Methods: `plan_screw`,
    `set_base_pose`, `update_point_cloud` (accepted, not used: no collision
    checking), `plan_qpos_to_pose` (not supported: returns a failed status).
    """

    def __init__(self, robot: Any, move_group: str) -> None:
        """`robot`: a ManiSkill Articulation (single env); `move_group`: the end-effector link name."""
        physx_articulation = robot._objs[0]
        self._model = physx_articulation.create_pinocchio_model()
        link_names = [link.get_name() for link in robot.get_links()]
        if move_group not in link_names:
            raise ValueError(f"link {move_group!r} is not a link of {robot.name}")
        self._ee_index = link_names.index(move_group)
        self.move_group = move_group

        # The move group: active joints between the root and the end-effector link.
        link = robot.links_map[move_group]
        indices: list[int] = []
        while link is not None:
            if link.joint.active_index is not None:
                indices.append(int(link.joint.active_index[0]))
            link = link.joint.parent_link
        self.move_group_joint_indices = np.array(sorted(indices), dtype=np.int64)
        self.joint_limits = robot.get_qlimits()[0].cpu().numpy().astype(np.float64)
        n = len(self.move_group_joint_indices)
        self.joint_vel_limits = np.ones(n)
        self.joint_acc_limits = np.ones(n)
        self._base = np.eye(4)

    # -- the mplib 0.1.1 surface ------------------------------------------------

    def set_base_pose(self, pose: np.ndarray) -> None:
        """[x, y, z, qw, qx, qy, qz] of the robot base in the world."""
        self._base = _pose7_to_mat(np.asarray(pose, dtype=np.float64))

    def update_point_cloud(self, points: np.ndarray, radius: float = 1e-3) -> None:
        logger.debug("ScrewPlanner ignores %d collision points (no collision checking)", len(points))

    def plan_qpos_to_pose(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        return {"status": "sampling-based planning (RRT) needs mplib, which does not run under numpy 2"}

    def plan_screw(
        self,
        target_pose: np.ndarray,
        qpos: np.ndarray,
        qpos_step: float = 0.1,
        time_step: float = 0.1,
        use_point_cloud: bool = False,
        use_attach: bool = False,
        wrt_world: bool = True,
        verbose: bool = False,
    ) -> dict[str, Any]:
        """Joint path moving the end-effector along a screw to `target_pose` ([p, q], world frame)."""
        qpos = np.array(qpos, dtype=np.float64)
        if qpos.shape[0] < self.joint_limits.shape[0]:  # move-group joints only: pad the rest with zeros
            full = np.zeros(self.joint_limits.shape[0])
            full[: qpos.shape[0]] = qpos
            qpos = full
        target = _pose7_to_mat(np.asarray(target_pose, dtype=np.float64))
        if wrt_world:
            target = np.linalg.inv(self._base) @ target

        self._model.compute_forward_kinematics(qpos)
        current = self._model.get_link_pose(self._ee_index).to_transformation_matrix()
        twist, theta = _exp_coordinates(target @ np.linalg.inv(current))
        if theta < -1e4:
            return {"status": "screw plan failed."}
        remaining = twist * theta

        index = self.move_group_joint_indices
        path = [qpos[index].copy()]
        lower, upper = self.joint_limits[:, 0] - 1e-3, self.joint_limits[:, 1] + 1e-3
        while True:
            self._model.compute_full_jacobian(qpos)
            jacobian = self._model.get_link_jacobian(self._ee_index, local=False)
            delta_q = np.linalg.pinv(jacobian) @ remaining
            delta_q *= qpos_step / np.linalg.norm(delta_q)
            delta_twist = jacobian @ delta_q
            last = False
            if np.linalg.norm(delta_twist) > np.linalg.norm(remaining):
                ratio = np.linalg.norm(remaining) / np.linalg.norm(delta_twist)
                delta_q, delta_twist, last = delta_q * ratio, delta_twist * ratio, True
            qpos = qpos + delta_q
            remaining = remaining - delta_twist
            within_limits = bool(np.all((qpos >= lower) & (qpos <= upper)))
            if np.linalg.norm(delta_twist) < 1e-4 or not within_limits:
                return {"status": "screw plan failed"}
            path.append(qpos[index].copy())
            if last:
                break
        times, pos, vel, acc, duration = self._time_parameterize(np.vstack(path), time_step)
        return {
            "status": "Success",
            "time": times,
            "position": pos,
            "velocity": vel,
            "acceleration": acc,
            "duration": duration,
        }

    def _time_parameterize(self, path: np.ndarray, step: float) -> tuple[np.ndarray, ...]:
        """Time-optimal path parameterisation under joint velocity/acceleration limits (toppra)."""
        with quiet_planner_imports():
            import toppra as ta
            import toppra.algorithm as algo
            import toppra.constraint as constraint

        ta.setup_logging("WARNING")
        spline = ta.SplineInterpolator(np.linspace(0, 1, path.shape[0]), path)
        instance = algo.TOPPRA(
            [
                constraint.JointVelocityConstraint(np.asarray(self.joint_vel_limits)),
                constraint.JointAccelerationConstraint(np.asarray(self.joint_acc_limits)),
            ],
            spline,
            parametrizer="ParametrizeConstAccel",
        )
        trajectory = instance.compute_trajectory()
        if trajectory is None:
            raise RuntimeError("Fail to parameterize path")
        ts = np.linspace(0, trajectory.duration, int(trajectory.duration / step))
        return ts, trajectory(ts), trajectory(ts, 1), trajectory(ts, 2), trajectory.duration


@contextlib.contextmanager
def quiet_planner_imports() -> Iterator[None]:
    """toppra's docstrings trigger SyntaxWarnings when compiled without a bytecode cache."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SyntaxWarning)
        yield


def _setup_screw_planner(solver: Any) -> ScrewPlanner:
    """Drop-in for `BaseMotionPlanningSolver.setup_planner`."""
    move_group = getattr(solver, "MOVE_GROUP", "eef")
    planner = ScrewPlanner(solver.robot, move_group)
    planner.set_base_pose(np.hstack([solver.base_pose.p, solver.base_pose.q]))
    planner.joint_vel_limits = np.asarray(planner.joint_vel_limits) * solver.joint_vel_limits
    planner.joint_acc_limits = np.asarray(planner.joint_acc_limits) * solver.joint_acc_limits
    return planner


@contextlib.contextmanager
def screw_planner_installed() -> Iterator[None]:
    """Within the block, ManiSkill's motion-planning solvers plan with `ScrewPlanner`."""
    with quiet_planner_imports():  # imports mplib and toppra
        from mani_skill.examples.motionplanning.base_motionplanner.motionplanner import BaseMotionPlanningSolver

    original = BaseMotionPlanningSolver.setup_planner
    BaseMotionPlanningSolver.setup_planner = _setup_screw_planner
    try:
        yield
    finally:
        BaseMotionPlanningSolver.setup_planner = original
