"""ManiSkillEnv behind the Env interface: shapes, dtypes, oracle values, rendering only on demand."""

from __future__ import annotations

import time

import numpy as np
import pytest

from sim.env import Env, Observation
from sim.errors import UnknownEnvError
from sim.maniskill_env import SUPPORTED_ENVS, SimEnvConfig, make_sim_env

pytestmark = pytest.mark.sim

SIZE = 64


def hold_action(env, gripper: float = 1.0) -> np.ndarray:
    """pd_joint_pos action that keeps the arm where it is."""
    arm = env.raw_env.agent.robot.get_qpos()[0].cpu().numpy()[: env.action_shape[0] - 1]
    return np.hstack([arm, gripper]).astype(np.float32)


@pytest.mark.parametrize("env_id", list(SUPPORTED_ENVS))
def test_reset_step_capture(env_id):
    with make_sim_env(env_id=env_id, camera_width=SIZE, camera_height=SIZE) as env:
        assert isinstance(env, Env)
        assert env.task == SUPPORTED_ENVS[env_id].task and env.task.strip()
        assert env.action_shape == (8,) and env.max_episode_steps > 0 and env.control_freq > 0

        obs = env.reset(seed=3)
        assert isinstance(obs, Observation)
        assert obs.step == 0 and obs.images == {} and obs.task == env.task
        assert obs.state.dtype == np.float32 and obs.state.shape == (env.state_size,) == (25,)
        assert isinstance(env.success, bool) and isinstance(env.dense_reward, float)

        action = hold_action(env)
        for t in range(1, 4):
            obs, info = env.step(action)
            assert obs.step == t and obs.images == {}
            assert obs.state.dtype == np.float32 and obs.state.shape == (env.state_size,)
            assert np.all(np.isfinite(obs.state))
        assert isinstance(info["success"], bool) and info["success"] == env.success
        assert isinstance(info["dense_reward"], float) and 0.0 <= info["dense_reward"] <= 1.0
        assert isinstance(info["terminated"], bool) and info["truncated"] is False
        assert not any(hasattr(v, "detach") for v in info.values())  # numpy out, no torch tensors

        images = env.capture()
        assert list(images) == env.camera_names and env.camera_names
        for image in images.values():
            assert image.shape == (SIZE, SIZE, 3) and image.dtype == np.uint8
            assert image.std() > 5  # a scene, not a blank frame


def test_full_state_and_reproducible_seed():
    with make_sim_env(env_id="PickCube-v1", camera_width=SIZE, camera_height=SIZE, state_mode="full") as env:
        first = env.reset(seed=7).state
        assert first.shape == (env.state_size,) and env.state_size > 25  # includes object and goal poses
        env.step(hold_action(env))
        assert np.array_equal(env.reset(seed=7).state, first)


def test_reset_carries_nothing_over_from_the_previous_episode():
    # Observed: after a grasp, the first observation of the next episode still said is_grasped (ManiSkill reads
    # it from the contacts of the last physics step), and PhysX's contact caches steered the next episode's
    # physics. After reset(seed) the env must be as a fresh one: state, frames and the steps that follow.
    from sim.demos import StepRecorder, run_solver, solver_for

    config = SimEnvConfig(env_id="PickCube-v1", state_mode="full", camera_width=SIZE, camera_height=SIZE)

    def episode(env, seed):
        obs = env.reset(seed=seed)
        frame, oracle = env.capture()["base_camera"], (env.success, env.dense_reward)
        action = hold_action(env)
        # the cube settles on the table: contact physics from the first step on
        states = [obs.state] + [env.step(action)[0].state for _ in range(15)]
        return np.stack(states), frame, oracle

    with make_sim_env(config) as fresh:
        states, frame, oracle = episode(fresh, 1)
    with make_sim_env(config) as env:
        assert run_solver(StepRecorder(env), solver_for("PickCube-v1"), seed=0, settle_steps=0) is None
        assert bool(env.raw_env.agent.is_grasping(env.raw_env.cube))  # the state that leaked
        after_states, after_frame, after_oracle = episode(env, 1)
    np.testing.assert_array_equal(after_states, states)  # the full state holds is_grasped
    np.testing.assert_array_equal(after_frame, frame)
    assert after_oracle == oracle


def test_config_seed_applies_to_first_reset_only():
    with make_sim_env(env_id="PushCube-v1", seed=11) as env:
        a = env.reset().state
        assert np.array_equal(env.reset(seed=11).state, a)


def test_step_does_not_render(monkeypatch):
    with make_sim_env(env_id="PickCube-v1", camera_width=SIZE, camera_height=SIZE) as env:
        from mani_skill.sensors.camera import Camera  # after the env: sim.vulkan prepares the import

        pictures = []
        original = Camera.capture
        monkeypatch.setattr(Camera, "capture", lambda self: (pictures.append(1), original(self))[1])
        env.reset(seed=0)
        env.capture()  # warm-up: shader compilation is not part of the comparison
        action = hold_action(env)
        pictures.clear()

        start = time.perf_counter()
        for _ in range(60):
            env.step(action)
        state_rate = 60 / (time.perf_counter() - start)
        assert pictures == []  # no camera took a picture during step()

        start = time.perf_counter()
        for _ in range(15):
            env.step(action)
            env.capture()
        capture_rate = 15 / (time.perf_counter() - start)
        assert len(pictures) == 15 * len(env.camera_names)
    # ~600 vs ~30 steps/s at 128x128 on 2 cores; a generous margin for loaded CI machines
    assert state_rate > 3 * capture_rate, (state_rate, capture_rate)


def test_capture_every_step_and_camera_selection():
    config = SimEnvConfig(
        env_id="StackCube-v1", camera_width=32, camera_height=48, cameras=["hand_camera"], capture_every_step=True
    )
    with make_sim_env(config) as env:
        assert env.camera_names == ["hand_camera"]
        obs = env.reset(seed=0)
        assert list(obs.images) == ["hand_camera"] and obs.images["hand_camera"].shape == (48, 32, 3)
        obs, _ = env.step(hold_action(env))
        assert obs.images["hand_camera"].dtype == np.uint8


def test_the_human_render_camera_is_a_second_viewpoint_that_shows_the_goal():
    # PickCube's render_camera looks from the side: the goal sphere's depth, hidden along the base camera's
    # line of sight, shows there. It renders at the configured size, and only when asked for.
    config = SimEnvConfig(env_id="PickCube-v1", camera_width=40, camera_height=32, show_goal_markers=True,
                          cameras=["base_camera", "render_camera"])
    with make_sim_env(config) as env:
        assert env.camera_names == ["base_camera", "render_camera"]
        env.reset(seed=0)
        images = env.capture()
        assert {name: im.shape for name, im in images.items()} == {"base_camera": (32, 40, 3),
                                                                   "render_camera": (32, 40, 3)}
        assert not np.array_equal(images["base_camera"], images["render_camera"])
        rgb = images["render_camera"].astype(int)
        assert (rgb[..., 1] - np.maximum(rgb[..., 0], rgb[..., 2]) > 100).any()  # the green goal sphere
    with make_sim_env(env_id="PickCube-v1", camera_width=40, camera_height=32) as env:
        assert env.camera_names == ["base_camera"]  # the default: sensor cameras only


def test_truncation_and_bad_action():
    with make_sim_env(env_id="PushCube-v1", max_episode_steps=2) as env:
        env.reset(seed=0)
        action = hold_action(env)
        assert env.step(action)[1]["truncated"] is False
        assert env.step(action)[1]["truncated"] is True
        with pytest.raises(ValueError, match=r"action must have shape \(8,\)"):
            env.step(np.zeros(7))


def test_unknown_env_id_is_one_line_listing_supported():
    with pytest.raises(UnknownEnvError) as info:
        make_sim_env(env_id="PickBanana-v9")
    message = str(info.value)
    assert "\n" not in message and "PickBanana-v9" in message
    assert all(env_id in message for env_id in SUPPORTED_ENVS)


def test_unknown_camera_is_refused():
    with pytest.raises(ValueError, match="has no camera 'wrist'"):
        make_sim_env(env_id="PickCube-v1", cameras=["wrist"])


def test_a_rebuilding_reset_still_frees_the_old_scene_once_long_lived_objects_are_frozen():
    """The first env freezes what the process holds (so ManiSkill's gc.collect per reset stays cheap), but a
    scene built after that is still collected when a reset replaces it: freezing must not leak scenes."""
    import gc
    import weakref

    with make_sim_env(SimEnvConfig(env_id="PickCube-v1", state_mode="full", cameras=[])) as env:
        assert gc.get_freeze_count() > 0
        env.reset(seed=0)
        old_scene = weakref.ref(env.raw_env.scene)
        old_cube = weakref.ref(env.raw_env.cube)
        env.reset(seed=1)
        gc.collect()
        assert env.raw_env.scene is not None
        assert old_scene() is None and old_cube() is None
