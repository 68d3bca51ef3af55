"""The PPO loop in real ManiSkill PickCube: interval-hold in the rollout, failing backends, the CLI end to end
with the compact reward model, AsyncVectorEnv workers against in-process envs, and resuming a killed run.

The starting policy is a small actor-critic saved with `save_pretrained` (the
format a behaviour-cloned checkpoint has); its weights are random, which is
all these tests need.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from app.cli import main
from app.ppo.config import RewardSection
from app.ppo.loop import collect_rollout
from app.ppo.rewards import StepReward
from lrm.backends.oracle import OracleRewardModel
from lrm.interval_hold import IntervalHoldConfig
from lrm.types import Reward
from tests.support.tiny_actor_critic import save_tiny_actor_critic

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

ROOT = Path(__file__).resolve().parents[2]
ENV_SETS = ["env.sim.env_id=PickCube-v1", "env.sim.state_mode=full", "env.seed=500", "progress=false"]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_actor_critic(tmp_path_factory.mktemp("bc") / "checkpoint")


@pytest.fixture(scope="module")
def sim():
    from sim.maniskill_env import SimEnvConfig
    from sim.vector_env import SyncSim

    vec = SyncSim(SimEnvConfig(env_id="PickCube-v1", state_mode="full", cameras=["base_camera"], camera_width=32,
                               camera_height=32), 2)
    yield vec
    vec.close()


@pytest.fixture(scope="module")
def agent(checkpoint: Path, sim):
    from policies.actor_critic.ppo_agent import ActorCriticAgent
    from policies.actor_critic.model import GaussianActorCritic

    return ActorCriticAgent(GaussianActorCritic.from_pretrained(checkpoint), sim.action_low, sim.action_high)


class CountingSim:
    """The real SyncSim, recording which envs each capture rendered."""

    def __init__(self, sim) -> None:
        self.sim, self.captured = sim, []

    def __getattr__(self, name):
        return getattr(self.sim, name)

    def capture(self, indices):
        self.captured.append(list(indices))
        return self.sim.capture(indices)


def _rollout(agent, sim, model, every=3, steps=7):
    torch.manual_seed(0)
    section = RewardSection(source="lrm", backend="unused", hold=IntervalHoldConfig(every=every, weights={"progress": 1.0}))
    reward = StepReward.make(section, sim.num_envs, sim.task, model)
    counting = CountingSim(sim)
    rollout = collect_rollout(agent, counting, reward, seeds=[3, 4], episode_steps=steps, gamma=0.9,
                              reward_camera=None, device=torch.device("cpu"))
    return rollout, reward, counting.captured


def test_interval_hold_in_the_rollout(agent, sim) -> None:
    rollout, reward, captured = _rollout(agent, sim, OracleRewardModel())
    # 7 steps, chunks of 2 executed actions: decisions of 2, 2, 2, 1 steps
    assert rollout.rewards.shape == (4, 2) and rollout.env_steps == 14
    assert torch.allclose(rollout.discounts, torch.tensor([0.81, 0.81, 0.81, 0.9]))
    # queries at steps 0, 3, 6 (K = 3) in both envs; only those steps render, and only for those envs
    assert captured == [[0, 1], [0, 1], [0, 1]]
    assert reward.query_count == 6 and [q.step for q in rollout.queries if q.env == 0] == [0, 3, 6]
    # the oracle's progress = the dense reward at the query step, held for K steps
    for t in range(7):
        assert np.allclose(rollout.step_rewards[t], np.clip(rollout.dense[3 * (t // 3)], 0, 1))
    r = rollout.step_rewards
    assert torch.allclose(rollout.rewards[0], torch.tensor(r[0] + 0.9 * r[1], dtype=torch.float32))
    assert torch.allclose(rollout.rewards[3], torch.tensor(r[6], dtype=torch.float32))


class AnchorRecorder(OracleRewardModel):
    """The real oracle, keeping the progress anchor of every request."""

    def __init__(self) -> None:
        super().__init__()
        self.anchors: list[np.ndarray] = []

    def score(self, requests):
        self.anchors += [r.frames["first"] for r in requests]
        return super().score(requests)


def test_paper_protocol_anchors_on_the_reset_frame_and_queries_from_step_k(agent, sim) -> None:
    torch.manual_seed(0)
    hold = IntervalHoldConfig(every=3, weights={"progress": 1.0}, protocol="paper")
    model = AnchorRecorder()
    reward = StepReward.make(RewardSection(source="lrm", backend="unused", hold=hold), sim.num_envs, sim.task, model)
    assert reward.needs_reset_frames
    counting = CountingSim(sim)
    rollout = collect_rollout(agent, counting, reward, seeds=[3, 4], episode_steps=7, gamma=0.9,
                              reward_camera=None, device=torch.device("cpu"))
    # every env's reset observation is rendered once, then the queries after 3 and 6 steps
    assert counting.captured == [[0, 1], [0, 1], [0, 1]]
    assert [q.step for q in rollout.queries if q.env == 0] == [2, 5]
    assert np.allclose(rollout.step_rewards[:2], 0.0)
    sim.reset([3, 4])  # the simulation is deterministic: the same reset observations again
    reset_frames = sim.capture([0, 1])
    assert len(model.anchors) == 4
    for i, anchor in enumerate(model.anchors):
        assert np.array_equal(anchor, next(iter(reset_frames[i % 2].values())))


@pytest.mark.parametrize(("backend", "protocol", "expected"), [
    ("lrm_published.yaml", None, "paper"), ("lrm_published.yaml", "legacy", "legacy"), ("lite.yaml", None, "legacy"),
])
def test_the_backend_file_brings_its_interval_hold_protocol(backend: str, protocol, expected: str) -> None:
    from common.config import ConfigFile
    from lrm.backends import RewardBackendConfig

    file = ConfigFile(str(ROOT / "configs" / "lrm" / "backends" / backend), RewardBackendConfig)
    section = RewardSection(source="lrm", backend=file, hold=IntervalHoldConfig(protocol=protocol))
    reward = StepReward.make(section, 2, "pick", OracleRewardModel())
    assert reward.hold.config.protocol == expected and reward.needs_reset_frames == (expected == "paper")


class OneEnvFails(OracleRewardModel):
    """The real oracle, except for env `bad`: it raises, or answers NaN, after that env's first query."""

    def __init__(self, bad: int, how: str) -> None:
        super().__init__()
        self.bad, self.how, self.seen = bad, how, 0

    def score(self, requests):
        rewards = super().score(requests)
        for i, request in enumerate(requests):
            if request.env_id == self.bad:
                self.seen += 1
                if self.seen > 1 and self.how == "raise":
                    raise RuntimeError("backend down for this env")
                if self.seen > 1:
                    rewards[i] = Reward(float("nan"), "garbage")
        return rewards


@pytest.mark.parametrize("how", ["raise", "nan"])
def test_a_failing_backend_for_one_env_is_held_and_counted(agent, sim, how: str) -> None:
    rollout, reward, _ = _rollout(agent, sim, OneEnvFails(bad=1, how=how))
    first = float(np.clip(rollout.dense[0, 1], 0, 1))
    assert np.allclose(rollout.step_rewards[:, 1], first)  # env 1 holds its first value for the whole episode
    for t in range(7):  # env 0 is scored as usual
        assert rollout.step_rewards[t, 0] == pytest.approx(float(np.clip(rollout.dense[3 * (t // 3), 0], 0, 1)))
    assert reward.failures == {1: 2}
    assert np.isfinite(rollout.step_rewards).all()


def _lite_backend(tmp_path: Path, task: str) -> Path:
    from lrm.backends.lite import LiteRewardModel
    from lrm.backends.lite_config import LiteConfig

    torch.manual_seed(0)
    model_dir = LiteRewardModel(LiteConfig(image_size=(32, 32), cnn_channels=[8, 8], feature_dim=16, hidden_dim=16,
                                           tasks=[task])).save_pretrained(tmp_path / "lite")
    path = tmp_path / "lite.yaml"
    path.write_text(f"type: lite\nlite:\n  checkpoint: {model_dir}\n")
    return path


def test_cli_end_to_end_with_the_compact_reward_model(checkpoint: Path, sim, tmp_path: Path, capsys) -> None:
    from sim.maniskill_env import SUPPORTED_ENVS

    backend = _lite_backend(tmp_path, SUPPORTED_ENVS["PickCube-v1"].task)
    out = tmp_path / "run"
    code = main(["ppo", "--config", str(ROOT / "configs/ppo/pickcube_lite.yaml"), "--output-dir", str(out),
                 "--checkpoint", str(checkpoint), "--iterations", "1", *sum([["--set", s] for s in ENV_SETS + [
                     "env.backend=cpu_sync", "env.num_envs=2", "env.episode_steps=8", "env.sim.camera_width=32",
                     "env.sim.camera_height=32", f"reward.backend={backend}", "reward.hold.every=4",
                     "reward.hold.weights={progress: 0.5, contrastive: 0.5}", "ppo.value_warmup_iterations=0"]], []),
                 "--report-to", "jsonl", "tensorboard"])
    assert code == 0, capsys.readouterr().err
    assert "PPO: 1 iterations, 16 env steps" in capsys.readouterr().out
    (row,) = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    # 2 envs x queries at steps 0 and 4; contrastive has nothing to compare with at an env's first query
    assert row["renders"] == 4 and row["reward_queries"] == 6 and row["backend_failures"] == 0
    assert row["env_steps"] == 16 and row["env_steps_per_s"] > 0 and row["reward_queries_per_s"] > 0
    for key in ("success_rate", "mean_reward", "policy_loss", "value_loss", "approx_kl"):
        assert math.isfinite(row[key]), key
    assert {"progress/pearson_global", "progress/roc_auc", "contrastive/direction_accuracy", "reward/pairwise_accuracy",
            "contrastive/monotonicity", "contrastive/progress_recall"} <= set(row)
    for name in ("metrics.rrd", "learning_curve.png", "checkpoints/last/training_state.pt", "policy/model.safetensors"):
        assert (out / name).is_file(), name
    assert "wall_time" not in row and list((out / "tensorboard").glob("events.out.tfevents.*"))  # the same row there


def test_worker_blocks_give_the_in_process_numbers_exactly_and_render_only_the_listed_envs() -> None:
    from sim.maniskill_env import SimEnvConfig
    from sim.vector_env import AsyncSim, SyncSim

    config = SimEnvConfig(env_id="PickCube-v1", state_mode="full", cameras=["base_camera"], camera_width=32,
                          camera_height=32)
    workers, local = AsyncSim(config, 4, workers=2), SyncSim(config, 4)
    try:
        assert workers.workers == 2 and workers.state_size == local.state_size and workers.task == local.task
        assert np.array_equal(workers.action_low, local.action_low)
        a, b = workers.reset([7, 8, 9, 10]), local.reset([7, 8, 9, 10])
        actions = np.random.default_rng(0).uniform(-0.5, 0.5, (4, 8)).astype(np.float32)
        for _ in range(3):
            a, b = workers.step(actions), local.step(actions)
        for field in ("states", "dense_reward", "success"):  # the split changes not a bit
            assert np.array_equal(getattr(a, field), getattr(b, field)), field
        frames, expected = workers.capture([2, 1]), local.capture([2, 1])
        assert list(frames) == [2, 1]  # one from each worker's block, in the order asked
        assert all(np.array_equal(frames[i]["base_camera"], expected[i]["base_camera"]) for i in (1, 2))
        assert workers.capture([]) == {}
    finally:
        workers.close()
        local.close()


def test_cpu_workers_split_the_envs_evenly_one_per_core() -> None:
    from app.ppo.config import EnvSection
    from sim.vector_env import cpu_workers

    cores = len(os.sched_getaffinity(0))
    assert cpu_workers(64, 0) == max(w for w in range(1, cores + 1) if 64 % w == 0)
    assert cpu_workers(7, 0) in (1, 7) and cpu_workers(6, 3) == 3
    with pytest.raises(ValueError, match="does not split evenly over 4 workers"):
        cpu_workers(6, 4)
    with pytest.raises(ValueError, match="env.workers 4 must divide num_envs 6"):
        EnvSection(num_envs=6, workers=4)


def test_bad_configs_are_one_line_errors(checkpoint: Path, tmp_path: Path, capsys) -> None:
    base = ["ppo", "--config", str(ROOT / "configs/ppo/pickcube_oracle.yaml"), "--output-dir", str(tmp_path / "o")]
    assert main([*base, "--set", "ppo.gamma=2"]) == 2
    assert "ppo" in capsys.readouterr().err
    assert main([*base, "--checkpoint", str(tmp_path / "missing"), "--set", "env.backend=cpu_sync",
                 "--set", "env.num_envs=1"]) == 2
    err = capsys.readouterr().err.strip()
    assert "policy.checkpoint" in err and len(err.splitlines()) == 1
    assert main([*base, "--checkpoint", str(checkpoint), "--set", "env.backend=cpu_sync", "--set", "env.num_envs=1",
                 "--set", "env.sim.state_mode=proprio"]) == 2
    assert "reads a state of 42 values" in capsys.readouterr().err
    for config in sorted((ROOT / "configs/ppo").glob("*.yaml")):  # every shipped config validates
        from common.config import load_config
        from app.ppo.config import PPOConfig

        load_config(config, PPOConfig)


def _command(checkpoint: Path, out: Path, iterations: int) -> list[str]:
    sets = ENV_SETS + ["env.backend=cpu_sync", "env.num_envs=2", "env.episode_steps=8", "checkpoint_every=1",
                       "ppo.value_warmup_iterations=1",  # the actor trains from iteration 1 on
                       "rerun=false", "plot=false", "ppo.num_minibatches=2", "ppo.learning_rate=0.001"]
    return ["ppo", "--config", str(ROOT / "configs/ppo/pickcube_oracle.yaml"), "--output-dir", str(out),
            "--checkpoint", str(checkpoint), "--iterations", str(iterations), *sum([["--set", s] for s in sets], [])]


def test_a_killed_run_resumes_from_its_last_checkpoint(checkpoint: Path, tmp_path: Path) -> None:
    from safetensors.torch import load_file

    killed = tmp_path / "killed"
    state = killed / "checkpoints/last/training_state.pt"
    proc = subprocess.Popen([sys.executable, "-m", "app.cli", *_command(checkpoint, killed, 4)], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, "PYTHONPATH": str(ROOT)})
    deadline = time.monotonic() + 120
    while not state.is_file() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = torch.load(state, weights_only=False)["iteration"] if state.is_file() else 0
    assert 1 <= done < 4, "the run must be killed after its first checkpoint and before its end"

    assert main(_command(checkpoint, killed, 4)) == 0  # the same command again
    rows = [json.loads(line) for line in (killed / "metrics.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in rows] == [0, 1, 2, 3] and rows[-1]["env_steps"] == 4 * 16

    straight = tmp_path / "straight"
    assert main(_command(checkpoint, straight, 4)) == 0
    a, b = load_file(str(killed / "policy/model.safetensors")), load_file(str(straight / "policy/model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)  # resumed == uninterrupted, bit for bit
    assert not torch.equal(a["actor.0.weight"], load_file(str(checkpoint / "model.safetensors"))["actor.0.weight"])


def test_the_batched_gpu_backend_class_matches_the_in_process_env_on_one_cpu_scene(sim) -> None:
    """GPUSim runs one ManiSkill env with N sub-scenes; physx_cpu allows N = 1, which this machine can check."""
    from sim.maniskill_env import SimEnvConfig
    from sim.vector_env import GPUSim

    batched = GPUSim(SimEnvConfig(env_id="PickCube-v1", state_mode="full", cameras=["base_camera"], camera_width=32,
                                  camera_height=32), 1)
    try:
        a, b = batched.reset([11]), sim.reset([11, 12])
        assert batched.state_size == sim.state_size and np.allclose(a.states[0], b.states[0], atol=1e-5)
        actions = b.states[:, :8].copy()
        a, b = batched.step(actions[:1]), sim.step(actions)
        assert np.allclose(a.states[0], b.states[0], atol=1e-5) and a.dense_reward[0] == pytest.approx(b.dense_reward[0], abs=1e-5)
        assert batched.capture([0])[0]["base_camera"].shape == (32, 32, 3) and batched.capture([]) == {}
    finally:
        batched.close()
