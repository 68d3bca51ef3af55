"""Evaluating policies in ManiSkill through run_rollout: the success interval, recording, and BC beating a random policy."""

from __future__ import annotations

import pytest

from app.evaluate import evaluate_in_sim
from policies.eval_report import wilson_interval
from policies.scripted import RandomPolicy


def test_wilson_interval():
    lo, hi = wilson_interval(0, 10)
    assert lo == 0.0 and hi == pytest.approx(3.8415 / 13.8415, abs=1e-4)  # z^2 / (n + z^2)
    lo, hi = wilson_interval(10, 10)
    assert hi == 1.0 and lo == pytest.approx(10 / 13.8415, abs=1e-4)
    lo, hi = wilson_interval(5, 10)
    assert lo == pytest.approx(0.2366, abs=1e-4) and hi == pytest.approx(0.7634, abs=1e-4)
    assert wilson_interval(0, 0) == (0.0, 1.0)


@pytest.mark.sim
def test_rollouts_are_recorded_into_the_store(tmp_path):
    from recordings.store import EpisodeStore
    from sim.maniskill_env import SimEnvConfig

    env = SimEnvConfig(env_id="PickCube-v1", camera_width=32, camera_height=24)
    report = evaluate_in_sim(RandomPolicy(seed=0), env, 2, seed=5, max_steps=6, policy_id="random",
                             record_to=tmp_path / "rollouts", round=3, progress=False)
    assert report.episodes == 2 and report.seeds == [5, 6] and report.lengths == [6, 6]
    assert report.successes == 0 and report.recorded == [0, 1]
    with EpisodeStore.open(tmp_path / "rollouts") as store:
        assert store.cameras == {"base_camera": (24, 32)}
        for index, seed in zip(report.recorded, report.seeds, strict=True):
            meta = store.record(index).meta
            assert (meta.source, meta.policy_id, meta.round, meta.seed) == ("sim", "random", 3, seed)
            assert meta.oracle_success is False and meta.env_id == "PickCube-v1"
            episode = store.load_episode(index)
            assert len(episode) == 6 and episode.images["base_camera"].shape == (6, 24, 32, 3)
            assert episode.state.shape == (6, 25) and episode.action.shape == (6, 8)


@pytest.mark.sim
def test_behaviour_cloning_beats_a_random_policy(pickcube_demos, tmp_path):
    """BC on motion-planning demos beats random actions on PickCube, by the simulator's success flag.

    The policy succeeds in roughly 10-20% of episodes at this size (50 demos; 14/100 at 200 steps in
    benchmarks/policy_bc.py). Its successes come after 65-171 steps (the demos take ~80; here 13 of 60
    episodes succeeded at 200 steps, 12 of them within 125), so it is judged on 50 seeded episodes
    capped at 150 steps, where a policy that succeeds in 12% of them fails every one with probability
    0.88^50 < 2e-3; training and evaluation are seeded, so the counts repeat on one machine. The
    oracle's dense reward (reach, grasp, lift, place) must also be far above random's over the same
    horizon.
    """
    from policies.actor_critic.model import ActorCriticConfig
    from policies.factory import load_policy
    from policies.actor_critic.bc_train import BCTrainConfig, train_bc
    from sim.maniskill_env import SimEnvConfig

    # The recipe of configs/policies/bc_pickcube.yaml: relative joint targets, chunks of 16, 8 executed.
    policy_config = ActorCriticConfig(relative_action_dims=list(range(7)), chunk_size=16, n_action_steps=8)
    result = train_bc(BCTrainConfig(store=pickcube_demos, output_dir=tmp_path / "bc", policy=policy_config,
                                    steps=3000, lr=1e-3, state_noise=0.1, progress=False))
    assert result.report.val_loss is not None
    env = SimEnvConfig(env_id="PickCube-v1", state_mode="full", cameras=[])
    horizon = 150
    bc = evaluate_in_sim(load_policy(result.checkpoint), env, 50, max_steps=horizon, progress=False)
    # random actions never succeed on PickCube (0/100 in the benchmark): 10 episodes show it, and its dense
    # reward (best 0.05-0.15 per episode, never near BC's) well enough
    random = evaluate_in_sim(RandomPolicy(seed=0), env, 10, max_steps=horizon, progress=False)
    print(bc.summary(), random.summary(), sep="\n")
    assert random.successes == 0 and bc.successes > random.successes, (bc.summary(), random.summary())
    assert bc.mean_max_dense_reward > random.mean_max_dense_reward + 0.15, (bc.summary(), random.summary())


@pytest.mark.sim
def test_cameras_render_only_for_a_policy_that_reads_them(monkeypatch):
    """Rendering costs ~20x a physics step on a CPU: a state-only rollout must never capture."""
    from policies.actor_critic.model import ActorCriticConfig, make_policy
    from sim.maniskill_env import ManiSkillEnv, SimEnvConfig

    captures = []
    original = ManiSkillEnv.capture
    monkeypatch.setattr(ManiSkillEnv, "capture", lambda self: (captures.append(1), original(self))[1])
    env = SimEnvConfig(env_id="PickCube-v1", camera_width=32, camera_height=24)
    state_only = make_policy(ActorCriticConfig(hidden_dims=[16]), state_dim=25, action_dim=8)
    report = evaluate_in_sim(state_only, env, 1, max_steps=4, progress=False)
    assert report.lengths == [4] and captures == []

    seeing = make_policy(ActorCriticConfig(hidden_dims=[16], use_state=False, cameras=["base_camera"],
                                           cnn_channels=[4], image_feature_dim=8),
                         state_dim=25, action_dim=8, image_sizes={"base_camera": (24, 32)})
    report = evaluate_in_sim(seeing, env, 1, max_steps=4, progress=False)
    assert report.lengths == [4] and len(captures) == 4  # one frame per decision
    blind_env = SimEnvConfig(env_id="PickCube-v1", cameras=[])
    from policies.errors import PolicyError

    with pytest.raises(PolicyError, match="needs camera 'base_camera'"):
        evaluate_in_sim(seeing, blind_env, 1, max_steps=2, progress=False)
    privileged = make_policy(ActorCriticConfig(hidden_dims=[16]), state_dim=42, action_dim=8)
    with pytest.raises(PolicyError, match="states of size 42.*set env.state_mode"):
        evaluate_in_sim(privileged, blind_env, 1, max_steps=2, progress=False)
