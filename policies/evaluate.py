"""Roll a policy out in ManiSkill and report the simulator's own success rate with a 95% interval.

An episode ends at the first step where the oracle reports success (ManiSkill
marks it terminated) or after `max_steps`; it counts as a success if the
oracle said so. Cameras are rendered only when the policy is about to read
images (not between the steps of an action chunk) or the episode is recorded
into a store: a frame costs ~20x a physics step on a CPU.

The interval is Wilson's score interval: unlike the normal approximation it
stays inside [0, 1] and is sensible at 0 or N successes, which is exactly
where small evaluations of weak policies land.

`sim` is imported lazily, inside `evaluate_policy`, so that importing
`policies` never pulls in ManiSkill.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from policies.base import Policy
from policies.errors import PolicyError

if TYPE_CHECKING:
    from sim.maniskill_env import SimEnvConfig

log = logging.getLogger(__name__)

__all__ = ["EvalReport", "RandomPolicy", "evaluate_policy", "load_policy", "wilson_interval"]


def wilson_interval(successes: int, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion (95% by default); (0, 1) when n == 0."""
    if n <= 0:
        return 0.0, 1.0
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    lo = 0.0 if successes == 0 else max(0.0, centre - half)
    hi = 1.0 if successes == n else min(1.0, centre + half)
    return lo, hi


class RandomPolicy:
    """Uniform random actions in the env's action box: the floor any trained policy must beat.

    The box comes from the env (`evaluate_policy` calls `set_action_bounds`) unless given here.
    """

    needs_images = False
    camera_names: list[str] = []

    def __init__(self, low: np.ndarray | None = None, high: np.ndarray | None = None, seed: int = 0) -> None:
        self.low = self.high = None
        self.set_action_bounds(low, high)
        self._rng = np.random.default_rng(seed)

    def set_action_bounds(self, low: np.ndarray | None, high: np.ndarray | None) -> None:
        self.low = None if low is None else np.asarray(low, dtype=np.float32)
        self.high = None if high is None else np.asarray(high, dtype=np.float32)

    def reset(self) -> None:
        """Nothing to forget."""

    def act(self, observation: Any) -> np.ndarray:
        if self.low is None or self.high is None:
            raise PolicyError("RandomPolicy needs the action bounds (set_action_bounds)")
        return self._rng.uniform(self.low, self.high).astype(np.float32)


@dataclass
class EvalReport:
    """Outcome of `evaluate_policy`."""

    env_id: str
    policy_id: str
    episodes: int = 0
    successes: int = 0
    seeds: list[int] = field(default_factory=list)
    success_flags: list[bool] = field(default_factory=list)
    lengths: list[int] = field(default_factory=list)
    # The oracle's normalised dense reward (0..1), its best value in each episode: how far a
    # policy that rarely succeeds still gets (reach, grasp, lift), which success alone hides.
    max_dense_rewards: list[float] = field(default_factory=list)
    recorded: list[int] = field(default_factory=list)  # store indices of recorded episodes
    elapsed_s: float = 0.0

    @property
    def success_rate(self) -> float:
        return self.successes / self.episodes if self.episodes else 0.0

    @property
    def mean_max_dense_reward(self) -> float:
        return float(np.mean(self.max_dense_rewards)) if self.max_dense_rewards else 0.0

    @property
    def ci95(self) -> tuple[float, float]:
        return wilson_interval(self.successes, self.episodes)

    def summary(self) -> str:
        lo, hi = self.ci95
        return (
            f"{self.env_id} {self.policy_id}: success {self.successes}/{self.episodes} = {self.success_rate:.1%} "
            f"(95% CI {lo:.1%}-{hi:.1%}), mean length {np.mean(self.lengths or [0]):.1f} steps, "
            f"mean best dense reward {self.mean_max_dense_reward:.3f}, "
            f"{self.elapsed_s:.1f} s"
        )

    def to_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data.update(success_rate=self.success_rate, ci95=list(self.ci95),
                    mean_max_dense_reward=self.mean_max_dense_reward)
        return data


def load_policy(path: str | Path) -> Any:
    """The policy saved in checkpoint directory `path`: a LeRobot pi0.5 checkpoint or the small actor-critic.

    A pi0.5 checkpoint loads with the default observation mapping (env camera X
    feeds observation.images.X); for another mapping build a `Pi05Policy` from a
    `Pi05Config` (configs/policies/pi05_pickcube.yaml).
    """
    if _checkpoint_type(Path(path)) == "pi05":
        from policies.pi05 import Pi05Config, make_policy

        return make_policy(Pi05Config(pretrained=str(path)))
    from policies.actor_critic import GaussianActorCritic

    try:
        return GaussianActorCritic.from_pretrained(path)
    except (FileNotFoundError, ValueError) as exc:
        raise PolicyError(str(exc)) from None


def _checkpoint_type(path: Path) -> str | None:
    """LeRobot writes the policy type into config.json; the actor-critic's config has none."""
    try:
        return json.loads((path / "config.json").read_text()).get("type")
    except (OSError, ValueError, AttributeError):
        return None


def evaluate_policy(
    policy: Policy,
    env_config: SimEnvConfig,
    episodes: int,
    *,
    seed: int = 10_000,
    max_steps: int | None = None,
    policy_id: str = "policy",
    record_to: str | Path | None = None,
    round: int = 0,  # noqa: A002 - EpisodeMeta's field name
    progress: bool = True,
) -> EvalReport:
    """Run `episodes` episodes on env seeds seed, seed + 1, ...; optionally record them into a store.

    Recorded episodes get source="sim", the policy id, the round and the
    oracle success flag of their final state, through the streaming writer.
    """
    from tqdm.auto import tqdm

    from sim.maniskill_env import make_sim_env

    if episodes <= 0:
        raise PolicyError(f"episodes must be positive, got {episodes}")
    report = EvalReport(env_id=env_config.env_id, policy_id=policy_id)
    started = time.perf_counter()
    env = make_sim_env(env_config)
    store = None
    try:
        missing = [c for c in policy.camera_names if c not in env.camera_names]
        if missing:
            raise PolicyError(f"the policy needs camera {missing[0]!r}; {env_config.env_id} renders "
                              f"{', '.join(env.camera_names) or 'none'} (check env.cameras)")
        _check_sizes(policy, env)
        if hasattr(policy, "set_action_bounds"):
            policy.set_action_bounds(env.action_space.low, env.action_space.high)
        if record_to is not None:
            store = _open_store(record_to, env, env_config)
        limit = max_steps or env.max_episode_steps
        bar = tqdm(total=episodes, desc=f"eval {env_config.env_id}", unit="ep", disable=not progress,
                   dynamic_ncols=True)
        try:
            for i in range(episodes):
                ep_seed = seed + i
                success, length, best, index = _run_episode(
                    policy, env, env_config, ep_seed, limit, store, policy_id=policy_id, round_=round
                )
                report.episodes += 1
                report.successes += int(success)
                report.seeds.append(ep_seed)
                report.success_flags.append(success)
                report.lengths.append(length)
                report.max_dense_rewards.append(best)
                if index is not None:
                    report.recorded.append(index)
                bar.update(1)
                bar.set_postfix(success=f"{report.successes}/{report.episodes}")
        finally:
            bar.close()
    finally:
        if store is not None:
            store.close()
        env.close()
    report.elapsed_s = time.perf_counter() - started
    log.info("%s", report.summary())
    return report


def _run_episode(
    policy: Policy, env: Any, env_config: Any, seed: int, limit: int, store: Any, *, policy_id: str, round_: int
) -> tuple[bool, int, float, int | None]:
    """One episode; returns (oracle success, steps taken, best dense reward, store index or None)."""
    from recordings.episode import EpisodeMeta, Frame
    from sim.demos import config_hash

    record = store is not None
    obs = env.reset(seed=seed)
    policy.reset()
    writer = None
    if record:
        meta = EpisodeMeta(task=env.task, source="sim", env_id=env_config.env_id, policy_id=policy_id,
                           round=round_, seed=seed, config_hash=config_hash(env_config),
                           extra={"control_mode": env_config.control_mode, "state_mode": env_config.state_mode})
        writer = store.begin_episode(meta)
    queue: list[np.ndarray] = []
    steps = 0
    best = env.dense_reward
    try:
        while steps < limit:
            # Render when the frame is recorded or the policy is about to look (not mid-chunk).
            if record or (policy.needs_images and not queue):
                obs.images = env.capture()
            if not queue:
                out = np.asarray(policy.act(obs), dtype=np.float32)
                queue = list(out) if out.ndim == 2 else [out]  # an action chunk runs step by step
            action = queue.pop(0)
            if writer is not None:
                images = {c: obs.images[c] for c in store.cameras}
                writer.add_frame(Frame(images=images, state=obs.state, action=action,
                                       timestamp=steps / env.control_freq))
            obs, info = env.step(action)
            steps += 1
            best = max(best, float(info["dense_reward"]))
            if info["success"]:
                break
        success = env.success
        index = None
        if writer is not None:
            index = writer.commit()
            store.update_meta(index, oracle_success=success,
                              extra={**store.record(index).meta.extra, "final_dense_reward": env.dense_reward})
        return success, steps, best, index
    except BaseException:
        if writer is not None and writer.state == "open":
            writer.discard()
        raise


def _check_sizes(policy: Any, env: Any) -> None:
    """A policy trained on another state layout would act on garbage: refuse with a hint instead."""
    state_dim = getattr(policy, "state_dim", None)
    if state_dim and state_dim != env.state_size:
        raise PolicyError(
            f"the policy takes states of size {state_dim}, {env.config.env_id} gives {env.state_size} with "
            f"state_mode {env.config.state_mode!r} (set env.state_mode to what the policy was trained on)"
        )
    action_dim = getattr(policy, "action_dim", None)
    if action_dim and action_dim != int(np.prod(env.action_shape)):
        raise PolicyError(f"the policy outputs actions of size {action_dim}, the env takes {env.action_shape} "
                          f"(control_mode {env.config.control_mode!r})")


def _open_store(path: str | Path, env: Any, env_config: Any) -> Any:
    from recordings.store import EpisodeStore

    cameras = {name: (env_config.camera_height, env_config.camera_width) for name in env.camera_names}
    store = EpisodeStore.open(path, mode="a", fps=env.control_freq, cameras=cameras, state_dim=env.state_size,
                              action_dim=int(np.prod(env.action_shape)))
    if store.cameras and store.cameras != cameras:
        store.close()
        raise PolicyError(f"{path} holds cameras {store.cameras}, this env records {cameras}")
    if store.state_dim not in (None, env.state_size):
        store.close()
        raise PolicyError(f"{path} holds states of size {store.state_dim}, this env has {env.state_size}")
    return store
