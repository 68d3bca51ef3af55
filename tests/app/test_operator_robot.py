"""The operator app on the hardware path, without hardware: robot_drivers' RobotEnv over LeRobot's SO-101
class on the simulated motor bus, with a RealSense camera replayed from a .bag through pyrealsense2.

The same keys as in simulation: `n` starts, `n` confirms the reset phase the
robot env waits in, `s` marks, `e` latches the robot's own emergency stop.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest

pytest.importorskip("pyrealsense2")
robot_drivers = pytest.importorskip("robot_drivers.env")

from app.operator.app import OperatorApp  # noqa: E402
from app.operator.config import EnvSection, OperatorPolicy  # noqa: E402
from app.operator.session import OperatorSession, make_env  # noqa: E402
from app.rollout import RolloutConfig  # noqa: E402
from common.config import ConfigFile  # noqa: E402
from recordings.store import EpisodeStore  # noqa: E402
from robot_drivers.arms.simulated_bus import SimulatedMotorsBus  # noqa: E402
from robot_drivers.config import RobotEnvConfig  # noqa: E402
from tests.app.simulated_robot import H, W, simulated_robot_yaml  # noqa: E402
from tests.app.test_operator_app import make_lite_judge, operate_config, wait_for  # noqa: E402

pytestmark = [pytest.mark.anyio]


@pytest.fixture(autouse=True)
def _fresh_simulated_devices():
    SimulatedMotorsBus.forget_devices()
    yield
    SimulatedMotorsBus.forget_devices()


def _robot_yaml(tmp_path) -> ConfigFile:
    return ConfigFile(simulated_robot_yaml(tmp_path, task="pick up the red cube", port="/dev/simulated-operate",
                                           arm_id="operate_arm", wait_for_operator=True), RobotEnvConfig)


async def test_robot_env_reset_gate_marks_and_emergency_stop(tmp_path):
    judge = make_lite_judge(tmp_path / "judge")
    config = operate_config(
        tmp_path / "run", judge, env=EnvSection(kind="robot", robot=_robot_yaml(tmp_path)),
        policy=OperatorPolicy(dry_run="hold"), finetune=False,
        rollout=RolloutConfig(max_steps=6, time_limit_s=5.0, capture="every_step"),
    )
    envs = []

    def factory(cfg):
        envs.append(make_env(cfg))  # the config's own path: robot YAML -> robot_drivers.make_robot_env
        return envs[-1]

    session = OperatorSession(config, env_factory=factory)
    app = OperatorApp(session)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: app.phase == "ready", what="the ready phase")
        await pilot.press("n")
        await wait_for(pilot, lambda: app.phase == "reset", what="the robot's reset phase")
        await pilot.pause(0.3)
        assert session.store.num_episodes == 0 and envs[0].reset_gate.waiting  # held until the operator confirms
        await pilot.press("n")
        await wait_for(pilot, lambda: app.phase == "review", what="the review")
        await pilot.press("s")
        await wait_for(pilot, lambda: "marked success" in str(app.query_one("#notice").render()), what="the mark")
        await pilot.press("n")
        await wait_for(pilot, lambda: app.phase == "reset" and envs[0].reset_gate.waiting, what="the next reset")
        await pilot.press("e")
        await wait_for(pilot, session.done.is_set, what="the stop")
        assert app.phase == "stopped"
    env = envs[0]
    assert env.estop.is_set and not env.connected  # the robot's own stop latched; the session closed it
    with EpisodeStore.open(config.store_path, mode="r") as store:
        assert store.num_episodes == 1  # the e-stop in the reset phase started no episode
        meta, ep = store.record(0).meta, store.load_episode(0)
    assert meta.source == "robot" and meta.operator_verdict is True and meta.lrm_verdict is not None
    assert meta.extra["robot"]["steps"] == 6 and "Hz" in meta.extra["robot"]["summary"]
    assert ep.images["front"].shape[1:] == (H, W, 3) and ep.images["front"][0].any()
    np.testing.assert_allclose(ep.action[:6], ep.state[:6], atol=1e-4)  # the dry run commanded the measured joints


def _hold_session(tmp_path, **config_fields):
    """An operator session on the simulated robot holding its joints; the envs it builds are kept in a list."""
    judge = make_lite_judge(tmp_path / "judge")
    config = operate_config(tmp_path / "run", judge, env=EnvSection(kind="robot", robot=_robot_yaml(tmp_path)),
                            policy=OperatorPolicy(dry_run="hold"), finetune=False, **config_fields)
    envs = []
    session = OperatorSession(config, env_factory=lambda cfg: envs.append(make_env(cfg)) or envs[-1])
    return config, envs, session, OperatorApp(session)


async def test_quit_during_the_reset_phase_starts_no_episode(tmp_path):
    config, envs, session, app = _hold_session(tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: app.phase == "ready", what="the ready phase")
        await pilot.press("n")
        await wait_for(pilot, lambda: app.phase == "reset" and envs[0].reset_gate.waiting, what="the reset phase")
        await pilot.press("q")
    assert session.done.wait(30)
    assert not envs[0].estop.is_set and not envs[0].connected
    with EpisodeStore.open(config.store_path, mode="r") as store:
        assert store.num_episodes == 0


async def test_emergency_stop_mid_rollout_holds_the_arm_and_keeps_the_frames(tmp_path):
    config, envs, session, app = _hold_session(
        tmp_path, rollout=RolloutConfig(max_steps=500, time_limit_s=30.0, capture="every_step"))
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: app.phase == "ready", what="the ready phase")
        await pilot.press("n")
        await wait_for(pilot, lambda: app.phase == "reset", what="the reset phase")
        await pilot.press("n")
        await wait_for(pilot, lambda: app.phase == "rollout" and envs[0].report.steps >= 5, what="a running rollout")
        seen = []
        envs[0].estop.add_listener(lambda reason: seen.append((envs[0].holding, threading.current_thread().name)))
        await pilot.press("e")
        # the robot's own stop latched, and the key's handler (the app's thread) commanded the hold itself; the
        # rollout thread may also repeat it, and a hold waits for a bus transaction in flight, so order varies
        assert envs[0].estop.is_set and ("e-stop", threading.main_thread().name) in seen
        await wait_for(pilot, session.done.is_set, what="the stop")
        assert app.phase == "stopped"
    # run_rollout repeats the stop when its control sees it between two steps; a latched stop stays latched
    assert all(holding == "e-stop" for holding, _ in seen)
    with EpisodeStore.open(config.store_path, mode="r") as store:
        assert store.num_episodes == 1
        rec = store.record(0)
    assert rec.meta.aborted and rec.length >= 5 and rec.meta.operator_verdict is None
    # which of the two latches the rollout thread meets first depends on where the stop found it:
    # the robot env's (env.step raises EmergencyStopped) or the rollout control's
    info = rec.meta.extra["rollout"]
    assert "EmergencyStopped" in info["reason"] or info["status"] == "emergency_stop"
