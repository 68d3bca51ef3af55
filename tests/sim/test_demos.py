"""Motion-planning demonstrations land in a real episode store, one frame per executed step."""

from __future__ import annotations

import numpy as np
import pytest

from sim.errors import SimError

pytestmark = pytest.mark.sim


def test_screw_planner_reaches_a_pose():
    from sim.maniskill_env import make_sim_env
    from sim.planner import ScrewPlanner

    with make_sim_env(env_id="PickCube-v1") as env:
        env.reset(seed=0)
        robot, tcp = env.raw_env.agent.robot, env.raw_env.agent.tcp
        planner = ScrewPlanner(robot, "panda_hand_tcp")
        planner.set_base_pose(np.hstack([robot.pose.sp.p, robot.pose.sp.q]))
        start = tcp.pose.sp
        goal = np.hstack([start.p + np.array([0.05, -0.05, 0.08]), start.q])
        result = planner.plan_screw(goal, robot.get_qpos()[0].cpu().numpy(), time_step=1 / env.control_freq)
        assert result["status"] == "Success" and result["position"].shape[1] == 7
        for qpos in list(result["position"]) + [result["position"][-1]] * 10:
            env.step(np.hstack([qpos, 1.0]))
        assert np.linalg.norm(tcp.pose.sp.p - goal[:3]) < 0.01


def test_two_pickcube_demos_into_a_store(tmp_path, monkeypatch):
    from recordings.store import EpisodeStore
    from sim.demos import record_demos
    from sim.maniskill_env import ManiSkillEnv, make_sim_env

    steps = []
    original_step = ManiSkillEnv.step
    monkeypatch.setattr(ManiSkillEnv, "step", lambda self, a: (steps.append(1), original_step(self, a))[1])

    store_path = tmp_path / "store"
    report = record_demos("PickCube-v1", 2, store_path, seed=0, camera_size=(48, 64), progress=False)
    assert report.complete and report.successes == report.recorded == 2
    assert report.frames == len(steps)  # one frame per executed step, nothing dropped or invented
    assert "2/2 successful" in report.summary()

    store = EpisodeStore.open(store_path)
    records = store.episodes(source="demo")
    assert [r.index for r in records] == report.episode_indices
    assert store.cameras == {"base_camera": (48, 64)} and store.fps == 20.0
    assert sum(r.length for r in records) == len(steps)
    for record, seed in zip(records, report.seeds, strict=True):
        meta = record.meta
        assert meta.oracle_success is True and meta.seed == seed and meta.env_id == "PickCube-v1"
        assert meta.policy_id == "motionplanning" and meta.task.startswith("pick up the red cube")
        assert meta.duration_s == pytest.approx(record.length / 20.0)

    episode = store.load_episode(records[0].index)
    t = len(episode)
    assert episode.images["base_camera"].shape == (t, 48, 64, 3) and episode.state.shape == (t, 25)
    assert episode.action.shape == (t, 8) and np.allclose(episode.timestamp, np.arange(t) / 20.0)
    # frame 0 is the observation before the first action: the state right after reset(seed)
    with make_sim_env(env_id="PickCube-v1") as env:
        np.testing.assert_allclose(episode.state[0], env.reset(seed=report.seeds[0]).state, atol=1e-6)
    store.close()


def test_held_demos_stay_successful_for_the_hold_and_repeat_the_last_action(tmp_path):
    from recordings.store import EpisodeStore
    from sim.demos import record_demos
    from sim.maniskill_env import SimEnvConfig, make_sim_env

    config = SimEnvConfig(env_id="PickCube-v1", cameras=[], state_mode="full")
    plain = record_demos("PickCube-v1", 1, tmp_path / "plain", seed=0, env_config=config, progress=False)
    held = record_demos("PickCube-v1", 1, tmp_path / "held", seed=0, env_config=config, hold_steps=6, progress=False)
    assert held.complete and held.seeds == plain.seeds
    with EpisodeStore.open(tmp_path / "plain") as a, EpisodeStore.open(tmp_path / "held") as b:
        short, long = a.load_episode(0), b.load_episode(0)
    assert len(long) == len(short) + 6 and b.record(0).meta.oracle_success is True
    np.testing.assert_array_equal(long.action[: len(short)], short.action)  # the same solve, then the hold
    assert (long.action[len(short):] == short.action[-1]).all()
    # replayed, the held demo is successful at every held step: the policy is shown staying done
    with make_sim_env(config) as env:
        env.reset(seed=held.seeds[0])
        flags = [env.step(action)[1]["success"] for action in long.action]
    assert all(flags[len(short) - 1:]) and not flags[0]


def test_a_demo_does_not_depend_on_the_demos_recorded_before_it(tmp_path):
    # Resuming a run records a demo in a fresh process; an uninterrupted run records it after others in the
    # same env. The two must be the same episode, bit for bit: the CPU simulation is deterministic, so any
    # difference is state carried over from the earlier episode (a grasp, PhysX's contact caches).
    from recordings.store import EpisodeStore
    from sim.demos import record_demos
    from sim.maniskill_env import SimEnvConfig

    config = SimEnvConfig(env_id="PickCube-v1", state_mode="full", camera_width=32, camera_height=32)
    after = record_demos("PickCube-v1", 2, tmp_path / "after", seed=0, env_config=config, progress=False)
    alone = record_demos("PickCube-v1", 1, tmp_path / "alone", seed=1, env_config=config, progress=False)
    assert after.seeds == [0, 1] and alone.seeds == [1]
    with EpisodeStore.open(tmp_path / "after") as a, EpisodeStore.open(tmp_path / "alone") as b:
        second, only = a.load_episode(after.episode_indices[1]), b.load_episode(alone.episode_indices[0])
    np.testing.assert_array_equal(second.action, only.action)
    np.testing.assert_array_equal(second.state, only.state)
    np.testing.assert_array_equal(second.images["base_camera"], only.images["base_camera"])


def test_env_without_solver_is_refused(tmp_path):
    from sim.demos import record_demos

    with pytest.raises(SimError, match="no motion-planning solver for PokeCube-v1"):
        record_demos("PokeCube-v1", 1, tmp_path / "store", progress=False)
    assert not (tmp_path / "store").exists()


def test_the_horizon_covers_the_longest_demo_with_a_margin_in_whole_decisions() -> None:
    from sim.demos import horizon_from_demos

    assert horizon_from_demos([64, 77, 70], executed_steps=8) == 104  # 77 * 1.25 = 96.25 -> 97 -> 13 decisions
    assert horizon_from_demos([80], executed_steps=1, margin=1.0) == 80
    with pytest.raises(ValueError, match="no demonstrations"):
        horizon_from_demos([])
