"""pi0.5 under PPO (policies.pi05.ppo_agent) on the tiny real-architecture pi0.5 and real ManiSkill PickCube.

A tiny PI05Policy is built with LeRobot's own processors (statistics of the
right shape, a locally trained tokenizer) and saved as a checkpoint; the PPO
loop then loads it through the production path (`policy.type: pi05`) and
runs one full iteration in PickCube on the CPU.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("lerobot.policies.pi05")

from policies.pi05.ppo_agent import Pi05RLConfig, Pi05RLAgent, _gaussian_log_prob, sde_step  # noqa: E402
from tests.support.tiny_pi05 import tiny_lerobot_config, tiny_pi05_architecture, train_tiny_tokenizer  # noqa: E402

CAMERA, SIZE, CHUNK, EXEC, STEPS = "base_camera", 32, 4, 2, 3
TASK = "pick up the red cube and move it to the goal position"


@pytest.fixture(scope="module", autouse=True)
def tiny_architecture() -> Iterator[None]:
    with tiny_pi05_architecture():
        yield


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from lerobot.configs.types import FeatureType, PolicyFeature
    from lerobot.policies.pi05 import PI05Policy

    from policies.pi05.policy import make_pi05_processors, save_pi05

    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("pi05rl")
    inputs = {"observation.state": PolicyFeature(FeatureType.STATE, (25,)),
              f"observation.images.{CAMERA}": PolicyFeature(FeatureType.VISUAL, (3, SIZE, SIZE))}
    outputs = {"action": PolicyFeature(FeatureType.ACTION, (8,))}
    config = tiny_lerobot_config(inputs, outputs, chunk_size=CHUNK, n_action_steps=EXEC, num_inference_steps=STEPS)

    def stats(dim: int, scale: float) -> dict[str, np.ndarray]:
        ones = np.ones(dim, np.float32)
        return {"mean": 0 * ones, "std": scale * ones, "min": -2 * scale * ones, "max": 2 * scale * ones,
                "q01": -2 * scale * ones, "q99": 2 * scale * ones}

    tokenizer = train_tiny_tokenizer(root / "tokenizer", texts=[TASK])
    pre, post = make_pi05_processors(config, {"observation.state": stats(25, 1.0), "action": stats(8, 0.5)},
                                     tokenizer=str(root / "tokenizer"))
    return save_pi05(PI05Policy(config), pre, post, root / "checkpoint", tokenizer=tokenizer)


def test_sde_step_is_the_euler_step_without_noise_and_keeps_the_flow_marginals() -> None:
    x, v = torch.tensor([[0.3, -1.2]]), torch.tensor([[2.0, 0.5]])
    mean, std = sde_step(x, v, t=0.5, dt=-0.25, noise_level=1e-9, t_cap=0.75)
    assert torch.allclose(mean, x + (-0.25) * v) and std < 1e-8
    # a = 0.5 at t = 0.5: sigma = 0.5, mean = x (1 + 0.25/1 * -0.25) + v (1 + 0.25*0.5/1) * -0.25
    mean, std = sde_step(x, v, t=0.5, dt=-0.25, noise_level=0.5, t_cap=0.75)
    assert torch.allclose(mean, x * (1 - 0.0625) + v * (1.125 * -0.25))
    assert std == pytest.approx(0.5 * math.sqrt(0.25))
    # t = 1 takes sigma from t_cap (sqrt(t / (1 - t)) is infinite there): sqrt(0.75 / 0.25) = sqrt(3)
    _, std = sde_step(x, v, t=1.0, dt=-0.25, noise_level=0.5, t_cap=0.75)
    assert std == pytest.approx(0.5 * math.sqrt(3) * 0.5)
    lp = _gaussian_log_prob(torch.tensor([[1.0, 0.0]]), torch.zeros(1, 2), 2.0)
    # one log-density per entry (PPO clips each entry's ratio), summing to the joint one
    half_log_2pi = 0.5 * math.log(2 * math.pi)
    assert lp.shape == (1, 2)
    assert lp[0].tolist() == pytest.approx([-0.5 * 0.25 - math.log(2.0) - half_log_2pi, -math.log(2.0) - half_log_2pi])
    assert float(lp.sum()) == pytest.approx(-0.5 * 0.25 - 2 * math.log(2.0) - math.log(2 * math.pi))


def test_chain_log_prob_is_recomputed_exactly_and_has_gradients(checkpoint: Path) -> None:
    torch.manual_seed(1)
    agent = Pi05RLAgent(Pi05RLConfig(pretrained=str(checkpoint), noise_level=0.5))
    assert (agent.steps, agent.chunk, agent.executed_steps) == (STEPS, CHUNK, EXEC)
    rng = np.random.default_rng(0)
    obs = {"state": torch.as_tensor(rng.normal(size=(3, 25)), dtype=torch.float32),
           "images": {CAMERA: torch.as_tensor(rng.integers(0, 256, (3, SIZE, SIZE, 3), dtype=np.uint8))},
           "task": [TASK] * 3}
    decision = agent.decide(obs)
    assert decision.env_actions.shape == (3, EXEC, 8) and np.isfinite(decision.env_actions).all()
    assert decision.stored.shape == (3, STEPS + 1, CHUNK, agent.max_action_dim)
    log_prob, entropy, value = agent.evaluate(obs, decision.stored)
    assert torch.allclose(log_prob, decision.log_prob, atol=1e-3)  # the ratio starts at 1
    assert torch.allclose(value, decision.value, atol=1e-5)
    assert torch.isfinite(entropy).all() and entropy.shape == (3,)
    (-log_prob.mean() + value.pow(2).mean()).backward()
    expert = agent.model.paligemma_with_expert.gemma_expert
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in expert.parameters())
    assert all(p.grad is not None for p in agent.value_head.parameters())
    vlm = agent.model.paligemma_with_expert.paligemma
    assert all(not p.requires_grad for p in vlm.parameters())  # train_vlm False freezes the backbone


def test_one_ppo_iteration_in_maniskill(checkpoint: Path, tmp_path: Path) -> None:
    from common.config import load_config
    from app.ppo import PPOConfig, train_ppo

    config = load_config(None, PPOConfig, [
        f"output_dir={tmp_path / 'run'}", "policy.type=pi05", f"policy.checkpoint={checkpoint}",
        "policy.noise_level=0.5", "env.backend=cpu_sync", "env.num_envs=1", "env.episode_steps=6",
        "env.sim.env_id=PickCube-v1", "env.sim.state_mode=proprio", f"env.sim.cameras=[{CAMERA}]",
        f"env.sim.camera_width={SIZE}", f"env.sim.camera_height={SIZE}", "reward.source=env", "iterations=1",
        "ppo.num_minibatches=1", "ppo.update_epochs=2", "ppo.learning_rate=0.001", "rerun=false", "plot=false",
        "progress=false",
    ])
    from policies.pi05.policy import Pi05Config, Pi05Policy

    before = {k: v.clone() for k, v in Pi05Policy(Pi05Config(pretrained=str(checkpoint))).policy.state_dict().items()}
    rows: list[dict] = []
    result = train_ppo(config, on_iteration=rows.append)
    row = rows[0]
    assert row["env_steps"] == 6
    for key in ("policy_loss", "value_loss", "entropy", "approx_kl"):
        assert math.isfinite(row[key]), key
    after = Pi05Policy(Pi05Config(pretrained=str(result.policy))).policy.state_dict()
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert any("gemma_expert" in k for k in changed)
    assert not any(".paligemma." in k and "gemma_expert" not in k for k in changed)  # the frozen VLM
    assert (result.policy / "value_head.safetensors").is_file()
