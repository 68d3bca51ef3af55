"""GAE and the clipped PPO loss against values computed by hand (in the comments)."""

from __future__ import annotations

import math

import pytest
import torch

from app.ppo.algo import compute_gae, linear_anneal, ppo_loss


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
