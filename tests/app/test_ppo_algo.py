"""GAE, the clipped PPO loss, reward scaling and the critic warm-up rule against values computed by hand."""

from __future__ import annotations

import math

import numpy as np

import pytest
import torch

from app.ppo.algo import RewardScaler, compute_gae, critic_is_warm, explained_variance, linear_anneal, ppo_loss


def _gae(gamma):
    # env 0: one episode; env 1: a new episode starts at t = 1 and the last one terminates (next_done)
    rewards = torch.tensor([[1.0, 1.0], [0.0, 1.0], [2.0, 1.0]])
    values = torch.tensor([[0.5, 0.0], [1.0, 0.0], [0.2, 0.0]])
    dones = torch.tensor([[1.0, 1.0], [0.0, 1.0], [0.0, 0.0]])
    return compute_gae(rewards, values, dones, torch.tensor([0.4, 10.0]), torch.tensor([0.0, 1.0]), gamma, 0.8)


def test_gae_by_hand() -> None:
    adv, ret = _gae(0.9)
    # env 0: d2 = 2 + .9*.4 - .2 = 2.16; d1 = 0 + .9*.2 - 1 = -.82 -> A1 = -.82 + .72*2.16 = .7352;
    #        d0 = 1 + .9*1 - .5 = 1.4 -> A0 = 1.4 + .72*.7352 = 1.929344
    # env 1: A2 = 1 (terminal, no bootstrap from 10); A1 = 1 + .72*1 = 1.72; A0 = 1 (t = 1 starts a new episode)
    assert torch.allclose(adv[:, 0], torch.tensor([1.929344, 0.7352, 2.16]), atol=1e-6)
    assert torch.allclose(adv[:, 1], torch.tensor([1.0, 1.72, 1.0]), atol=1e-6)
    assert torch.allclose(ret, adv + torch.tensor([[0.5, 0.0], [1.0, 0.0], [0.2, 0.0]]))


def test_gae_with_a_per_decision_discount() -> None:
    # a truncated last chunk discounts less: gamma = (.9, .9, .5); env 0: d2 = 2 + .5*.4 - .2 = 2.0,
    # A1 = -.82 + .72*2 = .62, A0 = 1.4 + .72*.62 = 1.8464 (lambda multiplies the decision's own gamma)
    adv, _ = _gae(torch.tensor([0.9, 0.9, 0.5]))
    assert torch.allclose(adv[:, 0], torch.tensor([1.8464, 0.62, 2.0]), atol=1e-6)


def _loss(**overrides):
    args = dict(
        new_log_prob=torch.tensor([math.log(1.5), math.log(0.5)]), old_log_prob=torch.zeros(2),
        advantages=torch.tensor([1.0, -1.0]), new_value=torch.tensor([1.0, 0.0]),
        old_value=torch.tensor([0.5, 0.5]), returns=torch.tensor([2.0, 0.0]), entropy=torch.tensor([1.0, 3.0]),
        clip_coef=0.2, clip_vloss=True, ent_coef=0.01, vf_coef=0.5, norm_adv=False,
    )
    args.update(overrides)
    return ppo_loss(**args)


def test_ppo_loss_by_hand() -> None:
    loss = _loss()
    # ratios 1.5 and .5 with A = +1 and -1: max(-1.5, -1.2) = -1.2; max(.5, .8) = .8 -> pg = -.2
    assert loss.policy == pytest.approx(-0.2)
    # value clipped to old +- .2: .7 and .3 -> max((1-2)^2, (.7-2)^2) = 1.69, max(0, .09) = .09 -> .5 * .89
    assert loss.value == pytest.approx(0.445)
    assert loss.entropy == pytest.approx(2.0)
    assert float(loss.total) == pytest.approx(-0.2 - 0.01 * 2.0 + 0.5 * 0.445, abs=1e-6)
    # approx kl: mean((r - 1) - log r) = mean(.5 - ln 1.5, -.5 - ln .5)
    assert loss.approx_kl == pytest.approx(((0.5 - math.log(1.5)) + (-0.5 - math.log(0.5))) / 2)
    assert loss.clipfrac == pytest.approx(1.0)


def test_ppo_loss_variants() -> None:
    assert _loss(clip_vloss=False).value == pytest.approx(0.5 * (1.0 + 0.0) / 2)
    # normalised advantages (+-1/sqrt(2) with the unbiased std): mean(-1.5, .8) / sqrt(2)
    assert _loss(norm_adv=True).policy == pytest.approx((-1.2 + 0.8) / 2 / math.sqrt(2), rel=1e-6)
    critic_only = _loss(policy_weight=0.0)
    assert float(critic_only.total) == pytest.approx(0.5 * 0.445)
    ones = _loss(new_log_prob=torch.zeros(2))
    assert ones.approx_kl == 0 and ones.clipfrac == 0 and ones.policy == pytest.approx(0.0)


def test_gradient_flows_only_where_unclipped() -> None:
    new = torch.tensor([math.log(1.5), math.log(1.1)], requires_grad=True)
    loss = _loss(new_log_prob=new, advantages=torch.tensor([1.0, 1.0]), ent_coef=0.0, vf_coef=0.0)
    loss.total.backward()
    # sample 0 is clipped (ratio 1.5 > 1.2 with A > 0): no gradient; sample 1: d(-A r / 2)/d log r = -1.1 / 2
    assert new.grad[0] == 0 and float(new.grad[1]) == pytest.approx(-0.55)


def test_linear_anneal() -> None:
    assert [linear_anneal(i, 4) for i in range(4)] == [1.0, 0.75, 0.5, 0.25]


def test_per_element_ratios_clip_each_element_on_its_own() -> None:
    # one decision of two elements: element 0 moved to ratio 1.5 (clipped at 1.2 for A > 0), element 1 to 1.1
    new = torch.tensor([[math.log(1.5), math.log(1.1)]], requires_grad=True)
    loss = ppo_loss(new, torch.zeros(1, 2), torch.tensor([1.0]), torch.zeros(1), torch.zeros(1), torch.zeros(1),
                    torch.zeros(1), clip_coef=0.2, clip_vloss=False, ent_coef=0.0, vf_coef=0.0, norm_adv=False)
    assert loss.policy == pytest.approx(-(1.2 + 1.1) / 2)
    loss.total.backward()
    assert new.grad[0, 0] == 0 and float(new.grad[0, 1]) == pytest.approx(-1.1 / 2)
    # the decision's ratio would be 1.65: clipped, no gradient at all; per element, element 1 still learns
    assert loss.clipfrac == pytest.approx(0.5)
    # approx kl per element: the mean of the elements' estimates
    assert loss.approx_kl == pytest.approx(((0.5 - math.log(1.5)) + (0.1 - math.log(1.1))) / 2)


def test_explained_variance() -> None:
    target = torch.tensor([1.0, 2.0, 3.0, 4.0])
    assert explained_variance(target, target) == pytest.approx(1.0)
    assert explained_variance(torch.full((4,), 2.5), target) == pytest.approx(0.0)
    assert explained_variance(-target, target) < 0
    assert math.isnan(explained_variance(target, torch.ones(4)))


def test_the_critic_warm_up_ends_at_the_explained_variance_or_the_iteration_limit() -> None:
    rule = dict(max_iterations=5, min_explained=0.5)
    assert not critic_is_warm(0, -3.0, **rule)
    assert not critic_is_warm(3, 0.49, **rule)
    assert not critic_is_warm(2, float("nan"), **rule)  # constant returns say nothing about the critic
    assert critic_is_warm(1, 0.5, **rule)
    assert critic_is_warm(5, -1.0, **rule)  # the limit ends it whatever the critic does
    assert critic_is_warm(0, -1.0, max_iterations=0, min_explained=0.5)  # no warm-up


def test_reward_scaling_divides_by_the_running_std_of_the_discounted_return() -> None:
    scaler = RewardScaler(num_envs=2, gamma=0.5)
    out = [scaler(np.array([2.0, 4.0])) for _ in range(3)]
    # returns: (2, 4), (3, 6), (3.5, 7); the running variance over all six (plus gym's prior of 1e-4 at var 1)
    returns = np.array([2.0, 4.0, 3.0, 6.0, 3.5, 7.0])
    prior = 1e-4
    mean = returns.sum() / (6 + prior)
    var = (prior * 1.0 + prior * mean**2 + ((returns - mean) ** 2).sum()) / (6 + prior)
    assert scaler.var == pytest.approx(var, rel=1e-4)
    assert out[-1] == pytest.approx(np.array([2.0, 4.0]) / np.sqrt(var), rel=1e-4)
    # the scale does not depend on the reward's units
    big = RewardScaler(num_envs=2, gamma=0.5)
    big_out = [big(np.array([200.0, 400.0])) for _ in range(3)]
    assert big_out[-1] == pytest.approx(out[-1], rel=1e-3)
    # a new episode restarts the returns, not the statistics; the statistics survive a checkpoint
    scaler.reset()
    assert (scaler.returns == 0).all()
    again = RewardScaler(num_envs=2, gamma=0.5)
    again.load_state_dict(scaler.state_dict())
    assert again(np.array([1.0, 1.0])) == pytest.approx(scaler(np.array([1.0, 1.0])))
