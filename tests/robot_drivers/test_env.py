"""RobotEnv on LeRobot's SO-101 class with the simulated motor bus and a RealSense .bag camera.

Every limit is checked where it matters, at the servos: the simulated
device logs every goal it accepted.
"""

from __future__ import annotations

import pathlib
import shutil
import threading
import time

import numpy as np
import pytest

from app.rollout import RolloutConfig, StepEvent, run_rollout
from recordings.episode import EpisodeMeta
from recordings.store import EpisodeStore
from robot_drivers.config import ResetConfig
from robot_drivers.env import RobotEnv, make_robot_env
from robot_drivers.errors import ArmFault, CameraFault, EmergencyStopped, RobotError

from .conftest import H, JOINT_HIGH, JOINT_LOW, W, env_config

FAR = np.array([80.0, -80.0, 80.0, -80.0, 80.0, 95.0])


def device_of(env: RobotEnv):
    return env.arm.robot.bus.device


def goals(env: RobotEnv) -> np.ndarray:
    return np.array([list(g.values()) for g in device_of(env).goal_log])


def measured(env: RobotEnv) -> np.ndarray:
    return np.array(list(device_of(env).position.values()))


class RampPolicy:
    """Pushes every joint toward a target far away, one action per step (state only)."""

    needs_images = False
    camera_names: list[str] = []

    def __init__(self, target: np.ndarray = FAR) -> None:
        self.target = target

    def reset(self) -> None:
        pass

    def act(self, observation) -> np.ndarray:
        return self.target.astype(np.float32)


@pytest.fixture
def make_env(tmp_path):
    envs: list[RobotEnv] = []

    def build(bag=None, **fields) -> RobotEnv:
        env = make_robot_env(env_config(tmp_path, bag, **fields))
        envs.append(env)
        return env

    yield build
    for env in envs:
        env.close()


def test_every_safety_limit_holds_at_the_servos(make_env):
    env = make_env(safety=dict(action_low=[-200] * 5 + [10.0], action_high=[200] * 5 + [60.0], max_delta_per_tick=4.0))
    rng = np.random.default_rng(0)
    obs = env.reset()
    start = len(device_of(env).goal_log)
    infos = []
    for _ in range(40):
        obs, info = env.step(rng.uniform(-500, 500, 6))
        infos.append(info)
    _, info = env.step(np.array([np.nan] * 6))
    assert info["rejected"]
    g = goals(env)[start - 1:]  # from the hold commanded at reset
    assert np.all(g >= np.array(JOINT_LOW) - 1e-9) and np.all(g <= np.array(JOINT_HIGH) + 1e-9)
    assert np.all(g[:, 5] >= 10.0 - 1e-9) and np.all(g[:, 5] <= 60.0 + 1e-9)  # the gripper's action bounds
    assert np.max(np.abs(np.diff(g, axis=0))) <= 4.0 + 1e-9
    assert any(i["clipped_delta"] for i in infos) and any(i["clipped_bounds"] for i in infos)
    np.testing.assert_allclose(g[-1], g[-2])  # the NaN action was a hold
    report = env.end_episode()
    assert report.steps == 41 and report.rejected == 1 and report.clipped_delta >= 30


def test_joint_limits_hold_even_when_approached_step_by_step(make_env):
    env = make_env(safety=dict(max_delta_per_tick=10.0))
    env.reset()
    for _ in range(30):
        _, info = env.step(np.array([500.0, -500.0, 500.0, -500.0, 500.0, 500.0]))
    assert info["clipped_joints"]
    np.testing.assert_allclose(goals(env)[-1], [90, -90, 90, -90, 90, 100])


def test_watchdog_holds_position_when_actions_stop(make_env):
    env = make_env(safety=dict(max_delta_per_tick=40.0, watchdog_timeout_s=0.2))
    device_of(env).config.max_speed = 60.0  # slow servos: the goal runs far ahead of the arm
    env.reset()
    for _ in range(3):
        env.step(FAR)
    assert np.max(np.abs(device_of(env).goal["shoulder_pan"] - device_of(env).position["shoulder_pan"])) > 20
    time.sleep(0.6)  # the policy hangs
    assert env.holding == "watchdog"
    position = measured(env)
    held_goal = goals(env)[-1]
    assert np.max(np.abs(held_goal - position)) < 15.0  # the goal was pulled back to where the arm was
    assert device_of(env).position["shoulder_pan"] < 80.0  # it never went on to the far target
    _, info = env.step(position)
    assert info["watchdog_hold"]
    _, info = env.step(position)
    assert not info["watchdog_hold"]
    assert env.end_episode().watchdog_holds == 1


def test_emergency_stop_wins_over_everything(make_env):
    env = make_env(safety=dict(max_delta_per_tick=20.0, watchdog_timeout_s=5.0), reset=ResetConfig(wait_for_operator=True))
    device_of(env).config.max_speed = 60.0
    ready = threading.Timer(0.05, env.reset_gate.confirm)
    ready.start()
    env.reset()
    errors: list[BaseException] = []
    steps = [0]

    def control_loop() -> None:
        try:
            while True:
                env.step(FAR)
                steps[0] += 1
        except BaseException as exc:
            errors.append(exc)

    loop = threading.Thread(target=control_loop)
    loop.start()
    time.sleep(0.2)
    env.emergency_stop("test: big red button")
    stopped_at = len(device_of(env).goal_log)
    loop.join(timeout=2.0)
    assert not loop.is_alive() and isinstance(errors[0], EmergencyStopped)
    assert steps[0] > 3
    # The hold was commanded at once, and nothing else reached the servos afterwards.
    time.sleep(0.3)
    g = goals(env)
    assert len(g) <= stopped_at + 0  # the control loop sent nothing after the stop
    np.testing.assert_allclose(measured(env), g[-1], atol=1.5)
    # Latched: no step, no reset, not even with the operator's confirmation, until cleared.
    with pytest.raises(EmergencyStopped, match="big red button"):
        env.step(np.zeros(6))
    env.reset_gate.confirm()
    with pytest.raises(EmergencyStopped):
        env.reset()
    env.clear_emergency_stop()
    env.reset_gate.confirm()
    env.reset()
    env.step(measured(env))


def test_emergency_stop_interrupts_the_reset_phase(make_env):
    env = make_env(reset=ResetConfig(wait_for_operator=True))
    threading.Timer(0.1, env.emergency_stop, args=("during reset",)).start()
    start = time.monotonic()
    with pytest.raises(EmergencyStopped, match="during reset"):
        env.reset()
    assert time.monotonic() - start < 1.0


def test_reset_waits_for_the_operator(make_env):
    env = make_env(reset=ResetConfig(wait_for_operator=True, timeout_s=5.0))
    done = threading.Event()
    threading.Thread(target=lambda: (env.reset(), done.set()), daemon=True).start()
    assert not done.wait(0.3)  # still in the reset phase
    assert env.reset_gate.waiting
    env.reset_gate.confirm()
    assert done.wait(2.0)
    env2 = make_env(reset=ResetConfig(wait_for_operator=True, timeout_s=0.1))
    with pytest.raises(RobotError, match="did not confirm the reset within 0.1 s"):
        env2.reset()


def test_episode_time_cap_replaces_actions_by_a_hold(make_env):
    env = make_env(safety=dict(episode_time_cap_s=0.3, max_delta_per_tick=2.0))
    env.reset()
    truncated = []
    for _ in range(30):
        _, info = env.step(FAR)
        truncated.append(info["truncated"])
    first = truncated.index(True)
    assert all(truncated[first:]) and 3 <= first <= 16  # 0.3 s at 50 Hz at most (fewer on a loaded machine)
    g = goals(env)
    np.testing.assert_allclose(g[-1], g[-(30 - first)])  # no motion after the cap
    assert env.end_episode().time_capped


def test_home_position_is_reached_within_the_change_limit(make_env):
    home = [30.0, -20.0, 10.0, 0.0, 0.0, 20.0]
    env = make_env(reset=ResetConfig(wait_for_operator=False, home=home, home_tolerance=1.0), safety=dict(max_delta_per_tick=5.0))
    env.reset()
    np.testing.assert_allclose(measured(env), home, atol=1.0)
    assert np.max(np.abs(np.diff(goals(env), axis=0))) <= 5.0 + 1e-9


def test_achieved_rate_is_measured_and_reported(make_env, bag_file):
    env = make_env(bag_file, control_hz=40.0)
    env.reset()
    for _ in range(20):
        env.capture()
        _, info = env.step(measured(env))
    assert 20.0 <= info["achieved_hz"] <= 40.5  # never above the target; below it only on a loaded machine
    report = env.end_episode()
    assert report.rate is not None and report.rate.ticks == 21 and report.rate.target_hz == 40.0
    assert "Hz achieved of 40 Hz" in report.summary()
    images = env.capture()
    assert images["front"].shape == (H, W, 3) and env.last_depth["front"].shape == (H, W)


def test_observation_mirrors_the_sim_observation(make_env, bag_file):
    from sim.env import Observation as SimObservation
    from policies.base import ObservationLike

    env = make_env(bag_file, capture_every_step=True)
    obs = env.reset()
    assert isinstance(obs, ObservationLike)
    for name in SimObservation.__dataclass_fields__:
        assert hasattr(obs, name)
    assert obs.state.dtype == np.float32 and obs.state.shape == (6,) and obs.step == 0
    assert obs.task == "pick up the red cube" and set(obs.images) == {"front"} and set(obs.depth) == {"front"}
    assert env.camera_names == ["front"]
    assert env.state_size == 6 and env.action_shape == (6,) and env.control_freq == 50.0


def recorded_rollout(env: RobotEnv, store_path: pathlib.Path, after_steps: int, break_it) -> tuple:
    """Run app.rollout on the env, break something after `after_steps` steps, return (exception, events)."""
    store = EpisodeStore.create(store_path, fps=env.control_freq, durable=False)
    events: list[StepEvent] = []

    def on_step(event: StepEvent) -> None:
        events.append(event)
        if event.step == after_steps:
            break_it()

    meta = EpisodeMeta(task=env.task, source="robot", env_id="so101_follower")
    with pytest.raises((ArmFault, CameraFault)) as info:
        run_rollout(env, RampPolicy(), store, meta, config=RolloutConfig(max_steps=100, capture="every_step"), on_step=on_step)
    store.close()
    return info.value, events


def check_aborted_episode_intact(store_path: pathlib.Path, events: list[StepEvent], frames: int) -> None:
    store = EpisodeStore.open(store_path, mode="r")
    assert store.num_episodes == 1
    record = store.record(0)
    assert record.meta.aborted and record.meta.source == "robot"
    episode = store.load_episode(0)
    assert len(episode) == frames
    for t, event in enumerate(events):
        np.testing.assert_array_equal(episode.images["front"][t], event.images["front"])  # byte for byte
        np.testing.assert_array_equal(episode.action[t], event.action)
    np.testing.assert_array_equal(episode.state[1:len(events)], np.stack([e.state for e in events[:-1]]))
    assert "Fault" in record.meta.extra["rollout"]["error"]
    store.close()


def test_arm_disconnect_mid_episode_yields_an_aborted_episode_with_its_frames(make_env, bag_file, tmp_path):
    env = make_env(bag_file)
    fault, events = recorded_rollout(env, tmp_path / "store", 12, lambda: device_of(env).unplug())
    assert isinstance(fault, ArmFault) and fault.component == "arm" and "no status packet" in str(fault)
    assert len(events) == 12
    # Frame t is the observation before action t: the frame of the step whose command failed is kept too.
    check_aborted_episode_intact(tmp_path / "store", events, frames=len(events) + 1)
    assert env.last_fault is fault and "aborted" in env.report.summary()
    device_of(env).replug()  # the cable is back: the next episode starts normally
    env.reset()
    env.step(measured(env))


def test_camera_failure_mid_episode_holds_the_arm_and_keeps_the_frames(make_env, bag_file, tmp_path):
    bag = pathlib.Path(shutil.copy(bag_file, tmp_path / "camera.bag"))
    env = make_env(bag, safety=dict(max_delta_per_tick=20.0))
    device_of(env).config.max_speed = 60.0
    camera = env.cameras["front"]

    def unplug_camera() -> None:
        camera._pipeline.stop()
        bag.unlink()

    fault, events = recorded_rollout(env, tmp_path / "store", 8, unplug_camera)
    assert isinstance(fault, CameraFault) and fault.component == "camera:front"
    # The capture for the next frame failed: every frame before it is kept.
    check_aborted_episode_intact(tmp_path / "store", events, frames=len(events))
    # The arm was commanded to hold where it was, not left chasing the last target.
    time.sleep(0.2)
    np.testing.assert_allclose(goals(env)[-1], measured(env), atol=1.5)
    assert env.holding == "fault"
