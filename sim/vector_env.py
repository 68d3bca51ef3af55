"""N ManiSkill envs stepped as one batch, with cameras rendered only for the envs that ask.

Three ways to run them, one interface (`VecSim`: reset, step, capture, close;
numpy in and out, batch first):

- `SyncSim`: `sim.ManiSkillEnv`s in this process, one after another
  (ManiSkill refuses num_envs > 1 on its CPU backend, DESIGN.md). Each
  already squeezes ManiSkill's batch of one as CPUGymWrapper would and
  renders only on `capture`.
- `AsyncSim` (CPU, the default without a GPU): the envs split in equal
  blocks over worker processes under gymnasium's `AsyncVectorEnv`, one
  `SyncSim` per worker, by default one worker per CPU core.
  `capture(indices)` is one `AsyncVectorEnv.call`: a worker renders only
  the listed envs of its block, so the others pay nothing.
- `GPUSim`: one ManiSkill env with `num_envs` parallel sub-scenes
  (sim_backend physx_cuda). Its cameras render all sub-scenes in one batched
  pass, so `capture` renders once and returns the envs asked for.

Oracle values (`dense_reward`, normalised to [0, 1], and `success`) come
with every step: PPO's oracle arm trains on them and the metrics compare
the reward model with them.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from functools import partial
from typing import Any, Protocol

import numpy as np

from sim.maniskill_env import ManiSkillEnv, SimEnvConfig

log = logging.getLogger(__name__)

__all__ = ["AsyncSim", "GPUSim", "StepResult", "SyncSim", "VecSim", "make_vec_sim"]

Frames = dict[str, np.ndarray]


@dataclass
class StepResult:
    states: np.ndarray  # (N, S) float32
    dense_reward: np.ndarray  # (N,) float64, the simulator's normalised dense reward
    success: np.ndarray  # (N,) bool


class VecSim(Protocol):
    num_envs: int
    state_size: int
    action_low: np.ndarray
    action_high: np.ndarray
    task: str
    camera_names: list[str]

    def reset(self, seeds: Sequence[int]) -> StepResult: ...

    def step(self, actions: np.ndarray) -> StepResult: ...

    def capture(self, indices: Sequence[int]) -> dict[int, Frames]: ...

    def close(self) -> None: ...


# -- CPU: ManiSkillEnvs split over worker processes -----------------------------------------------


def cpu_workers(num_envs: int, workers: int = 0) -> int:
    """How many worker processes run `num_envs` CPU envs: `workers`, or with 0 the most that the CPU
    cores this process may use can keep busy and that split the envs evenly (each worker holds an
    equal block, so that their batches stack)."""
    if workers < 0:
        raise ValueError(f"workers must be >= 0, got {workers}")
    if workers:
        if num_envs % workers:
            raise ValueError(f"num_envs {num_envs} does not split evenly over {workers} workers")
        return workers
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(w for w in range(1, min(cores, num_envs) + 1) if num_envs % w == 0)


def _shard_class() -> type:
    import gymnasium as gym

    class ManiSkillShard(gym.Env):
        """A block of envs [first, first + count) as one gym.Env for an AsyncVectorEnv worker: a `SyncSim`
        whose observation, action and info are the block's batch; never ends an episode by itself."""

        def __init__(self, config: SimEnvConfig, first: int, count: int, torch_threads: int = 1) -> None:
            import torch

            torch.set_num_threads(torch_threads)  # one core per worker; the learner has its own
            self.first, self.count = first, count
            self.sim = SyncSim(config, count)
            self.action_space = gym.spaces.Box(np.tile(self.sim.action_low, (count, 1)),
                                               np.tile(self.sim.action_high, (count, 1)), dtype=np.float32)
            self.observation_space = gym.spaces.Box(-np.inf, np.inf, (count, self.sim.state_size), np.float32)

        def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
            # AsyncVectorEnv gives each worker one seed; a block needs one per env, so all travel in options
            result = self.sim.reset((options or {})["seeds"][self.first:self.first + self.count])
            return result.states, self._info(result)

        def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict]:
            result = self.sim.step(action)
            return result.states, 0.0, False, False, self._info(result)

        @staticmethod
        def _info(result: StepResult) -> dict[str, np.ndarray]:
            return {"success": result.success, "dense_reward": result.dense_reward}

        def capture_if_listed(self, indices: Sequence[int]) -> dict[int, Frames]:
            mine = [i - self.first for i in indices if self.first <= i < self.first + self.count]
            return {self.first + i: frames for i, frames in self.sim.capture(mine).items()}

        def describe(self) -> dict[str, Any]:
            return {"task": self.sim.task, "cameras": self.sim.camera_names,
                    "low": self.sim.action_low, "high": self.sim.action_high, "state_size": self.sim.state_size}

        def close(self) -> None:
            self.sim.close()

    return ManiSkillShard


def _make_shard(config: SimEnvConfig, first: int, count: int) -> Any:
    from sim.vulkan import prepare_sim_env

    prepare_sim_env()
    return _shard_class()(config, first, count)


# Imported once by the fork server, so that each worker forks with them loaded instead of importing anew.
_PRELOAD = ["torch", "gymnasium", "mani_skill.envs", "sim.vector_env"]


class AsyncSim:
    """`num_envs` ManiSkillEnvs split in equal blocks over `workers` AsyncVectorEnv worker processes.

    One block per core keeps every core stepping physics while this process
    waits for the batch (on 2 cores, 2 workers of 32 envs step a PushCube
    batch 1.9x faster than one process, benchmarks/sim_workers.py; one
    worker per env costs more in messages than it gives). Workers come from
    a fork server (not from this process: forking a process that already
    runs torch threads can deadlock the child) that has imported ManiSkill
    once, so N workers cost one import, not N; `context="spawn"` imports in
    every worker. An env's episode is a function of its seed alone
    (`ManiSkillEnv.reset`), so the split does not change a single number.
    """

    def __init__(self, config: SimEnvConfig, num_envs: int, workers: int = 0, context: str = "forkserver") -> None:
        import multiprocessing

        from gymnasium.vector import AsyncVectorEnv
        from gymnasium.vector.vector_env import AutoresetMode

        from sim.vulkan import prepare_sim_env

        prepare_sim_env()  # the fork server inherits the Vulkan / asset-dir environment from here
        if context == "forkserver":
            multiprocessing.get_context("forkserver").set_forkserver_preload(_PRELOAD)
        self.num_envs = num_envs
        self.workers = cpu_workers(num_envs, workers)
        block = num_envs // self.workers
        config = replace(config, capture_every_step=False)
        self._vec = AsyncVectorEnv(
            [partial(_make_shard, config, w * block, block) for w in range(self.workers)],
            shared_memory=False,
            context=context,
            autoreset_mode=AutoresetMode.DISABLED,
        )
        info = self._vec.call("describe")[0]
        self.task, self.camera_names = info["task"], list(info["cameras"])
        self.action_low, self.action_high = info["low"], info["high"]
        self.state_size = int(info["state_size"])

    def _result(self, states: np.ndarray, info: dict[str, Any]) -> StepResult:
        return StepResult(np.asarray(states, np.float32).reshape(self.num_envs, self.state_size),
                          np.asarray(info["dense_reward"], np.float64).reshape(self.num_envs),
                          np.asarray(info["success"], bool).reshape(self.num_envs))

    def reset(self, seeds: Sequence[int]) -> StepResult:
        if len(seeds) != self.num_envs:
            raise ValueError(f"{len(seeds)} seeds for {self.num_envs} envs")
        states, info = self._vec.reset(options={"seeds": [int(s) for s in seeds]})
        return self._result(states, info)

    def step(self, actions: np.ndarray) -> StepResult:
        actions = np.asarray(actions, np.float32).reshape(self.workers, self.num_envs // self.workers, -1)
        states, _, _, _, info = self._vec.step(actions)
        return self._result(states, info)

    def capture(self, indices: Sequence[int]) -> dict[int, Frames]:
        if not len(indices):
            return {}
        listed = [int(i) for i in indices]
        frames: dict[int, Frames] = {}
        for block in self._vec.call("capture_if_listed", listed):
            frames.update(block)
        return {i: frames[i] for i in listed}

    def close(self) -> None:
        self._vec.close()


class SyncSim:
    """The same envs in this process, stepped one after another."""

    def __init__(self, config: SimEnvConfig, num_envs: int) -> None:
        config = replace(config, capture_every_step=False)
        self.envs = [ManiSkillEnv(config) for _ in range(num_envs)]
        self.num_envs = num_envs
        first = self.envs[0]
        self.task, self.camera_names, self.state_size = first.task, first.camera_names, first.state_size
        self.action_low = np.asarray(first.action_space.low, np.float32)
        self.action_high = np.asarray(first.action_space.high, np.float32)

    def _result(self, states: list[np.ndarray]) -> StepResult:
        return StepResult(np.stack(states).astype(np.float32),
                          np.array([e.dense_reward for e in self.envs], np.float64),
                          np.array([e.success for e in self.envs], bool))

    def reset(self, seeds: Sequence[int]) -> StepResult:
        return self._result([e.reset(seed=int(s)).state for e, s in zip(self.envs, seeds, strict=True)])

    def step(self, actions: np.ndarray) -> StepResult:
        return self._result([e.step(np.asarray(a, np.float32))[0].state for e, a in zip(self.envs, actions, strict=True)])

    def capture(self, indices: Sequence[int]) -> dict[int, Frames]:
        return {int(i): self.envs[int(i)].capture() for i in indices}

    def close(self) -> None:
        for env in self.envs:
            env.close()


# -- GPU: one ManiSkill env, many sub-scenes -----------------------------------------------------


class GPUSim:
    """One ManiSkill env with `num_envs` sub-scenes; works with `sim_backend` physx_cuda (many envs) or
    physx_cpu (exactly one, which is how the tests exercise this class on a machine without a GPU)."""

    def __init__(self, config: SimEnvConfig, num_envs: int) -> None:
        from sim.vulkan import prepare_sim_env

        prepare_sim_env()
        import gymnasium as gym
        import mani_skill.envs  # noqa: F401  (registers the env ids)
        from mani_skill.sensors.camera import Camera

        self.config = config
        self.num_envs = num_envs
        self.task = config.task_sentence
        self._gym = gym.make(config.env_id, num_envs=num_envs, **config.gym_kwargs())
        self.raw = self._gym.unwrapped
        available = [n for n, s in self.raw.scene.sensors.items() if isinstance(s, Camera)]
        self.camera_names = available if config.cameras is None else list(config.cameras)
        space = self.raw.single_action_space
        self.action_low, self.action_high = np.asarray(space.low, np.float32), np.asarray(space.high, np.float32)
        self._obs: Any = None
        self._info: dict[str, Any] = {}
        self.reset(list(range(num_envs)))
        self.state_size = int(self._states().shape[1])

    def _states(self) -> np.ndarray:
        import torch
        from mani_skill.utils import common

        if self.config.state_mode == "full":
            flat = common.flatten_state_dict(self._obs, use_torch=True)
        else:
            robot = self.raw.agent.robot
            flat = torch.cat([robot.get_qpos(), robot.get_qvel(), self.raw.agent.tcp.pose.raw_pose], dim=-1)
        return np.asarray(flat.detach().cpu().numpy(), np.float32).reshape(self.num_envs, -1)

    def _result(self, reward: Any) -> StepResult:
        dense = np.asarray(reward.detach().cpu().numpy(), np.float64).reshape(self.num_envs)
        success = np.asarray(self._info["success"].detach().cpu().numpy(), bool).reshape(self.num_envs)
        return StepResult(self._states(), dense, success)

    def reset(self, seeds: Sequence[int]) -> StepResult:
        self._obs, self._info = self.raw.reset(seed=[int(s) for s in seeds])
        reward = self.raw.compute_normalized_dense_reward(obs=self._obs, action=None, info=self._info)
        return self._result(reward)

    def step(self, actions: np.ndarray) -> StepResult:
        import torch

        action = torch.as_tensor(np.asarray(actions, np.float32), device=self.raw.device)
        self._obs, reward, _, _, self._info = self.raw.step(action)
        return self._result(reward)

    def capture(self, indices: Sequence[int]) -> dict[int, Frames]:
        if not len(indices):
            return {}
        env = self.raw
        for obj in env._hidden_objects:  # noqa: SLF001 - as ManiSkillEnv.capture
            obj.show_visual() if self.config.show_goal_markers else obj.hide_visual()
        env.scene.update_render(update_sensors=True, update_human_render_cameras=False)
        images: dict[str, np.ndarray] = {}
        for name in self.camera_names:
            sensor = env.scene.sensors[name]
            sensor.capture()
            rgb = sensor.get_obs(rgb=True, depth=False, position=False, segmentation=False)["rgb"]
            images[name] = rgb.detach().cpu().numpy().astype(np.uint8)
        return {int(i): {n: np.ascontiguousarray(images[n][int(i)]) for n in self.camera_names} for i in indices}

    def close(self) -> None:
        self._gym.close()


def resolve_backend(backend: str) -> str:
    if backend != "auto":
        return backend
    import torch

    return "gpu" if torch.cuda.is_available() else "cpu"


def make_vec_sim(config: SimEnvConfig, num_envs: int, backend: str = "auto", workers: int = 0) -> VecSim:
    """The vectorised envs for `backend` ("auto": gpu when torch sees CUDA, else cpu workers; `workers`:
    their number, 0 for one per core)."""
    backend = resolve_backend(backend)
    if backend == "gpu":
        if config.sim_backend == "physx_cpu" and num_envs > 1:
            config = replace(config, sim_backend="physx_cuda", render_backend="gpu")
        return GPUSim(config, num_envs)
    if backend == "cpu_sync" or cpu_workers(num_envs, workers) == 1:
        return SyncSim(config, num_envs)
    return AsyncSim(config, num_envs, workers)
