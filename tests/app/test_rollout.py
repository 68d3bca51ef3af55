"""app.rollout on a real ManiSkill PickCube env and a real episode store."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from app.rollout import RolloutConfig, RolloutControl, run_rollout
from recordings.episode import EpisodeMeta
from recordings.store import EpisodeStore

pytestmark = [pytest.mark.sim, pytest.mark.filterwarnings("ignore::DeprecationWarning:mani_skill")]

CAMERA = 32  # pixels; the tests check bookkeeping, not image content


class HoldPolicy:
    """Holds the initial joint targets (a valid pd_joint_pos action); optionally acts in chunks or raises."""

    camera_names: list[str] = []

    def __init__(self, action_dim: int, chunk: int = 1, fail_at: int | None = None, needs_images: bool = False):
        self.action_dim, self.chunk, self.fail_at, self.needs_images = action_dim, chunk, fail_at, needs_images
        self.calls = 0
        self.seen_images: list[bool] = []

    def reset(self) -> None:
        self.calls = 0

    def act(self, observation) -> np.ndarray:
        if self.fail_at is not None and self.calls * self.chunk >= self.fail_at:
            raise RuntimeError("policy exploded")
        self.calls += 1
        self.seen_images.append(bool(observation.images))
        action = np.zeros((self.chunk, self.action_dim), np.float32)
        action[:, :7] = observation.state[None, :7]  # proprio state starts with the 7 arm joint positions
        action[:, -1] = 1.0  # open gripper
        return action[0] if self.chunk == 1 else action


@pytest.fixture(scope="module")
def env():
    from sim.maniskill_env import SimEnvConfig, make_sim_env

    env = make_sim_env(SimEnvConfig(env_id="PickCube-v1", camera_width=CAMERA, camera_height=CAMERA))
    yield env
    env.close()


def _meta(env) -> EpisodeMeta:
    return EpisodeMeta(task=env.task, source="sim", env_id="PickCube-v1", policy_id="hold", round=1)


def _policy(env, **kw) -> HoldPolicy:
    return HoldPolicy(int(np.prod(env.action_shape)), **kw)


def test_normal_episode_records_every_frame_and_the_terminal_state(env, tmp_path):
    events = []
    with EpisodeStore.open(tmp_path / "s", mode="a", durable=False) as store:
        config = RolloutConfig(max_steps=12, time_limit_s=None, capture="on_demand", judge_frames=3)
        result = run_rollout(env, _policy(env, chunk=4), store, _meta(env), config=config, seed=3,
                             on_step=events.append)
        rec = store.record(result.index)
        ep = store.load_episode(result.index)
    assert result.status == "step_limit" and result.steps == 12 and result.frames == 13
    assert rec.length == 13 and rec.meta.seed == 3 and rec.meta.round == 1 and not rec.meta.aborted
    assert rec.meta.oracle_success is False and result.oracle_success is False
    info = rec.meta.extra["rollout"]
    # frame 0 (anchor), the last two action frames and the terminal frame are rendered; the rest are black
    assert info["captured"] == [0, 10, 11, 12] and info["terminal_frame"] is True
    cam = next(iter(store.cameras))
    assert ep.images[cam][12].any() and not ep.images[cam][5].any()
    # the store marks exactly the captured frames real, for every camera, and counts them
    for c in store.cameras:
        assert np.flatnonzero(ep.real_mask(c)).tolist() == info["captured"]
    assert rec.real_frames == {c: 4 for c in store.cameras}
    assert np.array_equal(ep.images[cam][12], result.judge_images[cam][-1])
    assert len(result.judge_images[cam]) == 3
    np.testing.assert_array_equal(ep.action[12], ep.action[11])  # the terminal frame holds the last action
    assert [e.step for e in events] == list(range(1, 13))
    assert events[0].episode_index == result.index and events[10].images and not events[5].images
    # the simulator's own traces at every frame's state, for measuring a judge against the oracle later
    assert set(ep.rewards) == {"dense_reward", "success"} and np.isfinite(ep.rewards["dense_reward"]).all()
    assert ep.rewards["dense_reward"][-1] == pytest.approx(result.final_dense_reward)
    assert ep.rewards["success"][-1] == float(result.oracle_success)


def test_policy_that_needs_images_is_shown_a_render_whenever_it_acts(env, tmp_path):
    policy = _policy(env, chunk=5, needs_images=True)
    with EpisodeStore.open(tmp_path / "s", mode="a", durable=False) as store:
        result = run_rollout(env, policy, store, _meta(env), seed=0,
                             config=RolloutConfig(max_steps=10, time_limit_s=None, judge_frames=1))
        captured = store.record(result.index).meta.extra["rollout"]["captured"]
    assert policy.seen_images == [True, True] and captured == [0, 5, 10]


def test_a_watcher_sees_every_kth_frame_and_ends_the_episode_at_the_frame_it_calls_done(env, tmp_path):
    seen = []

    def watch(images, step):
        seen.append((step, sorted(images)))
        return "looks done" if step == 9 else None

    with EpisodeStore.open(tmp_path / "s", mode="a", durable=False) as store:
        config = RolloutConfig(max_steps=40, time_limit_s=None, capture="on_demand", render_every=3)
        result = run_rollout(env, _policy(env), store, _meta(env), config=config, seed=1, stop_check=watch)
        rec = store.record(result.index)
        ep = store.load_episode(result.index)
    cam = next(iter(store.cameras))
    # frame 0 is never asked about (nothing has happened yet); then every third frame until the one called done
    assert seen == [(3, [cam]), (6, [cam]), (9, [cam])]
    assert result.status == "judged_done" and result.reason == "looks done" and result.steps == 9
    info = rec.meta.extra["rollout"]
    assert rec.length == 10 and info["captured"] == [0, 3, 6, 9] and info["terminal_frame"] is True
    # the frame called done is the terminal frame (state after the last action, that action repeated), rendered once
    np.testing.assert_array_equal(ep.action[9], ep.action[8])
    assert ep.images[cam][9].any() and np.array_equal(ep.images[cam][9], result.judge_images[cam][-1])
    with pytest.raises(ValueError, match="render_every"):
        RolloutConfig(render_every=-1)


def test_time_cap_ends_the_episode(env, tmp_path):
    slow = _policy(env)
    act = slow.act

    def sleepy(obs):
        threading.Event().wait(0.05)
        return act(obs)

    slow.act = sleepy
    with EpisodeStore.open(tmp_path / "s", mode="a", durable=False) as store:
        result = run_rollout(env, slow, store, _meta(env), seed=1,
                             config=RolloutConfig(max_steps=1000, time_limit_s=0.6, judge_frames=2))
        rec = store.record(result.index)
    assert result.status == "time_limit" and 3 <= result.steps < 30
    assert rec.length == result.steps + 1 and not rec.meta.aborted
    captured = rec.meta.extra["rollout"]["captured"]
    assert captured[-1] == rec.length - 1 and len(captured) >= 2  # the judge's last frames were rendered


def test_abort_from_another_thread_keeps_the_frames(env, tmp_path):
    control = RolloutControl()

    def on_step(event):
        if event.step == 7:
            threading.Thread(target=control.abort, args=("operator saw a collision",)).start()
            threading.Event().wait(0.1)

    with EpisodeStore.open(tmp_path / "s", mode="a", durable=False) as store:
        result = run_rollout(env, _policy(env), store, _meta(env), seed=2, control=control, on_step=on_step,
                             config=RolloutConfig(max_steps=50, time_limit_s=None))
        rec = store.record(result.index)
        assert store.episodes(aborted=False) == []
    assert result.status == "aborted" and result.reason == "operator saw a collision"
    # 7 action frames (the abort lands before the 8th action) + the terminal frame
    assert rec.meta.aborted and rec.length == 8 and result.steps == 7
    assert rec.meta.extra["rollout"]["status"] == "aborted" and rec.meta.extra["rollout"]["terminal_frame"]


def test_pause_blocks_stepping_and_rerecord_discards(env, tmp_path):
    control = RolloutControl()
    seen_pause = threading.Event()

    def on_step(event):
        if event.step == 3:
            control.pause()
            threading.Timer(0.3, control.resume).start()
        if event.step == 4:
            seen_pause.set()
        if event.step == 6:
            control.rerecord()

    with EpisodeStore.open(tmp_path / "s", mode="a", durable=False) as store:
        result = run_rollout(env, _policy(env), store, _meta(env), seed=2, control=control, on_step=on_step,
                             config=RolloutConfig(max_steps=50, time_limit_s=None))
        assert store.num_episodes == 0 and store.num_frames == 0
        again = run_rollout(env, _policy(env), store, _meta(env), seed=2, control=control,
                            config=RolloutConfig(max_steps=5, time_limit_s=None))
        assert again.index == 0 and store.num_episodes == 1  # the control's stale command did not carry over
    assert seen_pause.is_set() and result.paused_s >= 0.25
    assert result.status == "discarded" and result.index is None


def test_exception_in_policy_commits_an_aborted_episode_intact(env, tmp_path):
    with EpisodeStore.open(tmp_path / "s", mode="a", durable=False) as store:
        with pytest.raises(RuntimeError, match="policy exploded"):
            run_rollout(env, _policy(env, fail_at=6), store, _meta(env), seed=4,
                        config=RolloutConfig(max_steps=50, time_limit_s=None))
        assert store.num_episodes == 1
        rec = store.record(0)
        ep = store.load_episode(0)
        # the store stays usable: the next rollout appends after it
        nxt = run_rollout(env, _policy(env), store, _meta(env), seed=5,
                          config=RolloutConfig(max_steps=3, time_limit_s=None))
    assert rec.meta.aborted and rec.length == 6 and rec.meta.seed == 4
    assert rec.meta.extra["rollout"]["status"] == "error"
    assert "policy exploded" in rec.meta.extra["rollout"]["error"]
    assert np.isfinite(ep.state).all() and ep.timestamp[-1] == pytest.approx(5 / env.control_freq)
    assert nxt.index == 1


def test_emergency_stop_wins_over_a_later_command(env, tmp_path):
    control = RolloutControl()

    def on_step(event):
        if event.step == 2:
            control.emergency_stop("arm left the workspace")
            control.rerecord()  # must not downgrade the emergency stop into a discard

    with EpisodeStore.open(tmp_path / "s", mode="a", durable=False) as store:
        result = run_rollout(env, _policy(env), store, _meta(env), seed=6, control=control, on_step=on_step,
                             config=RolloutConfig(max_steps=20, time_limit_s=None))
        rec = store.record(result.index)
    assert result.status == "emergency_stop" and rec.meta.aborted and rec.length == 3 and result.steps == 2


class _Watched:
    """The real env, with its resets and emergency stops counted; optionally its e-stop latch trips mid-step."""

    def __init__(self, env, estop_at_step: int | None = None):
        self._env, self.resets, self.halts, self.steps = env, 0, 0, 0
        self.estop_at_step = estop_at_step

    def __getattr__(self, name):
        return getattr(self._env, name)

    def reset(self, seed=None):
        self.resets += 1
        self.steps = 0
        return self._env.reset(seed=seed)

    def step(self, action):
        if self.estop_at_step is not None and self.steps == self.estop_at_step:
            from robot_drivers.errors import EmergencyStopped  # what a robot env raises once its latch is set

            raise EmergencyStopped("emergency stop is latched (button); clear it to continue", component="e-stop")
        self.steps += 1
        return self._env.step(action)

    def emergency_stop(self):
        self.halts += 1


def test_latched_emergency_stop_refuses_every_rollout_until_cleared(env, tmp_path):
    watched, control = _Watched(env), RolloutControl()
    control.emergency_stop("pressed between episodes")
    with EpisodeStore.open(tmp_path / "s", mode="a", durable=False) as store:
        for _ in range(2):  # a latch is not consumed by the rollout it stopped
            result = run_rollout(watched, _policy(env), store, _meta(env), seed=7, control=control,
                                 config=RolloutConfig(max_steps=5, time_limit_s=None))
            assert result.status == "emergency_stop" and result.index is None
        assert watched.resets == 0 and watched.halts == 2 and store.num_episodes == 0
        control.clear_emergency_stop()
        result = run_rollout(watched, _policy(env), store, _meta(env), seed=7, control=control,
                             config=RolloutConfig(max_steps=3, time_limit_s=None))
    assert result.status == "step_limit" and result.index == 0 and watched.resets == 1


def test_a_robot_e_stop_inside_a_step_is_stored_as_an_emergency_stop(env, tmp_path):
    from robot_drivers.errors import EmergencyStopped

    with EpisodeStore.open(tmp_path / "s", mode="a", durable=False) as store:
        with pytest.raises(EmergencyStopped):
            run_rollout(_Watched(env, estop_at_step=3), _policy(env), store, _meta(env), seed=8,
                        config=RolloutConfig(max_steps=20, time_limit_s=None))
        rec = store.record(0)
    assert rec.meta.aborted and rec.length == 4  # the frames up to the step that was refused
    assert rec.meta.extra["rollout"]["status"] == "emergency_stop"
