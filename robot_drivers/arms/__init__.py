"""Arms through LeRobot's own Robot classes: config (ArmConfig), class (Arm), factory (make_arm)."""

from robot_drivers.arms.arm import Arm, make_arm
from robot_drivers.arms.config import ArmConfig, SimulatedBusConfig, known_robot_types

__all__ = ["Arm", "ArmConfig", "SimulatedBusConfig", "known_robot_types", "make_arm"]
