"""An arm: a LeRobot `Robot` seen as a vector of joint positions.

The env speaks numpy (state and action vectors in a fixed joint order);
LeRobot robots speak flat dicts ("shoulder_pan.pos" -> float). This class is
the translation, and it turns every failure of the robot into an `ArmFault`
naming the arm, so the env does not need to know LeRobot's exception types.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from robot_drivers.arms.config import ArmConfig, lerobot_robot_config
from robot_drivers.errors import ArmFault, RobotError

logger = logging.getLogger(__name__)


class Arm:
    def __init__(self, config: ArmConfig, robot: Any) -> None:
        self.config = config
        self.robot = robot
        # The action features are the joints LeRobot commands; their order is the env's action layout.
        self.joint_names: list[str] = [k for k, v in robot.action_features.items() if v is float]
        if not self.joint_names:
            raise RobotError(f"arm {config.id!r} ({config.type}) has no scalar action features to command")

    @property
    def name(self) -> str:
        return f"arm {self.config.id!r} ({self.config.type}{', simulated bus' if self.config.simulated else ''})"

    @property
    def num_joints(self) -> int:
        return len(self.joint_names)

    @property
    def is_connected(self) -> bool:
        try:
            return bool(self.robot.is_connected)
        except Exception:
            return False

    def connect(self) -> None:
        """Connect without LeRobot's interactive calibration (it would prompt on stdin mid-UI)."""
        try:
            self.robot.connect(calibrate=False)
        except Exception as exc:
            raise RobotError(f"{self.name}: could not connect on {self.config.port}: {exc}") from exc
        if not self.robot.is_calibrated:
            self.disconnect()
            raise RobotError(
                f"{self.name} is not calibrated; run `lerobot-calibrate --robot.type={self.config.type} "
                f"--robot.port={self.config.port} --robot.id={self.config.id}` first"
            )

    def read_positions(self) -> np.ndarray:
        try:
            observation = self.robot.get_observation()
            return np.asarray([observation[k] for k in self.joint_names], dtype=np.float64)
        except Exception as exc:
            raise ArmFault(f"{self.name}: reading joint positions failed: {exc}", component="arm") from exc

    def send_positions(self, target: np.ndarray) -> np.ndarray:
        """Command joint targets; returns what LeRobot actually sent (it may clip by max_relative_target)."""
        action = {k: float(v) for k, v in zip(self.joint_names, target, strict=True)}
        try:
            sent = self.robot.send_action(action)
        except Exception as exc:
            raise ArmFault(f"{self.name}: sending joint targets failed: {exc}", component="arm") from exc
        return np.asarray([sent.get(k, action[k]) for k in self.joint_names], dtype=np.float64)

    def disconnect(self) -> None:
        """Best effort: an arm that is already gone cannot be disconnected more."""
        try:
            if self.robot.is_connected:
                self.robot.disconnect()
        except Exception as exc:
            logger.warning("%s: disconnect failed: %s", self.name, exc)


def make_arm(config: ArmConfig) -> Arm:
    """Build (not connect) the LeRobot robot an `ArmConfig` names, on a simulated bus if asked."""
    from lerobot.robots.utils import make_robot_from_config

    robot_config = lerobot_robot_config(config)
    try:
        if config.simulated:
            from robot_drivers.arms.simulated_bus import simulated_buses

            with simulated_buses(robot_config, config.simulation):
                robot = make_robot_from_config(robot_config)
        else:
            robot = make_robot_from_config(robot_config)
    except RobotError:
        raise
    except Exception as exc:
        raise RobotError(f"arm {config.id!r}: LeRobot could not build a {config.type}: {exc}") from exc
    return Arm(config, robot)
