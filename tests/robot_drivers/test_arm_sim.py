"""LeRobot's own SO-101 and Koch follower classes, on the simulated motor bus.

The bus replaces LeRobot's FeetechMotorsBus / DynamixelMotorsBus at the
MotorsBusBase API (the vendor SDKs are not installed here); everything above
it, connect/configure/get_observation/send_action/disconnect, is LeRobot's code.
"""

from __future__ import annotations

import time

import numpy as np
import pytest

from robot_drivers.arms import ArmConfig, make_arm
from robot_drivers.arms.simulated_bus import SimulatedMotorsBus
from robot_drivers.errors import ArmFault, RobotConfigError, RobotError

from .conftest import arm_config


def test_so101_is_lerobots_class_on_the_simulated_bus(tmp_path):
    from lerobot.robots.so_follower import SO101Follower
    from lerobot.motors.feetech import FeetechMotorsBus
    import lerobot.robots.so_follower.so_follower as so_module

    arm = make_arm(arm_config(tmp_path))
    assert isinstance(arm.robot, SO101Follower)
    assert isinstance(arm.robot.bus, SimulatedMotorsBus)
    assert so_module.FeetechMotorsBus is FeetechMotorsBus  # the swap is undone after construction
    assert arm.joint_names == [
        "shoulder_pan.pos", "shoulder_lift.pos", "elbow_flex.pos", "wrist_flex.pos", "wrist_roll.pos", "gripper.pos",
    ]
    arm.connect()
    # LeRobot's configure() wrote the position-mode PID gains through the bus.
    assert arm.robot.bus.device.registers["gripper"]["Max_Torque_Limit"] == 500
    assert arm.robot.bus.device.torque["elbow_flex"]  # torque back on after configure
    np.testing.assert_allclose(arm.read_positions(), [0, 0, 0, 0, 0, 50])
    arm.disconnect()
    assert not any(arm.robot.bus.device.torque.values())  # LeRobot's disable_torque_on_disconnect


def test_device_clamps_goals_to_its_position_limits_and_moves_at_finite_speed(tmp_path):
    arm = make_arm(arm_config(tmp_path, position_limits={"shoulder_pan": [-30.0, 40.0]}, max_speed=50.0))
    arm.connect()
    arm.send_positions(np.array([100.0, 0, 0, 0, 0, 150.0]))
    device = arm.robot.bus.device
    assert device.goal_log[-1]["shoulder_pan"] == 40.0 and device.goal_log[-1]["gripper"] == 100.0
    first = arm.read_positions()[0]
    assert 0.0 < first < 40.0  # it has not arrived yet
    time.sleep(1.0)  # 40 degrees at 50 deg/s
    assert arm.read_positions()[0] == pytest.approx(40.0)
    arm.disconnect()


def test_every_bus_transaction_takes_time(tmp_path):
    arm = make_arm(arm_config(tmp_path, command_latency_s=0.02))
    arm.connect()
    start = time.perf_counter()
    for _ in range(5):
        arm.read_positions()
    assert time.perf_counter() - start >= 5 * 0.02
    arm.disconnect()


def test_unplugged_bus_is_an_arm_fault_naming_the_arm(tmp_path):
    arm = make_arm(arm_config(tmp_path))
    arm.connect()
    arm.robot.bus.device.unplug(after_transactions=2)
    arm.read_positions()
    arm.read_positions()
    with pytest.raises(ArmFault, match="arm 'test_arm' .*reading joint positions failed.*no status packet") as info:
        arm.read_positions()
    assert info.value.component == "arm"
    with pytest.raises(ArmFault, match="sending joint targets failed"):
        arm.send_positions(np.zeros(6))
    arm.disconnect()  # best effort, does not raise


def test_koch_builds_on_the_simulated_dynamixel_slot(tmp_path):
    from lerobot.robots.koch_follower import KochFollower

    config = arm_config(tmp_path)
    config = ArmConfig(type="koch_follower", port="/dev/sim-koch", calibration_dir=config.calibration_dir, simulated=True)
    arm = make_arm(config)
    assert isinstance(arm.robot, KochFollower)
    arm.connect()
    assert arm.num_joints == 6 and arm.read_positions().shape == (6,)
    arm.disconnect()


def test_config_errors_name_the_key():
    with pytest.raises(RobotConfigError, match="unknown arm type 'so101_folower' \\(did you mean 'so101_follower'\\?\\)"):
        ArmConfig(type="so101_folower", port="/dev/x")
    with pytest.raises(ValueError, match="options.use_degree: not a field of LeRobot's SOFollowerRobotConfig \\(did you mean 'use_degrees'"):
        ArmConfig(type="so101_follower", port="/dev/x", options={"use_degree": True})
    with pytest.raises(ValueError, match="options.cameras: set it as the env's `cameras` section"):
        ArmConfig(type="so101_follower", port="/dev/x", options={"cameras": {}})
    with pytest.raises(ValueError, match="port is required"):
        ArmConfig(type="koch_follower")


def test_real_bus_without_its_sdk_is_a_one_line_robot_error(tmp_path):
    config = ArmConfig(type="so101_follower", port="/dev/ttyACM0", calibration_dir=tmp_path)
    try:
        import scservo_sdk  # noqa: F401
    except ImportError:
        with pytest.raises(RobotError, match="feetech-servo-sdk") as info:
            make_arm(config)
        assert "\n" not in str(info.value)
    else:  # pragma: no cover - a machine with the Feetech SDK: the port does not exist
        with pytest.raises(RobotError, match="could not connect"):
            make_arm(config).connect()
