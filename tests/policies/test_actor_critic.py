"""The small Gaussian actor-critic: shapes, probabilities, normalisation and checkpoints."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from policies.actor_critic.model import ActorCriticConfig, GaussianActorCritic, NormStats, compute_stats, make_policy
from policies.base import ActorCriticPolicy, Policy
from sim.env import Observation

S, A, B = 6, 4, 5


def _stats(rng: np.random.Generator, k: int = 1) -> NormStats:
    return NormStats(
        state_mean=rng.standard_normal(S).astype(np.float32),
        state_std=rng.uniform(0.5, 2, S).astype(np.float32),
        action_mean=rng.standard_normal(A * k).astype(np.float32),
        action_std=rng.uniform(0.1, 1, A * k).astype(np.float32),
    )


def _policy(rng: np.random.Generator, **config) -> GaussianActorCritic:
    config.setdefault("hidden_dims", [32, 32])
    cfg = ActorCriticConfig(**config)
    sizes = {"base_camera": (24, 32), "hand_camera": (24, 32)}
    return make_policy(cfg, stats=_stats(rng, cfg.chunk_size), state_dim=S, action_dim=A, image_sizes=sizes)


def _batch(rng: np.random.Generator, cameras=("base_camera",)) -> dict:
    return {
        "state": torch.from_numpy(rng.standard_normal((B, S)).astype(np.float32)),
        "images": {c: torch.from_numpy(rng.integers(0, 256, (B, 24, 32, 3), dtype=np.uint8)) for c in cameras},
    }


def _obs(rng: np.random.Generator) -> Observation:
    images = {c: rng.integers(0, 256, (24, 32, 3), dtype=np.uint8) for c in ("base_camera", "hand_camera")}
    return Observation(state=rng.standard_normal(S).astype(np.float32), task="t", step=0, images=images)


@pytest.mark.parametrize(
    "inputs",
    [dict(), dict(cameras=["base_camera"]), dict(use_state=False, cameras=["base_camera", "hand_camera"])],
    ids=["state", "state+image", "two-images"],
)
@pytest.mark.parametrize("state_dependent_std", [False, True])
def test_shapes_and_interface(inputs, state_dependent_std):
    rng = np.random.default_rng(0)
    policy = _policy(rng, state_dependent_std=state_dependent_std, **inputs)
    assert isinstance(policy, Policy) and isinstance(policy, ActorCriticPolicy)
    assert policy.needs_images == bool(inputs.get("cameras"))
    batch = _batch(rng, ("base_camera", "hand_camera"))
    action, log_prob, value = policy.sample(batch)
    assert action.shape == (B, A) and log_prob.shape == (B,) and value.shape == (B,)
    lp, entropy, v = policy.evaluate(batch, action)
    assert lp.shape == entropy.shape == v.shape == (B,)
    torch.testing.assert_close(lp, log_prob)  # the probability of what was sampled is what PPO recomputes
    torch.testing.assert_close(v, value)
    policy.reset()
    out = policy.act(_obs(rng))
    assert out.shape == (A,) and out.dtype == np.float32


def test_log_prob_is_in_env_units():
    """With stats std s, a density in env units is the normalised density / prod(s)."""
    rng = np.random.default_rng(1)
    policy = _policy(rng)
    batch = _batch(rng, ())
    action = torch.from_numpy(rng.standard_normal((B, A)).astype(np.float32))
    log_prob, entropy, _ = policy.evaluate(batch, action)
    dist = policy.distribution(policy.features(batch))
    normed = (action - policy.action_mean) / policy.action_std
    expected = dist.log_prob(normed).sum(-1) - torch.log(policy.action_std).sum()
    torch.testing.assert_close(log_prob, expected)
    assert torch.all(entropy == entropy[0])  # state-independent std: the same entropy everywhere


def test_mean_action_is_unnormalised_and_clipped():
    rng = np.random.default_rng(2)
    policy = _policy(rng)
    obs = _obs(rng)
    with torch.no_grad():
        normed = policy.distribution(policy.features({"state": obs.state[None]})).mean
    expected = (normed * policy.action_std + policy.action_mean)[0].numpy()
    np.testing.assert_allclose(policy.act(obs), expected, rtol=1e-6)
    policy.set_action_bounds(np.full(A, -0.01), np.full(A, 0.01))
    assert np.all(np.abs(policy.act(obs)) <= 0.01)


def test_relative_actions_and_chunks():
    rng = np.random.default_rng(3)
    policy = _policy(rng, relative_action_dims=[0, 2], relative_state_dims=[4, 5], chunk_size=3, n_action_steps=2)
    obs = _obs(rng)
    chunk = policy.act(obs)
    assert chunk.shape == (2, A)
    # A policy whose network ignores the state: moving the state moves only the relative dims' offsets.
    policy = _policy(rng, use_state=False, cameras=["base_camera"], relative_action_dims=[0, 2],
                     relative_state_dims=[4, 5], chunk_size=3)
    shifted = Observation(state=obs.state.copy(), task="t", step=0, images=obs.images)
    a0 = policy.act(obs)
    shifted.state[4] += 1.0
    shifted.state[5] -= 2.0
    a1 = policy.act(shifted)
    np.testing.assert_allclose(a1 - a0, np.tile([1.0, 0.0, -2.0, 0.0], (3, 1)), atol=1e-5)
    batch = _batch(rng)
    action, log_prob, _ = policy.sample(batch)
    assert action.shape == (B, 3, A)
    torch.testing.assert_close(policy.evaluate(batch, action)[0], log_prob)


def test_compute_stats_of_relative_chunks():
    rng = np.random.default_rng(4)
    states = rng.standard_normal((100, S)).astype(np.float32)
    actions = rng.standard_normal((100, 2, A)).astype(np.float32)
    config = ActorCriticConfig(relative_action_dims=[1], relative_state_dims=[3], chunk_size=2)
    stats = compute_stats(states, actions, std_floor=1e-6, config=config)
    offsets = actions.copy()
    offsets[:, :, 1] -= states[:, None, 3]
    np.testing.assert_allclose(stats.action_mean, offsets.reshape(100, -1).mean(0), atol=1e-5)
    np.testing.assert_allclose(stats.state_std, states.std(0), rtol=1e-4)
    constant = compute_stats(np.zeros((10, S)), np.zeros((10, A)), std_floor=0.5)
    assert np.all(constant.state_std == 0.5) and np.all(constant.action_std == 0.5)


def test_save_and_reload_give_identical_actions(tmp_path):
    rng = np.random.default_rng(5)
    policy = _policy(rng, cameras=["base_camera"], relative_action_dims=[1], chunk_size=2, state_dependent_std=True)
    with torch.no_grad():
        for p in policy.parameters():
            p.add_(0.1 * torch.randn_like(p))
    policy.save_pretrained(tmp_path / "ckpt")
    loaded = GaussianActorCritic.from_pretrained(tmp_path / "ckpt")
    assert loaded.config == policy.config
    for name in ("state_mean", "state_std", "action_mean", "action_std"):
        torch.testing.assert_close(getattr(loaded, name), getattr(policy, name))
    policy.eval()
    for _ in range(3):
        obs = _obs(rng)
        np.testing.assert_array_equal(loaded.act(obs), policy.act(obs))
    batch = _batch(rng)
    action = torch.randn(B, 2, A)
    for x, y in zip(loaded.evaluate(batch, action), policy.evaluate(batch, action), strict=True):
        torch.testing.assert_close(x, y, rtol=0, atol=0)


def test_bad_configs_are_refused(tmp_path):
    with pytest.raises(ValueError, match="needs an input"):
        ActorCriticConfig(use_state=False)
    with pytest.raises(ValueError, match="n_action_steps"):
        ActorCriticConfig(chunk_size=2, n_action_steps=3)
    with pytest.raises(ValueError, match="unresolved"):
        GaussianActorCritic(ActorCriticConfig())
    with pytest.raises(ValueError, match="not in the data"):
        make_policy(ActorCriticConfig(cameras=["wrist"]), state_dim=S, action_dim=A, image_sizes={"base": (8, 8)})
    with pytest.raises(ValueError, match="out of range"):
        make_policy(ActorCriticConfig(relative_action_dims=[A]), state_dim=S, action_dim=A)
    with pytest.raises(FileNotFoundError, match="not an actor-critic checkpoint"):
        GaussianActorCritic.from_pretrained(tmp_path)


def test_normalised_states_are_clipped():
    rng = np.random.default_rng(5)
    policy = _policy(rng, state_clip=3.0)
    far = {"state": policy.state_mean[None] + 100.0 * policy.state_std[None]}
    edge = {"state": policy.state_mean[None] + 3.0 * policy.state_std[None]}
    torch.testing.assert_close(policy.features(far), policy.features(edge))
    torch.testing.assert_close(policy.features(far), torch.full((1, S), 3.0))
    unclipped = _policy(rng, state_clip=None)
    assert float(unclipped.features({"state": unclipped.state_mean[None] + 100.0 * unclipped.state_std[None]}).max()) \
        == pytest.approx(100.0, rel=1e-4)


def test_the_log_probability_of_a_chunk_is_one_term_per_executed_element():
    from policies.actor_critic.ppo_agent import ActorCriticAgent

    rng = np.random.default_rng(6)
    policy = _policy(rng, chunk_size=4, n_action_steps=4)
    agent = ActorCriticAgent(policy, -np.ones(A) * 100, np.ones(A) * 100, log_std=-1.0, n_action_steps=2,
                             log_std_bounds=(-2.0, -0.5))
    batch = {"state": torch.from_numpy(rng.standard_normal((B, S)).astype(np.float32))}
    decision = agent.decide(batch)
    assert decision.env_actions.shape == (B, 2, A)  # n_action_steps overrides the checkpoint's 4
    assert decision.log_prob.shape == (B, 2 * A)  # only the executed elements, each its own term
    dist = policy.distribution(policy.features(batch))
    expected = dist.log_prob(decision.stored)[:, : 2 * A]
    torch.testing.assert_close(decision.log_prob, expected)
    log_prob, entropy, value = agent.evaluate(batch, decision.stored)
    torch.testing.assert_close(log_prob, decision.log_prob)
    assert entropy.shape == value.shape == (B,)
    # the learned std stays inside the bounds, whatever the optimiser does to the parameter
    assert agent.exploration_std() == pytest.approx(np.exp(-1.0), rel=1e-5)
    with torch.no_grad():
        policy.log_std.fill_(5.0)
    assert agent.exploration_std() == pytest.approx(np.exp(-0.5), rel=1e-5)
    with pytest.raises(ValueError, match="n_action_steps"):
        ActorCriticAgent(_policy(rng, chunk_size=4), -np.ones(A), np.ones(A), n_action_steps=5)


def test_a_perturbed_copy_explores_by_its_seed_and_leaves_the_policy_alone():
    rng = np.random.default_rng(0)
    policy = _policy(rng, cameras=[])
    obs = _obs(rng)
    before = {k: v.clone() for k, v in policy.state_dict().items()}
    mean = policy.act(obs)
    one, again, other = policy.perturbed(0.1, seed=3), policy.perturbed(0.1, seed=3), policy.perturbed(0.1, seed=4)
    assert all(torch.equal(v, policy.state_dict()[k]) for k, v in before.items())  # the policy is untouched
    assert np.array_equal(policy.act(obs), mean)
    assert np.array_equal(one.act(obs), again.act(obs))  # same seed, same explorer (a resumed run)
    assert not np.array_equal(one.act(obs), mean) and not np.array_equal(one.act(obs), other.act(obs))
    changed = {k for k, v in one.state_dict().items() if not torch.equal(v, before[k])}
    assert changed and all(k.startswith("actor.") and k.endswith(".weight") for k in changed)
    # the noise is `scale` x each weight matrix's std
    for k in changed:
        ratio = float((one.state_dict()[k] - before[k]).std() / before[k].std())
        assert 0.08 < ratio < 0.12
